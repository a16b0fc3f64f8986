"""Leave-patients-out cross-validation over DS1: epoch count, the S rule, V offset and model selection.

Every DS1 patient is held out exactly once (``CV_FOLDS``); the held-out
probabilities of the four folds are pooled (one prediction per DS1 beat from a
model that never saw that patient) and scored per epoch.  The epoch with the
best pooled score fixes the epoch count of the final model (trained on all of
DS1 with the same schedule), and the S-versus-N rule's thresholds and the V
logit offset (:class:`~detector.training.train.SRule`) are chosen on the pooled
held-out probabilities and RR features of that epoch.  DS2 plays no part.

With noise-stressed copies (:mod:`detector.training.noise`), every fold also trains
on the noisy copies of its training patients and is scored on a held-out noisy
copy of its held-out patients (noise the training never saw); the score is then
the mean of the clean and the noisy held-out scores, as EC57 stress-tests a
classifier in noise.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.core.beats import RR_FEATURES
from detector.evaluation import ec57_counting
from detector.training.data import CV_FOLDS, BeatSet
from detector.training.train import (
    F32,
    RULE_ASSIST,
    RULE_PAUSE,
    RULE_V_OFFSET,
    RULE_VETO,
    SELECTION_WEIGHTS,
    Progress,
    SRuleParams,
    TrainConfig,
    Weights,
    apply_s_rule,
    auroc,
    choose_s_rule,
    confusion,
    confusion_metrics,
    per_class_metrics,
    selection_score_of,
    train_autoencoder,
    train_ensemble,
)

# epochs averaged in choosing the epoch count (choose_epoch); `python -m
# detector.training.selection_study` compares others on saved DS1 CV outputs
EPOCH_WINDOW = 1


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
    # with noise-stressed copies: the clean and noisy parts of each epoch's score, and the
    # noisy held-out metrics at the chosen epoch (``metrics`` are the clean beats')
    clean_per_epoch: list[float] = field(default_factory=list)
    noisy_per_epoch: list[float] = field(default_factory=list)
    metrics_noisy: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: CVPredictions | None = None  # the pooled held-out outputs (not in the card)
    nested: NestedEstimate | None = None  # classifiers: the S rule's choice on unseen patients
    nested_selection: NestedSelection | None = None  # classifiers: epoch and rule chosen so

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
            # the scores count false positives as EC57 does (train.selection_score_of)
            **({"ec57_selection": True} if self.s_rule else {}),
            **({"clean_score_per_epoch": [round(v, 4) for v in self.clean_per_epoch],
                "noisy_score_per_epoch": [round(v, 4) for v in self.noisy_per_epoch],
                "metrics_noisy": self.metrics_noisy} if self.noisy_per_epoch else {}),
            **({"nested_rule": self.nested.as_json()} if self.nested else {}),
            **({"nested_selection": self.nested_selection.as_json()} if self.nested_selection else {}),
        }


@dataclass(frozen=True)
class CVPredictions:
    """The pooled held-out outputs behind a :class:`CVResult`, one row per held-out DS1 beat.

    Saved with ``ecgmon train --cv-predictions DIR`` so rules on top of the network (the S rule,
    alarm rules) can be studied on DS1 CV without retraining."""

    per_epoch: list[F32]  # (beats, classes) probabilities, or (beats,) anomaly scores, per epoch
    label: np.ndarray
    rr: F32
    record: np.ndarray
    fold: np.ndarray
    noisy: np.ndarray  # True: a beat of the held-out noise-stressed copy

    @property
    def noisy_mask(self) -> np.ndarray | None:
        """``noisy``, or None when the CV had no noise-stressed copy (as the CV passes it)."""
        return self.noisy if self.noisy.any() else None

    @staticmethod
    def load(path: Path) -> CVPredictions:
        with np.load(path) as d:
            if tuple(d["rr_names"].tolist()) != RR_FEATURES:
                raise ValueError(f"{path}: saved with other RR features than this version's")
            return CVPredictions(list(d["per_epoch"]), d["label"], d["rr"], d["record"], d["fold"],
                                 d["noisy"])

    @staticmethod
    def load_argument(parser: argparse.ArgumentParser, path: Path) -> CVPredictions:
        """:meth:`load` for a command's argument: a missing or unreadable file is a one-line
        usage error, not a traceback."""
        if not path.is_file():
            parser.error(f"{path}: no such file (`ecgmon train --cv-predictions DIR` writes "
                         "DIR/<family>_cv.npz)")
        try:
            return CVPredictions.load(path)
        except (ValueError, KeyError, OSError) as exc:
            parser.error(f"{path}: not CV outputs this version can read ({exc})")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, per_epoch=np.stack(self.per_epoch), label=self.label, rr=self.rr,
                            rr_names=np.array(RR_FEATURES), record=self.record, fold=self.fold,
                            noisy=self.noisy)


@dataclass(frozen=True)
class NestedEstimate:
    """The S rule chosen on all folds' held-out outputs but one and applied to that one, the folds
    pooled: what choosing the rule is worth on patients it was not chosen on.  The CV's own score
    chooses the rule on the outputs it scores, so it is optimistic."""

    epoch: int
    score: float  # selection score as the CV's (clean and noisy mean)
    metrics: dict[str, dict[str, float]]  # clean held-out beats
    fold_rules: list[SRuleParams]  # the rule chosen without each fold

    def as_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "score": round(self.score, 4), "metrics": self.metrics,
                "rules_without_each_fold": [asdict(r) for r in self.fold_rules]}


def nested_rule_estimate(
    cv: CVPredictions, epoch: int, *, assist_grid: tuple[tuple[float, float], ...] = RULE_ASSIST,
    veto_grid: tuple[float, ...] = RULE_VETO, pause_grid: tuple[tuple[float, float], ...] = RULE_PAUSE,
    weights: Weights = SELECTION_WEIGHTS,
) -> NestedEstimate:
    """:class:`NestedEstimate` of the S rule grid at ``epoch`` (default: training's grid)."""
    probs = cv.per_epoch[epoch - 1]
    pred = np.zeros(len(cv.label), np.int64)
    rules = []
    for f in np.unique(cv.fold):
        fit, held = cv.fold != f, cv.fold == f
        noisy = cv.noisy_mask
        rule, _ = choose_s_rule(probs[fit], cv.rr[fit], cv.label[fit], RR_FEATURES,
                                None if noisy is None else noisy[fit], assist_grid=assist_grid,
                                veto_grid=veto_grid, pause_grid=pause_grid, weights=weights)
        pred[held] = apply_s_rule(probs[held], cv.rr[held], rule, RR_FEATURES)
        rules.append(rule)
    score = float(np.mean(selection_scores(cv.label, pred, cv.noisy_mask, weights)))
    return NestedEstimate(epoch, score, per_class_metrics(cv.label[~cv.noisy], pred[~cv.noisy]), rules)


@dataclass(frozen=True)
class Selection:
    """What the CV chooses on held-out outputs: the epoch count and the S rule at that epoch."""

    epoch: int
    rule: SRuleParams
    score: float  # the criterion's score of the choice on the outputs it was chosen on


@dataclass(frozen=True)
class NestedSelection:
    """The epoch and the S rule chosen as the CV chooses them on all folds' held-out outputs but
    one, and applied to that one (its fold models' outputs at that epoch), the folds pooled:
    what the CV's whole choice is worth on patients it was not made on.  :class:`NestedEstimate`
    keeps the CV's epoch, chosen on every fold, so it is optimistic by the epoch's choice."""

    pooled: Selection  # chosen on all folds: the CV's own choice
    fold_choices: list[Selection]  # chosen without each fold
    score: float  # the CV's measure (equal weights; mean of the clean and noisy scores)
    metrics: dict[str, dict[str, float]]  # clean held-out beats, counted as the CV's other figures
    clean: dict[str, dict[str, float]]  # clean held-out beats, EC57 counting
    noisy: dict[str, dict[str, float]] | None  # noise-stressed held-out beats, EC57 counting

    def summary(self, name: str) -> str:
        """One printed line: the nested score and clean S / V (and noisy V) figures, the epochs
        chosen without each fold and the CV's own choice on all folds."""
        s, v = self.clean["S"], self.clean["V"]
        nv = "" if self.noisy is None else (f", noisy V {100 * self.noisy['V']['se']:.1f}/"
                                            f"{100 * self.noisy['V']['ppv']:.1f}")
        return (f"  {name}: nested score {self.score:.4f}, clean S Se/+P {100 * s['se']:.1f}/"
                f"{100 * s['ppv']:.1f}, V {100 * v['se']:.1f}/{100 * v['ppv']:.1f}{nv}; epochs without "
                f"each fold {[c.epoch for c in self.fold_choices]}; on all folds: epoch {self.pooled.epoch} "
                f"(CV score {self.pooled.score:.4f}), {self.pooled.rule}")

    def as_json(self) -> dict[str, Any]:
        def figures(m: dict[str, dict[str, float]] | None) -> dict[str, Any] | None:
            return None if m is None else {c: {k: round(v, 4) for k, v in m[c].items()} for c in "NSV"}

        return {"score": round(self.score, 4),
                "epochs_without_each_fold": [c.epoch for c in self.fold_choices],
                "rules_without_each_fold": [asdict(c.rule) for c in self.fold_choices],
                "metrics": figures(self.metrics), "metrics_ec57": figures(self.clean),
                "metrics_noisy_ec57": figures(self.noisy)}


def choose_selection(cv: CVPredictions, fit: np.ndarray, weights: Weights = SELECTION_WEIGHTS,
                     window: int = EPOCH_WINDOW,
                     v_offset_grid: tuple[float, ...] = RULE_V_OFFSET) -> Selection:
    """The epoch and S rule the CV's criterion (``weights``, ``window``) picks on the outputs of
    the beats in ``fit``: at each epoch the best rule (V offsets from ``v_offset_grid``), then the
    best epoch (:func:`choose_epoch`)."""
    noisy = cv.noisy_mask
    sub_noisy = None if noisy is None else noisy[fit]
    rules, scores = [], []
    for probs in cv.per_epoch:
        rule, _ = choose_s_rule(probs[fit], cv.rr[fit], cv.label[fit], RR_FEATURES, sub_noisy,
                                weights=weights, v_offset_grid=v_offset_grid)
        pred = apply_s_rule(probs[fit], cv.rr[fit], rule, RR_FEATURES)
        rules.append(rule)
        scores.append(float(np.mean(selection_scores(cv.label[fit], pred, sub_noisy, weights))))
    epoch = choose_epoch(scores, window)
    return Selection(epoch, rules[epoch - 1], scores[epoch - 1])


def nested_selection_estimate(cv: CVPredictions, weights: Weights = SELECTION_WEIGHTS,
                              window: int = EPOCH_WINDOW,
                              v_offset_grid: tuple[float, ...] = RULE_V_OFFSET) -> NestedSelection:
    """:class:`NestedSelection` of the criterion (default: training's; ``v_offset_grid``: the V
    logit offsets the S rule's choice tries, default training's)."""
    pred = np.zeros(len(cv.label), np.int64)
    choices = []
    for f in np.unique(cv.fold):
        held = cv.fold == f
        pick = choose_selection(cv, ~held, weights, window, v_offset_grid)
        pred[held] = apply_s_rule(cv.per_epoch[pick.epoch - 1][held], cv.rr[held], pick.rule, RR_FEATURES)
        choices.append(pick)
    noisy = cv.noisy_mask

    def ec57(mask: np.ndarray) -> dict[str, dict[str, float]]:
        return confusion_metrics(ec57_counting(confusion(cv.label[mask], pred[mask])))

    return NestedSelection(
        choose_selection(cv, np.ones(len(cv.label), bool), weights, window, v_offset_grid), choices,
        float(np.mean(selection_scores(cv.label, pred, noisy))),
        per_class_metrics(cv.label[~cv.noisy], pred[~cv.noisy]), ec57(~cv.noisy),
        None if noisy is None else ec57(noisy))


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
    noisy_train: BeatSet | None = None, noisy_test: BeatSet | None = None,
) -> CVResult:
    """Train ``cfg`` once per fold on the other folds' patients; pool the held-out outputs per epoch.

    ``noisy_train`` (noisy copies of the patients, training noise) joins every fold's training
    set; ``noisy_test`` (held-out noise) is scored with the clean held-out beats."""
    beats = beats.take(beats.label >= 0)
    if noisy_train is not None:
        noisy_train = noisy_train.take(noisy_train.label >= 0)
    if noisy_test is not None:
        noisy_test = noisy_test.take(noisy_test.label >= 0)
    folds = folds or folds_for(sorted(set(beats.record.tolist())))
    is_ae = cfg.family == "autoencoder"
    pooled: list[F32] = [np.zeros(0, np.float32)] * cfg.epochs
    labels, fold_of, rrs, noisy, records = [], [], [], [], []
    start = time.perf_counter()
    for i, fold in enumerate(folds):
        held = np.isin(beats.record, fold)
        progress(f"{cfg.name} CV fold {i + 1}/{len(folds)}: held out {', '.join(fold)}")
        train, test = beats.take(~held), beats.take(held)
        if noisy_train is not None:
            train = BeatSet.concat([train, noisy_train.take(~np.isin(noisy_train.record, fold))])
        if noisy_test is not None:
            test = BeatSet.concat([test, noisy_test.take(np.isin(noisy_test.record, fold))])
        trainer = train_autoencoder if is_ae else train_ensemble
        res = trainer(train, cfg, progress, heldout=test)
        pooled = [out if not len(p) else np.concatenate([p, out]) for p, out in zip(pooled, res.heldout,
                                                                                  strict=True)]
        labels.append(test.label)
        rrs.append(test.features.rr)
        records.append(test.record)
        fold_of.append(np.full(len(test), i))
        noisy.append(np.arange(len(test)) >= int(held.sum()))
    label, fold_idx = np.concatenate(labels), np.concatenate(fold_of)
    noisy_mask = np.concatenate(noisy) if noisy_test is not None else None
    rr = np.concatenate(rrs)
    result = _summarise(pooled, label, fold_idx, folds, is_ae, rr, noisy_mask)
    result.predictions = CVPredictions(
        pooled, label, rr, np.concatenate(records), fold_idx,
        noisy_mask if noisy_mask is not None else np.zeros(len(label), bool))
    if not is_ae and len(folds) > 1:
        result.nested = nested_rule_estimate(result.predictions, result.best_epoch)
        result.nested_selection = nested_selection_estimate(result.predictions)
    result.seconds = time.perf_counter() - start
    progress(f"{cfg.name} CV: best epoch {result.best_epoch}, score {result.score:.4f}, "
             f"per epoch {[round(s, 3) for s in result.score_per_epoch]}, S rule {result.s_rule}")
    return result


