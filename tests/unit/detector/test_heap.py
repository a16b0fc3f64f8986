"""detector.heap: the long-lived heap leaves the collector's walk, garbage never does."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from detector.heap import MIN_PATIENTS, HeapFreezer


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def heap() -> Iterator[HeapFreezer]:
    h = HeapFreezer(CollectorRegistry())
    yield h
    h.stop()
    gc.unfreeze()  # leave the test process as it was


def test_start_freezes_the_live_heap_but_collects_garbage_cycles_first(heap: HeapFreezer) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: only the collector can free it
    dead = weakref.ref(a)
    live = _Node()
    del a, b
    heap.start()
    assert dead() is None  # collected, not frozen
    assert gc.get_freeze_count() > 1000  # modules, classes, functions ... and `live`
    assert heap.freezes == 1
    assert live.other is None


def test_freezes_again_each_time_the_patients_double(heap: HeapFreezer) -> None:
    heap.start()
    heap.after_batch(MIN_PATIENTS - 1)
    assert heap.freezes == 1
    heap.after_batch(MIN_PATIENTS)
    assert heap.freezes == 2
    heap.after_batch(2 * MIN_PATIENTS - 1)
    assert heap.freezes == 2
    heap.after_batch(2 * MIN_PATIENTS)
    assert heap.freezes == 3


def test_dropped_patients_become_collectable_and_the_rest_is_frozen_again(heap: HeapFreezer) -> None:
    heap.start()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    heap.after_batch(MIN_PATIENTS)  # the cycle is live state now: frozen
    dead = weakref.ref(a)
    del a, b  # the patient's state is dropped (revoked partition)
    gc.collect()
    assert dead() is not None  # frozen objects are not collected
    heap.patients_dropped()
    assert gc.get_freeze_count() == 0
    heap.after_batch(3)  # the next batch, whatever the count
    assert dead() is None
    assert gc.get_freeze_count() > 0


def test_pauses_are_exported() -> None:
    registry = CollectorRegistry()
    h = HeapFreezer(registry)
    try:
        h.start()
        before = registry.get_sample_value("ecgmon_gc_pause_seconds_count") or 0.0
        gc.collect()
        after = registry.get_sample_value("ecgmon_gc_pause_seconds_count")
        assert after is not None and after >= before + 1
    finally:
        h.stop()
        gc.unfreeze()
