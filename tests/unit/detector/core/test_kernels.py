"""Compiled kernels: bit for bit the numpy/scipy formulation each one replaced."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal

from detector.core import beats, kernels
from detector.core.qrs import QrsDetector
from detector.core.quality import KINDS, QualityConfig

Floats = npt.NDArray[np.float64]


def _same(a: npt.ArrayLike, b: npt.ArrayLike) -> bool:
    """Bit-identical (NaN equal to NaN, -0.0 distinct from 0.0)."""
    x, y = np.asarray(a), np.asarray(b)
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


def _signal(rng: np.random.Generator, shape: tuple[int, ...]) -> Floats:
    """ECG-like magnitudes over several decades, so summation order shows in the last bits."""
    return rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 2, size=shape)


@pytest.mark.parametrize("seed", range(5))
def test_sosfilt_is_scipys(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sos = signal.butter(int(rng.integers(1, 5)), [1.0 + seed, 30.0], btype="bandpass", fs=360.0,
                        output="sos")
    x = _signal(rng, (3, int(rng.integers(0, 900))))
    zi = rng.normal(size=(3, sos.shape[0], 2))
    want, zf = signal.sosfilt(sos, x, axis=1, zi=np.swapaxes(zi, 0, 1))
    got, state = x.copy(), zi.copy()
    kernels.sosfilt(sos, got, state)
    assert _same(got, want)
    assert _same(state, np.ascontiguousarray(np.swapaxes(zf, 0, 1)))


def test_pairwise_sum_is_numpys_add_reduce() -> None:
    rng = np.random.default_rng(7)
    for n in [*range(0, 300), 1023, 1024, 1439, 1440, 5001]:
        a = _signal(rng, (n + 5,))
        for lo in (0, 3):
            assert _same(kernels.pairwise_sum(a, lo, n), np.add.reduce(a[lo : lo + n])), (n, lo)
    # the comparison can tell summation orders apart: a plain running sum differs somewhere
    arrays = [_signal(rng, (1440,)) for _ in range(20)]
    assert any(kernels.pairwise_sum(a, 0, a.size) != sum(a.tolist()) for a in arrays)


def _features_numpy(det: QrsDetector, x: Floats, first: int) -> Floats:
    """The QRS feature rows as numpy computed them before the kernel (the reference)."""
    p, cfg, nl = det.p, det.config, det.n_leads
    bp, det._bp_zi = _sosfilt(p.bp_sos, x, det._bp_zi)
    d = np.empty_like(bp)
    d[:, 0] = bp[:, 0] - det._diff_last
    np.subtract(bp[:, 1:], bp[:, :-1], out=d[:, 1:])
    d *= det.fs_hz
    det._diff_last = bp[:, -1].copy()
    if cfg.power == 2:
        g = d * d
    elif cfg.power == 1.5:
        g = np.abs(d) * np.sqrt(np.abs(d))
    else:
        g = np.power(np.abs(d), cfg.power)
    mean, det._ema_zi = _sosfilt(p.ema_sos, g, det._ema_zi)
    if p.ema_a ** (first + 1) > 1e-17:
        mean /= 1.0 - p.ema_a ** np.arange(first + 1, first + x.shape[1] + 1, dtype=np.float64)
    mean += p.eps
    w = g / mean
    if nl > 1 and cfg.secondary_weight != 1.0:
        w[1:] *= cfg.secondary_weight
    block = np.empty((2 + 2 * nl, x.shape[1]))
    block[1] = w.sum(axis=0)
    width = det._mwi_tail.shape[0]
    buf = np.empty(width + x.shape[1], dtype=np.int64)
    buf[:width] = det._mwi_tail
    np.cumsum((np.minimum(block[1], 1e6) * 2.0**24).astype(np.int64), out=buf[width:])
    buf[width:] += det._mwi_total[0]
    det._mwi_total, det._mwi_tail = buf[-1:].copy(), buf[-width:].copy()
    block[0] = (buf[width:] - buf[: x.shape[1]]) * (1.0 / (2.0**24 * width))
    block[2 : 2 + nl], block[2 + nl :] = bp, w
    return block


def _sosfilt(sos: Floats, x: Floats, zi: Floats) -> tuple[Floats, Floats]:
    y, zf = signal.sosfilt(sos, x, axis=1, zi=np.swapaxes(zi, 0, 1))
    return y, np.ascontiguousarray(np.swapaxes(zf, 0, 1))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.sampled_from([1.5, 2.0, 1.0]), st.sampled_from([125.0, 360.0, 1000.0]),
       st.integers(0, 2**31), st.sampled_from([0, 10**6]))
def test_qrs_features_are_the_numpy_formulation(leads: int, power: float, fs: float, seed: int,
                                                first: int) -> None:
    """Chunk after chunk, with the running mean's bias correction (first minutes) and without."""
    rng = np.random.default_rng(seed)
    cfg = QrsDetector(fs, leads).config
    fast = QrsDetector(fs, leads, type(cfg)(power=power))
    ref = QrsDetector(fs, leads, type(cfg)(power=power))
    for _ in range(3):
        x = _signal(rng, (leads, int(rng.integers(1, 400))))
        want = _features_numpy(ref, x, first)
        got = fast._features(x, first)
        assert _same(got, want)
        for name in ("_bp_zi", "_diff_last", "_ema_zi", "_mwi_tail", "_mwi_total"):
            assert _same(getattr(fast, name), getattr(ref, name)), name
        first += x.shape[1]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=80),  # small integers: many ties and plateaus
    st.integers(1, 9), st.data(),
)
def test_candidates_are_the_maxima_of_a_maximum_filter(values: list[int], w: int,
                                                       data: st.DataObject) -> None:
    """Candidate peaks: f[i] the maximum of f[i - w : i + w + 1] (a -inf border) and above the
    minimum, the first sample of a plateau; their slope, lead and R-peak as numpy found them."""
    f = np.asarray(values, dtype=np.float64) * 0.5
    lo = data.draw(st.integers(0, len(f) - 1))
    hi = data.draw(st.integers(lo, len(f)))
    leads = data.draw(st.integers(1, 2))
    back = data.draw(st.integers(0, 12))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    hist = np.vstack([f, rng.random((1 + 2 * leads, len(f))).round(1)])
    full = ndimage.maximum_filter1d(f, size=2 * w + 1, mode="constant", cval=-np.inf)
    min_feature = QrsDetector(360.0, 1).config.min_feature
    want = []
    for i in range(lo, hi):
        left = f[max(0, i - w) : i]
        if f[i] >= full[i] and f[i] > min_feature and not (left.size and left.max() >= f[i]):
            s = max(0, i - back)
            lead = int(np.argmax(np.maximum.reduce(hist[2 + leads :, s : i + 1], axis=1)))
            bp = hist[2 + lead, s : i + 1]
            j = int(np.argmax(np.abs(bp)))
            want.append(([i, s + j - 3], [f[i], hist[1, s : i + 1].max(), bp[j]]))
    ints, floats = kernels.qrs_candidates(hist, lo, hi, w, min_feature, back, 3)
    assert list(zip(ints.tolist(), floats.tolist(), strict=True)) == want


