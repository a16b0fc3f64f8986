"""The no-data watch without a broker: when it raises, ends and adopts, on a fake clock."""

from __future__ import annotations

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
    await watch.step()
    assert store.written == []  # p3's open alarm is taken over, neither raised again nor ended
    clock.t += 15.0
    await watch.step()
    assert [(a.alarm_id, a.phase, a.fs_hz) for a in store.written] == [
        ("p1:no_data:3601", AlarmPhase.ONSET, 360.0)]  # the sample after its last beat in Redis
    watch.chunk(_chunk("p3", 90_000))  # p3's monitor is back
    await watch.step()
    assert [(a.alarm_id, a.phase, a.sample_index) for a in store.written[1:]] == [
        ("p3:no_data:500", AlarmPhase.END, 90_000)]
