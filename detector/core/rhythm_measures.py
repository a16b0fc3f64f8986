"""RR-interval measures for rhythm alarms: mean rate and atrial fibrillation irregularity.

References
----------
Dash S, Chon KH, Lu S, Raeder EA. Automatic real time detection of atrial
fibrillation. Ann Biomed Eng 2009;37(9):1701-1709 (normalised RMSSD, Shannon
entropy of the RR histogram, turning-point ratio; outlier trimming).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def mean_rate_bpm(rr_samples: Sequence[int] | npt.NDArray[np.float64], fs_hz: float) -> float:
    """Heart rate in bpm from the mean of RR intervals given in samples (0 if none)."""
    if len(rr_samples) == 0:
        return 0.0
    if isinstance(rr_samples, list) and all(type(v) is int for v in rr_samples):
        # whole samples: the integer sum is exact and one division is correctly rounded,
        # the float np.mean gives the same value (pairwise sums of integers are exact too)
        mean_rr = sum(rr_samples) / len(rr_samples)
    else:
        mean_rr = float(np.mean(np.asarray(rr_samples, dtype=np.float64)))
    return 60.0 * fs_hz / mean_rr if mean_rr > 0 else math.inf


def af_features(
    rr: npt.NDArray[np.float64], trim: float = 1 / 16, bins: int = 16
) -> tuple[float, float, float]:
    """Normalised RMSSD, normalised Shannon entropy and turning-point ratio of an RR series.

    RMSSD and entropy use the series with the ``trim`` fraction of largest and of smallest
    intervals removed (Dash et al. drop 8 + 8 of 128); the turning-point ratio uses all of it.
    Returns ``(0, 0, 0)`` for fewer than 8 intervals.
    """
    rr = np.asarray(rr, dtype=np.float64)
    if rr.size < 8 or not np.all(np.isfinite(rr)) or float(np.mean(rr)) <= 0:
        return 0.0, 0.0, 0.0
    k = int(round(trim * rr.size))
    order = np.sort(rr)
    keep_lo, keep_hi = order[k], order[rr.size - 1 - k]
    trimmed = rr[(rr >= keep_lo) & (rr <= keep_hi)]
    if trimmed.size < 3:
        trimmed = rr
    nrmssd = float(np.sqrt(np.mean(np.diff(trimmed) ** 2)) / np.mean(trimmed))
    lo, hi = float(trimmed.min()), float(trimmed.max())
    if hi > lo:
        counts, _ = np.histogram(trimmed, bins=bins, range=(lo, hi))
        p = counts[counts > 0] / trimmed.size
        entropy = float(-np.sum(p * np.log(p)) / math.log(bins))
    else:
        entropy = 0.0
    mid, before, after = rr[1:-1], rr[:-2], rr[2:]
    turning = np.sum(((mid > before) & (mid > after)) | ((mid < before) & (mid < after)))
    tpr = float(turning) / float(rr.size - 2)
    return nrmssd, entropy, tpr


def integer_nrmssd(rr: list[int], trim: float = 1 / 16) -> float:
    """:func:`af_features`' normalised RMSSD for RR intervals in whole samples, in plain
    Python: every sum of integers is exact and each division and the square root are
    correctly rounded, so the value is bit-identical to the numpy one, ~10x cheaper."""
    n = len(rr)
    if n < 8 or sum(rr) <= 0:
        return 0.0
    k = int(round(trim * n))
    order = sorted(rr)
    keep_lo, keep_hi = order[k], order[n - 1 - k]
    trimmed = [v for v in rr if keep_lo <= v <= keep_hi]
    if len(trimmed) < 3:
        trimmed = rr
    sq = sum((b - a) * (b - a) for a, b in zip(trimmed, trimmed[1:], strict=False))
    return math.sqrt(sq / (len(trimmed) - 1)) / (sum(trimmed) / len(trimmed))
