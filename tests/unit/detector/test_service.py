"""DetectorService pieces that need no broker: the poll pacing, the GC policy's hooks."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from detector.bench_path import _Sink
from detector.onnx_classifier import DEFAULT_MODEL, OnnxClassifier
from detector.service import DetectorService
from stream import serde
from stream.schemas import SampleChunk
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
