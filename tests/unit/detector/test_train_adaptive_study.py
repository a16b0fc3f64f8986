"""The session-24 study of a variability-shifted prematurity (detector.training.adaptive_study)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES
from detector.training.adaptive_study import main, nested_estimate, shifted
from detector.training.cv import CVPredictions, nested_selection_estimate
from detector.training.train import IRREGULARITY_FEATURE, PREMATURITY_FEATURE, SRuleParams, apply_s_rule
from tests.unit.detector.test_train_selection_study import _predictions

PREM, IRR = RR_FEATURES.index(PREMATURITY_FEATURE), RR_FEATURES.index(IRREGULARITY_FEATURE)
TRUTH = SRuleParams(0.82, 0.1, 0.0)


def _labelled_with(k: float) -> CVPredictions:
    """Outputs whose labels are the rule's calls on the second epoch with the measure shifted by K."""
    cv = _predictions(1600)
    label = apply_s_rule(cv.per_epoch[1], shifted(cv, k).rr, TRUTH, RR_FEATURES)
    return CVPredictions(cv.per_epoch, label, cv.rr, cv.record, cv.fold, cv.noisy)


def test_the_shift_moves_only_the_prematurity_by_k_times_the_irregularity() -> None:
    cv = _predictions(50)
    assert shifted(cv, 0.0) is cv
    moved = shifted(cv, 1.5)
    np.testing.assert_allclose(moved.rr[:, PREM], cv.rr[:, PREM] + 1.5 * cv.rr[:, IRR], rtol=1e-6)
    others = [i for i in range(len(RR_FEATURES)) if i != PREM]
    assert np.array_equal(moved.rr[:, others], cv.rr[:, others])
    assert moved.per_epoch is cv.per_epoch and not np.array_equal(moved.rr, cv.rr)


def test_k_fixed_at_0_is_trainings_nested_selection() -> None:
    cv = _labelled_with(0.0)
    est, training = nested_estimate(cv, (0.0,)), nested_selection_estimate(cv)
    assert est.score == training.score and est.clean == training.clean
    assert [c.epoch for c in est.choices] == [c.epoch for c in training.fold_choices]
    assert nested_estimate(cv).keys == [0.0] * 4  # the grid finds no reason to shift


def test_the_nested_choice_finds_the_shift_that_made_the_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cv = _labelled_with(1.0)
    chosen, fixed = nested_estimate(cv), nested_estimate(cv, (0.0,))
    assert chosen.keys == [1.0] * 4 and all(c.epoch == 2 for c in chosen.choices)
    assert chosen.score > fixed.score and chosen.clean["S"]["se"] > 0.97
    cv.save(tmp_path / "cv.npz")
    assert main([str(tmp_path / "cv.npz")]) == 0
    out = capsys.readouterr().out
    assert f"K fixed at 0 (training's selection): nested score {fixed.score:.4f}" in out
    assert f"nested score {chosen.score:.4f}" in out and "K without each fold [1.0, 1.0, 1.0, 1.0]" in out