def _summarise(pooled: list[F32], label: np.ndarray, fold_idx: np.ndarray, folds: list[list[str]],
               is_ae: bool, rr: F32, noisy: np.ndarray | None = None) -> CVResult:
    clean = np.ones(len(label), bool) if noisy is None else ~noisy
    if is_ae:  # an anomaly score: noise is an anomaly too, so the autoencoder is scored on clean beats
        scores = [auroc(label[clean] != 0, s[clean]) for s in pooled]
        return CVResult(folds, int(np.nanargmax(scores)) + 1, scores)
    fits = [choose_s_rule(p, rr, label, RR_FEATURES, noisy) for p in pooled]
    parts = [_scores(p, rr, label, rule, noisy) for p, (rule, _) in zip(pooled, fits, strict=True)]
    scores = [float(np.mean(part)) for part in parts]
    best = choose_epoch(scores) - 1
    rule = fits[best][0]
    probs = pooled[best]
    pred = apply_s_rule(probs, rr, rule, RR_FEATURES)
    per_fold = [per_class_metrics(label[clean & (fold_idx == i)], pred[clean & (fold_idx == i)])
                for i in range(len(folds))]
    bias = [0.0, 0.0, rule.v_offset, 0.0, 0.0]
    result = CVResult(folds, best + 1, scores, bias, fits[best][1],
                      per_class_metrics(label[clean], probs[clean].argmax(axis=1)), per_fold, s_rule=rule)
    if noisy is not None:
        result.clean_per_epoch = [part[0] for part in parts]
        result.noisy_per_epoch = [part[1] for part in parts]
        result.metrics_noisy = per_class_metrics(label[noisy], pred[noisy])
    return result


