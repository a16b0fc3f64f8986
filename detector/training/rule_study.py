"""Compare S-rule grids on saved DS1 CV outputs without retraining (``ecgmon train --cv-predictions``).

The CV chooses the S rule on the same pooled held-out outputs that it then scores, so a larger
grid can only score higher there.  This study estimates what a grid is worth on unseen
patients: for each CV fold, the rule is chosen on the other folds' held-out outputs and applied
to that fold; the folds' predictions are pooled and scored as the CV scores (mean of the clean
and noisy selection scores).  It compares training's grid with the grid without the pause zone
(session 14), plus the assisted zone (sessions 11-12) and plus a network veto.  ``ecgmon train``
reports the nested estimate of training's grid in every card it writes (``cv.nested_rule``);
``--card`` adds it to a card made before, once the saved outputs are shown to be that card's
(they reproduce its CV score and S rule: the same command with the same seeds rebuilds a model
bit for bit).
Usage::

    python -m detector.training.rule_study /tmp/cv/cnn_cv.npz [--epoch N] [--card detector/models/cnn.json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from detector.core.beats import RR_FEATURES
from detector.training.card import write_card
from detector.training.cv import CVPredictions, NestedEstimate, nested_rule_estimate, selection_scores
from detector.training.train import (
    ASSIST_STUDY,
    PAUSE_OFF,
    RULE_ASSIST,
    RULE_PAUSE,
    RULE_VETO,
    VETO_STUDY,
    SRuleParams,
    apply_s_rule,
    choose_s_rule,
)

Zones = tuple[tuple[float, float], ...]
Grid = tuple[Zones, tuple[float, ...], Zones]  # assisted zones, vetoes, pause zones
GRIDS: dict[str, Grid] = {
    "training's grid": (RULE_ASSIST, RULE_VETO, RULE_PAUSE),
    "without the pause zone": (RULE_ASSIST, RULE_VETO, (PAUSE_OFF,)),
    "with the assisted zone": (ASSIST_STUDY, RULE_VETO, RULE_PAUSE),
    "with the network veto": (RULE_ASSIST, VETO_STUDY, RULE_PAUSE),
}


@dataclass(frozen=True)
class GridEstimate:
    nested: NestedEstimate  # rule chosen without the scored fold
    pooled: float  # rule chosen on all folds (what the CV reports)
    pooled_rule: SRuleParams


def estimate(cv: CVPredictions, epoch: int, grid: Grid = GRIDS["training's grid"]) -> GridEstimate:
    """Nested and pooled selection scores of an S-rule grid at ``epoch``."""
    assist, veto, pause = grid
    probs = cv.per_epoch[epoch - 1]
    rule, _ = choose_s_rule(probs, cv.rr, cv.label, RR_FEATURES, cv.noisy_mask, assist_grid=assist,
                            veto_grid=veto, pause_grid=pause)
    pred = apply_s_rule(probs, cv.rr, rule, RR_FEATURES)
    pooled = float(np.mean(selection_scores(cv.label, pred, cv.noisy_mask)))
    nested = nested_rule_estimate(cv, epoch, assist_grid=assist, veto_grid=veto, pause_grid=pause)
    return GridEstimate(nested, pooled, rule)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.training.rule_study",
        description="Nested (leave-one-fold-out) estimate of S-rule grids (training's, with the "
        "assisted zone, with the network veto) on the pooled DS1 CV outputs that "
        "`ecgmon train --cv-predictions DIR` saved.")
    parser.add_argument("predictions", type=Path, help="a <family>_cv.npz file")
    parser.add_argument("--epoch", type=int, default=0, help="CV epoch (default: the last)")
    parser.add_argument("--card", type=Path, default=None,
                        help="write the nested estimate of the training grid at the card's epoch into "
                        "this model card (JSON and markdown), once the predictions are shown to be the "
                        "card's: they reproduce its CV score and S rule")
    args = parser.parse_args(argv)
    cv = CVPredictions.load_argument(parser, args.predictions)
    if args.card is not None:
        return _into_card(cv, args.card)
    epoch = args.epoch or len(cv.per_epoch)
    for name, grid in GRIDS.items():
        est = estimate(cv, epoch, grid)
        s, v = est.nested.metrics["S"], est.nested.metrics["V"]
        print(f"{name}: nested score {est.nested.score:.4f} (clean S Se/+P {100 * s['se']:.1f}/"  # noqa: T201
              f"{100 * s['ppv']:.1f}, V {100 * v['se']:.1f}/{100 * v['ppv']:.1f}), pooled score "
              f"{est.pooled:.4f}, pooled rule {est.pooled_rule}")
        for i, rule in enumerate(est.nested.fold_rules):
            print(f"  rule without fold {i + 1}: {rule}")  # noqa: T201
    return 0


def _into_card(cv: CVPredictions, card_path: Path) -> int:
    card = json.loads(card_path.read_text())
    epoch = int(card["cv"]["best_epoch"])
    est = estimate(cv, epoch)
    rule = card["cv"]["s_rule"]
    same_rule = all(rule[k] == v for k, v in asdict(est.pooled_rule).items() if k in rule)
    if abs(est.pooled - float(card["cv"]["score"])) > 1e-9 or not same_rule:
        raise SystemExit(f"{card_path}: these CV outputs are not this model's (score {est.pooled:.6f} "
                         f"against {card['cv']['score']:.6f}, rule {est.pooled_rule}); nothing written")
    card["cv"]["nested_rule"] = est.nested.as_json()
    write_card(card_path, card)
    print(f"{card_path}: nested score {est.nested.score:.4f} (the CV's {est.pooled:.4f}) written")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
