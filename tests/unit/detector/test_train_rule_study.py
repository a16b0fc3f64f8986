"""The S-rule grid study on saved CV outputs (detector.training.rule_study)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES
from detector.training.cv import CVPredictions
from detector.training.rule_study import GRIDS, estimate, main
from detector.training.train import (
    IRREGULARITY_FEATURE,
    VETO_OFF,
    SRuleParams,
    apply_s_rule,
)


def _predictions(n: int, truth: SRuleParams, seed: int = 0) -> CVPredictions:
    """Outputs whose labels a rule with ``truth`` made: four folds, a quarter of them noisy."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, 5))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    rr = rng.uniform(0.5, 1.3, (n, len(RR_FEATURES))).astype(np.float32)
    rr[:, RR_FEATURES.index(IRREGULARITY_FEATURE)] = rng.uniform(0.0, 0.3, n)
    label = apply_s_rule(probs, rr, truth, RR_FEATURES)
    return CVPredictions([probs * 0.5 + 0.1, probs], label, rr, np.array(["100"] * n),
                         np.arange(n) % 4, rng.uniform(size=n) < 0.25)


def test_the_nested_estimate_values_a_veto_only_where_one_made_the_labels() -> None:
    vetoed = _predictions(1500, SRuleParams(0.82, 0.1, 0.0, veto_s_share_max=0.2))
    without, with_veto = estimate(vetoed, 2), estimate(vetoed, 2, GRIDS["with the network veto"])
    assert with_veto.nested.score > without.nested.score
    assert with_veto.nested.score > 0.98 and with_veto.pooled == pytest.approx(1.0)
    assert all(rule.veto_s_share_max == 0.2 for rule in with_veto.nested.fold_rules)
    plain = _predictions(1500, SRuleParams(0.82, 0.1, 0.0), seed=1)
    assert estimate(plain, 2, GRIDS["with the network veto"]).pooled_rule.veto_s_share_max == VETO_OFF
    assisted = _predictions(1500, SRuleParams(0.8, 0.1, 0.0, 0.92, 0.5), seed=2)
    assert estimate(assisted, 2, GRIDS["with the assisted zone"]).pooled_rule.assist_prematurity_max == 0.92
    assert estimate(assisted, 2).pooled_rule.assist_prematurity_max == 0.0  # training's grid: off


def test_saved_predictions_load_back_and_the_command_reports_both_grids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cv = _predictions(400, SRuleParams(0.82, 0.1, 0.0, veto_s_share_max=0.2))
    path = tmp_path / "cnn_cv.npz"
    cv.save(path)
    back = CVPredictions.load(path)
    assert np.array_equal(back.per_epoch[1], cv.per_epoch[1]) and np.array_equal(back.noisy, cv.noisy)
    assert main([str(path), "--epoch", "2"]) == 0
    out = capsys.readouterr().out
    training, rest = out.split("with the assisted zone: nested score")
    assert training.startswith("training's grid: nested score") and "veto_s_share_max=0.2" not in training
    assert "with the network veto: nested score" in rest and "veto_s_share_max=0.2" in rest


def test_a_missing_or_foreign_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "none.npz")])
    assert "no such file" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(SystemExit):
        main([str(tmp_path / "other.npz")])
    assert "not CV outputs this version can read" in capsys.readouterr().err
