"""Compare the CV's selection criteria on saved DS1 CV outputs without retraining.

The CV chooses two things on its pooled held-out outputs: the epoch count (the best per-epoch
score) and the S rule at that epoch (which includes the V logit offset).  The score is the mean
F1 of N, S and V.  It can trade V +P, which drives the VT and run alarms, for S +P; and adjacent
epochs' scores differ by less than the noise between epochs.  This study estimates what other
criteria are worth on patients they were not chosen on: for each CV fold, the epoch and the
rule are chosen on the other folds' held-out outputs under the criterion and applied to that
fold's outputs at that epoch (of fold models that never saw the fold); the folds are pooled.

Criteria (``CRITERIA``): the class weights of the F1 mean, and the number of epochs whose
scores are averaged in choosing the epoch.  Each is reported by the CV's own measure (equal
weights; the mean of the clean and noisy scores) and by the clean beats' EC57 figures.

Adoption rule, fixed before the study was first run (session 14, on the outputs of the 5-cnn
default's own command and of the same command with ``--seed 5``): a criterion replaces
training's when, on every run given and against training's criterion, its nested clean EC57
V +P is at least 1.0 point higher, its nested clean V Se stays at least 90 %, and its nested
score by the CV's measure is at most 0.005 lower; of several, the highest mean score.
Usage::

    python -m detector.training.selection_study /tmp/a/cnn_cv.npz [/tmp/b/cnn_cv.npz ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.core.beats import RR_FEATURES
from detector.evaluation import ec57_counting
from detector.training.cv import EPOCH_WINDOW, CVPredictions, choose_epoch, selection_scores
from detector.training.train import (
    SELECTION_WEIGHTS,
    SRuleParams,
    Weights,
    apply_s_rule,
    choose_s_rule,
    confusion,
    confusion_metrics,
)


@dataclass(frozen=True)
class Criterion:
    weights: Weights  # of the N, S and V F1
    window: int  # epochs averaged in choosing the epoch


CRITERIA: dict[str, Criterion] = {
    "training's (mean F1, best epoch)": Criterion(SELECTION_WEIGHTS, EPOCH_WINDOW),
    "V F1 weighed double": Criterion((1.0, 1.0, 2.0), 1),
    "3-epoch mean": Criterion(SELECTION_WEIGHTS, 3),
    "V F1 weighed double, 3-epoch mean": Criterion((1.0, 1.0, 2.0), 3),
}


@dataclass(frozen=True)
class Selection:
    epoch: int
    rule: SRuleParams


@dataclass(frozen=True)
class CriterionEstimate:
    pooled: Selection  # chosen on all folds (what the CV would ship)
    fold_choices: list[Selection]  # chosen without each fold
    score: float  # nested, by the CV's measure (equal weights, clean and noisy mean)
    clean: dict[str, dict[str, float]]  # nested, clean held-out beats, EC57 counting
    noisy: dict[str, dict[str, float]] | None  # nested, noise-stressed held-out beats

    def as_json(self) -> dict[str, Any]:
        def figures(m: dict[str, dict[str, float]] | None) -> dict[str, Any] | None:
            return None if m is None else {c: {k: round(v, 4) for k, v in m[c].items()} for c in "NSV"}

        return {"pooled_choice": {"epoch": self.pooled.epoch, "rule": str(self.pooled.rule)},
                "epochs_without_each_fold": [c.epoch for c in self.fold_choices],
                "nested_score": round(self.score, 4), "nested_clean_ec57": figures(self.clean),
                "nested_noisy_ec57": figures(self.noisy)}


def choose(cv: CVPredictions, fit: np.ndarray, criterion: Criterion) -> Selection:
    """The epoch and S rule that ``criterion`` picks on the outputs of the beats in ``fit``."""
    noisy = cv.noisy_mask
    sub_noisy = None if noisy is None else noisy[fit]
    rules, scores = [], []
    for probs in cv.per_epoch:
        rule, _ = choose_s_rule(probs[fit], cv.rr[fit], cv.label[fit], RR_FEATURES, sub_noisy,
                                weights=criterion.weights)
        pred = apply_s_rule(probs[fit], cv.rr[fit], rule, RR_FEATURES)
        rules.append(rule)
        scores.append(float(np.mean(selection_scores(cv.label[fit], pred, sub_noisy, criterion.weights))))
    epoch = choose_epoch(scores, criterion.window)
    return Selection(epoch, rules[epoch - 1])


def estimate(cv: CVPredictions, criterion: Criterion) -> CriterionEstimate:
    """Nested (leave-one-fold-out) estimate of choosing the epoch and the S rule by ``criterion``."""
    pred = np.zeros(len(cv.label), np.int64)
    choices = []
    for f in np.unique(cv.fold):
        held = cv.fold == f
        pick = choose(cv, ~held, criterion)
        pred[held] = apply_s_rule(cv.per_epoch[pick.epoch - 1][held], cv.rr[held], pick.rule, RR_FEATURES)
        choices.append(pick)
    noisy = cv.noisy_mask

    def ec57(mask: np.ndarray) -> dict[str, dict[str, float]]:
        return confusion_metrics(ec57_counting(confusion(cv.label[mask], pred[mask])))

    return CriterionEstimate(
        choose(cv, np.ones(len(cv.label), bool), criterion), choices,
        float(np.mean(selection_scores(cv.label, pred, noisy))), ec57(~cv.noisy),
        None if noisy is None else ec57(noisy))


def adopted(runs: list[dict[str, CriterionEstimate]], baseline: str) -> str:
    """The criterion the adoption rule (module docstring) picks: ``baseline`` unless another,
    on every run, gains >= 1.0 point of clean V +P, keeps clean V Se >= 90 % and loses <= 0.005
    of score; of several, the best mean score."""

    def passes(name: str, run: dict[str, CriterionEstimate]) -> bool:
        r, base = run[name], run[baseline]
        return (r.clean["V"]["ppv"] >= base.clean["V"]["ppv"] + 0.01 and r.clean["V"]["se"] >= 0.90
                and r.score >= base.score - 0.005)

    ok = [name for name in runs[0] if name != baseline and all(passes(name, run) for run in runs)]
    return max(ok, key=lambda n: float(np.mean([run[n].score for run in runs]))) if ok else baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.training.selection_study",
        description="Nested (leave-one-fold-out) estimate of the CV's selection criteria (epoch and "
        "S rule) on the pooled DS1 CV outputs that `ecgmon train --cv-predictions DIR` saved.")
    parser.add_argument("predictions", type=Path, nargs="+",
                        help="<family>_cv.npz files, one per run (the rule must hold on every run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the estimates here")
    args = parser.parse_args(argv)
    runs = []
    for path in args.predictions:
        cv = CVPredictions.load_argument(parser, path)
        if cv.per_epoch[0].ndim != 2:
            parser.error(f"{path}: an autoencoder's outputs; the criteria choose classifiers")
        runs.append({name: estimate(cv, c) for name, c in CRITERIA.items()})
    for path, results in zip(args.predictions, runs, strict=True):
        print(f"{path}:")  # noqa: T201
        for name, r in results.items():
            s, v = r.clean["S"], r.clean["V"]
            nv = "" if r.noisy is None else (f", noisy V {100 * r.noisy['V']['se']:.1f}/"
                                             f"{100 * r.noisy['V']['ppv']:.1f}")
            print(f"  {name}: nested score {r.score:.4f}, clean S Se/+P {100 * s['se']:.1f}/"  # noqa: T201
                  f"{100 * s['ppv']:.1f}, V {100 * v['se']:.1f}/{100 * v['ppv']:.1f}{nv}; epochs "
                  f"without each fold {[c.epoch for c in r.fold_choices]}; on all folds: epoch "
                  f"{r.pooled.epoch}, {r.pooled.rule}")
    pick = adopted(runs, next(iter(CRITERIA)))
    print(f"adoption rule picks: {pick}")  # noqa: T201
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"runs": {str(p): {n: r.as_json() for n, r in results.items()}
                      for p, results in zip(args.predictions, runs, strict=True)},
             "adopted": pick}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
