"""Compiled (numba) inner loops of the signal core.

Each kernel computes the same floating-point operations, in the same order, as
the numpy code it replaced (sosfilt's direct form II transposed, numpy's
pairwise summation, elementwise ufuncs, BLAS ``ddot`` for dot products as
numpy's ``@``, float32 arithmetic where numpy 2 promotes to it), so outputs are
bit-identical to it:
``tests/unit/detector/core/test_kernels.py`` checks every kernel against the
numpy formulation.  They exist because a live chunk is small (a second of two
leads) and the per-patient path was made of hundreds of numpy calls of a few
microseconds each: the call overhead, not the arithmetic, was the cost.

No fast-math: numba then emits no fused multiply-add and keeps IEEE semantics.
Compiled code is cached on disk (``cache=True``: ``__pycache__`` beside this file,
or ``NUMBA_CACHE_DIR``), so only the first process after an install compiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(fn: _F) -> _F:
    """Compile ``fn`` (no fast-math, cached on disk); typed as itself for mypy."""
    return cast(_F, numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")(fn))


_PW_BLOCKSIZE = 128  # numpy's pairwise summation block (numpy/_core/src/umath/loops_utils.h.src)


@_jit
def sosfilt(sos: FloatArray, x: FloatArray, zi: FloatArray) -> None:  # pragma: no cover - compiled
    """``scipy.signal._sosfilt._sosfilt`` in place: ``x`` (channels, n), ``zi`` (channels,
    sections, 2), direct form II transposed, the same operations in the same order."""
    for i in range(x.shape[0]):
        for n in range(x.shape[1]):
            x_cur = x[i, n]
            for s in range(sos.shape[0]):
                x_new = sos[s, 0] * x_cur + zi[i, s, 0]
                zi[i, s, 0] = sos[s, 1] * x_cur - sos[s, 4] * x_new + zi[i, s, 1]
                zi[i, s, 1] = sos[s, 2] * x_cur - sos[s, 5] * x_new
                x_cur = x_new
            x[i, n] = x_cur


@_jit
def _block_sum(a: FloatArray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """numpy's pairwise sum of ``a[lo:lo + n]`` for ``n <= 128``: one block."""
    if n == 0:
        return 0.0  # the identity, as numpy's empty sum
    if n < 8:
        res = -0.0  # numpy starts a reduction from its first element: -0.0 + x is x, even -0.0
        for i in range(n):
            res += a[lo + i]
        return float(res)
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return float(res)


