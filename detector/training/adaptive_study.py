"""Session 24 study: the S rule's prematurity judged against the patient's own RR variability.

The S rule calls a beat the networks call N or S premature when its previous RR over the
5-minute mean RR is below a threshold, in a rhythm whose robust irregularity (median absolute
successive difference of the 30 RR before it, over their median) is low.  A sinus rhythm that
varies by 8 % from beat to beat crosses a fixed threshold more often than one that varies by
1 %.  This study shifts the measure by the variability, ``prev / 5-min mean + K x irregularity``,
so a more variable rhythm needs an earlier beat; K = 0 is training's rule.  The pause zone reads
the same shifted measure.

Nested estimate on saved DS1 CV outputs (``ecgmon train --cv-predictions DIR``), no retraining:
for each CV fold, for each K of ``K_GRID``, the CV's whole selection (epoch, S rule, V offset:
:func:`detector.training.cv.choose_selection`) on the other folds' held-out outputs; the K whose
selection scores highest there (ties: the smaller K) is applied, with its epoch and rule, to the
held-out fold; the folds are pooled and scored as :mod:`detector.training.selection_study`
scores training's selection (which is K fixed at 0).  The adoption rule is in BENCHMARKS.md
(session 24).  Usage::

    python -m detector.training.adaptive_study /tmp/a/cnn_cv.npz [/tmp/b/cnn_cv.npz ...]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from detector.core.beats import RR_FEATURES
from detector.training.cv import CVPredictions
from detector.training.train import IRREGULARITY_FEATURE, PREMATURITY_FEATURE
from detector.training.variant_study import VariantEstimate, nested_variant_estimate

K_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)


def shifted(cv: CVPredictions, k: float) -> CVPredictions:
    """``cv`` with the prematurity column read by the S rule replaced by prev / 5-min mean + ``k`` x
    the robust irregularity (the networks' outputs, which were computed before, are unchanged)."""
    if k == 0.0:
        return cv
    rr = cv.rr.copy()
    prem, irr = RR_FEATURES.index(PREMATURITY_FEATURE), RR_FEATURES.index(IRREGULARITY_FEATURE)
    rr[:, prem] = rr[:, prem] + np.float32(k) * rr[:, irr]
    return replace(cv, rr=rr)


def nested_estimate(cv: CVPredictions, k_grid: tuple[float, ...] = K_GRID) -> VariantEstimate:
    """K, the epoch and the S rule chosen without each fold and applied to it (module docstring;
    :func:`detector.training.variant_study.nested_variant_estimate`, ties: the smaller K)."""
    return nested_variant_estimate([(k, shifted(cv, k)) for k in sorted(k_grid)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.training.adaptive_study",
        description="Nested DS1 CV estimate of the S rule with its prematurity shifted by K x the "
        "patient's RR irregularity, K chosen with the epoch and the rule without each fold, against "
        "K fixed at 0 (training's selection), on outputs `ecgmon train --cv-predictions DIR` saved.")
    parser.add_argument("predictions", type=Path, nargs="+", help="<family>_cv.npz files")
    args = parser.parse_args(argv)
    for path in args.predictions:
        cv = CVPredictions.load_argument(parser, path)
        print(f"{path}:")  # noqa: T201 - the study's output
        print(nested_estimate(cv, (0.0,)).summary("K fixed at 0 (training's selection)", "K"))  # noqa: T201
        print(nested_estimate(cv).summary(f"K chosen from {list(K_GRID)}", "K"))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
