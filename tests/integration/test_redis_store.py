"""AlertStore against the real Redis the test session starts: idempotency, ack, history, retention."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from stream.errors import ServiceUnavailable
from stream.redis import AlertStore
from stream.schemas import AlarmPhase, AlarmPriority, Alert, BeatClass
from stream.services import free_port

pytestmark = pytest.mark.integration


def alert(patient: str = "p1", phase: AlarmPhase = AlarmPhase.ONSET, onset: int = 1000,
          sample: int | None = None, alarm_type: str = "ventricular_tachycardia") -> Alert:
    return Alert(
        patient_id=patient, alarm_type=alarm_type, priority=AlarmPriority.HIGH, phase=phase,
        onset_sample_index=onset, sample_index=onset if sample is None else sample, fs_hz=360.0,
        heart_rate_bpm=160.0, message="ventricular tachycardia", created_at_ns=1,
        chunk_produced_at_ns=1, details=(("beats", "5"),),
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def store(redis_url: str, registry: CollectorRegistry) -> AsyncIterator[AlertStore]:
    async with AlertStore(redis_url, registry, prefix=f"t{uuid.uuid4().hex[:12]}",
                          clock_ns=lambda: 42) as s:
        yield s


async def test_same_alert_twice_is_stored_once(store: AlertStore,
                                               registry: CollectorRegistry) -> None:
    a = alert()
    assert await store.write_alert(a) is True
    assert await store.write_alert(a) is False
    assert await asyncio.gather(*(store.write_alert(a) for _ in range(5))) == [False] * 5
    assert [h.alert for h in await store.history()] == [a]
    assert [h.alert for h in await store.history("p1")] == [a]
    assert await store.history("other") == []
    count = registry.get_sample_value("ecgmon_redis_write_seconds_count")
    assert count == 7.0


async def test_lifecycle_active_alarms_and_patients(store: AlertStore) -> None:
    await store.write_alert(alert())
    await store.write_alert(alert("p2", onset=5))
    await store.write_alert(alert(phase=AlarmPhase.UPDATE, sample=5000))
    active = await store.active_alarms("p1")
    assert [a.alarm_id for a in active] == ["p1:ventricular_tachycardia:1000"]
    assert active[0].phase is AlarmPhase.UPDATE and active[0].priority is AlarmPriority.HIGH
    await store.write_alert(alert(phase=AlarmPhase.END, sample=9000))
    assert await store.active_alarms("p1") == []
    # a late retry of an older phase does not resurrect an ended alarm
    await store.write_alert(alert(phase=AlarmPhase.UPDATE, sample=7000))
    assert await store.active_alarms("p1") == []
    assert await store.patients() == ["p1", "p2"]
    await store.update_patient("p1", heart_rate_bpm=72.5, last_beat_class=BeatClass.N,
                               last_beat_sample=9100)
    state = await store.patient_state("p1")
    assert state.heart_rate_bpm == 72.5 and state.last_beat_class is BeatClass.N
    assert state.last_beat_sample == 9100 and state.active_alarm_ids == ()
    assert state.last_alert_id == alert(phase=AlarmPhase.UPDATE, sample=7000).alert_id
    assert (await store.patient_state("p2")).active_alarm_ids == ("p2:ventricular_tachycardia:5",)


async def test_acknowledge_records_who_and_when_once(store: AlertStore) -> None:
    a = alert()
    assert await store.acknowledge(a.alarm_id, "nurse") is False  # unknown alarm
    await store.write_alert(a)
    assert await store.acknowledge(a.alarm_id, "nurse") is True
    assert await store.acknowledge(a.alarm_id, "doctor") is False
    state = await store.alarm(a.alarm_id)
    assert state is not None and state.acked_by == "nurse" and state.acked_at_ns == 42
    await store.write_alert(alert(phase=AlarmPhase.UPDATE, sample=2000))
    again = await store.alarm(a.alarm_id)
    assert again is not None and again.acked_by == "nurse" and again.phase is AlarmPhase.UPDATE


async def test_history_pagination(store: AlertStore) -> None:
    written = [alert(onset=i) for i in range(25)]
    for a in written:
        await store.write_alert(a)
    got, cursor = [], None
    while page := await store.history("p1", after_id=cursor, count=10):
        assert len(page) <= 10
        got += [h.alert for h in page]
        cursor = page[-1].stream_id
    assert got == written


async def test_retention_is_bounded(redis_url: str) -> None:
    async with AlertStore(redis_url, CollectorRegistry(), prefix=f"t{uuid.uuid4().hex[:12]}",
                          maxlen=10) as store:
        for i in range(30):
            await store.write_alert(alert(onset=i))
        hist = await store.history(count=100)
        assert [h.alert.onset_sample_index for h in hist] == list(range(20, 30))
        assert len(await store.history("p1", count=100)) == 10


async def test_start_stop_idempotent_and_unreachable_redis_is_service_unavailable() -> None:
    registry = CollectorRegistry()
    store = AlertStore(f"redis://127.0.0.1:{free_port()}/0", registry, retries=2, backoff_s=0.01)
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        await store.start()
    await store.stop()
    await store.stop()
    assert registry.get_sample_value("ecgmon_redis_retries_total", {"op": "ping"}) == 2.0
    with pytest.raises(ServiceUnavailable, match="not started"):
        await store.history()


async def test_connection_errors_are_retried_with_backoff(store: AlertStore,
                                                          registry: CollectorRegistry) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RedisConnectionError("connection reset")
        return 7

    assert await store._call("probe", flaky) == 7
    assert registry.get_sample_value("ecgmon_redis_retries_total", {"op": "probe"}) == 2.0


async def test_store_from_settings(redis_url: str) -> None:
    from stream.errors import ConfigError
    from stream.settings import load

    prefix = f"t{uuid.uuid4().hex[:12]}"
    cfg = load(environ={"ECGMON_REDIS_URL": redis_url, "ECGMON_REDIS_PREFIX": prefix,
                        "ECGMON_REDIS_MAXLEN": "3"})
    async with AlertStore.from_settings(cfg, CollectorRegistry()) as store:
        assert (store.prefix, store.maxlen) == (prefix, 3)
        await store.write_alert(alert())
        assert len(await store.history()) == 1
    with pytest.raises(ConfigError, match="ECGMON_REDIS_URL"):
        AlertStore.from_settings(load(environ={}), CollectorRegistry())
