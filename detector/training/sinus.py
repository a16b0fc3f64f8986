"""A study feature (session 23, DS1 CV only): a beat's previous RR over the patient's recent
sinus cycle, estimated as a high quantile of the intervals before it.

Every RR feature of :mod:`detector.core.beats` is a ratio to a mean or median of the patient's
recent intervals.  When ectopic beats are a minority that mean is the sinus cycle and an early
beat stands out; when they are frequent (runs, bigeminy, a patient whose beats are mostly atrial
premature ones) the mean moves towards the ectopic coupling interval and the early beats look
on time.  The longer intervals stay the sinus ones (an early beat shortens its interval, the
pause after it lengthens the next), so the ``QUANTILE`` of the ``PRIOR`` intervals before the
beat's own estimates the sinus cycle whatever the share of ectopic beats.

The feature is computed here from the beats' R-peak positions (a ratio of intervals, so no
sampling rate is needed) and appended as a 13th RR column by ``ecgmon train --sinus-ratio``, a
CV-only study: the live extractor does not compute it, so no model is exported.  Session 23's
result (BENCHMARKS.md): lower on DS1 CV on both seed sets (more false V and S calls in a few
held-out patients, not the same ones for the two seed sets); not adopted.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.training.data import BeatSet

QUANTILE = 0.9  # of the prior intervals: the sinus cycle estimate
PRIOR = 30  # intervals before the beat's own (the robust irregularity's window)
RATIO_MAX = 5.0  # as the other ratios (detector.core.beats)


def sinus_ratio(peaks: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Each beat's previous RR over the ``QUANTILE`` of the up to ``PRIOR`` intervals before it,
    capped at ``RATIO_MAX``; 1.0 while fewer than 2 such intervals exist.  ``peaks``: one
    recording's R-peak positions in order (any unit).  Causal: a beat's value depends on no
    later peak.  The first beat takes its next interval as its previous one, as the extractor."""
    p = np.asarray(peaks, dtype=np.float64)
    out = np.ones(len(p), np.float32)
    if len(p) < 2:
        return out
    rr = np.diff(p)  # rr[k]: the interval that ends at beat k + 1
    for i in range(3, len(p)):  # beat i's own interval is rr[i - 1]; its prior ones end before it
        prior = rr[max(0, i - 1 - PRIOR) : i - 1]
        sinus = float(np.quantile(prior, QUANTILE))
        out[i] = min(rr[i - 1] / sinus, RATIO_MAX) if sinus > 0 else 1.0
    return out


def with_sinus_ratio(beats: BeatSet) -> BeatSet:
    """``beats`` with :func:`sinus_ratio` appended to the RR features, computed per recording (a
    run of one record's beats: a clean record and its noisy copy are two)."""
    from detector.training.train import recordings

    f = beats.features
    col = np.ones(len(beats), np.float32)
    for run in recordings(beats.record):
        col[run] = sinus_ratio(f.sample_index[run])
    rr = np.concatenate([f.rr, col[:, None]], axis=1)
    return BeatSet(type(f)(f.sample_index, f.beats, rr), beats.label, beats.record, beats.noisy)
