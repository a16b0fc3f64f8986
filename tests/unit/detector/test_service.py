"""DetectorService pieces that need no broker: the poll pacing, the GC policy's hooks."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from detector.bench_path import _Sink
from detector.core.alarms import AlarmLimits, AlarmType
from detector.onnx_classifier import DEFAULT_MODEL, OnnxClassifier
from detector.service import DetectorService
from stream import serde
from stream.schemas import AlarmSettings, DeadLetter, Discharge, SampleChunk
from stream.settings import load


def _service(poll_interval_ms: int) -> DetectorService:
    sink = _Sink()
    return DetectorService(load(environ={}, poll_interval_ms=poll_interval_ms),
                           OnnxClassifier.load(DEFAULT_MODEL), CollectorRegistry(),
                           sink, sink)  # type: ignore[arg-type]


async def _paced(service: DetectorService, stop: asyncio.Event) -> float:
    started = time.monotonic()
    await service._pace(stop)
    return time.monotonic() - started


async def test_polls_are_held_to_the_interval_and_a_stop_cuts_the_wait() -> None:
    stop = asyncio.Event()
    paced = _service(80)
    assert await _paced(paced, stop) < 0.04  # the first poll goes at once
    assert await _paced(paced, stop) >= 0.07  # the next waits out the interval

    asleep = _service(10_000)
    await _paced(asleep, stop)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await _paced(asleep, stop) < 1.0  # stop ends the wait, not the 10 s


async def test_no_interval_no_wait() -> None:
    service, stop = _service(0), asyncio.Event()
    waits = [await _paced(service, stop) for _ in range(20)]
    assert max(waits) < 0.04


class _RecordingHeap:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def after_batch(self, patients: int) -> None:
        self.calls.append(("after_batch", patients))

    def patients_dropped(self) -> None:
        self.calls.append(("dropped", 0))


async def test_gc_policy_sees_every_batch_and_every_revoked_patient() -> None:
    heap = _RecordingHeap()
    sink = _Sink()
    service = DetectorService(load(environ={}), OnnxClassifier.load(DEFAULT_MODEL), CollectorRegistry(),
                              sink, sink, heap=heap)  # type: ignore[arg-type]
    tp = TopicPartition("samples", 0)
    chunk = SampleChunk("p1", "100", ("MLII", "V5"), 360.0, (200.0, 200.0), (0, 0), 0,
                        np.zeros((360, 2), np.int16), time.time_ns())
    await service.process({tp: [SimpleNamespace(value=serde.encode(chunk), offset=0)]})
    assert heap.calls == [("after_batch", 1)]
    service.forget({TopicPartition("samples", 1)})  # nobody there: nothing to drop
    assert heap.calls == [("after_batch", 1)]
    service.forget({tp})
    assert heap.calls[-1] == ("dropped", 0) and not service.slots


class _Recorder(_Sink):
    """The sink, keeping what was sent raw (dead letters) and the alarm settings written."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[tuple[str, bytes]] = []
        self.applied: list[tuple[str, dict[str, object]]] = []
        self.refused: list[tuple[str, dict[str, object]]] = []

    async def send_raw(self, topic: str, value: bytes, key: bytes) -> None:
        self.raw.append((topic, value))

    async def set_alarm_settings(self, patient: str, applied: dict[str, object]) -> None:
        self.applied.append((patient, applied))

    async def refuse_alarm_settings(self, patient: str, refusal: dict[str, object]) -> None:
        self.refused.append((patient, refusal))


def _three_chunks(sink: _Recorder) -> tuple[DetectorService, CollectorRegistry, TopicPartition,
                                            list[SampleChunk]]:
    """A service writing to ``sink``, its registry, a partition and three 1-s chunks of p1."""
    registry = CollectorRegistry()
    service = DetectorService(load(environ={}), OnnxClassifier.load(DEFAULT_MODEL), registry,
                              sink, sink)  # type: ignore[arg-type]
    chunks = [SampleChunk("p1", "100", ("MLII", "V5"), 360.0, (200.0, 200.0), (0, 0), i * 360,
                          np.zeros((360, 2), np.int16), time.time_ns()) for i in range(3)]
    return service, registry, TopicPartition("samples", 0), chunks


