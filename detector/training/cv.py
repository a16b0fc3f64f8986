"""Leave-patients-out cross-validation over DS1: epoch count, the S rule, V offset and model selection.

Every DS1 patient is held out exactly once (``CV_FOLDS``); the held-out
probabilities of the four folds are pooled (one prediction per DS1 beat from a
model that never saw that patient) and scored per epoch.  The epoch with the
best pooled score fixes the epoch count of the final model (trained on all of
DS1 with the same schedule), and the S-versus-N rule's thresholds and the V
logit offset (:class:`~detector.training.train.SRule`) are chosen on the pooled
held-out probabilities and RR features of that epoch.  DS2 plays no part.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detector.core.beats import RR_FEATURES
from detector.training.data import CV_FOLDS, BeatSet
from detector.training.train import (
    F32,
    Progress,
    SRuleParams,
    TrainConfig,
    apply_s_rule,
    auroc,
    choose_s_rule,
    per_class_metrics,
    selection_score,
    train_autoencoder,
    train_ensemble,
)


@dataclass
class CVResult:
    """Pooled held-out figures over DS1 patients, per epoch and at the chosen epoch."""

    folds: list[list[str]]
    best_epoch: int
    score_per_epoch: list[float]  # after the logit offsets chosen for that epoch (classifiers); AUROC (AE)
    bias: list[float] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # pooled, with the offsets
    metrics_raw: dict[str, dict[str, float]] = field(default_factory=dict)  # pooled, no offsets
    fold_metrics: list[dict[str, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    s_rule: SRuleParams | None = None

    @property
    def score(self) -> float:
        return self.score_per_epoch[self.best_epoch - 1]

    def as_json(self) -> dict[str, Any]:
        return {
            "folds": self.folds, "best_epoch": self.best_epoch, "score": self.score,
            "score_per_epoch": [round(s, 4) for s in self.score_per_epoch],
            "logit_bias": self.bias, "metrics": self.metrics, "metrics_without_bias": self.metrics_raw,
            "fold_metrics": self.fold_metrics, "seconds": round(self.seconds, 1),
            "s_rule": self.s_rule.as_json() if self.s_rule else None,
        }


def folds_for(records: list[str] | tuple[str, ...], k: int = len(CV_FOLDS)) -> list[list[str]]:
    """``CV_FOLDS`` restricted to ``records`` (others dealt round-robin); empty folds dropped."""
    recs = list(records)
    if k == len(CV_FOLDS) and set(recs) <= {r for f in CV_FOLDS for r in f}:
        folds = [[r for r in f if r in recs] for f in CV_FOLDS]
    else:
        folds = [recs[i::k] for i in range(k)]
    return [f for f in folds if f]


def cross_validate(
    beats: BeatSet, cfg: TrainConfig, progress: Progress, folds: list[list[str]] | None = None,
) -> CVResult:
    """Train ``cfg`` once per fold on the other folds' patients; pool the held-out outputs per epoch."""
    beats = beats.take(beats.label >= 0)
    folds = folds or folds_for(sorted(set(beats.record.tolist())))
    is_ae = cfg.family == "autoencoder"
    pooled: list[F32] = [np.zeros(0, np.float32)] * cfg.epochs
    labels, fold_of, rrs = [], [], []
    start = time.perf_counter()
    for i, fold in enumerate(folds):
        held = np.isin(beats.record, fold)
        progress(f"{cfg.family} CV fold {i + 1}/{len(folds)}: held out {', '.join(fold)}")
        trainer = train_autoencoder if is_ae else train_ensemble
        res = trainer(beats.take(~held), cfg, progress, heldout=beats.take(held))
        pooled = [out if not len(p) else np.concatenate([p, out]) for p, out in zip(pooled, res.heldout,
                                                                                  strict=True)]
        labels.append(beats.label[held])
        rrs.append(beats.features.rr[held])
        fold_of.append(np.full(int(held.sum()), i))
    label, fold_idx = np.concatenate(labels), np.concatenate(fold_of)
    result = _summarise(pooled, label, fold_idx, folds, is_ae, np.concatenate(rrs))
    result.seconds = time.perf_counter() - start
    progress(f"{cfg.family} CV: best epoch {result.best_epoch}, score {result.score:.4f}, "
             f"per epoch {[round(s, 3) for s in result.score_per_epoch]}, S rule {result.s_rule}")
    return result


def _summarise(pooled: list[F32], label: np.ndarray, fold_idx: np.ndarray, folds: list[list[str]],
               is_ae: bool, rr: F32) -> CVResult:
    if is_ae:
        scores = [auroc(label != 0, s) for s in pooled]
        return CVResult(folds, int(np.nanargmax(scores)) + 1, scores)
    fits = [choose_s_rule(p, rr, label, RR_FEATURES) for p in pooled]
    scores = [selection_score(m) for _, m in fits]
    best = int(np.argmax(scores))
    rule = fits[best][0]
    probs = pooled[best]
    pred = apply_s_rule(probs, rr, rule, RR_FEATURES)
    per_fold = [per_class_metrics(label[fold_idx == i], pred[fold_idx == i]) for i in range(len(folds))]
    bias = [0.0, 0.0, rule.v_offset, 0.0, 0.0]
    return CVResult(folds, best + 1, scores, bias, fits[best][1],
                    per_class_metrics(label, probs.argmax(axis=1)), per_fold, s_rule=rule)
