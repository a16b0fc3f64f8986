"""Short garbage-collector pauses for a detector holding hundreds of patients' state.

CPython's cyclic collector walks every tracked object of the heap in a full
(generation 2) collection: at 500 patients per process that is ~160,000 objects
(~97,000 of them imported modules, classes and functions; ~120 per patient) and a
pause of 70-90 ms on the reference machine, every 20-30 s, during which no chunk is
processed; that is the size of the latency budget itself.  Most of those objects live
as long as the process (the libraries) or the patient (its monitor), so they are
moved out of the collector's walk with :func:`gc.freeze` (the "permanent generation";
reference counting still frees them).  :class:`HeapFreezer` does that once after start-
up and again each time the number of patients has doubled, after a full collection,
so no garbage cycle is frozen.  When patients are dropped (partitions revoked) it
unfreezes, so their state can be collected, and freezes again after the next batch.
The pauses are exported as ``ecgmon_gc_pause_seconds``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from stream import metrics

MIN_PATIENTS = 16  # below this the heap is small; freezing again gains nothing


class GcPauses:
    """Times every run of the cyclic collector (``gc.callbacks``) and hands
    ``(generation, seconds)`` to ``observe``; :meth:`install` / :meth:`remove` hook it up."""

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self.observe = observe
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.observe(info["generation"], time.perf_counter() - self._t)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


class HeapFreezer:
    """Freeze the long-lived heap at start and whenever the patient count doubles."""

    def __init__(self, registry: CollectorRegistry | None = None, growth: float = 2.0) -> None:
        self.growth = growth
        self._next = MIN_PATIENTS
        self.freezes = 0
        self._pauses: GcPauses | None = None
        if registry is not None:
            hist = metrics.latency_histogram(
                "ecgmon_gc_pause_seconds", "cyclic garbage collector pauses (all generations)",
                registry)
            self._pauses = GcPauses(lambda _generation, seconds: hist.observe(seconds))

    def start(self) -> None:
        """After imports and model loading: freeze what lives as long as the process."""
        self._freeze()
        if self._pauses is not None:
            self._pauses.install()

    def stop(self) -> None:
        if self._pauses is not None:
            self._pauses.remove()

    def after_batch(self, patients: int) -> None:
        """Between batches: freeze again once the patients have grown by ``growth``."""
        if patients >= self._next:
            self._freeze()
            self._next = max(MIN_PATIENTS, int(patients * self.growth))

    def patients_dropped(self) -> None:
        """Revoked patients' objects must become collectable: unfreeze; the next batch
        freezes the remaining ones again."""
        gc.unfreeze()
        self._next = 0

    def _freeze(self) -> None:
        gc.collect()  # no garbage cycle may end up in the permanent generation
        gc.freeze()
        self.freezes += 1