@_jit
def pairwise_sum(a: FloatArray, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """``np.add.reduce(a[lo:lo + n])`` of a contiguous float64 array: numpy's pairwise
    summation (8 partial sums per block of up to 128, longer runs split in two halves of a
    multiple of 8, summed left + right).  numpy recurses; this walks the same tree with an
    explicit stack (numba's on-disk cache does not survive a recursive function)."""
    if n <= _PW_BLOCKSIZE:
        return _block_sum(a, lo, n)
    starts = np.empty(64, dtype=np.int64)  # a frame per tree level: halving n, 64 is plenty
    sizes = np.empty(64, dtype=np.int64)
    states = np.empty(64, dtype=np.int64)  # 0: left half to do, 1: right half to do, 2: both done
    lefts = np.empty(64)
    starts[0], sizes[0], states[0] = lo, n, 0
    depth, ret = 1, 0.0
    while depth:
        top = depth - 1
        size = sizes[top]
        if size <= _PW_BLOCKSIZE:
            ret = _block_sum(a, starts[top], size)
            depth -= 1
            continue
        half = size // 2
        half -= half % 8
        if states[top] == 0:
            states[top] = 1
            starts[depth], sizes[depth], states[depth] = starts[top], half, 0
            depth += 1
        elif states[top] == 1:
            lefts[top], states[top] = ret, 2
            starts[depth], sizes[depth], states[depth] = starts[top] + half, size - half, 0
            depth += 1
        else:
            ret = lefts[top] + ret
            depth -= 1
    return float(ret)


# ---------------------------------------------------------------------------- QRS detector


@_jit
def qrs_features(
    x: FloatArray, bp_sos: FloatArray, bp_zi: FloatArray, diff_last: FloatArray, fs_hz: float,
    power: float, ema_sos: FloatArray, ema_zi: FloatArray, corr: FloatArray, eps: float,
    secondary_weight: float, mwi_tail: npt.NDArray[np.int64], mwi_total: npt.NDArray[np.int64],
    mwi_scale: float, mwi_max: float, out: FloatArray,
) -> None:  # pragma: no cover - compiled
    """The QRS detector's feature rows for ``x`` (leads, n) into ``out`` (2 + 2 * leads, n):
    integrated feature, fused weighted slope, band-passed leads, lead weights
    (:meth:`detector.core.qrs.QrsDetector._features`).  Advances the filter states,
    ``diff_last`` and the integrator's tail and total in place.  ``corr`` is the running
    mean's bias correction per sample (empty once it is 1)."""
    n_leads, n = x.shape
    bp = x.copy()
    sosfilt(bp_sos, bp, bp_zi)
    g = np.empty_like(bp)
    for ch in range(n_leads):
        prev = diff_last[ch]
        for j in range(n):
            d = (bp[ch, j] - prev) * fs_hz
            prev = bp[ch, j]
            if power == 2.0:
                g[ch, j] = d * d
            elif power == 1.5:
                ad = abs(d)
                g[ch, j] = ad * math.sqrt(ad)
            else:
                g[ch, j] = abs(d) ** power
        if n:
            diff_last[ch] = bp[ch, n - 1]
    mean = g.copy()
    sosfilt(ema_sos, mean, ema_zi)
    weight_others = n_leads > 1 and secondary_weight != 1.0
    for ch in range(n_leads):
        for j in range(n):
            m = mean[ch, j]
            if corr.shape[0]:
                m /= corr[j]
            w = g[ch, j] / (m + eps)
            if ch > 0 and weight_others:
                w *= secondary_weight
            out[2 + n_leads + ch, j] = w
            out[2 + ch, j] = bp[ch, j]
            if ch == 0:
                out[1, j] = w
            else:
                out[1, j] += w
    # moving-window integrator: exact int64 running sums of the quantised fused slope
    width = mwi_tail.shape[0]
    buf = np.empty(width + n, dtype=np.int64)
    buf[:width] = mwi_tail
    total = mwi_total[0]
    for j in range(n):
        total += np.int64(min(out[1, j], mwi_max) * mwi_scale)
        buf[width + j] = total
    if n:
        mwi_total[0] = total
        mwi_tail[:] = buf[n : n + width]
    inv = 1.0 / (mwi_scale * width)
    for j in range(n):
        out[0, j] = float(buf[width + j] - buf[j]) * inv


@_jit
def qrs_candidates(
    hist: FloatArray, lo: int, hi: int, w: int, min_feature: float, back: int, delay: int,
) -> tuple[npt.NDArray[np.int64], FloatArray]:  # pragma: no cover - compiled
    """Candidate beats among ``hist[0][lo:hi]`` (the QRS detector's ``_scan``): samples that
    are the first maximum of the feature over ``+/- w`` (a -inf border outside ``hist``)
    and above ``min_feature``.  Returns, per candidate, ints ``(index in hist, R-peak
    estimate in hist)`` and floats ``(value, slope, amplitude)``: the steepest fused slope
    and the largest band-passed deflection of the most weighted lead over the ``back``
    samples before the peak, located ``delay`` samples back."""
    f = hist[0]
    size = f.shape[0]
    n_leads = (hist.shape[0] - 2) // 2
    ints = np.empty((max(hi - lo, 0), 2), dtype=np.int64)
    floats = np.empty((max(hi - lo, 0), 3), dtype=np.float64)
    k = 0
    for i in range(lo, hi):
        v = f[i]
        if not v > min_feature:
            continue
        if i > 0 and not v >= f[i - 1]:
            continue
        if i + 1 < size and not v >= f[i + 1]:
            continue
        top = v
        for j in range(max(0, i - w), min(size, i + w + 1)):
            if not f[j] <= top:  # NaN too, as np.maximum.reduce propagates it
                top = f[j]
                break
        if not v >= top:
            continue
        plateau = False
        for j in range(max(0, i - w), i):
            if f[j] >= v:
                plateau = True  # keep a plateau's first sample only
                break
        if plateau:
            continue
        start = max(0, i - back)
        slope = hist[1, start]
        for j in range(start + 1, i + 1):
            slope = max(slope, hist[1, j])
        lead, best = 0, -np.inf
        for ch in range(n_leads):
            row = hist[2 + n_leads + ch]
            top_w = row[start]
            for j in range(start + 1, i + 1):
                top_w = max(top_w, row[j])
            if top_w > best:
                lead, best = ch, top_w
        bp = hist[2 + lead]
        at, big = start, abs(bp[start])
        for j in range(start + 1, i + 1):
            if abs(bp[j]) > big:
                at, big = j, abs(bp[j])
        ints[k, 0] = i
        ints[k, 1] = at - delay
        floats[k, 0] = v
        floats[k, 1] = slope
        floats[k, 2] = bp[at]
        k += 1
    return ints[:k], floats[:k]


# ---------------------------------------------------------------------------- signal quality

# codes: -1 readable, else the index in detector.core.quality.KINDS
QUALITY_NONE, QUALITY_NAN, QUALITY_FLAT, QUALITY_CLIPPED, QUALITY_ARTEFACT = -1, 0, 1, 2, 3


@_jit
def quality_kinds(
    block: FloatArray, flat_mv: float, clip_n: int, artefact_mv: float,
) -> npt.NDArray[np.int64]:  # pragma: no cover - compiled
    """Trouble of each lead (column) of one ``(n, leads)`` block: ``QUALITY_*`` codes, non-finite
    samples first, then flat line (peak-to-peak below ``flat_mv``), clipping (``clip_n``
    samples at the block's maximum or minimum), gross artefact (peak-to-peak above
    ``artefact_mv``)."""
    out = np.empty(block.shape[1], dtype=np.int64)
    for ch in range(block.shape[1]):
        row = block[:, ch]
        hi, lo = row[0], row[0]
        finite = True
        for v in row:
            if not math.isfinite(v):
                finite = False
                break
            hi = max(hi, v)
            lo = min(lo, v)
        if not finite:
            out[ch] = QUALITY_NAN
            continue
        ptp = hi - lo
        if ptp < flat_mv:
            out[ch] = QUALITY_FLAT
            continue
        n_hi, n_lo = 0, 0
        for v in row:
            n_hi += v == hi
            n_lo += v == lo
        if n_hi >= clip_n or n_lo >= clip_n:
            out[ch] = QUALITY_CLIPPED
        elif ptp > artefact_mv:
            out[ch] = QUALITY_ARTEFACT
        else:
            out[ch] = QUALITY_NONE
    return out


# ---------------------------------------------------------------------------- VF detector


@_jit
def vf_leakage(x: FloatArray, min_amplitude_mv: float) -> float:  # pragma: no cover - compiled
    """Leakage of a notch filter tuned to the mean frequency of the window ``x`` (contiguous),
    Kuo and Dillman (1978); ``nan`` for a window too short, not finite or too flat
    (:func:`detector.core.vf.vf_leakage`, with numpy's sums)."""
    n = x.shape[0]
    if n < 4:
        return math.nan
    for v in x:
        if not math.isfinite(v):
            return math.nan
    xc = x - pairwise_sum(x, 0, n) / n
    hi, lo = xc[0], xc[0]
    for v in xc:
        hi = max(hi, v)
        lo = min(lo, v)
    if hi - lo < min_amplitude_mv:
        return math.nan
    ax = np.abs(xc)
    diff = np.abs(xc[1:] - xc[:-1])
    diff_sum = pairwise_sum(diff, 0, n - 1)
    if diff_sum <= 0.0:
        return math.nan
    # pi * sum|x| / sum|dx| is half the mean period of a sinusoid, in samples
    half = max(int(math.floor(math.pi * pairwise_sum(ax, 1, n - 1) / diff_sum + 0.5)), 1)
    if half >= n:
        return math.nan
    both = np.abs(xc[half:] + xc[: n - half])
    spread = pairwise_sum(ax, half, n - half) + pairwise_sum(ax, 0, n - half)
    return float(pairwise_sum(both, 0, n - half) / spread)


@_jit
def vf_window_leakages(
    buf: FloatArray, ok: npt.NDArray[np.bool_], first: int, win: int, step: int, min_amplitude_mv: float,
) -> FloatArray:  # pragma: no cover - compiled
    """Leakage of the windows of ``win`` samples of ``buf`` ending at ``first``, ``first + step``
    ... (offsets in ``buf``, one past the window), ``nan`` where a sample is not ``ok``."""
    count = (buf.shape[0] - first) // step + 1 if first <= buf.shape[0] else 0
    out = np.empty(count)
    for k in range(count):
        hi = first + k * step
        lo = hi - win
        good = True
        for j in range(lo, hi):
            if not ok[j]:
                good = False
                break
        out[k] = vf_leakage(buf[lo:hi], min_amplitude_mv) if good else math.nan
    return out


@_jit
def vf_step(
    x: FloatArray, sos: FloatArray, zi: FloatArray, buf: FloatArray, ok: npt.NDArray[np.bool_],
    first: int, win: int, step: int, min_amplitude_mv: float,
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:  # pragma: no cover - compiled
    """One chunk of the VF detector (:meth:`detector.core.vf.VfDetector.update`): band-pass
    ``x`` (non-finite samples enter as 0 and mark their windows), append it to the buffer of
    filtered samples ``buf`` / finite flags ``ok``, and return the last ``win - 1`` of both and
    the leakage of every window of ``win`` samples that ends in the new data at a multiple of
    ``step`` (``first``: the offset in the extended buffer of the first such end)."""
    n, kept = x.shape[0], buf.shape[0]
    full = np.empty(kept + n)
    flags = np.empty(kept + n, dtype=np.bool_)
    full[:kept] = buf
    flags[:kept] = ok
    filtered = np.empty((1, n))
    for j in range(n):
        flags[kept + j] = math.isfinite(x[j])
        filtered[0, j] = x[j] if flags[kept + j] else 0.0
    sosfilt(sos, filtered, zi)
    full[kept:] = filtered[0]
    leaks = vf_window_leakages(full, flags, first, win, step, min_amplitude_mv)
    tail = max(win - 1, 0)
    start = max(full.shape[0] - tail, 0)
    return full[start:].copy(), flags[start:].copy(), leaks


# ---------------------------------------------------------------------------- beat features

_RATIO_MAX = 5.0  # detector.core.beats: ratios are capped here
_SECONDS_MAX = 3.0
_LOCAL_BEATS = 10
_IRREGULARITY_BEATS = 30
_NEWEST_USED = 32  # max(_LOCAL_BEATS, _IRREGULARITY_BEATS + 1) + 1
_TEMPLATE_RR_TOLERANCE = 0.15


@_jit
def _median_sorted(x: FloatArray) -> float:  # pragma: no cover - compiled
    """``np.median`` of a non-empty finite array (a selection: exact whatever the method)."""
    s = np.sort(x)
    h = s.shape[0] // 2
    if s.shape[0] % 2:
        return float(s[h])
    return float((s[h - 1] + s[h]) / 2.0)


@_jit
def _ratio(a: float, b: float) -> float:  # pragma: no cover - compiled
    return min(a / b, _RATIO_MAX) if b > 0 else 1.0


@_jit
def beat_features(
    window: npt.NDArray[np.float32], template: npt.NDArray[np.float32], fresh: bool, alpha: float,
    amplitude_ratio: float, prev_rr: float, next_rr: float, first: int, rr: FloatArray, lo: int,
    hi: int, p_lo: int, p_hi: int, out_beat: npt.NDArray[np.float32], out_rr: npt.NDArray[np.float32],
) -> bool:  # pragma: no cover - compiled
    """One beat's classifier input (:meth:`detector.core.beats.BeatFeatureExtractor._features`):
    ``out_beat`` = window over template, ``out_rr`` = the RR, shape and irregularity features
    from the RR intervals ``rr[lo:hi]`` (those ending in the 5 minutes up to the beat; the
    beat's own is the newest when ``first`` is 1) and the template's P-wave region
    ``p_lo:p_hi``.  When the beat is regular (previous RR within 15 % of the local mean) the
    template moves towards it in place (float32, weight ``alpha``), unless ``fresh`` (no
    template yet: ``template`` is a copy of the window, which the caller adopts); returns
    whether the beat was regular.  Sums are numpy's (pairwise; newest first, one by one,
    for the 5-minute mean) and dot products BLAS's, as in the numpy formulation."""
    count = hi - lo
    total = 0.0
    for i in range(hi - 1, lo - 1, -1):
        total += rr[i]
    n_local = min(_LOCAL_BEATS, count)
    local_s = prev_rr
    if n_local:
        acc = 0.0
        for j in range(n_local):
            acc += rr[hi - 1 - j]
        local_s = acc / n_local
    long_s = total / count if count else prev_rr
    used = min(_NEWEST_USED, count)
    newest = np.empty(used)
    for j in range(used):
        newest[j] = rr[hi - 1 - j]
    prior = newest[first : min(first + _LOCAL_BEATS, used)]
    robust_rr = newest[first : min(first + _IRREGULARITY_BEATS + 1, used)]
    # shape: correlation with the template, P-wave difference (first lead)
    w = window[0].astype(np.float64)
    t = template[0].astype(np.float64)
    n = w.shape[0]
    wc = w - pairwise_sum(w, 0, n) / n
    tc = t - pairwise_sum(t, 0, n) / n
    denom = math.sqrt(np.dot(wc, wc) * np.dot(tc, tc))
    corr = np.dot(wc, tc) / denom if denom > 1e-9 else 1.0
    dp = w[p_lo:p_hi] - t[p_lo:p_hi]
    sq = dp * dp
    p_diff = math.sqrt(pairwise_sum(sq, 0, sq.shape[0]) / sq.shape[0])
    irregularity = 0.0
    if prior.shape[0] >= 2:
        steps = np.abs(prior[1:] - prior[:-1])
        irregularity = (pairwise_sum(steps, 0, steps.shape[0]) / steps.shape[0]) / (
            pairwise_sum(prior, 0, prior.shape[0]) / prior.shape[0])
    robust = 0.0
    if robust_rr.shape[0] >= 2:
        centre = _median_sorted(robust_rr[:_IRREGULARITY_BEATS])
        spread = _median_sorted(np.abs(robust_rr[1:] - robust_rr[:-1]))
        robust = min(spread / centre, _RATIO_MAX) if centre > 0 else 0.0
    feats = (_ratio(prev_rr, long_s), _ratio(next_rr, long_s), _ratio(local_s, long_s),
             _ratio(prev_rr, local_s), _ratio(next_rr, prev_rr), min(prev_rr, _SECONDS_MAX),
             min(local_s, _SECONDS_MAX), min(irregularity, _RATIO_MAX), corr, min(p_diff, _RATIO_MAX),
             min(amplitude_ratio, _RATIO_MAX), robust)
    for k in range(12):
        out_rr[k] = np.float32(feats[k])
    leads = window.shape[0]
    out_beat[:leads] = window
    out_beat[leads:] = template
    regular = abs(prev_rr / local_s - 1.0) <= _TEMPLATE_RR_TOLERANCE
    if regular and not fresh:
        keep, take = np.float32(1.0 - alpha), np.float32(alpha)  # numpy: float32 arithmetic
        for i in range(leads):
            for j in range(window.shape[1]):
                template[i, j] = keep * template[i, j] + take * window[i, j]
    return regular