def _quality_numpy(block: Floats, cfg: QualityConfig, clip_n: int) -> list[str | None]:
    """Each lead's trouble as numpy judged it before the kernel (the reference)."""
    rows = block.T
    hi, lo = rows.max(axis=1), rows.min(axis=1)
    with np.errstate(invalid="ignore"):  # inf - inf: that lead is "nan" anyway
        ptps = hi - lo
    out: list[str | None] = []
    for lead in range(rows.shape[0]):
        ptp = ptps[lead]
        rail = max((rows[lead] == hi[lead]).sum(), (rows[lead] == lo[lead]).sum()) >= clip_n
        if not (np.isfinite(hi[lead]) and np.isfinite(lo[lead])):
            out.append("nan")
        elif ptp < cfg.flat_mv:
            out.append("flat")
        elif rail:
            out.append("clipped")
        elif ptp > cfg.artefact_mv:
            out.append("artefact")
        else:
            out.append(None)
    return out


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3), st.integers(1, 400), st.integers(0, 2**31),
       st.sampled_from(["clean", "nan", "inf", "flat", "clip", "big", "steps"]))
def test_quality_kinds_are_the_numpy_judgement(leads: int, n: int, seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    block = rng.normal(size=(n, leads))
    lead = int(rng.integers(0, leads))
    if kind == "nan":
        block[rng.integers(0, n), lead] = np.nan
    elif kind == "inf":
        block[rng.integers(0, n), lead] = -np.inf
    elif kind == "flat":
        block[:, lead] = 0.3 + 0.001 * rng.random(n)
    elif kind == "clip":
        block[:, lead] = np.clip(block[:, lead], -0.5, 0.5)
    elif kind == "big":
        block[:, lead] *= 20
    elif kind == "steps":
        block = rng.integers(0, 3, size=(n, leads)) * 0.01
    cfg = QualityConfig()
    clip_n = int(rng.integers(2, 15))
    codes = kernels.quality_kinds(block, cfg.flat_mv, clip_n, cfg.artefact_mv).tolist()
    assert [None if c < 0 else KINDS[c] for c in codes] == _quality_numpy(block, cfg, clip_n)


def _leakage_numpy(x: Floats, min_amplitude_mv: float) -> float:
    """The VF-filter leakage as numpy computed it before the kernel (the reference)."""
    if x.size < 4 or not np.isfinite(x).all():
        return math.nan
    x = x - float(np.add.reduce(x) / x.size)
    if float(x.max() - x.min()) < min_amplitude_mv:
        return math.nan
    ax = np.abs(x)
    diff_sum = float(np.add.reduce(np.abs(x[1:] - x[:-1])))
    if diff_sum <= 0.0:
        return math.nan
    half = max(int(math.floor(math.pi * float(np.add.reduce(ax[1:])) / diff_sum + 0.5)), 1)
    if half >= x.size:
        return math.nan
    return float(np.add.reduce(np.abs(x[half:] + x[:-half]))
                 / (np.add.reduce(ax[half:]) + np.add.reduce(ax[:-half])))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 2**31), st.sampled_from(["noise", "sine", "nan", "flat"]))
