"""Compare the CV's selection criteria on saved DS1 CV outputs without retraining.

The CV chooses two things on its pooled held-out outputs: the epoch count (the best per-epoch
score) and the S rule at that epoch (which includes the V logit offset).  The score is the mean
F1 of N, S and V.  It can trade V +P, which drives the VT and run alarms, for S +P; and adjacent
epochs' scores differ by less than the noise between epochs.  This study estimates what other
criteria are worth on patients they were not chosen on: for each CV fold, the epoch and the
rule are chosen on the other folds' held-out outputs under the criterion and applied to that
fold's outputs at that epoch (of fold models that never saw the fold); the folds are pooled.

Criteria (``CRITERIA``): the class weights of the F1 mean, and the number of epochs whose
scores are averaged in choosing the epoch (0: no choice, the schedule's last epoch; added in
session 17, when the per-epoch scores were seen to be flat from the first epoch).  Each is
reported by the CV's own measure (equal weights; the mean of the clean and noisy scores) and by
the clean beats' EC57 figures.

Adoption rule, fixed before the study was first run (session 14, on the outputs of the 5-cnn
default's own command and of the same command with ``--seed 5``): a criterion replaces
training's when, on every run given and against training's criterion, its nested clean EC57
V +P is at least 1.0 point higher, its nested clean V Se stays at least 90 %, and its nested
score by the CV's measure is at most 0.005 lower; of several, the highest mean score.
``ecgmon train`` reports the nested estimate of training's criterion in every card it writes
(``cv.nested_selection``); ``--card`` adds it to a card made before, once the saved outputs
are shown to be that card's (they reproduce its CV epoch, score and S rule).
Usage::

    python -m detector.training.selection_study /tmp/a/cnn_cv.npz [/tmp/b/cnn_cv.npz ...] [--json FILE]
    python -m detector.training.selection_study /tmp/a/cnn_cv.npz --card detector/models/cnn.json
    python -m detector.training.selection_study /tmp/a/cnn_cv.npz --v-offsets=-1,-0.5,0,0.5,1,1.5,2
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from detector.training.card import write_card
from detector.training.cv import (
    EPOCH_WINDOW,
    CVPredictions,
    NestedSelection,
    nested_selection_estimate,
)
from detector.training.train import RULE_V_OFFSET, SELECTION_WEIGHTS, Weights

CRITERIA: dict[str, tuple[Weights, int]] = {  # weights of the N, S, V F1; epochs averaged
    "training's (mean F1, best epoch)": (SELECTION_WEIGHTS, EPOCH_WINDOW),
    "V F1 weighed double": ((1.0, 1.0, 2.0), 1),
    "3-epoch mean": (SELECTION_WEIGHTS, 3),
    "V F1 weighed double, 3-epoch mean": ((1.0, 1.0, 2.0), 3),
    "the schedule's last epoch (session 17)": (SELECTION_WEIGHTS, 0),
}


def adopted(runs: list[dict[str, NestedSelection]], baseline: str) -> str:
    """The criterion the adoption rule (module docstring) picks: ``baseline`` unless another,
    on every run, gains >= 1.0 point of clean V +P, keeps clean V Se >= 90 % and loses <= 0.005
    of score; of several, the best mean score."""

    def passes(name: str, run: dict[str, NestedSelection]) -> bool:
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
    parser.add_argument("--v-offsets", default=None, metavar="LIST",
                        help="comma-separated V logit offsets for the S rule's choice under every "
                        f"criterion (default: training's, {','.join(f'{v:g}' for v in RULE_V_OFFSET)}); "
                        "session 21 asked whether training's grid stops short of the DS1 optimum; a list "
                        "starting with a minus sign needs '=': --v-offsets=-1,0,1")
    parser.add_argument("--card", type=Path, default=None,
                        help="write the nested estimate of training's criterion into this model card "
                        "(JSON and markdown), once the predictions (one file) are shown to be the card's: "
                        "they reproduce its CV epoch, score and S rule")
    args = parser.parse_args(argv)
    grid: tuple[float, ...] = RULE_V_OFFSET
    if args.v_offsets is not None:
        try:
            grid = tuple(float(v) for v in args.v_offsets.split(","))
        except ValueError:
            parser.error(f"--v-offsets: not a comma-separated list of numbers: {args.v_offsets!r}")
        if args.card is not None:
            parser.error("--v-offsets is for studies; --card writes the estimate of training's own grid")
    if args.card is not None:
        if len(args.predictions) != 1:
            parser.error("--card takes the one predictions file of that model's run")
        return _into_card(CVPredictions.load_argument(parser, args.predictions[0]), args.card)
    runs = []
    for path in args.predictions:
        cv = CVPredictions.load_argument(parser, path)
        if cv.per_epoch[0].ndim != 2:
            parser.error(f"{path}: an autoencoder's outputs; the criteria choose classifiers")
        runs.append({name: nested_selection_estimate(cv, *c, v_offset_grid=grid)
                     for name, c in CRITERIA.items()})
    for path, results in zip(args.predictions, runs, strict=True):
        print(f"{path}:")  # noqa: T201
        for name, r in results.items():
            print(r.summary(name))  # noqa: T201
    pick = adopted(runs, next(iter(CRITERIA)))
    print(f"adoption rule picks: {pick}")  # noqa: T201
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"runs": {str(p): {n: r.as_json() for n, r in results.items()}
                      for p, results in zip(args.predictions, runs, strict=True)},
             "adopted": pick}, indent=2) + "\n")
    return 0


def _into_card(cv: CVPredictions, card_path: Path) -> int:
    card = json.loads(card_path.read_text())
    est = nested_selection_estimate(cv)
    chosen, rule = est.pooled, card["cv"]["s_rule"]
    same_rule = all(rule[k] == v for k, v in asdict(chosen.rule).items() if k in rule)
    if (chosen.epoch != int(card["cv"]["best_epoch"]) or abs(chosen.score - float(card["cv"]["score"])) > 1e-9
            or not same_rule):
        raise SystemExit(f"{card_path}: these CV outputs are not this model's (epoch {chosen.epoch}, score "
                         f"{chosen.score:.6f} against {card['cv']['best_epoch']}, {card['cv']['score']:.6f}; "
                         f"rule {chosen.rule}); nothing written")
    card["cv"]["nested_selection"] = est.as_json()
    write_card(card_path, card)
    print(f"{card_path}: nested selection score {est.score:.4f} (the CV's {chosen.score:.4f}) written")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