def _change(request_id: str, patient: str = "p1", low: float = 50.0) -> SimpleNamespace:
    msg = AlarmSettings(patient, request_id, "nurse a", 1_000_000_000, low, 130.0, 2.5,
                        ("atrial_fibrillation",))
    return SimpleNamespace(value=serde.encode(msg), offset=0, topic="samples", partition=0, key=b"p1")


async def test_alarm_settings_apply_between_the_patients_chunks_once_and_bad_ones_are_dead_letters() -> None:
    rec = _Recorder()
    service, registry, tp, chunks = _three_chunks(rec)
    seen_at: list[int | None] = []

    def record(c: SampleChunk) -> SimpleNamespace:
        return SimpleNamespace(value=serde.encode(c), offset=0)

    await service.process({tp: [record(chunks[0])]})
    monitor = service.slots["p1"].monitor
    real = monitor.set_alarm_limits

    def spy(*a: object, **k: object) -> object:
        seen_at.append(monitor.next_sample_index)
        return real(*a, **k)  # type: ignore[arg-type]

    monitor.set_alarm_limits = spy  # type: ignore[method-assign]
    # one batch: a chunk, the change, a chunk: the change lands after the first chunk only
    await service.process({tp: [record(chunks[1]), _change("r1"), record(chunks[2]),
                                _change("r1"), _change("r2", "nobody"), _change("r3", low=5.0)]})
    assert seen_at[0] == 720  # applied once chunks 0 and 1 were in, before chunk 2
    assert [(p, a["request_id"], a["hr_low_bpm"], a["disabled"]) for p, a in rec.applied] == [
        ("p1", "r1", 50.0, ["atrial_fibrillation"])]  # the repeated r1 is not applied twice
    assert monitor.alarm_limits.hr_low_bpm == 50.0
    letters = [serde.decode_as(v, DeadLetter) for t, v in rec.raw]
    assert [(d.reason, d.detail[:40]) for d in letters] == [
        ("unknown_patient", "alarm settings for 'nobody', whose strea"),
        ("invalid_field", "hr_low_bpm must be 15-120 bpm, got 5.0")]
    assert registry.get_sample_value("ecgmon_alarm_settings_to_applied_seconds_count") == 1
    assert [(p, r["request_id"], r["reason"]) for p, r in rec.refused] == [
        ("nobody", "r2", "unknown_patient"), ("p1", "r3", "invalid_field")]  # the sender sees why


async def test_new_patients_start_on_the_deployment_alarm_limits() -> None:
    sink = _Sink()
    deployment = load(environ={"ECGMON_ALARM_HR_LOW_BPM": "50", "ECGMON_ALARM_HR_HIGH_BPM": "120",
                               "ECGMON_ALARMS_OFF": "atrial_fibrillation"})
    service = DetectorService(deployment, OnnxClassifier.load(DEFAULT_MODEL), CollectorRegistry(),
                              sink, sink)  # type: ignore[arg-type]
    chunk = SampleChunk("p1", "100", ("MLII", "V5"), 360.0, (200.0, 200.0), (0, 0), 0,
                        np.zeros((360, 2), np.int16), time.time_ns())
    record = SimpleNamespace(value=serde.encode(chunk), offset=0)
    await service.process({TopicPartition("samples", 0): [record]})
    assert service.slots["p1"].monitor.alarm_limits == AlarmLimits(
        50.0, 120.0, 2.0, frozenset({AlarmType.AFIB}))


