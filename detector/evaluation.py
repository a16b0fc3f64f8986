"""Beat-by-beat scoring the WFDB ``bxb`` / AAMI EC57 way, reusable by every evaluation.

``match_beats`` pairs reference and test beats greedily, nearest first, within
a match window (150 ms in EC57); ``Counts`` gives Se, +P and DER.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

#: MIT-BIH beat labels (AAMI EC57): N L R e j | A a J S | V E | F | / f Q.
BEAT_SYMBOLS = frozenset("NLRejAaJSVEF/fQ")


def class_figures(confusion: IntArray, labels: Iterable[str]) -> dict[str, dict[str, float]]:
    """Se, +P and F1 of the first classes of a confusion (reference rows, test columns), one per
    label; a row or column past them (missed / extra beats) lowers Se and +P."""
    out: dict[str, dict[str, float]] = {}
    for c, name in enumerate(labels):
        tp = float(confusion[c, c])
        se = tp / max(float(confusion[c, :].sum()), 1.0)
        ppv = tp / max(float(confusion[:, c].sum()), 1.0)
        out[name] = {"se": se, "ppv": ppv, "f1": 2 * se * ppv / (se + ppv) if se + ppv else 0.0}
    return out


def ec57_counting(confusion: IntArray) -> IntArray:
    """A class confusion (reference rows, test columns, AAMI order N S V F Q first; more
    rows and columns, e.g. missed / extra, pass through) with the cells ``bxb`` counts as no
    error zeroed: a fusion (F) or unclassifiable (Q) beat called V is not a false VEB, a Q beat
    called S not a false SVEB (VFP = Nv + Sv + Ov, SFP = Ns + Vs + Fs + Os).  N, S and V
    figures read from the result are the EC57 ones; F and Q figures are void.  A stack of
    confusions (leading axes) is counted confusion by confusion."""
    out = confusion.copy()
    out[..., 3, 2] = out[..., 4, 2] = out[..., 4, 1] = 0  # also a stack of confusions
    return out


def match_beats(
    ref_samples: npt.ArrayLike, test_samples: npt.ArrayLike, window_samples: int
) -> tuple[list[tuple[int, int]], IntArray, IntArray]:
    """Pair reference and test beats, nearest pairs first, like WFDB ``bxb``.

    Parameters
    ----------
    ref_samples, test_samples : array_like of int
        Beat positions (sample indices), any order.
    window_samples : int
        Largest ``|ref - test|`` that still counts as a match (EC57: 150 ms).

    Returns
    -------
    tp_pairs : list of (int, int)
        ``(i_ref, j_test)`` index pairs into the *sorted* inputs, sorted by ``i_ref``.
    fn_idx : ndarray
        Indices (into sorted ``ref``) of unmatched reference beats.
    fp_idx : ndarray
        Indices (into sorted ``test``) of unmatched test beats.
    """
    ref = np.sort(np.asarray(ref_samples, dtype=np.int64))
    test = np.sort(np.asarray(test_samples, dtype=np.int64))
    lo = np.searchsorted(test, ref - window_samples, side="left")
    hi = np.searchsorted(test, ref + window_samples, side="right")
    cand_r: list[IntArray] = []
    cand_t: list[IntArray] = []
    for k in range(int((hi - lo).max()) if ref.size else 0):
        has = lo + k < hi
        cand_r.append(np.flatnonzero(has))
        cand_t.append((lo + k)[has])
    if cand_r:
        r = np.concatenate(cand_r)
        t = np.concatenate(cand_t)
        dist = np.abs(ref[r] - test[t])
        order = np.lexsort((t, r, dist))
        r, t = r[order], t[order]
    else:
        r = t = np.zeros(0, dtype=np.int64)
    ref_used = np.zeros(ref.size, dtype=bool)
    test_used = np.zeros(test.size, dtype=bool)
    pairs: list[tuple[int, int]] = []
    for i, j in zip(r.tolist(), t.tolist(), strict=True):
        if not ref_used[i] and not test_used[j]:
            ref_used[i] = test_used[j] = True
            pairs.append((i, j))
    pairs.sort()
    return pairs, np.flatnonzero(~ref_used), np.flatnonzero(~test_used)


@dataclass(frozen=True, slots=True)
class Counts:
    """True positives, false negatives and false positives, with EC57 ratios."""

    tp: int = 0
    fn: int = 0
    fp: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)

    @property
    def se(self) -> float:
        """Sensitivity TP / (TP + FN)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def ppv(self) -> float:
        """Positive predictivity TP / (TP + FP)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def der(self) -> float:
        """Detection error rate (FN + FP) / (TP + FN)."""
        return (self.fn + self.fp) / (self.tp + self.fn) if self.tp + self.fn else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "se": self.se, "ppv": self.ppv, "der": self.der, "tp": self.tp, "fn": self.fn, "fp": self.fp,
        }

    @staticmethod
    def total(items: Iterable[Counts]) -> Counts:
        """Gross statistics: sum the counts, then divide (``sumstats``)."""
        out = Counts()
        for c in items:
            out = out + c
        return out


def score(ref_samples: npt.ArrayLike, test_samples: npt.ArrayLike, window_samples: int) -> Counts:
    """Match and count."""
    pairs, fn, fp = match_beats(ref_samples, test_samples, window_samples)
    return Counts(len(pairs), int(fn.size), int(fp.size))


@dataclass(frozen=True, slots=True)
class Reference:
    """Reference beats of one record and the stretches excluded from scoring."""

    beats: IntArray
    excluded: list[tuple[int, int]]  # [start, end) sample intervals (VF/flutter episodes)


def load_reference(record_path: Path, extension: str = "atr") -> Reference:
    """Beat annotations of a WFDB record, plus ventricular flutter/fibrillation episodes.

    EC57 (section 4.3) leaves VF episodes (``[`` ... ``]`` annotations) out of QRS
    detection statistics: beats of either annotator inside them are not counted.
    """
    import wfdb  # local import: keeps wfdb out of the import path of the core

    ann = wfdb.rdann(str(record_path), extension)
    samples = np.asarray(ann.sample, dtype=np.int64)
    symbols = list(ann.symbol)
    is_beat = np.array([sym in BEAT_SYMBOLS for sym in symbols], dtype=bool)
    beats = samples[is_beat] if samples.size else np.zeros(0, dtype=np.int64)
    excluded: list[tuple[int, int]] = []
    start: int | None = None
    for s, sym in zip(samples.tolist(), symbols, strict=True):
        if sym == "[":
            start = s
        elif sym == "]" and start is not None:
            excluded.append((start, s + 1))
            start = None
    if start is not None:
        excluded.append((start, int(samples[-1]) + 1))
    return Reference(beats=beats, excluded=excluded)


def drop_excluded(samples: npt.ArrayLike, excluded: list[tuple[int, int]]) -> IntArray:
    """Samples outside every ``[start, end)`` interval."""
    s = np.asarray(samples, dtype=np.int64)
    keep = np.ones(s.size, dtype=bool)
    for a, b in excluded:
        keep &= ~((s >= a) & (s < b))
    return s[keep]
