"""The beat classifier contract: a batch of beat features in, AAMI classes and probabilities out.

Implementations live outside the core (``detector.onnx_classifier``) so this
package stays free of onnxruntime; tests and the live path depend only on this
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from detector.core.beats import BeatFeatures
from stream.schemas import BeatClass

AAMI_CLASSES: tuple[BeatClass, ...] = (BeatClass.N, BeatClass.S, BeatClass.V, BeatClass.F, BeatClass.Q)

# MIT-BIH beat annotation symbol -> AAMI EC57 class; anything else is not a beat.
AAMI_SYMBOLS: dict[str, BeatClass] = {
    **{s: BeatClass.N for s in "NLRej"},
    **{s: BeatClass.S for s in "AaJS"},
    **{s: BeatClass.V for s in "VE"},
    "F": BeatClass.F,
    **{s: BeatClass.Q for s in "/fQ"},
}


@dataclass(frozen=True, slots=True)
class Classification:
    """Result for a batch of ``n`` beats: class index into ``labels`` and (n, classes) probabilities."""

    labels: tuple[BeatClass, ...]
    class_index: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float32]

    @property
    def classes(self) -> list[BeatClass]:
        return [self.labels[i] for i in self.class_index]

    @property
    def confidence(self) -> npt.NDArray[np.float32]:
        if len(self.class_index) == 0:
            return np.zeros(0, np.float32)
        return self.probabilities[np.arange(len(self.class_index)), self.class_index]


@runtime_checkable
class Classifier(Protocol):
    """Classifies batches of beats; ``n_leads`` is the number of leads its windows need."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> tuple[BeatClass, ...]: ...

    @property
    def n_leads(self) -> int: ...

    def classify(self, batch: BeatFeatures) -> Classification: ...


def select_leads(signal_mv: npt.NDArray[np.floating], n_leads: int) -> npt.NDArray[np.float64]:
    """The first ``n_leads`` columns of ``signal_mv``; a single lead is repeated if more are needed."""
    signal = np.asarray(signal_mv, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    if signal.shape[1] >= n_leads:
        return signal[:, :n_leads]
    reps = -(-n_leads // signal.shape[1])
    return np.tile(signal, (1, reps))[:, :n_leads]


def lead_order(lead_names: tuple[str, ...] | list[str]) -> list[int]:
    """Column order putting MLII (the limb lead the models are trained on) first, others after."""
    names = [n.upper().replace(" ", "") for n in lead_names]
    first = [i for i, n in enumerate(names) if n in ("MLII", "II")]
    return first[:1] + [i for i in range(len(names)) if i not in first[:1]]
