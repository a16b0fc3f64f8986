"""The selection-criteria study on saved CV outputs (detector.training.selection_study)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES
from detector.training.cv import (
    CVPredictions,
    NestedSelection,
    Selection,
    choose_epoch,
    nested_selection_estimate,
)
from detector.training.selection_study import CRITERIA, adopted, main
from detector.training.train import IRREGULARITY_FEATURE, SRuleParams, apply_s_rule

TRUTH = SRuleParams(0.82, 0.1, 0.0)


def _predictions(n: int, seed: int = 0) -> CVPredictions:
    """Three epochs of outputs; the labels are the rule's calls on the second: four folds, a quarter noisy."""
    rng = np.random.default_rng(seed)

    def probs() -> np.ndarray:
        logits = rng.normal(0.0, 2.0, (n, 5))
        return (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)

    rr = rng.uniform(0.5, 1.3, (n, len(RR_FEATURES))).astype(np.float32)
    rr[:, RR_FEATURES.index(IRREGULARITY_FEATURE)] = rng.uniform(0.0, 0.3, n)
    epochs = [probs(), probs(), probs()]
    label = apply_s_rule(epochs[1], rr, TRUTH, RR_FEATURES)
    return CVPredictions(epochs, label, rr, np.array(["100"] * n), np.arange(n) % 4,
                         rng.uniform(size=n) < 0.25)


def test_the_epoch_choice_averages_neighbours_when_told() -> None:
    scores = [0.70, 0.90, 0.60, 0.84, 0.85, 0.84, 0.70]
    assert choose_epoch(scores) == choose_epoch(scores, 1) == 2  # the single best epoch
    assert choose_epoch(scores, 3) == 5  # a lone peak between poor epochs loses to a plateau
    assert choose_epoch([0.8, 0.8, 0.7]) == 1  # the first best wins
    assert choose_epoch(scores, 0) == len(scores)  # no choice: the schedule's last epoch


def test_the_nested_estimate_finds_the_epoch_and_rule_that_made_the_labels() -> None:
    cv = _predictions(1600)
    est = nested_selection_estimate(cv)  # training's criterion
    assert est == nested_selection_estimate(cv, *CRITERIA["training's (mean F1, best epoch)"])
    assert est.pooled.epoch == 2 and all(c.epoch == 2 for c in est.fold_choices)
    assert est.pooled.rule.prematurity_max == TRUTH.prematurity_max
    assert est.clean["S"]["se"] > 0.97 and est.score > 0.97
    assert est.noisy is not None and est.noisy["S"]["se"] > 0.97
    # the three-epoch mean cannot single the second epoch out from its neighbours' mean, but
    # its choice is still scored on folds it was not made on
    smooth = nested_selection_estimate(cv, (1.0, 1.0, 1.0), 3)
    assert smooth.pooled.epoch in (1, 2, 3) and smooth.score <= est.score


def _result(v_se: float, v_ppv: float, score: float) -> NestedSelection:
    figures = {"N": {"se": 0.99, "ppv": 0.99, "f1": 0.99}, "S": {"se": 0.6, "ppv": 0.7, "f1": 0.65},
               "V": {"se": v_se, "ppv": v_ppv, "f1": 2 * v_se * v_ppv / (v_se + v_ppv)}}
    return NestedSelection(Selection(6, TRUTH, score), [], score, figures, figures, None)


def test_the_adoption_rule_needs_v_ppv_v_se_and_score_together() -> None:
    base = _result(0.92, 0.85, 0.840)
    results = {"base": base, "less +P": _result(0.93, 0.855, 0.845), "low Se": _result(0.89, 0.90, 0.842),
               "costly": _result(0.92, 0.90, 0.834)}
    assert adopted([results], "base") == "base"
    results |= {"good": _result(0.91, 0.87, 0.838), "better": _result(0.95, 0.87, 0.839)}
    assert adopted([results], "base") == "better"  # of those that pass, the best score
    other = results | {"better": _result(0.95, 0.855, 0.839)}  # fails on a second run
    assert adopted([results, other], "base") == "good"
    assert adopted([results, other | {"good": _result(0.85, 0.95, 0.84)}], "base") == "base"


def test_the_command_reports_every_criterion_and_the_rules_pick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [tmp_path / "a.npz", tmp_path / "b.npz"]
    _predictions(400, seed=1).save(paths[0])
    _predictions(400, seed=2).save(paths[1])
    assert main([*map(str, paths), "--json", str(tmp_path / "study.json")]) == 0
    out = capsys.readouterr().out
    for name in CRITERIA:
        assert out.count(f"\n  {name}: nested score") == 2
    study = json.loads((tmp_path / "study.json").read_text())
    assert set(study["runs"]) == set(map(str, paths)) and study["adopted"] in CRITERIA
    assert all(set(run) == set(CRITERIA) for run in study["runs"].values())
    assert f"adoption rule picks: {study['adopted']}" in out


def test_an_autoencoders_outputs_are_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # missing and foreign files: CVPredictions.load_argument, tested with rule_study
    cv = _predictions(40)
    CVPredictions([p[:, 0] for p in cv.per_epoch], cv.label, cv.rr, cv.record, cv.fold, cv.noisy).save(
        tmp_path / "ae.npz")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "ae.npz")])
    assert "autoencoder" in capsys.readouterr().err


def test_a_v_offset_grid_reaches_an_offset_beyond_trainings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels made with a V offset of 2 (training's grid stops at 1): only a grid holding 2 finds
    it, and scores higher for it on the held-out folds."""
    cv = _predictions(1600)
    truth = SRuleParams(0.82, 0.1, 2.0)
    cv = CVPredictions(cv.per_epoch, apply_s_rule(cv.per_epoch[1], cv.rr, truth, RR_FEATURES), cv.rr,
                       cv.record, cv.fold, cv.noisy)
    wide = nested_selection_estimate(cv, v_offset_grid=(0.0, 1.0, 2.0))
    narrow = nested_selection_estimate(cv)
    assert wide.pooled.rule.v_offset == 2.0 and all(c.rule.v_offset == 2.0 for c in wide.fold_choices)
    assert narrow.pooled.rule.v_offset <= 1.0 and wide.score > narrow.score
    cv.save(tmp_path / "cv.npz")
    assert main([str(tmp_path / "cv.npz"), "--v-offsets", "0,1,2", "--json", str(tmp_path / "s.json")]) == 0
    study = json.loads((tmp_path / "s.json").read_text())["runs"][str(tmp_path / "cv.npz")]
    assert {r["v_offset"] for run in study.values() for r in run["rules_without_each_fold"]} == {2.0}
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / "cv.npz"), "--v-offsets", "0,high"])
    assert err.value.code == 2 and "--v-offsets: not a comma-separated list" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "cv.npz"), "--v-offsets", "2", "--card", str(tmp_path / "card.json")])
    assert "--card writes the estimate of training's own grid" in capsys.readouterr().err
