"""A tiny real training run (needs the ``train`` extra: torch, onnx); fails loudly without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

try:
    import torch
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import BeatFeatures
from detector.onnx_classifier import OnnxClassifier
from detector.training.data import VALIDATION, load_beats
from detector.training.pipeline import TrainOptions, run_training
from detector.training.train import TrainConfig, train_classifier
from detector.training.ucr import cross_validate


def test_tiny_training_run_exports_loadable_onnx(mitdb_dir: Path, tmp_path: Path) -> None:
    opts = TrainOptions(
        data_dir=mitdb_dir, out_dir=tmp_path, families=["cnn", "autoencoder"], epochs=1,
        train_records=["119", "209"], val_records=["220"], evaluate_ds2=False, max_train_beats=1500,
    )
    rows = run_training(opts, lambda _: None)
    assert [r["model"] for r in rows] == ["cnn", "autoencoder"]
    clf = OnnxClassifier(tmp_path / "cnn.onnx")
    feats, _ = load_beats(mitdb_dir, ["220"], n_leads=1)
    res = clf.classify(feats.features)
    assert res.probabilities.shape == (len(feats), 5)
    assert float(np.mean(res.class_index == np.maximum(feats.label, 0))) > 0.5
    for name in ("cnn", "autoencoder"):
        assert (tmp_path / f"{name}.json").is_file() and (tmp_path / f"{name}.md").is_file()


def test_training_is_reproducible(mitdb_dir: Path) -> None:
    beats, _ = load_beats(mitdb_dir, ["119", VALIDATION[2]], n_leads=1)
    is_val = beats.record == VALIDATION[2]
    cfg = TrainConfig(family="mlp", epochs=1, max_train_beats=600)
    a = train_classifier(beats.take(~is_val), beats.take(is_val), cfg, lambda _: None)
    b = train_classifier(beats.take(~is_val), beats.take(is_val), cfg, lambda _: None)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_ucr_cross_validation_runs(data_root: Path) -> None:
    result = cross_validate(data_root / "ecg5000" / "ECG5000_TRAIN.txt", folds=2, epochs=1)
    assert len(result["fold_accuracy"]) == 2 and 0.3 < result["mean_accuracy"] <= 1.0


def test_empty_features_concat() -> None:
    assert len(BeatFeatures.concat([], 1)) == 0