def test_vf_leakage_is_the_numpy_formulation(n: int, seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 250.0
    x = {"noise": rng.normal(size=n), "sine": np.sin(2 * np.pi * rng.uniform(1, 8) * t) + 0.01 * t,
         "nan": rng.normal(size=n), "flat": np.full(n, 0.2)}[kind]
    if kind == "nan" and n:
        x[rng.integers(0, n)] = np.nan
    want, got = _leakage_numpy(x, 0.1), kernels.vf_leakage(x, 0.1)
    assert _same(np.float64(got), np.float64(want))


def test_vf_windows_skip_windows_with_a_bad_sample() -> None:
    rng = np.random.default_rng(1)
    buf = rng.normal(size=1000)
    ok = np.ones(1000, dtype=bool)
    ok[450] = False
    leaks = kernels.vf_window_leakages(buf, ok, 400, 400, 100, 0.1)  # windows ending at 400 ... 1000
    assert leaks.shape == (7,)
    for k, leak in enumerate(leaks.tolist()):
        end = 400 + 100 * k
        if end - 400 <= 450 < end:
            assert math.isnan(leak)
        else:
            assert _same(np.float64(leak), np.float64(_leakage_numpy(buf[end - 400 : end], 0.1)))


_EXERCISE = """
import numpy as np
from detector.core import kernels as k
from detector.core.qrs import QrsDetector
from detector.core.vf import VfDetector
rng = np.random.default_rng(0)
x = rng.normal(size=(4000, 2))
peaks = QrsDetector(360.0, 2).update(x).peaks
vf = VfDetector(360.0).update(x[:, 0], 0)
kinds = k.quality_kinds(x[:360], 0.02, 11, 8.0)
print(len(peaks), [d.leakage for d in vf], kinds.tolist(), k.pairwise_sum(x[:, 0].copy(), 0, 4000))
"""


def test_kernels_load_from_the_disk_cache(tmp_path: Path) -> None:
    """The second process loads what the first compiled (a recursive kernel once crashed there)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", _EXERCISE], env=env, capture_output=True, text=True,
                           timeout=300, check=False) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    assert runs[0].stdout == runs[1].stdout != ""
    assert any(tmp_path.rglob("*.nbc"))  # compiled code was cached


def test_beat_constants_are_the_feature_definitions() -> None:
    assert (kernels._RATIO_MAX, kernels._SECONDS_MAX, kernels._LOCAL_BEATS, kernels._IRREGULARITY_BEATS,
            kernels._NEWEST_USED, kernels._TEMPLATE_RR_TOLERANCE) == (
        beats._RATIO_MAX, beats._SECONDS_MAX, beats.LOCAL_BEATS, beats.IRREGULARITY_BEATS,
        beats._NEWEST_USED, beats.TEMPLATE_RR_TOLERANCE)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31), st.integers(0, 400), st.integers(0, 1), st.booleans(), st.integers(1, 2),
       st.sampled_from(["sinus", "ectopic", "af"]))
def test_beat_features_are_the_numpy_formulation(seed: int, count: int, first: int, fresh: bool,
                                                 leads: int, rhythm: str) -> None:
    """RR, shape and irregularity features and the template's update, as the numpy functions of
    detector.core.beats define them (rr_features, shape_features, irregularity_median)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 1.5)
    rr = {"sinus": base + 0.01 * rng.normal(size=count + 3),
          "ectopic": base * np.where(rng.random(count + 3) < 0.2, 0.7, 1.0),
          "af": base * rng.uniform(0.5, 1.5, size=count + 3)}[rhythm]
    lo, hi = int(rng.integers(0, 3)), int(rng.integers(0, 3)) + count
    hi = max(lo, min(hi, rr.size))
    window = rng.normal(size=(leads, beats.WINDOW_LEN)).astype(np.float32)
    template = (window + rng.normal(size=window.shape)).astype(np.float32)
    start = template.copy()
    prev_rr, next_rr = float(rr[hi - 1]) if hi > lo and first else base, float(rng.uniform(0.3, 2.0))
    ratio, alpha = float(rng.uniform(0.2, 3.0)), float(rng.choice([1.0, 0.5, 0.05]))
    out_beat = np.empty((2 * leads, beats.WINDOW_LEN), np.float32)
    out_rr = np.empty(beats.N_RR, np.float32)
    regular = kernels.beat_features(window, template, fresh, alpha, ratio, prev_rr, next_rr, first, rr,
                                    lo, hi, beats._P_WAVE.start, beats._P_WAVE.stop, out_beat, out_rr)
    newest = rr[max(lo, hi - beats._NEWEST_USED) : hi][::-1].tolist()
    local = newest[: beats.LOCAL_BEATS]
    local_s = sum(local) / len(local) if local else prev_rr
    total = float(np.add.accumulate(rr[lo:hi][::-1])[-1]) if hi > lo else 0.0
    long_s = total / (hi - lo) if hi > lo else prev_rr
    want_rr = np.concatenate([
        beats.rr_features(prev_rr, next_rr, local_s, long_s),
        beats.shape_features(window, start, ratio, newest[first : first + beats.LOCAL_BEATS]),
        np.array([beats.irregularity_median(newest[first : first + beats.IRREGULARITY_BEATS + 1])],
                 np.float32)])
    assert _same(out_rr, want_rr)
    assert _same(out_beat, np.concatenate([window, start]))
    assert regular == (abs(prev_rr / local_s - 1.0) <= beats.TEMPLATE_RR_TOLERANCE)
    moved = ((1.0 - alpha) * start + alpha * window).astype(np.float32)
    assert _same(template, moved if regular and not fresh else start)
