from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.core import beats as b
from detector.core.beats import BeatFeatureExtractor, extract_beats, resample_window
from detector.core.classifier import AAMI_SYMBOLS, Classification, lead_order, select_leads
from stream.schemas import BeatClass


def _synthetic(fs: float, rr_s: list[float], n_leads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian 'QRS' spikes at the given intervals, plus a slow baseline."""
    peaks_s = np.cumsum([0.5, *rr_s])
    n = int((peaks_s[-1] + 1.0) * fs)
    t = np.arange(n) / fs
    x = 0.2 * np.sin(2 * np.pi * 0.3 * t)
    for p in peaks_s:
        x += np.exp(-0.5 * ((t - p) / 0.012) ** 2)
    sig = np.tile(x[:, None], (1, n_leads))
    return sig, np.round(peaks_s * fs).astype(np.int64)


def test_regular_rhythm_rr_ratios_are_one() -> None:
    sig, peaks = _synthetic(360.0, [0.8] * 30)
    f = extract_beats(sig, 360.0, peaks)
    assert len(f) == len(peaks)
    assert f.beats.shape == (len(peaks), 2, b.WINDOW_LEN) and f.rr.shape == (len(peaks), b.N_RR)
    np.testing.assert_allclose(f.rr[:, :5], 1.0, atol=0.01)
    np.testing.assert_allclose(f.rr[:, 5], 0.8, atol=0.01)


def test_premature_beat_is_short_relative_to_the_patient() -> None:
    rr = [1.0] * 20 + [0.6, 1.4] + [1.0] * 10
    sig, peaks = _synthetic(360.0, rr)
    f = extract_beats(sig, 360.0, peaks)
    i = 21  # the premature beat
    prev_over_long, next_over_long = f.rr[i, 0], f.rr[i, 1]
    assert prev_over_long < 0.65 and next_over_long > 1.3
    assert f.rr[20, 0] == pytest.approx(1.0, abs=0.01)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.05, 3.0), min_size=1, max_size=12))
def test_chunking_does_not_change_features(chunks_s: list[float]) -> None:
    sig, peaks = _synthetic(250.0, [0.7, 0.9, 0.5, 1.2, 0.8, 0.8, 0.6, 1.0, 0.9, 0.75])
    whole = extract_beats(sig, 250.0, peaks)
    ext = BeatFeatureExtractor(250.0, 1)
    parts, start = [], 0
    for i in range(10_000):
        if start >= len(sig):
            break
        end = min(len(sig), start + max(1, int(chunks_s[i % len(chunks_s)] * 250)))
        parts.append(ext.update(sig[start:end], peaks[(peaks >= start) & (peaks < end)]))
        start = end
    parts.append(ext.flush())
    got = b.BeatFeatures.concat(parts, 1)
    np.testing.assert_array_equal(got.sample_index, whole.sample_index)
    np.testing.assert_array_equal(got.beats, whole.beats)
    np.testing.assert_array_equal(got.rr, whole.rr)


def test_peaks_lagging_the_samples_give_the_same_features() -> None:
    sig, peaks = _synthetic(360.0, [0.8, 0.7, 0.9, 0.8, 0.8])
    whole = extract_beats(sig, 360.0, peaks)
    ext = BeatFeatureExtractor(360.0, 1)
    parts = []
    step = 90
    for start in range(0, len(sig), step):  # peaks reported one second late
        late = peaks[(peaks >= start - 360) & (peaks < start + step - 360)]
        parts.append(ext.update(sig[start : start + step], late))
    parts.append(ext.update(sig[:0], peaks[peaks >= len(sig) - 360 - (len(sig) % step or step) + step]))
    parts.append(ext.flush())
    got = b.BeatFeatures.concat(parts, 1)
    np.testing.assert_array_equal(got.sample_index, whole.sample_index)
    np.testing.assert_allclose(got.beats, whole.beats)


@pytest.mark.parametrize("fs", [125.0, 250.0, 360.0, 500.0, 1000.0])
def test_any_input_rate_gives_the_same_window(fs: float) -> None:
    sig, peaks = _synthetic(fs, [0.8] * 5)
    ref_sig, ref_peaks = _synthetic(1000.0, [0.8] * 5)
    w = resample_window(sig, 0, int(peaks[2]), fs)
    ref = resample_window(ref_sig, 0, int(ref_peaks[2]), 1000.0)
    assert w.shape == (1, b.WINDOW_LEN)
    assert np.corrcoef(w[0], ref[0])[0, 1] > 0.97


def test_window_is_amplitude_normalised() -> None:
    sig, peaks = _synthetic(360.0, [0.8] * 5)
    a = resample_window(sig, 0, int(peaks[2]), 360.0)
    c = resample_window(5.0 * sig + 3.0, 0, int(peaks[2]), 360.0)
    np.testing.assert_allclose(a, c, atol=0.03)  # up to the 1 uV guard against flat lines


def test_empty_flat_nan_and_clipped_inputs() -> None:
    assert len(extract_beats(np.zeros((0, 1)), 360.0, [])) == 0
    flat = extract_beats(np.zeros((3600, 1)), 360.0, [400, 700, 1000])
    assert np.isfinite(flat.beats).all() and np.isfinite(flat.rr).all() and len(flat) == 3
    nan = np.full((3600, 1), np.nan)
    assert np.isfinite(extract_beats(nan, 360.0, [400, 700]).beats).all()
    sig, peaks = _synthetic(360.0, [0.8] * 5)
    clipped = np.clip(sig * 10, -1.0, 1.0)
    assert np.isfinite(extract_beats(clipped, 360.0, peaks).beats).all()
    edge = extract_beats(sig, 360.0, [0, len(sig) - 1])  # windows past both ends
    assert len(edge) == 2 and np.isfinite(edge.beats).all()
    with pytest.raises(ValueError, match="fs_hz"):
        BeatFeatureExtractor(10.0, 1)


def test_single_peak_and_duplicate_peaks() -> None:
    sig, peaks = _synthetic(360.0, [0.8] * 3)
    one = extract_beats(sig, 360.0, peaks[:1])
    assert len(one) == 1 and np.isfinite(one.rr).all()
    ext = BeatFeatureExtractor(360.0, 1)
    ext.update(sig[:1000], [peaks[0], peaks[0], peaks[1]])
    assert len(b.BeatFeatures.concat([ext.update(sig[1000:], peaks[1:]), ext.flush()], 1)) == 3


def test_classifier_helpers() -> None:
    assert AAMI_SYMBOLS["A"] is BeatClass.S and AAMI_SYMBOLS["/"] is BeatClass.Q
    assert "+" not in AAMI_SYMBOLS
    assert lead_order(["V5", "MLII"]) == [1, 0] and lead_order(["MLII", "V1"]) == [0, 1]
    assert select_leads(np.zeros(10), 2).shape == (10, 2)
    probs = np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)
    res = Classification((BeatClass.N, BeatClass.V), np.array([1, 0]), probs)
    assert res.classes == [BeatClass.V, BeatClass.N]
    np.testing.assert_allclose(res.confidence, [0.8, 0.9])


def test_core_beat_modules_import_no_io_or_ml_runtime() -> None:
    for name in ("beats.py", "classifier.py"):
        path = Path(__file__).resolve().parents[4] / "detector" / "core" / name
        tree = ast.parse(path.read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not mods & {"asyncio", "aiokafka", "redis", "onnxruntime", "torch"}, name


@pytest.mark.parametrize("cut_s", [0.3, 2.0, 7.7])
def test_snapshot_resumes_exactly(cut_s: float) -> None:
    sig, peaks = _synthetic(360.0, [0.8, 0.6, 1.1, 0.8, 0.8, 0.7, 0.9, 0.8])
    whole = extract_beats(sig, 360.0, peaks)
    cut = int(cut_s * 360)
    ext = BeatFeatureExtractor(360.0, 1)
    first = ext.update(sig[:cut], peaks[peaks < cut])
    resumed = BeatFeatureExtractor.from_snapshot(ext.snapshot())
    rest = resumed.update(sig[cut:], peaks[peaks >= cut])
    got = b.BeatFeatures.concat([first, rest, resumed.flush()], 1)
    np.testing.assert_array_equal(got.sample_index, whole.sample_index)
    np.testing.assert_array_equal(got.beats, whole.beats)
    np.testing.assert_array_equal(got.rr, whole.rr)


def test_shape_features_compare_the_beat_with_the_patient_template() -> None:
    sig, peaks = _synthetic(360.0, [0.8] * 30)
    i = 25
    sig[peaks[i] - 40 : peaks[i] + 40] *= 2.0  # one beat twice as tall
    f = extract_beats(sig, 360.0, peaks)
    col = {name: k for k, name in enumerate(b.RR_FEATURES)}
    regular = [k for k in range(12, 30) if k != i]
    np.testing.assert_allclose(f.rr[regular, col["rr_irregularity"]], 0.0, atol=0.01)
    assert np.all(f.rr[regular, col["template_corr"]] > 0.9)  # the baseline wander differs
    np.testing.assert_allclose(f.rr[regular, col["amplitude_over_template"]], 1.0, atol=0.15)
    assert f.rr[i, col["amplitude_over_template"]] > 1.5


def test_irregular_rhythm_has_high_rr_irregularity() -> None:
    rng = np.random.default_rng(0)
    sig, peaks = _synthetic(360.0, list(rng.uniform(0.5, 1.1, 30)))
    f = extract_beats(sig, 360.0, peaks)
    assert float(np.median(f.rr[15:, b.RR_FEATURES.index("rr_irregularity")])) > 0.2


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3), st.integers(1, 400), st.integers(0, 2**32 - 1), st.booleans())
def test_the_spelled_out_reductions_are_numpys_bit_for_bit(
    leads: int, n: int, seed: int, flat_start: bool
) -> None:
    """beats._median/_std/_mean stand in for np.median/np.std/np.mean on the hot path; the
    model cards are only reproducible if they give the very same floats."""
    from detector.core.beats import _mean, _median, _std

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(leads, n)) * rng.uniform(0.01, 5) + rng.uniform(-3, 3)
    if flat_start:
        x[:, : n // 3] = 0.0
    assert np.array_equal(_median(x), np.median(x, axis=-1, keepdims=True))
    assert np.array_equal(_std(x), np.std(x, axis=-1, keepdims=True))
    assert _mean(x[0]) == float(np.mean(x[0]))
    x[0, n // 2] = np.nan  # the buffer can hold NaN (filled gaps): numpy's answer, NaN
    assert np.array_equal(_median(x), np.median(x, axis=-1, keepdims=True), equal_nan=True)


def test_robust_irregularity_ignores_isolated_ectopics_but_not_fibrillation() -> None:
    regular = [0.8] * 31
    with_ectopics = list(regular)
    for k in (3, 12, 21):  # an early beat and its pause, three times
        with_ectopics[k], with_ectopics[k + 1] = 0.5, 1.1
    rng = np.random.default_rng(0)
    fibrillation = list(rng.uniform(0.4, 1.0, 31))
    assert b.irregularity_median(regular) == 0.0
    assert b.irregularity_median(with_ectopics) == 0.0  # the median difference stays 0
    assert b.irregularity_median(fibrillation) > 0.2
    assert b.irregularity_median([0.8]) == 0.0  # too few intervals
    # the mean-based feature is what the ectopics inflate
    sig, peaks = _synthetic(360.0, [0.8] * 20 + with_ectopics)
    f = extract_beats(sig, 360.0, peaks)
    last = f.rr[-2]
    assert last[b.RR_FEATURES.index("rr_irregularity")] > 0.1
    assert last[b.RR_FEATURES.index("rr_irregularity_median")] == 0.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.2, 3.0), min_size=0, max_size=b.IRREGULARITY_BEATS + 1))
def test_robust_irregularity_is_the_np_median_formula_bit_for_bit(rr: list[float]) -> None:
    """irregularity_median runs per beat through the spelled-out median: it must give the
    float np.median gives, or the committed models would score differently."""
    got = b.irregularity_median(rr)
    if len(rr) < 2:
        assert got == 0.0
        return
    a = np.asarray(rr, dtype=np.float64)
    centre = float(np.median(a[: b.IRREGULARITY_BEATS]))
    spread = float(np.median(np.abs(a[1:] - a[:-1])))
    assert got == min(spread / centre, b._RATIO_MAX)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.booleans(), st.integers(0, 3000)), max_size=700))
def test_interval_store_is_the_list_it_replaced(steps: list[tuple[int, bool, int]]) -> None:
    """Appends, drops from the left (growth and compaction included) and windows of
    ``_Intervals`` against a plain list of (end, rr) pairs."""
    from detector.core.beats import _Intervals

    store, model, end = _Intervals(), [], 0
    for gap, drop, back in steps:
        end += gap
        store.append(end, gap / 360.0)
        model.append((end, gap / 360.0))
        if drop:
            cut = end - back
            store.drop_before(cut)
            model = [m for m in model if m[0] >= cut]
        lo, hi = store.between(end - back - 0.5, end - back // 2)
        want = [m for m in model if end - back - 0.5 <= m[0] <= end - back // 2]
        assert list(zip(store.end[lo:hi].tolist(), store.rr[lo:hi].tolist(), strict=True)) == want
    ends, rrs = store.arrays()
    assert list(zip(ends.tolist(), rrs.tolist(), strict=True)) == model and len(store) == len(model)


@settings(max_examples=60, deadline=None)
@given(
    fs=st.sampled_from([125.0, 250.0, 257.3, 360.0, 500.0, 1000.0]),
    n_leads=st.sampled_from([1, 1, 2]),
    seed=st.integers(0, 2**31 - 1),
    nan=st.booleans(),
)
def test_batched_window_cuts_are_the_beat_by_beat_ones_bit_for_bit(
    fs: float, n_leads: int, seed: int, nan: bool
) -> None:
    """cut_windows (one array operation per rate, across patients) gives exactly the floats
    of resample_window + window_amplitude, also next to the buffer's edges and over NaN."""
    rng = np.random.default_rng(seed)
    pre, post = int(np.ceil(b.WINDOW_PRE_S * fs)) + 1, int(np.ceil(b.WINDOW_POST_S * fs)) + 1
    batched, alone = [], []
    for _ in range(int(rng.integers(2, 9))):  # patients, each with its own buffer
        n = int(rng.integers(pre + post + 2, 4 * (pre + post)))
        sig = rng.normal(0.0, rng.uniform(0.05, 3.0), (n, n_leads)) + rng.uniform(-2, 2)
        if nan:
            sig[rng.integers(0, n, 3), 0] = np.nan
        first = int(rng.integers(0, 10**7))
        for peak in rng.integers(first - 5, first + n + 5, int(rng.integers(1, 5))).tolist():
            batched.append(b.CutRequest(b._Pending(peak, None), sig, first, fs, pre, post))
            alone.append(b.CutRequest(b._Pending(peak, None), sig, first, fs, pre, post))
    b.cut_windows(batched)
    for r in alone:
        b._cut_one(r)
    for x, y in zip(batched, alone, strict=True):
        assert x.pending.window is not None and y.pending.window is not None
        assert x.pending.window.tobytes() == y.pending.window.tobytes()
        assert np.float64(x.pending.scale).tobytes() == np.float64(y.pending.scale).tobytes()
