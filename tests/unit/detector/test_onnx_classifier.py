"""The ONNX classifier with the committed models: no torch needed (onnxruntime is a runtime dependency)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from detector.core import beats as feat
from detector.core.beats import BeatFeatures
from detector.core.classifier import AAMI_CLASSES, Classifier
from detector.onnx_classifier import DEFAULT_MODEL, MODELS_DIR, OnnxClassifier
from stream.errors import ConfigError
from stream.settings import Settings

CLASSIFIERS = ("cnn", "resnet", "inception", "lstm", "mlp")


def _batch(n: int, seed: int = 0) -> BeatFeatures:
    rng = np.random.default_rng(seed)
    return BeatFeatures(
        np.arange(n, dtype=np.int64),
        rng.standard_normal((n, 2, feat.WINDOW_LEN)).astype(np.float32),
        rng.uniform(0.5, 1.5, (n, feat.N_RR)).astype(np.float32),
    )


def test_default_model_is_the_settings_default() -> None:
    assert Settings().model == DEFAULT_MODEL
    assert (MODELS_DIR / f"{DEFAULT_MODEL}.onnx").is_file()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_committed_model_classifies_batches(name: str) -> None:
    clf = OnnxClassifier.load(name)
    assert isinstance(clf, Classifier)
    assert clf.labels == AAMI_CLASSES and clf.n_leads == 1 and clf.name == name
    batch = _batch(64)
    res = clf.classify(batch)
    assert res.probabilities.shape == (64, 5) and res.class_index.shape == (64,)
    np.testing.assert_allclose(res.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(res.class_index, res.probabilities.argmax(axis=1))
    one = clf.classify(BeatFeatures(batch.sample_index[:1], batch.beats[:1], batch.rr[:1]))
    np.testing.assert_allclose(one.probabilities[0], res.probabilities[0], atol=1e-5)
    again = clf.classify(batch)
    assert np.array_equal(again.probabilities, res.probabilities)  # deterministic inference


def test_empty_batch() -> None:
    res = OnnxClassifier.load(DEFAULT_MODEL).classify(BeatFeatures.empty(1))
    assert res.probabilities.shape == (0, 5) and res.classes == []


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="ECGMON_MODEL"):
        OnnxClassifier.load("no-such-model")


@pytest.mark.parametrize("name", (*CLASSIFIERS, "autoencoder"))
def test_model_card_matches_the_onnx_file(name: str) -> None:
    card = json.loads((MODELS_DIR / f"{name}.json").read_text())
    onnx_bytes = (MODELS_DIR / f"{name}.onnx").read_bytes()
    assert card["onnx_sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    assert card["onnx_bytes"] == len(onnx_bytes) < 5_000_000
    assert (MODELS_DIR / f"{name}.md").is_file()
    assert not set(card["data"]["train_records"]) & set(card["data"]["test_records"])
    assert not set(card["data"]["validation_records"]) & set(card["data"]["test_records"])
    if name == "autoencoder":
        assert 0.5 < card["ds2_auroc"] <= 1.0
    else:
        assert set(card["ds2"]["classes"]) == {"N", "S", "V", "F", "Q"}