async def test_a_restored_patient_follows_changed_deployment_defaults_unless_it_has_its_own() -> None:
    from detector.core.alarms import ClassifiedBeat
    from detector.core.monitor import PatientMonitor
    from stream.schemas import BeatClass

    rng, t, beats = np.random.default_rng(3), 0.0, []
    for _ in range(200):  # irregular enough for the AF alarm
        beats.append(ClassifiedBeat(int(t * 360), BeatClass.N))
        t += float(rng.uniform(0.4, 1.1))
    plain = PatientMonitor("p1", 360.0, ("MLII", "V5"), 1)
    plain.engine.update(beats, now_sample=beats[-1].sample_index + 1)
    assert AlarmType.AFIB in plain.engine.active_alarms
    own = PatientMonitor("p2", 360.0, ("MLII", "V5"), 1)
    own.set_alarm_limits(AlarmLimits.checked(45, 150, 2.0), change_id="nurse-1")

    class _Sent(_Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.alerts: list[object] = []

        async def send(self, topic: str, message: object, key: str) -> None:
            if topic.endswith(".alerts"):
                self.alerts.append(message)

    rec = _Sent()
    ward = load(environ={"ECGMON_ALARM_HR_LOW_BPM": "50", "ECGMON_ALARMS_OFF": "atrial_fibrillation"})
    service = DetectorService(ward, OnnxClassifier.load(DEFAULT_MODEL), CollectorRegistry(),
                              rec, rec)  # type: ignore[arg-type]
    tp = TopicPartition("samples", 0)
    a = service._restored(PatientMonitor.from_snapshot(plain.snapshot()), tp)
    b = service._restored(PatientMonitor.from_snapshot(own.snapshot()), tp)
    assert a.monitor.alarm_limits == AlarmLimits(50.0, 140.0, 2.0, frozenset({AlarmType.AFIB}))
    assert b.monitor.alarm_limits == AlarmLimits(45.0, 150.0, 2.0)  # the nurse's stay
    assert [(e.alarm_type, e.phase.value) for e in a.held] == [(AlarmType.AFIB, "end")]
    service.slots.update({"p1": a, "p2": b})
    assert service._holding()  # no checkpoint until the end is delivered
    start = a.monitor.next_sample_index or 0
    chunk = SampleChunk("p1", "100", ("MLII", "V5"), 360.0, (200.0, 200.0), (0, 0), start,
                        np.zeros((360, 2), np.int16), time.time_ns())
    await service.process({tp: [SimpleNamespace(value=serde.encode(chunk), offset=0)]})
    assert [(m.alarm_type, m.phase.value, dict(m.details)) for m in rec.alerts] == [  # type: ignore[attr-defined]
        ("atrial_fibrillation", "end", {"reason": "alarm turned off for every patient"})]
    assert not service._holding()


async def test_a_discharge_lands_between_the_patients_chunks_and_later_ones_are_a_new_admission() -> None:
    class _Archive(_Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.discharged: list[tuple[str, str, dict[str, object]]] = []

        async def active_alarms(self, patient: str) -> list[object]:
            return []

        async def discharge(self, patient: str, request_id: str, record: dict[str, object]) -> bool:
            self.discharged.append((patient, request_id, record))
            return True

    rec = _Archive()
    service, registry, tp, chunks = _three_chunks(rec)

    def record(m: SampleChunk | Discharge) -> SimpleNamespace:
        return SimpleNamespace(value=serde.encode(m), offset=0)

    await service.process({tp: [record(chunks[0])]})
    service.slots["p1"].monitor.set_alarm_limits(AlarmLimits.checked(50, 120, 2.5), change_id="r1")
    first = service.slots["p1"].monitor
    await service.process({tp: [record(chunks[1]), record(Discharge("p1", "d1", "nurse b", 5)),
                                record(chunks[2]), record(Discharge("nobody", "d2", "nurse b", 6))]})
    assert [(p, r, rec_["user"]) for p, r, rec_ in rec.discharged] == [
        ("p1", "d1", "nurse b"), ("nobody", "d2", "nurse b")]  # an unknown id is archived all the same
    again = service.slots["p1"].monitor
    assert again is not first and again.base == 720  # a new admission from chunk 2 on
    assert not again.has_own_limits  # on the ward's defaults, not the last stay's limits
    assert registry.get_sample_value("ecgmon_discharge_to_applied_seconds_count") == 2
