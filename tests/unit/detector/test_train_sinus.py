"""The sinus-ratio study feature (detector.training.sinus) and its CV-only training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES, BeatFeatures
from detector.training.cv import CVPredictions
from detector.training.data import BeatSet
from detector.training.pipeline import TrainOptions, run_training
from detector.training.sinus import PRIOR, sinus_ratio, with_sinus_ratio


def _peaks(rr: list[float]) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(rr)])


def test_an_early_beat_in_a_regular_rhythm_is_its_interval_over_the_cycle() -> None:
    rr = [1.0] * 40 + [0.6, 1.4] + [1.0] * 10
    got = sinus_ratio(_peaks(rr))
    assert got[41] == pytest.approx(0.6)  # the early beat ends interval 40
    assert got[42] == pytest.approx(1.4)  # the pause after it
    assert np.allclose(got[3:41], 1.0) and np.allclose(got[43:], 1.0)
    assert np.all(got[:3] == 1.0)  # fewer than 2 prior intervals


def test_frequent_early_beats_stay_early_where_the_mean_says_on_time() -> None:
    # three atrial early beats (0.7 s) after each sinus beat that follows a 1.6 s pause
    rr = [1.6, 0.7, 0.7, 0.7] * 20
    got = sinus_ratio(_peaks(rr))
    early = [i for i in range(PRIOR + 2, len(rr) + 1) if rr[i - 1] == 0.7]
    sinus = [i for i in range(PRIOR + 2, len(rr) + 1) if rr[i - 1] == 1.6]
    assert np.allclose(got[early], 0.7 / 1.6) and np.allclose(got[sinus], 1.0)
    assert 0.7 / np.mean(rr) > 0.75  # over the mean RR the early beats look almost on time


def test_the_ratio_is_causal_and_capped() -> None:
    rr = list(np.random.default_rng(0).uniform(0.5, 1.5, 60)) + [20.0]
    full, cut = sinus_ratio(_peaks(rr)), sinus_ratio(_peaks(rr[:40]))
    assert np.array_equal(full[:41], cut)  # later peaks change no earlier value
    assert full[-1] == 5.0
    assert sinus_ratio([]).shape == (0,) and sinus_ratio([7]).tolist() == [1.0]


def test_the_feature_is_appended_per_recording() -> None:
    peaks = (360 * np.concatenate([_peaks([1.0] * 9 + [0.5]), _peaks([0.8] * 9 + [0.4])])).astype(np.int64)
    record = np.array(["201"] * 11 + ["202"] * 11)
    n = len(peaks)
    feats = BeatFeatures(peaks, np.zeros((n, 2, 90), np.float32), np.ones((n, len(RR_FEATURES)), np.float32))
    out = with_sinus_ratio(BeatSet(feats, np.zeros(n, np.int64), record))
    assert out.features.rr.shape == (n, len(RR_FEATURES) + 1)
    assert np.array_equal(out.features.rr[:, :-1], feats.rr)
    col = out.features.rr[:, -1]
    # each record's own cycle (the peaks are whole samples: 0.5 to within a sample)
    assert col[10] == pytest.approx(0.5, abs=0.01) and col[21] == pytest.approx(0.5, abs=0.01)
    assert col[11] == 1.0  # the second record starts afresh (its first interval is not 202 - 201's)


def test_a_sinus_ratio_run_saves_its_cv_outputs_and_exports_no_model(mitdb_dir: Path, tmp_path: Path) -> None:
    opts = TrainOptions(
        data_dir=mitdb_dir, out_dir=tmp_path, families=["mlp"], epochs=1, records=["119", "209", "220"],
        folds=3, evaluate_ds2=False, max_train_beats=600, cv_predictions_dir=tmp_path, sinus_ratio=True,
    )
    assert run_training(opts, lambda _: None) == []
    cv = CVPredictions.load(tmp_path / "mlp_cv.npz")
    assert cv.rr.shape[1] == len(RR_FEATURES) + 1 and not list(tmp_path.glob("*.onnx"))
    assert 0.0 < float(cv.rr[:, -1].min()) and float(cv.rr[:, -1].max()) <= 5.0


def test_sinus_ratio_is_a_cv_only_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    code = main(["train", "--data-dir", str(tmp_path), "--sinus-ratio"])
    err = capsys.readouterr().err
    assert code == 2 and "--sinus-ratio is a CV-only study" in err and "Traceback" not in err
