"""Compare S-rule grids on saved DS1 CV outputs without retraining (``ecgmon train --cv-predictions``).

The CV chooses the S rule on the same pooled held-out outputs that it then scores, so a larger
grid can only score higher there.  This study estimates what a grid is worth on unseen
patients: for each CV fold, the rule is chosen on the other folds' held-out outputs and applied
to that fold; the four folds' predictions are pooled and scored as the CV scores (mean of the
clean and noisy selection scores).  Usage::

    python -m detector.training.rule_study /tmp/cv/cnn_cv.npz [--epoch N]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.core.beats import RR_FEATURES
from detector.training.cv import CVPredictions
from detector.training.train import (
    VETO_OFF,
    VETO_STUDY,
    SRuleParams,
    apply_s_rule,
    choose_s_rule,
    per_class_metrics,
    selection_score_of,
)


@dataclass(frozen=True)
class GridEstimate:
    nested: float  # rule chosen without the scored fold
    pooled: float  # rule chosen on all folds (what the CV reports)
    nested_metrics: dict[str, dict[str, float]]  # clean beats, nested predictions
    pooled_rule: SRuleParams
    fold_rules: list[SRuleParams]


def _score(label: np.ndarray, pred: np.ndarray, noisy: np.ndarray) -> float:
    groups = [~noisy, noisy] if noisy.any() else [~noisy]
    return float(np.mean([selection_score_of(label[g], pred[g]) for g in groups]))


def estimate(cv: CVPredictions, epoch: int, veto_grid: tuple[float, ...]) -> GridEstimate:
    """Nested and pooled selection scores of the S-rule grid with ``veto_grid`` at ``epoch``."""
    probs = cv.per_epoch[epoch - 1]
    pred = np.zeros(len(cv.label), np.int64)
    rules = []
    for f in np.unique(cv.fold):
        fit, held = cv.fold != f, cv.fold == f
        rule, _ = choose_s_rule(probs[fit], cv.rr[fit], cv.label[fit], RR_FEATURES, cv.noisy[fit],
                                veto_grid=veto_grid)
        pred[held] = apply_s_rule(probs[held], cv.rr[held], rule, RR_FEATURES)
        rules.append(rule)
    pooled_rule, _ = choose_s_rule(probs, cv.rr, cv.label, RR_FEATURES, cv.noisy, veto_grid=veto_grid)
    pooled = apply_s_rule(probs, cv.rr, pooled_rule, RR_FEATURES)
    clean = ~cv.noisy
    return GridEstimate(_score(cv.label, pred, cv.noisy), _score(cv.label, pooled, cv.noisy),
                        per_class_metrics(cv.label[clean], pred[clean]), pooled_rule, rules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.training.rule_study",
        description="Nested (leave-one-fold-out) estimate of the S-rule grid, with and without the "
        "network veto, on the pooled DS1 CV outputs that `ecgmon train --cv-predictions DIR` saved.")
    parser.add_argument("predictions", type=Path, help="a <family>_cv.npz file")
    parser.add_argument("--epoch", type=int, default=0, help="CV epoch (default: the last)")
    parser.add_argument("--veto-grid", default=",".join(map(str, VETO_STUDY)),
                        help="veto values tried with the veto (default: the training grid)")
    args = parser.parse_args(argv)
    cv = CVPredictions.load(args.predictions)
    epoch = args.epoch or len(cv.per_epoch)
    vetoes = tuple(sorted({VETO_OFF, *(float(v) for v in args.veto_grid.split(","))}))
    for name, grid in (("without the veto", (VETO_OFF,)), ("with the veto", vetoes)):
        est = estimate(cv, epoch, grid)
        s, v = est.nested_metrics["S"], est.nested_metrics["V"]
        print(f"{name}: nested score {est.nested:.4f} (clean S Se/+P {100 * s['se']:.1f}/"  # noqa: T201
              f"{100 * s['ppv']:.1f}, V {100 * v['se']:.1f}/{100 * v['ppv']:.1f}), pooled score "
              f"{est.pooled:.4f}, pooled rule {est.pooled_rule}")
        for i, rule in enumerate(est.fold_rules):
            print(f"  rule without fold {i + 1}: {rule}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
