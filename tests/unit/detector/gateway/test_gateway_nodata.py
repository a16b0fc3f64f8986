"""The no-data watch without a broker: when it raises, ends and adopts, on a fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from detector.gateway.nodata import NoDataWatch
from stream.redis import AlarmState
from stream.schemas import AlarmPhase, AlarmPriority, Alert, SampleChunk


class _Store:
    def __init__(self, open_alarms: list[AlarmState] | None = None) -> None:
        self.written: list[Alert] = []
        self.open = open_alarms or []

    async def write_alert(self, alert: Alert) -> bool:
        self.written.append(alert)
        return True

    async def active_alarms(self, patient: str) -> list[AlarmState]:
        return [a for a in self.open if a.patient_id == patient]


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _chunk(pid: str, first: int, n: int = 90) -> SampleChunk:
    return SampleChunk(pid, "x", ("MLII",), 360.0, (200.0,), (0,), first, np.zeros((n, 1), np.int16), 1)


def _watch(store: Any, clock: _Clock) -> NoDataWatch:
    return NoDataWatch(store, 15.0, CollectorRegistry(), clock=clock)


async def test_silence_of_the_limit_raises_once_and_the_next_chunk_ends_it() -> None:
    store, clock = _Store(), _Clock()
    watch = _watch(store, clock)
    for i in range(4):
        watch.chunk(_chunk("a", i * 90))
        watch.chunk(_chunk("b", i * 90))
        clock.t += 0.25
    await watch.step()
    clock.t += 14.0
    watch.chunk(_chunk("b", 360))  # b keeps sending
    await watch.step()
    assert store.written == []  # 14.25 s: not yet
    clock.t += 1.0
    await watch.step()
    await watch.step()
    assert [(a.patient_id, a.phase, a.alarm_id) for a in store.written] == [
        ("a", AlarmPhase.ONSET, "a:no_data:360")]
    onset = store.written[0]
    assert onset.technical and onset.priority is AlarmPriority.MEDIUM and onset.fs_hz == 360.0
    watch.chunk(_chunk("a", 9000))  # back, after a gap in its own data
    await watch.step()
    end = store.written[-1]
    assert (end.phase, end.alarm_id, end.sample_index) == (AlarmPhase.END, "a:no_data:360", 9000)
    clock.t += 10.0
    watch.chunk(_chunk("a", 9090))
    await watch.step()
    assert len(store.written) == 2  # flowing again: nothing more


async def test_an_alarm_left_open_by_an_earlier_gateway_ends_when_the_data_returns() -> None:
    left = AlarmState("c:no_data:720", "c", "no_data", AlarmPriority.MEDIUM, AlarmPhase.ONSET, 720, 720,
                      "no data", True, None, None)
    store, clock = _Store([left]), _Clock()
    watch = _watch(store, clock)
    watch.chunk(_chunk("c", 50_000))
    await watch.step()
    assert [(a.phase, a.alarm_id, a.sample_index) for a in store.written] == [
        (AlarmPhase.END, "c:no_data:720", 50_000)]
    await watch.step()
    assert len(store.written) == 1


class _Redis(_Store):
    """The store with the patients Redis lists and their beat streams' newest entries."""

    prefix = "ecgmon"

    def __init__(self, open_alarms: list[AlarmState], newest: dict[str, dict[bytes, bytes]]) -> None:
        super().__init__(open_alarms)
        self.newest, self.client = newest, self

    async def patients(self) -> list[str]:
        return ["p1", "p2", "p3", "p4"]

    async def xrevrange(self, key: str, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        pid = key.rsplit(":", 1)[1]
        return [(b"1-1", self.newest[pid])] if pid in self.newest else []


async def test_a_patient_silent_since_before_the_gateway_started_is_watched_from_redis() -> None:
    left = AlarmState("p3:no_data:500", "p3", "no_data", AlarmPriority.MEDIUM, AlarmPhase.ONSET, 500, 500,
                      "no data", True, None, None)
    beat = {b"sample": b"3600", b"fs_hz": b"360.0", b"class": b"N"}
    store, clock = _Redis([left], {"p1": beat, "p3": beat, "p4": beat}), _Clock()
    watch = NoDataWatch(store, 15.0, CollectorRegistry(), clock=clock,  # type: ignore[arg-type]
                        skip=lambda pid: pid == "p4")  # p4: discharged, not archived yet
    await watch.seed()
    assert sorted(watch.seen) == ["p1", "p3"]  # p2 has no beat to place an onset at
    watch.chunk(_chunk("p5", 0))  # another bed streams: the station receives
    await watch.step()
    assert store.written == []  # p3's open alarm is taken over, neither raised again nor ended
    clock.t += 15.0
    watch.chunk(_chunk("p5", 90))
    await watch.step()
    assert [(a.alarm_id, a.phase, a.fs_hz) for a in store.written] == [
        ("p1:no_data:3601", AlarmPhase.ONSET, 360.0)]  # the sample after its last beat in Redis
    watch.chunk(_chunk("p3", 90_000))  # p3's monitor is back
    await watch.step()
    assert [(a.alarm_id, a.phase, a.sample_index) for a in store.written[1:]] == [
        ("p3:no_data:500", AlarmPhase.END, 90_000)]


async def test_silence_from_every_bed_at_once_is_an_upstream_fault_not_a_burst_of_bed_alarms() -> None:
    store, clock = _Store(), _Clock()
    watch = _watch(store, clock)
    changes: list[dict[str, object]] = []
    watch.on_feed = changes.append
    for pid in ("a", "b", "c"):
        watch.chunk(_chunk(pid, 0))
    clock.t += 20.0  # the broker died: nothing from anyone
    await watch.step()
    assert store.written == [] and watch.silent
    assert [c["receiving"] for c in changes] == [False]
    assert watch.feed_state()["last_data_ms"] is not None
    clock.t += 60.0
    await watch.step()
    assert store.written == []  # still no bed alarm while the station receives nothing
    watch.chunk(_chunk("a", 90))  # back, for a and b; c's monitor really is off
    watch.chunk(_chunk("b", 90))
    assert [c["receiving"] for c in changes] == [False, True] and not watch.silent
    clock.t += 10.0
    watch.chunk(_chunk("a", 180))
    watch.chunk(_chunk("b", 180))
    await watch.step()
    assert store.written == []  # c silent for 10 s since the data came back: not yet
    clock.t += 5.0
    watch.chunk(_chunk("a", 270))
    watch.chunk(_chunk("b", 270))
    await watch.step()
    assert [(a.alarm_id, a.phase) for a in store.written] == [("c:no_data:90", AlarmPhase.ONSET)]


async def test_one_watched_bed_that_stops_is_that_bed_alarm() -> None:
    store, clock = _Store(), _Clock()
    watch = _watch(store, clock)
    watch.chunk(_chunk("a", 0))
    clock.t += 15.0
    await watch.step()
    assert [a.alarm_id for a in store.written] == ["a:no_data:90"] and not watch.silent


async def test_seeding_is_tried_again_when_redis_failed() -> None:
    from stream.errors import ServiceUnavailable

    class _Flaky(_Redis):
        calls = 0

        async def patients(self) -> list[str]:
            self.calls += 1
            if self.calls == 1:
                raise ServiceUnavailable("redis unavailable for patients")
            return await super().patients()

    store = _Flaky([], {"p1": {b"sample": b"360", b"fs_hz": b"360.0"}})
    watch = NoDataWatch(store, 15.0, CollectorRegistry(), clock=_Clock())  # type: ignore[arg-type]
    watch._wake.set()
    task = asyncio.create_task(watch._run())
    try:
        async with asyncio.timeout(5):
            while "p1" not in watch.seen:  # noqa: ASYNC110 - the watch's own 1 s retry loop
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert store.calls == 2