def choose_epoch(scores: list[float], window: int = EPOCH_WINDOW) -> int:
    """The epoch (from 1) with the best per-epoch score, each epoch's score averaged with its
    neighbours' within ``window`` (odd; 1: the epoch's own; at the ends, the neighbours there are).
    The first best wins.  ``window`` 0 chooses no epoch: the schedule's last, whatever the scores."""
    if window == 0:
        return len(scores)
    half = window // 2
    smooth = [float(np.mean(scores[max(0, i - half): i + half + 1])) for i in range(len(scores))]
    return int(np.argmax(smooth)) + 1


def _scores(
    probs: F32, rr: F32, label: np.ndarray, rule: SRuleParams, noisy: np.ndarray | None
) -> list[float]:
    """Selection score of the clean held-out beats, then (with ``noisy``) of the noisy ones."""
    return selection_scores(label, apply_s_rule(probs, rr, rule, RR_FEATURES), noisy)


def selection_scores(label: np.ndarray, pred: np.ndarray, noisy: np.ndarray | None,
                     weights: Weights = SELECTION_WEIGHTS) -> list[float]:
    """Selection score of the clean beats, then (with a ``noisy`` mask) of the noisy ones; the CV
    scores their mean."""
    groups = [np.ones(len(label), bool)] if noisy is None else [~noisy, noisy]
    return [selection_score_of(label[g], pred[g], weights) for g in groups]
