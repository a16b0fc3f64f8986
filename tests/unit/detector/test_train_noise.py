"""Noise-stressed training copies (nstdb em / ma) and the clean + noisy cross-validation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES
from detector.onnx_classifier import OnnxClassifier
from detector.train_cli import _noise_dir
from detector.training.cv import cross_validate, folds_for
from detector.training.data import load_beats, load_record
from detector.training.noise import (
    QRS_HALF_S,
    SEGMENT_S,
    NoiseSource,
    NoiseUnavailable,
    load_noise,
    load_noisy_beats,
    noisy_copy,
    scaled_noise,
    snr_db,
)
from detector.training.pipeline import TrainOptions, run_training
from detector.training.train import (
    TrainConfig,
    apply_s_rule,
    choose_s_rule,
    per_class_metrics,
    selection_score_of,
)
from stream.errors import ConfigError


@pytest.fixture(scope="module")
def noise(data_root: Path) -> NoiseSource:
    return load_noise(data_root / "nstdb")


@pytest.mark.parametrize("snr", [12.0, 6.0, 0.0])
def test_scaled_noise_has_the_requested_snr(snr: float) -> None:
    raw = np.random.default_rng(3).normal(0.2, 0.7, 5000)
    out = scaled_noise(raw, 1.6, snr)
    assert abs(float(out.mean())) < 1e-12
    assert snr_db(1.6, out) == pytest.approx(snr, abs=1e-9)


def test_a_noisy_copy_has_clean_and_noisy_minutes_at_the_nstdb_snrs(
    mitdb_dir: Path, noise: NoiseSource
) -> None:
    clean = load_record(mitdb_dir, "118")
    noisy = noisy_copy(clean, noise, 0, held_out=False)
    again = noisy_copy(clean, noise, 0, held_out=False)
    assert np.array_equal(noisy.signal_mv, again.signal_mv)  # reproducible
    assert noisy.name == clean.name and np.array_equal(noisy.ref_samples, clean.ref_samples)
    seg, half = int(SEGMENT_S * clean.fs_hz), int(QRS_HALF_S * clean.fs_hz)
    added = noisy.signal_mv - clean.signal_mv
    seen: list[str | int] = []
    for start in range(0, len(added) - seg, seg):
        part = added[start : start + seg, 0]
        if not np.any(part):
            seen.append("clean")
            continue
        ref = clean.ref_samples
        peaks = ref[(ref >= max(start, half)) & (ref < start + seg)][:50]
        p2p = float(np.median([np.ptp(clean.signal_mv[p - half : p + half, 0]) for p in peaks]))
        seen.append(round(snr_db(p2p, part)))
    assert set(seen) == {"clean", 12, 6}
    assert 0.1 < seen.count("clean") / len(seen) < 0.4  # one choice in five is clean


def test_training_and_held_out_copies_draw_on_different_halves_of_the_noise(mitdb_dir: Path) -> None:
    n = 650_000
    t = np.arange(n) / 360.0
    low, high = np.sin(2 * np.pi * 5.0 * t), np.sin(2 * np.pi * 40.0 * t)
    tone = np.where(np.arange(n) < n // 2, low, high)[:, None].repeat(2, axis=1)
    source = NoiseSource({"em": tone, "ma": tone}, 360.0, {})
    clean = load_record(mitdb_dir, "100")
    for held_out, want_hz in ((False, 5.0), (True, 40.0)):
        added = noisy_copy(clean, source, 0, held_out).signal_mv[:, 0] - clean.signal_mv[:, 0]
        spectrum = np.abs(np.fft.rfft(added))
        peak_hz = float(np.fft.rfftfreq(len(added), 1 / 360.0)[np.argmax(spectrum)])
        assert peak_hz == pytest.approx(want_hz, abs=0.1)
    train = noisy_copy(clean, source, 0, held_out=False).signal_mv
    assert not np.array_equal(train, noisy_copy(clean, source, 1, held_out=False).signal_mv)  # copies differ


def test_missing_noise_records_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NoiseUnavailable, match="em, ma not found .*--noise-dir"):
        load_noise(tmp_path)
    args = argparse.Namespace(no_noise=False, noise_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="em and ma .*--no-noise"):
        _noise_dir(tmp_path, args)
    assert _noise_dir(tmp_path, argparse.Namespace(no_noise=True, noise_dir=None)) is None


def test_noisy_beats_keep_their_patients_and_labels(
    mitdb_dir: Path, noise: NoiseSource, tmp_path: Path
) -> None:
    clean, _ = load_beats(mitdb_dir, ["119"], n_leads=1)
    noisy = load_noisy_beats(mitdb_dir, noise, ["119"], cache_dir=tmp_path)
    cached = load_noisy_beats(mitdb_dir, noise, ["119"], cache_dir=tmp_path)
    assert np.array_equal(noisy.features.beats, cached.features.beats)
    assert set(noisy.record.tolist()) == {"119"}
    assert noisy.noisy is not None and noisy.noisy.all() and cached.noisy is not None and clean.noisy is None
    # 119: many V beats; the noisy copy keeps about as many labelled beats of each class
    c, n = (np.bincount(b.label[b.label >= 0], minlength=5) for b in (clean, noisy))
    assert np.all(np.abs(n - c) <= 0.05 * c + 5)
    assert not np.allclose(noisy.features.beats[:100], clean.features.beats[:100])


def test_the_noisy_cv_score_is_the_mean_of_its_clean_and_noisy_parts(
    mitdb_dir: Path, noise: NoiseSource
) -> None:
    recs = ["119", "209", "220"]
    beats, _ = load_beats(mitdb_dir, recs, n_leads=1)
    noisy_train = load_noisy_beats(mitdb_dir, noise, recs)
    noisy_test = load_noisy_beats(mitdb_dir, noise, recs, held_out=True)
    cfg = TrainConfig(family="mlp", epochs=2, max_train_beats=600)
    cv = cross_validate(beats, cfg, lambda _: None, folds_for(recs, 3), noisy_train, noisy_test)
    assert len(cv.clean_per_epoch) == len(cv.noisy_per_epoch) == 2
    for total, c, n in zip(cv.score_per_epoch, cv.clean_per_epoch, cv.noisy_per_epoch, strict=True):
        assert total == pytest.approx((c + n) / 2)
    assert cv.metrics_noisy and sum(m["se"] for m in cv.metrics_noisy.values()) > 0
    as_json = cv.as_json()
    assert as_json["noisy_score_per_epoch"] == [round(v, 4) for v in cv.noisy_per_epoch]


def test_the_rule_choice_with_noisy_beats_maximises_the_mean_of_both_scores() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    logits = rng.normal(0.0, 2.0, (n, 5))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    rr = rng.uniform(0.5, 1.3, (n, len(RR_FEATURES))).astype(np.float32)
    label = rng.integers(0, 3, n)
    noisy = np.arange(n) >= n // 2
    chosen, metrics = choose_s_rule(probs, rr, label, RR_FEATURES, noisy)

    def mean_score(params: object) -> float:
        pred = apply_s_rule(probs, rr, params, RR_FEATURES)  # type: ignore[arg-type]
        parts = [selection_score_of(label[g], pred[g]) for g in (~noisy, noisy)]
        return float(np.mean(parts))

    clean_only, _ = choose_s_rule(probs, rr, label, RR_FEATURES)
    assert mean_score(chosen) >= mean_score(clean_only)
    pred = apply_s_rule(probs, rr, chosen, RR_FEATURES)
    assert metrics == per_class_metrics(label[~noisy], pred[~noisy])  # the clean beats' metrics


def test_a_training_run_with_noise_records_it_in_the_card(
    mitdb_dir: Path, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detector.training.pipeline as pipeline

    seen: list[Any] = []
    real_cv = pipeline.cross_validate

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[4])  # the noisy training beats
        return real_cv(*args, **kwargs)

    monkeypatch.setattr(pipeline, "cross_validate", spy)
    opts = TrainOptions(
        data_dir=mitdb_dir, out_dir=tmp_path, families=["mlp"], epochs=1, records=["119", "209", "220"],
        folds=3, evaluate_ds2=False, max_train_beats=1500, noise_dir=data_root / "nstdb", noise_copies=2,
    )
    said: list[str] = []
    run_training(opts, said.append)
    card = json.loads((tmp_path / "mlp.json").read_text())
    assert set(card["data"]["noise"]["record_sha256"]) == {"em", "ma"}
    assert card["data"]["noise"]["training_copies"] == 2
    assert card["data"]["noise"]["training_draw_weight"] == 1.0  # as the clean beats (--noisy-weight)
    assert len(card["cv"]["noisy_score_per_epoch"]) == 1
    assert "--no-noise" not in card["reproduce"]["train"]
    assert card["reproduce"]["train"].endswith(" --noise-copies 2")
    assert any("training (2), held-out" in m for m in said)
    one = load_noisy_beats(mitdb_dir, load_noise(data_root / "nstdb"), ["119", "209", "220"])
    assert np.array_equal(seen[0].features.rr[: len(one)], one.features.rr)  # copy 0, as before
    assert len(seen[0]) > 1.9 * len(one)  # and copy 1, with noise segments of its own
    assert "noise" in (tmp_path / "mlp.md").read_text().lower()


def test_a_two_lead_run_trains_on_both_leads_in_and_out_of_noise(
    mitdb_dir: Path, data_root: Path, tmp_path: Path
) -> None:
    opts = TrainOptions(
        data_dir=mitdb_dir, out_dir=tmp_path, families=["mlp"], epochs=1, records=["119", "209", "220"],
        folds=3, evaluate_ds2=False, max_train_beats=600, noise_dir=data_root / "nstdb", n_leads=2,
    )
    run_training(opts, lambda _: None)
    card = json.loads((tmp_path / "mlp.json").read_text())
    assert card["reproduce"]["train"].endswith("--leads 2")
    assert "running template of each" in card["data"]["leads"]
    clf = OnnxClassifier(tmp_path / "mlp.onnx")
    assert clf.n_leads == 2
    beats, _ = load_beats(mitdb_dir, ["220"], n_leads=2)
    assert beats.features.beats.shape[1] == 4  # two leads and their templates
    assert clf.classify(beats.features).probabilities.shape == (len(beats), 5)


def test_the_cards_ds2_noise_figures_come_from_ds2_noise_stress(
    mitdb_dir: Path, noise: NoiseSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detector.training.pipeline as pipeline
    from detector.onnx_classifier import MODELS_DIR

    monkeypatch.setattr(pipeline, "DS2", ("213",))
    got = pipeline.ds2_noise_stress(mitdb_dir, MODELS_DIR / "lstm.onnx", noise, {})
    card = json.loads((MODELS_DIR / "lstm.json").read_text())
    assert got["records"]["213"] == card["ds2_noise_stress"]["records"]["213"]
    assert got["command"].endswith("--model lstm --noise-dir ../shared/data/nstdb")


def test_the_vf_alarm_check_runs_on_the_training_records_with_vf(mitdb_dir: Path) -> None:
    import detector.training.pipeline as pipeline
    from detector.onnx_classifier import MODELS_DIR

    assert pipeline.ds1_vf_alarm_check(mitdb_dir, MODELS_DIR / "cnn.onnx", ["119", "209"]) is None
    check = pipeline.ds1_vf_alarm_check(mitdb_dir, MODELS_DIR / "cnn.onnx", ["119", "207"])
    assert check is not None and check["records"].startswith("207 ")
    card = json.loads((MODELS_DIR / "cnn.json").read_text())["ds1_vf_alarm_check"]
    got = (check["vf_episodes"], check["vf_detected"])
    assert got == (card["vf_episodes"], card["vf_detected"]) == (6, 6)
