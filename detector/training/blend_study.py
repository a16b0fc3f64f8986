"""Blend two families' saved DS1 CV outputs and estimate the blend's whole selection, nested.

Every shipped ensemble averages members of one architecture.  Session 22 asked whether members of
two (the default's five cnns and the mlp's three, which fit the 50 us budget together) beat the
first alone.  Both runs must have held out the same beats in the same folds (the same DS1 records,
folds and noise-stressed copies, which ``ecgmon train`` makes for every family); at each epoch the
blend is the member-weighted average of the two runs' class probabilities (``--members`` K1,K2:
weights K1/(K1+K2) and K2/(K1+K2), the average over all members as one ensemble would take it; no
weight is tuned).  The blend then goes through :func:`nested_selection_estimate` as a run's own
outputs do: the epoch and the S rule chosen without each fold and applied to it.
Usage::

    python -m detector.training.blend_study /tmp/runs/cnn0/cnn_cv.npz /tmp/runs/mlp0/mlp_cv.npz \\
        --members 5,3 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from detector.training.cv import CVPredictions, nested_selection_estimate


def blend(a: CVPredictions, b: CVPredictions, weight_a: float) -> CVPredictions:
    """The per-epoch probabilities ``weight_a * a + (1 - weight_a) * b``; ``ValueError`` unless both
    runs held out the same beats (labels, records, folds, noisy copies and RR features) with the
    same number of epochs of class probabilities."""
    if not 0.0 <= weight_a <= 1.0:
        raise ValueError(f"weight {weight_a} is not in [0, 1]")
    for name in ("label", "record", "fold", "noisy", "rr"):
        x, y = getattr(a, name), getattr(b, name)
        if x.shape != y.shape or not np.array_equal(x, y):
            raise ValueError(f"the two runs held out different beats ({name} differs)")
    if len(a.per_epoch) != len(b.per_epoch):
        raise ValueError(f"the two runs have {len(a.per_epoch)} and {len(b.per_epoch)} epochs")
    if a.per_epoch[0].ndim != 2 or a.per_epoch[0].shape != b.per_epoch[0].shape:
        raise ValueError("blending needs two classifiers' class probabilities of the same shape")
    per_epoch = [(weight_a * pa + (1.0 - weight_a) * pb).astype(np.float32)
                 for pa, pb in zip(a.per_epoch, b.per_epoch, strict=True)]
    return CVPredictions(per_epoch, a.label, a.rr, a.record, a.fold, a.noisy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detector.training.blend_study",
        description="Nested whole-selection estimate (epoch and S rule chosen without each fold) of "
        "two families' DS1 CV outputs blended, next to each alone; the outputs are the "
        "<family>_cv.npz files that `ecgmon train --cv-predictions DIR` saves.")
    parser.add_argument("first", type=Path, help="the first run's <family>_cv.npz")
    parser.add_argument("second", type=Path, help="the second run's <family>_cv.npz")
    parser.add_argument("--members", default="1,1", metavar="K1,K2",
                        help="the runs' ensemble sizes; the blend weighs every member alike (default 1,1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the estimates here")
    args = parser.parse_args(argv)
    try:
        k1, k2 = (int(k) for k in args.members.split(","))
        if k1 < 1 or k2 < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--members: two positive whole numbers, e.g. 5,3; got {args.members!r}")
    a = CVPredictions.load_argument(parser, args.first)
    b = CVPredictions.load_argument(parser, args.second)
    try:
        mixed = blend(a, b, k1 / (k1 + k2))
    except ValueError as exc:
        parser.error(f"{args.first} and {args.second}: {exc}")
    results = {str(args.first): nested_selection_estimate(a), str(args.second): nested_selection_estimate(b),
               f"blend {k1}:{k2}": nested_selection_estimate(mixed)}
    for name, r in results.items():
        print(r.summary(name))  # noqa: T201
    if args.json is not None:
        args.json.write_text(json.dumps({n: r.as_json() for n, r in results.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
