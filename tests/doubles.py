"""Test doubles shared by unit tests."""

from __future__ import annotations

import numpy as np

from detector.core.beats import BeatFeatures
from detector.core.classifier import AAMI_CLASSES, Classification
from stream.schemas import BeatClass


class ConstantClassifier:
    """Satisfies :class:`detector.core.classifier.Classifier`; every beat gets one class."""

    def __init__(self, beat_class: BeatClass = BeatClass.N, n_leads: int = 1) -> None:
        self._index = AAMI_CLASSES.index(beat_class)
        self._n_leads = n_leads
        self.calls: list[int] = []

    @property
    def name(self) -> str:
        return "constant"

    @property
    def labels(self) -> tuple[BeatClass, ...]:
        return AAMI_CLASSES

    @property
    def n_leads(self) -> int:
        return self._n_leads

    def classify(self, batch: BeatFeatures) -> Classification:
        n = len(batch)
        self.calls.append(n)
        probs = np.zeros((n, len(AAMI_CLASSES)), np.float32)
        probs[:, self._index] = 1.0
        return Classification(AAMI_CLASSES, np.full(n, self._index, np.int64), probs)
