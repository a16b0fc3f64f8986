"""Blending two runs' saved CV outputs (detector.training.blend_study)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES
from detector.training.blend_study import blend, main
from detector.training.cv import CVPredictions

CLASSES = 5


def _run(labels: np.ndarray, right: np.ndarray, seed: int) -> CVPredictions:
    """Three epochs of outputs that put 0.9 on the true class where ``right`` and on another class
    elsewhere; four folds, none noisy."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    wrong = (labels + rng.integers(1, CLASSES, n)) % CLASSES
    probs = np.full((n, CLASSES), 0.025, np.float32)
    probs[np.arange(n), np.where(right, labels, wrong)] = 0.9
    rr = np.ones((n, len(RR_FEATURES)), np.float32)
    return CVPredictions([probs.copy() for _ in range(3)], labels, rr, np.array(["100"] * n),
                         np.arange(n) % 4, np.zeros(n, bool))


def test_the_blend_is_the_member_weighted_average_of_the_probabilities() -> None:
    labels = np.arange(40) % 3
    a = _run(labels, np.ones(40, bool), 0)
    b = _run(labels, np.zeros(40, bool), 1)
    mixed = blend(a, b, 5 / 8)
    for pm, pa, pb in zip(mixed.per_epoch, a.per_epoch, b.per_epoch, strict=True):
        np.testing.assert_allclose(pm, 5 / 8 * pa + 3 / 8 * pb, rtol=1e-6)
        np.testing.assert_allclose(pm.sum(axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(mixed.label, a.label) and np.array_equal(mixed.fold, a.fold)
    assert np.array_equal(mixed.per_epoch[0].argmax(axis=1), labels)  # 5:3 follows the first run
    assert np.array_equal(blend(a, b, 3 / 8).per_epoch[0].argmax(axis=1), b.per_epoch[0].argmax(axis=1))
    assert np.array_equal(blend(a, b, 1.0).per_epoch[0], a.per_epoch[0])


def test_runs_that_held_out_other_beats_or_epochs_are_refused() -> None:
    labels = np.arange(40) % 3
    a = _run(labels, np.ones(40, bool), 0)
    with pytest.raises(ValueError, match="fold differs"):
        blend(a, replace(a, fold=(a.fold + 1) % 4), 0.5)
    with pytest.raises(ValueError, match="label differs"):
        blend(a, replace(a, label=np.roll(a.label, 1)), 0.5)
    with pytest.raises(ValueError, match="epochs"):
        blend(a, replace(a, per_epoch=a.per_epoch[:2]), 0.5)
    with pytest.raises(ValueError, match="not in"):
        blend(a, a, 1.5)


def test_the_command_scores_each_run_and_the_blend(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 1, 2], 2000, p=[0.6, 0.2, 0.2])
    # the first run is right on 80 % of the beats, the second on 70 %, mostly on other beats:
    # a vote weighted 5:3 follows the first where they disagree, so the blend is the first
    first_right = rng.uniform(size=2000) < 0.8
    a, b = _run(labels, first_right, 4), _run(labels, ~first_right | (rng.uniform(size=2000) < 0.5), 5)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    assert main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--members", "5,3",
                 "--json", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert list(out) == [str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "blend 5:3"]
    scores = {k: v["score"] for k, v in out.items()}
    assert scores["blend 5:3"] > scores[str(tmp_path / "b.npz")]
    assert "blend 5:3: nested score" in capsys.readouterr().out


def test_the_command_says_what_is_wrong_with_its_arguments(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.arange(40) % 3
    _run(labels, np.ones(40, bool), 0).save(tmp_path / "a.npz")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.npz"), str(tmp_path / "a.npz"), "--members", "5"])
    assert "--members: two positive whole numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.npz"), str(tmp_path / "missing.npz")])
    assert "no such file" in capsys.readouterr().err
