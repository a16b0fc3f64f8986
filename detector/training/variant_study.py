"""A nested DS1 CV estimate of a choice among variants of saved CV outputs.

Studies on the saved held-out outputs (``ecgmon train --cv-predictions DIR``) change what the
selection sees (the S rule's measure, the networks' probabilities, ...) in a few ways, one of which
leaves the outputs as they are.  Which variant to ship is a choice like the epoch's: made on the
patients it will not be scored on.  For each CV fold, the CV's whole selection (epoch, S rule, V
offset: :func:`detector.training.cv.choose_selection`) is run on the other folds for every variant;
the variant whose selection scores highest there (ties: the earlier one) is applied, with its
epoch and rule, to the held-out fold; the folds are pooled and scored as
:mod:`detector.training.selection_study` scores training's selection.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from detector.core.beats import RR_FEATURES
from detector.evaluation import ec57_counting
from detector.training.cv import CVPredictions, Selection, choose_selection, selection_scores
from detector.training.train import apply_s_rule, confusion, confusion_metrics


@dataclass(frozen=True)
class VariantEstimate:
    keys: list[Hashable]  # the variant chosen without each fold
    choices: list[Selection]  # epoch and rule chosen with it
    score: float  # the CV's measure (equal weights; mean of the clean and noisy scores)
    clean: dict[str, dict[str, float]]  # clean held-out beats, EC57 counting
    noisy: dict[str, dict[str, float]] | None

    def summary(self, name: str, key_name: str = "variant") -> str:
        s, v = self.clean["S"], self.clean["V"]
        nv = "" if self.noisy is None else (f", noisy V {100 * self.noisy['V']['se']:.1f}/"
                                            f"{100 * self.noisy['V']['ppv']:.1f}")
        return (f"  {name}: nested score {self.score:.4f}, clean S Se/+P {100 * s['se']:.1f}/"
                f"{100 * s['ppv']:.1f}, V {100 * v['se']:.1f}/{100 * v['ppv']:.1f}{nv}; {key_name} "
                f"without each fold {self.keys}; epochs {[c.epoch for c in self.choices]}")


def nested_variant_estimate(variants: Sequence[tuple[Hashable, CVPredictions]]) -> VariantEstimate:
    """The variant, the epoch and the S rule chosen without each fold and applied to it (module
    docstring).  Every variant must hold out the same beats (labels, folds, noisy copies); ties go
    to the earlier variant, so list the one that changes nothing first."""
    if not variants:
        raise ValueError("no variants")
    cv = variants[0][1]
    for _, v in variants[1:]:
        if not (np.array_equal(v.label, cv.label) and np.array_equal(v.fold, cv.fold)
                and np.array_equal(v.noisy, cv.noisy)):
            raise ValueError("the variants hold out different beats")
    pred = np.zeros(len(cv.label), np.int64)
    keys: list[Hashable] = []
    choices: list[Selection] = []
    for f in np.unique(cv.fold):
        held = cv.fold == f
        picks = [choose_selection(v, ~held) for _, v in variants]
        best = max(range(len(picks)), key=lambda i: (picks[i].score, -i))
        key, v = variants[best]
        pick = picks[best]
        pred[held] = apply_s_rule(v.per_epoch[pick.epoch - 1][held], v.rr[held], pick.rule, RR_FEATURES)
        keys.append(key)
        choices.append(pick)
    noisy = cv.noisy_mask

    def ec57(mask: np.ndarray) -> dict[str, dict[str, float]]:
        return confusion_metrics(ec57_counting(confusion(cv.label[mask], pred[mask])))

    return VariantEstimate(keys, choices, float(np.mean(selection_scores(cv.label, pred, noisy))),
                           ec57(~cv.noisy), None if noisy is None else ec57(noisy))
