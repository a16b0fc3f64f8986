"""The training loop: one loop for classifiers and the autoencoder, fixed epoch count, held-out outputs.

No early stopping inside a run: the epoch count, the S rule and the V logit offset are
chosen by leave-patients-out cross-validation over DS1 (:mod:`detector.training.cv`),
which reads the held-out outputs this loop records after every epoch.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from detector.core import beats as feat
from detector.core.beats import RR_FEATURES
from detector.evaluation import class_figures, ec57_counting
from detector.training.data import BeatSet
from detector.training.models import N_CLASSES, Ensemble, build, n_params

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    family: str = "cnn"
    epochs: int = 10  # cosine schedule length; CV picks the epoch to stop at (<= epochs)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # inverse-frequency ** power (DS1 CV: cnn 0.706 vs 0.692 with 0.5, an early single-model
    # pipeline; with the ensembles, S rule and nested selection 0.5 won on DS1 and the default cnn
    # is trained so since session 19: `ecgmon train --class-weight-power 0.5`)
    class_weight_power: float = 1.0
    max_class_weight: float = 30.0
    # F (fusion) beats of DS1 come almost all from one patient (208): a high weight teaches
    # "looks like patient 208" and turns other patients' N beats into F.  Keep F and Q at 1.
    rare_class_weight: float = 1.0
    # "weights": class-weighted loss; "resample": unweighted loss on an epoch drawn with the
    # same expected class mix (resampling as in the source projects).  DS1 CV, cnn: 0.711 vs 0.706
    balance: str = "resample"
    # >0: evaluate and keep an exponential moving average of the weights (per step).  Smoother
    # per-epoch CV curves but no better score (cnn 0.702 with 0.998 vs 0.706 without): off
    ema: float = 0.0
    noise_std: float = 0.05
    max_shift: int = 2
    seed: int = 0
    threads: int = 1
    max_train_beats: int = 0  # 0 = all; >0 subsamples beats per epoch (tiny runs, tests)
    # >1: that many members trained with seeds seed, seed + 1, ..., their class probabilities
    # averaged, in the CV as in the exported model (less seed-to-seed variance on new patients)
    ensemble: int = 1
    # >0: for that share of the training beats, the timing features are replaced by those of a
    # beat on time at the local rate (:func:`_drop_timing`), so a class must also be learnt from
    # the beat's shape (session 15 study; 0.0: off, the random streams are then unchanged)
    rr_dropout: float = 0.0
    # >0: every training beat and its template are stretched together in time about the R-peak
    # by a factor drawn uniformly from [1 - P, 1 + P], then normalised again as the features
    # are (:func:`_time_warp`): other patients' QRS and QT widths (session 16 study; 0.0: off,
    # the random streams are then unchanged)
    time_warp: float = 0.0
    # the cnn's channels (0: its default, models.CNN_WIDTH); thinner networks cost less, so an
    # ensemble can have more of them (session 16 study)
    width: int = 0
    # <1: every member trains on its own random share of the training patients (at least this
    # share, drawn from a stream of its own), so the members differ by patients as well as by
    # seed and their mean leans less on any one patient (session 17 study; 1.0: off, all patients)
    patient_subsample: float = 1.0
    # True: the CV's held-out outputs come from each member with its batch-norm statistics
    # re-estimated on each held-out recording's own beats (AdaBN; offline, over the whole
    # record: an upper bound on what a causal per-patient adaptation could give).  A CV-only
    # study (session 17): exported models do not adapt, so `ecgmon train` stops after the CV
    adapt_bn: bool = False
    # >0: a patient adversary (domain-adversarial training, Ganin et al. 2016): a small head
    # guesses the training patient from the morphology embedding and the beat's class, and its
    # gradient reaches the network reversed, scaled up to this weight over the schedule
    # (:class:`PatientAdversary`), so the embedding keeps less of what tells the training patients
    # apart beyond their beats' class (session 18 study; 0.0: off, the random streams unchanged)
    patient_adversary: float = 0.0
    # >0: the loss's targets are smoothed (cross-entropy against 1 - E on the beat's class and E
    # spread over all five), so the networks are less sure of any training patient's beats
    # (session 19 study; 0.0: off, the plain cross-entropy)
    label_smoothing: float = 0.0
    # >0: mixup (Zhang et al. 2018): each batch is replaced by its blend with a shuffled copy of
    # itself, beats, templates and RR features alike, with a weight drawn from Beta(A, A), and the
    # loss blends the two beats' classes the same way (session 19 study; 0.0: off, the random
    # streams are then unchanged: the blends come from a stream of their own)
    mixup: float = 0.0
    # >0: the ensemble also holds that many members of ``blend_family`` (seeds seed, seed + 1, ...,
    # trained with the same options), and all members' class probabilities are averaged alike:
    # two architectures err on other beats than more seeds of one (session 22 study)
    blend_members: int = 0
    blend_family: str = ""
    # >0: the focal loss of Lin et al. 2017 with this gamma: each beat's cross-entropy scaled by
    # (1 - p)**gamma, p the network's probability of the beat's class, so the many beats it already
    # gets right (most N beats, the clear V beats) weigh less than the ambiguous ones (S against N,
    # aberrated beats).  Used on top of the class-weighted draw (session 24 study; 0.0: off, the
    # plain cross-entropy)
    focal_gamma: float = 0.0
    # the draw weight of the noise-stressed copies' beats against the clean beats' (session 25
    # study; 1.0: alike, as shipped): below 1 the epochs hold fewer noisy and more clean beats
    noisy_weight: float = 1.0

    @property
    def name(self) -> str:
        """The model's name: the family, or ``family+blend_family`` for a blend."""
        return f"{self.family}+{self.blend_family}" if self.blend_members else self.family


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    epochs_run: int
    train_seconds: float
    n_params: int
    heldout: list[F32]  # per epoch: outputs on the held-out beats (probabilities or anomaly scores)


def set_seeds(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def class_weights(y: I64, power: float, cap: float, rare: float) -> torch.Tensor:
    """Inverse-frequency weights ** power for N, S, V (N weighs 1, capped); ``rare`` for F and Q."""
    counts = np.bincount(y, minlength=N_CLASSES).astype(np.float64)
    w = np.minimum((counts.max() / np.maximum(counts, 1.0)) ** power, cap)
    w[3:] = rare
    return torch.tensor(w, dtype=torch.float32)


def confusion(y_true: I64, y_pred: I64) -> I64:
    """5 x 5 counts, reference rows, predicted columns (class indices 0-4)."""
    cm: I64 = np.bincount(y_true * N_CLASSES + y_pred, minlength=N_CLASSES * N_CLASSES).reshape(
        N_CLASSES, N_CLASSES)
    return cm


def per_class_metrics(y_true: I64, y_pred: I64) -> dict[str, dict[str, float]]:
    """Se, +P and F1 per class index (no missed or extra beats: those are the evaluator's job)."""
    return confusion_metrics(confusion(y_true, y_pred))


def confusion_metrics(cm: I64) -> dict[str, dict[str, float]]:
    """Se, +P and F1 per class of a 5 x 5 confusion (:func:`confusion`)."""
    return class_figures(cm, "NSVFQ")


Weights = tuple[float, float, float]
# the weights of the N, S and V F1 in the selection score; `python -m
# detector.training.selection_study` compares others on saved DS1 CV outputs
SELECTION_WEIGHTS: Weights = (1.0, 1.0, 1.0)


def selection_score(m: dict[str, dict[str, float]], weights: Weights = SELECTION_WEIGHTS) -> float:
    """Selection criterion: the weighted mean F1 of N, S and V (F and Q: too few patients in DS1
    to select on); equal weights unless a study says otherwise."""
    return (weights[0] * m["N"]["f1"] + weights[1] * m["S"]["f1"] + weights[2] * m["V"]["f1"]) / sum(weights)


def selection_score_of(y_true: I64, y_pred: I64, weights: Weights = SELECTION_WEIGHTS) -> float:
    """:func:`selection_score` of predictions, false positives counted as EC57 does (the
    evaluation the models are judged by, ``ecgmon eval beats``' ``ec57`` figures)."""
    return selection_score(confusion_metrics(ec57_counting(confusion(y_true, y_pred))), weights)


@torch.no_grad()
def predict(model: nn.Module, beats: F32, rr: F32, *, softmax: bool = True) -> F32:
    """Class probabilities (or, ``softmax=False``, the raw output, e.g. anomaly scores)."""
    model.eval()
    out = []
    for i in range(0, len(beats), 1024):
        y = model(torch.from_numpy(beats[i : i + 1024]), torch.from_numpy(rr[i : i + 1024]))
        out.append((torch.softmax(y, dim=1) if softmax else y).numpy())
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), np.float32)


def recordings(record: npt.NDArray[np.str_]) -> list[slice]:
    """The runs of consecutive beats of one record: a CV fold's held-out set is its patients'
    clean beats record by record, then their noisy copies record by record, so each run is one
    recording (a patient clean, or the same patient in noise)."""
    starts = np.flatnonzero(np.r_[True, record[1:] != record[:-1]])
    ends = np.r_[starts[1:], len(record)]
    return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


@torch.no_grad()
def adapt_batch_norm(model: nn.Module, beats: F32, rr: F32) -> nn.Module:
    """A copy of ``model`` whose batch-norm statistics are those of ``beats`` (one recording's):
    AdaBN, the network's weights unchanged."""
    adapted = copy.deepcopy(model).eval()
    for m in adapted.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = 1.0  # the running statistics become this one batch's
            m.train()
    adapted(torch.from_numpy(beats), torch.from_numpy(rr))
    return adapted.eval()


def predict_adapted(model: nn.Module, beats: BeatSet) -> F32:
    """:func:`predict`, each recording (:func:`recordings`) by ``model`` adapted to its beats."""
    out = np.zeros((len(beats), N_CLASSES), np.float32)
    for part in recordings(beats.record):
        b, r = beats.features.beats[part], beats.features.rr[part]
        out[part] = predict(adapt_batch_norm(model, b, r), b, r)
    return out


def _augment(beats: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    beats = _time_warp(beats, cfg, gen)
    if cfg.max_shift:
        shift = int(torch.randint(-cfg.max_shift, cfg.max_shift + 1, (1,), generator=gen))
        beats = torch.roll(beats, shift, dims=2)
    if cfg.noise_std:
        beats = beats + cfg.noise_std * torch.randn(beats.shape, generator=gen)
    return beats


def _time_warp(beats: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """``beats`` (batch, channels, WINDOW_LEN) stretched in time about the R-peak sample, one
    factor per beat for all its channels (the beat and the patient's template alike), linearly
    interpolated (edge values beyond the window), then centred on the median and divided by
    the standard deviation per channel as :func:`detector.core.beats.normalise_window` does."""
    if not cfg.time_warp:
        return beats
    n, _, length = beats.shape
    factor = 1.0 + cfg.time_warp * (2.0 * torch.rand(n, generator=gen) - 1.0)
    i = torch.arange(length, dtype=beats.dtype)
    src = (feat.WINDOW_PRE + (i[None, :] - feat.WINDOW_PRE) / factor[:, None]).clamp(0, length - 1)
    lo = src.floor().long().clamp(max=length - 2)
    frac = (src - lo)[:, None, :]
    lo = lo[:, None, :].expand_as(beats)
    out = beats.gather(2, lo) * (1.0 - frac) + beats.gather(2, lo + 1) * frac
    centred = out - out.median(dim=2, keepdim=True).values
    return centred / (centred.std(dim=2, unbiased=False, keepdim=True) + 1e-3)


# The timing features of a beat that came on time at the local rate: the previous and the next
# RR equal to the local mean.  The rhythm context (local rate, irregularity) and the shape
# features are left as they are.
_ON_TIME = {"prev_over_long": "local_over_long", "next_over_long": "local_over_long", "prev_s": "local_s"}
_ON_TIME_ONE = ("prev_over_local", "next_over_prev")


def _drop_timing(rr: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """``rr`` with the timing features of a random ``cfg.rr_dropout`` share of the beats replaced
    by those of a beat on time (training only; the S rule still reads the true ones)."""
    if not cfg.rr_dropout:
        return rr
    drop = torch.rand(len(rr), generator=gen) < cfg.rr_dropout
    out = rr.clone()
    for name, source in _ON_TIME.items():
        out[drop, RR_FEATURES.index(name)] = rr[drop, RR_FEATURES.index(source)]
    for name in _ON_TIME_ONE:
        out[drop, RR_FEATURES.index(name)] = 1.0
    return out


# the stream the mixup blends are drawn from (with the seed): apart from the augmentation's
MIXUP_STREAM = 19


def mixup(
    beats: torch.Tensor, rr: torch.Tensor, alpha: float, rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The batch blended with a shuffled copy of itself (mixup): ``lam * x + (1 - lam) * x[perm]``
    for the beats and the RR features alike, ``lam`` from Beta(``alpha``, ``alpha``); returns the
    blended beats and RR features, ``perm`` (the partner of each beat) and ``lam``."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(beats)))
    return lam * beats + (1.0 - lam) * beats[perm], lam * rr + (1.0 - lam) * rr[perm], perm, lam


class _Reverse(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-scale`` backward (gradient reversal)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def adversary_scale(progress: float, weight: float) -> float:
    """The reversed gradient's scale at ``progress`` (0-1) through the schedule: Ganin et al.'s
    ramp 2 / (1 + exp(-10 p)) - 1 times ``weight``, so the early, noisy adversary barely pushes."""
    return weight * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


class PatientAdversary(nn.Module):
    """Guesses a training beat's patient from the morphology embedding the classifier's head
    receives (captured by a hook on ``model.head``) and the beat's class, one-hot: the patient
    beyond the class, so the network is not pushed to forget the class.  :meth:`loss` is the
    adversary's cross-entropy; through :class:`_Reverse` the network gets its gradient reversed."""

    def __init__(self, model: nn.Module, n_embed: int, n_patients: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_embed + N_CLASSES, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_patients))
        self.embed: torch.Tensor | None = None
        head: nn.Module = model.get_submodule("head")
        self._hook = head.register_forward_pre_hook(self._capture)

    def _capture(self, _: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.embed = args[0]

    def loss(self, label: torch.Tensor, patient: torch.Tensor, scale: float) -> torch.Tensor:
        assert self.embed is not None, "the classifier has not run"
        onehot = nn.functional.one_hot(label, N_CLASSES).to(self.embed.dtype)
        reversed_embed: torch.Tensor = _Reverse.apply(self.embed, scale)  # type: ignore[no-untyped-call]
        logits = self.net(torch.cat([reversed_embed, onehot], dim=1))
        return nn.functional.cross_entropy(logits, patient)

    def detach(self) -> None:
        """Remove the hook: the trained classifier is exported without its adversary."""
        self._hook.remove()
        self.embed = None


def _embed_size(model: nn.Module, beats: torch.Tensor, rr: torch.Tensor) -> int:
    """The width of the embedding ``model.head`` receives (one forward pass in eval mode)."""
    seen: list[int] = []
    head = model.get_submodule("head")
    hook = head.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1]))
    model.eval()
    with torch.no_grad():
        model(beats[:2], rr[:2])
    hook.remove()
    return seen[0]


def _epoch_indices(y: I64, cfg: TrainConfig, rng: np.random.Generator, draw_p: F32 | None) -> I64:
    n = len(y)
    size = min(n, cfg.max_train_beats) if cfg.max_train_beats else n
    if draw_p is not None:  # resampling: draw with replacement, class mix set by draw_p
        return rng.choice(n, size, replace=True, p=draw_p)
    idx = np.arange(n)
    if size < n:
        idx = rng.choice(idx, size, replace=False)
    return rng.permutation(idx)


def _fit(
    model: nn.Module, train: BeatSet, cfg: TrainConfig, epochs: int, batch_loss: Callable[..., torch.Tensor],
    after_epoch: Callable[[int, float, nn.Module], None], draw_p: F32 | None = None,
    extra: nn.Module | None = None,
) -> None:
    """The loop shared by every family: AdamW, cosine schedule over ``cfg.epochs``, ``epochs`` run.

    With ``cfg.ema`` the weights are replaced by their moving average at the end (and
    ``after_epoch`` sees the average).  ``extra``'s parameters (the patient adversary's) are
    optimised with the model's.
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    params = list(model.parameters()) + (list(extra.parameters()) if extra is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    avg = None
    if cfg.ema:
        ema_fn = get_ema_multi_avg_fn(cfg.ema)  # type: ignore[no-untyped-call]
        avg = AveragedModel(model, multi_avg_fn=ema_fn, use_buffers=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    rng = np.random.default_rng(cfg.seed)
    x_b, x_r = torch.from_numpy(train.features.beats), torch.from_numpy(train.features.rr)
    y = torch.from_numpy(train.label)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        idx = torch.from_numpy(_epoch_indices(train.label, cfg, rng, draw_p))
        for i in range(0, len(idx), cfg.batch_size):
            b = idx[i : i + cfg.batch_size]
            if len(b) < 2:
                continue
            loss = batch_loss(x_b[b], x_r[b], y[b], b)
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if avg is not None:
                avg.update_parameters(model)
            total += float(loss.detach()) * len(b)
        sched.step()
        after_epoch(epoch + 1, total / max(len(idx), 1), model if avg is None else avg.module)
    if avg is not None:
        model.load_state_dict(avg.module.state_dict())


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al., "Focal loss for dense object detection", ICCV 2017):
    ``-(1 - p_t) ** gamma * log p_t``, p_t the probability of the target class, averaged over the
    batch (weighted by ``weight[target]`` when class weights are given, as
    :class:`torch.nn.CrossEntropyLoss` averages).  ``gamma`` 0 is the cross-entropy."""

    def __init__(self, gamma: float, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.weight = weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
        loss = -((1.0 - logp.exp()) ** self.gamma) * logp
        if self.weight is None:
            return loss.mean()
        w = self.weight[target]
        return (loss * w).sum() / w.sum()


def train_classifier(
    train: BeatSet, cfg: TrainConfig, progress: Progress, *, epochs: int | None = None,
    heldout: BeatSet | None = None,
) -> TrainResult:
    """Train one family for ``epochs`` (default ``cfg.epochs``); record held-out probabilities per epoch."""
    set_seeds(cfg.seed, cfg.threads)
    train = train.take(train.label >= 0)
    n_leads, window = train.features.beats.shape[1:]
    model = build(cfg.family, n_leads, train.features.rr.shape[1], window, cfg.width)
    weights = class_weights(train.label, cfg.class_weight_power, cfg.max_class_weight, cfg.rare_class_weight)
    draw_p = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    if cfg.focal_gamma and cfg.label_smoothing:
        raise ValueError("the focal loss and label smoothing do not go together: choose one")
    if cfg.noisy_weight != 1.0 and cfg.balance != "resample":
        raise ValueError("the noisy beats' draw weight needs balance='resample' (a weighted draw)")
    if cfg.balance == "resample":
        p = weights.numpy().astype(np.float64)[train.label]
        if cfg.noisy_weight != 1.0:
            p = p * np.where(train.noisy_mask(), cfg.noisy_weight, 1.0)
        draw_p = (p / p.sum()).astype(np.float32)
        loss_fn = (FocalLoss(cfg.focal_gamma) if cfg.focal_gamma
                   else nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing))
    elif cfg.balance == "weights":
        loss_fn = (FocalLoss(cfg.focal_gamma, weights) if cfg.focal_gamma
                   else nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing))
    else:
        raise ValueError(f"balance={cfg.balance!r}: choose weights or resample")
    gen = torch.Generator().manual_seed(cfg.seed)
    n_epochs = cfg.epochs if epochs is None else epochs
    result = TrainResult(model, cfg, n_epochs, 0.0, n_params(model), [])
    adversary, patient, adv = _patient_adversary(model, train, cfg)
    if adversary is not None and cfg.mixup:
        raise ValueError("mixup and the patient adversary do not go together: a blend has no one patient")
    blends = np.random.default_rng([MIXUP_STREAM, cfg.seed])
    start = time.perf_counter()

    def batch_loss(xb: torch.Tensor, xr: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        xb, xr = _augment(xb, cfg, gen), _drop_timing(xr, cfg, gen)
        if cfg.mixup:
            xb, xr, partner, lam = mixup(xb, xr, cfg.mixup, blends)
            logits = model(xb, xr)
            blended: torch.Tensor = lam * loss_fn(logits, yb) + (1.0 - lam) * loss_fn(logits, yb[partner])
            return blended
        out: torch.Tensor = loss_fn(model(xb, xr), yb)
        if adversary is not None:
            # progress through the whole schedule (cfg.epochs), so a final model trained for the
            # CV's chosen epoch count follows the same ramp as the CV's networks did
            scale = adversary_scale(adv["step"] / adv["steps"], cfg.patient_adversary)
            patient_loss = adversary.loss(yb, patient[idx], scale)
            adv["step"] += 1
            adv["loss"] += float(patient_loss.detach()) * len(yb)
            adv["beats"] += len(yb)
            out = out + patient_loss
        return out

    def after_epoch(epoch: int, loss: float, current: nn.Module) -> None:
        patient_loss = adv["loss"] / max(adv["beats"], 1.0) if adversary is not None else 0.0
        msg = f"{cfg.family} epoch {epoch}/{n_epochs} loss {loss - patient_loss:.4f}"  # the classifier's
        if adversary is not None:  # chance: log(number of patients)
            msg += f" patient adversary loss {patient_loss:.3f} (chance {adv['chance']:.3f})"
            adv["loss"] = adv["beats"] = 0.0
        if heldout is not None:
            probs = (predict_adapted(current, heldout) if cfg.adapt_bn
                     else predict(current, heldout.features.beats, heldout.features.rr))
            result.heldout.append(probs)
            m = per_class_metrics(heldout.label, probs.argmax(axis=1))
            msg += f" held-out N/S/V F1 {m['N']['f1']:.3f}/{m['S']['f1']:.3f}/{m['V']['f1']:.3f}"
        progress(f"{msg} ({time.perf_counter() - start:.0f} s)")

    _fit(model, train, cfg, n_epochs, batch_loss, after_epoch, draw_p, adversary)
    if adversary is not None:
        adversary.detach()
    model.eval()
    result.train_seconds = time.perf_counter() - start
    return result


def _patient_adversary(
    model: nn.Module, train: BeatSet, cfg: TrainConfig,
) -> tuple[PatientAdversary | None, torch.Tensor, dict[str, float]]:
    """With ``cfg.patient_adversary``: the adversary, each training beat's patient index (a
    noisy copy is its patient's) and the bookkeeping of its ramp and loss; else ``None``."""
    if not cfg.patient_adversary:
        return None, torch.zeros(0, dtype=torch.long), {}
    patients, index = np.unique(train.record, return_inverse=True)
    beats, rr = torch.from_numpy(train.features.beats), torch.from_numpy(train.features.rr)
    adversary = PatientAdversary(model, _embed_size(model, beats, rr), len(patients))
    per_epoch = min(len(train), cfg.max_train_beats) if cfg.max_train_beats else len(train)
    steps = cfg.epochs * math.ceil(per_epoch / cfg.batch_size)
    book = {"step": 0.0, "steps": float(steps), "loss": 0.0, "beats": 0.0, "chance": math.log(len(patients))}
    return adversary, torch.from_numpy(index.astype(np.int64)), book


# the stream the patients of a member are drawn from (with its seed): apart from the training's
PATIENT_STREAM = 17


def member_patients(train: BeatSet, cfg: TrainConfig, progress: Progress | None = None) -> BeatSet:
    """The beats of the patients member ``cfg.seed`` trains on: all of them, or with
    ``cfg.patient_subsample`` < 1 that share of the patients (rounded up), drawn without
    replacement from a stream of the seed's own, so the training's random streams are unchanged."""
    if cfg.patient_subsample >= 1.0:
        return train
    patients = np.unique(train.record)
    n = max(1, math.ceil(cfg.patient_subsample * len(patients)))
    rng = np.random.default_rng([PATIENT_STREAM, cfg.seed])
    keep = np.sort(rng.choice(patients, n, replace=False))
    if progress is not None:
        progress(f"{cfg.family} seed {cfg.seed}: {n} of {len(patients)} patients, without "
                 f"{', '.join(sorted(set(patients.tolist()) - set(keep.tolist())))}")
    return train.take(np.isin(train.record, keep))


def train_ensemble(
    train: BeatSet, cfg: TrainConfig, progress: Progress, *, epochs: int | None = None,
    heldout: BeatSet | None = None,
) -> TrainResult:
    """:func:`train_classifier` for ``cfg.ensemble`` seeds (``cfg.seed`` + 0, 1, ...), then for
    ``cfg.blend_members`` seeds of ``cfg.blend_family`` when blended: one model
    (:class:`~detector.training.models.Ensemble` of all the members) whose held-out probabilities
    per epoch are the members' mean."""
    k = max(1, cfg.ensemble)
    if k == 1 and not cfg.blend_members:
        return train_classifier(member_patients(train, cfg, progress), cfg, progress, epochs=epochs,
                                heldout=heldout)
    plain = replace(cfg, ensemble=1, blend_members=0, blend_family="")
    configs = [replace(plain, seed=cfg.seed + i) for i in range(k)]
    configs += [replace(plain, family=cfg.blend_family, width=0, seed=cfg.seed + i)
                for i in range(cfg.blend_members)]
    members = []
    for i, member in enumerate(configs):
        progress(f"{cfg.name} ensemble member {i + 1}/{len(configs)} ({member.family}, seed {member.seed})")
        members.append(train_classifier(member_patients(train, member, progress), member, progress,
                                        epochs=epochs, heldout=heldout))
    model = Ensemble([m.model for m in members]).eval()
    mean_heldout = [np.mean(np.stack(per_epoch), axis=0).astype(np.float32)
                    for per_epoch in zip(*(m.heldout for m in members), strict=True)]
    return TrainResult(model, cfg, members[0].epochs_run, sum(m.train_seconds for m in members),
                       n_params(model), mean_heldout)


def train_autoencoder(
    train: BeatSet, cfg: TrainConfig, progress: Progress, *, epochs: int | None = None,
    heldout: BeatSet | None = None,
) -> TrainResult:
    """Autoencoder on the normal (N) beats of ``train``; held-out anomaly scores recorded per epoch."""
    set_seeds(cfg.seed, cfg.threads)
    train = train.take(train.label == 0)
    n_leads, window = train.features.beats.shape[1:]
    model = build("autoencoder", n_leads, train.features.rr.shape[1], window)
    n_epochs = cfg.epochs if epochs is None else epochs
    result = TrainResult(model, cfg, n_epochs, 0.0, n_params(model), [])
    start = time.perf_counter()

    def batch_loss(xb: torch.Tensor, xr: torch.Tensor, _: torch.Tensor, __: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model(xb, xr).mean()
        return out

    def after_epoch(epoch: int, loss: float, current: nn.Module) -> None:
        msg = f"autoencoder epoch {epoch}/{n_epochs} loss {loss:.4f}"
        if heldout is not None:
            scores = predict(current, heldout.features.beats, heldout.features.rr, softmax=False)
            result.heldout.append(scores)
            msg += f" held-out AUROC {auroc(heldout.label != 0, scores):.3f}"
        progress(msg)

    _fit(model, train, cfg, n_epochs, batch_loss, after_epoch)
    model.eval()
    result.train_seconds = time.perf_counter() - start
    return result


# S versus N: a beat the network calls N or S is S when it is premature for this patient and
# the rhythm before it is regular.  Learnt S decisions did not carry over to unseen patients
# (DS1 CV: S Se 23-42 % across seeds, worse with more inputs); these two thresholds, chosen
# by DS1 CV, do (about 68/73 % Se/+P at the best mean F1, stable across seeds).
# Assisted zone (sessions 11-12; left the training grid in session 13): a beat only mildly
# premature (below a second, looser threshold) is S when the network's own S probability is most
# of its N-or-S probability.  It raised the CV score chosen and scored on the same outputs, but
# chosen on three CV folds it lowered the fourth's (nested estimate without -> with it, rule_study: 5-cnn
# default 0.8275 -> 0.8185, a 14-epoch run 0.8396 -> 0.8235), so training no longer tries it.
PREMATURITY_FEATURE = "prev_over_long"
IRREGULARITY_FEATURE = "rr_irregularity_median"
RULE_PREMATURITY = tuple(round(0.76 + 0.01 * i, 2) for i in range(17))  # 0.76 ... 0.92
RULE_IRREGULARITY = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
RULE_V_OFFSET = (-1.0, -0.5, 0.0, 0.5, 1.0)
# The assisted zones and network vetoes training tries, and those `python -m
# detector.training.rule_study` compares with the training grid on saved DS1 CV outputs.
ASSIST_OFF = (0.0, 1.0)
RULE_ASSIST = (ASSIST_OFF,)
ASSIST_STUDY = (ASSIST_OFF,) + tuple(
    (a, t) for a in (0.83, 0.85, 0.88, 0.92, 0.96) for t in (0.3, 0.5, 0.7, 0.9))
# network veto: a premature beat the network is sure is N stays N
VETO_OFF = 0.0
RULE_VETO = (VETO_OFF,)
VETO_STUDY = (VETO_OFF, 0.01, 0.02, 0.05, 0.1, 0.2)
# Pause zone (session 14): a beat only mildly premature (below a second, looser threshold) is S
# when the RR after it is longer than the RR before it by a factor (the pause after an atrial
# premature beat, while the sinus node resets) and the rhythm before it is regular.  Uses only
# the RR intervals, so it reads no network output; the next RR is known when the beat is
# classified.  Pre-registered study (nested over the CV folds, runs R and B of BENCHMARKS.md):
# 0.8360 -> 0.8514 and 0.8364 -> 0.8518, clean S Se 63.5 -> 73.7 % at +P 72.1 -> 71.1 %.  On DS2
# (scored once afterwards) it did not carry over: SVEB 57.2 / 48.7 -> 58.0 / 45.8 % for the default.
PAUSE_FEATURE = "next_over_prev"
PAUSE_OFF = (0.0, 1.0)
RULE_PAUSE = (PAUSE_OFF,) + tuple((a, r) for a in (0.83, 0.85, 0.88, 0.92) for r in (1.1, 1.2, 1.3, 1.5))


@dataclass(frozen=True)
class SRuleParams:
    prematurity_max: float  # previous RR over the 5-minute mean RR below this ...
    irregularity_max: float  # ... and the robust irregularity of the 30 RR before it below this
    v_offset: float  # logit offset of V (prior shift, as choose_bias)
    # assisted zone: previous RR over the 5-minute mean below this (and the rhythm regular) with
    # the network's S share of N-or-S above ``assist_s_share_min``; 0.0 / 1.0: off
    assist_prematurity_max: float = ASSIST_OFF[0]
    assist_s_share_min: float = ASSIST_OFF[1]
    # network veto: a premature beat stays N when the network's S share of N-or-S is below this
    # (the network is sure of N: its P wave and shape are this patient's usual ones); 0.0: off
    veto_s_share_max: float = VETO_OFF
    # pause zone: previous RR over the 5-minute mean below this (and the rhythm regular) with the
    # next RR over the previous one at least ``pause_ratio_min``; 0.0 / 1.0: off
    pause_prematurity_max: float = PAUSE_OFF[0]
    pause_ratio_min: float = PAUSE_OFF[1]

    def as_json(self) -> dict[str, float | str]:
        return {**asdict(self), "prematurity_feature": PREMATURITY_FEATURE,
                "irregularity_feature": IRREGULARITY_FEATURE, "pause_feature": PAUSE_FEATURE}


class SRule(nn.Module):
    """A 5-class classifier whose N and S outputs are pooled, then split by :class:`SRuleParams`.

    Returns log-probabilities (so a softmax on top gives them back): for a beat called
    N-or-S, the pooled probability goes to S when the rule fires, else to N."""

    def __init__(self, model: nn.Module, params: SRuleParams, rr_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.prem_col = rr_names.index(PREMATURITY_FEATURE)
        self.irr_col = rr_names.index(IRREGULARITY_FEATURE)
        self.pause_col = rr_names.index(PAUSE_FEATURE)
        self.pause_max, self.pause_min = params.pause_prematurity_max, params.pause_ratio_min
        self.prem_max, self.irr_max = params.prematurity_max, params.irregularity_max
        self.assist_max, self.share_min = params.assist_prematurity_max, params.assist_s_share_min
        self.veto = params.veto_s_share_max
        bias = torch.zeros(N_CLASSES)
        bias[2] = params.v_offset
        self.register_buffer("bias", bias)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        logits = self.model(beat, rr)
        share = _s_share(torch.softmax(logits, dim=1))  # before the V offset, as apply_s_rule
        p = torch.softmax(logits + self.bias, dim=1)
        ns = p[:, 0] + p[:, 1]
        others = p[:, 2:]
        is_ns = ns >= others.max(dim=1).values
        prem = rr[:, self.prem_col]
        premature = ((prem < self.prem_max) & (share >= self.veto)) | (
            (prem < self.assist_max) & (share > self.share_min)) | (
            (prem < self.pause_max) & (rr[:, self.pause_col] >= self.pause_min))
        fires = is_ns & premature & (rr[:, self.irr_col] < self.irr_max)
        zero = torch.zeros_like(ns)
        q = torch.cat([torch.where(fires, zero, ns)[:, None], torch.where(fires, ns, zero)[:, None],
                       others], dim=1)
        return torch.log(q + 1e-12)


def _s_share(p: torch.Tensor) -> torch.Tensor:
    return p[:, 1] / (p[:, 0] + p[:, 1] + 1e-12)


def apply_s_rule(probs: F32, rr: F32, params: SRuleParams, rr_names: tuple[str, ...]) -> I64:
    """The classes :class:`SRule` gives, from a classifier's probabilities (numpy)."""
    inputs = _RuleInputs.of(probs, rr, rr_names)
    base = inputs.base(params.v_offset)
    return _rule_classes(base, inputs, params)


@dataclass(frozen=True)
class _RuleInputs:
    logp: F32
    pooled: F32
    share: F32
    prem: F32
    irr: F32
    pause: F32

    @staticmethod
    def of(probs: F32, rr: F32, rr_names: tuple[str, ...]) -> _RuleInputs:
        ns = probs[:, 0] + probs[:, 1]
        return _RuleInputs(np.log(probs + 1e-9), np.log(ns + 1e-9), probs[:, 1] / (ns + 1e-12),
                           rr[:, rr_names.index(PREMATURITY_FEATURE)],
                           rr[:, rr_names.index(IRREGULARITY_FEATURE)],
                           rr[:, rr_names.index(PAUSE_FEATURE)])

    def base(self, v_offset: float) -> I64:
        """Classes before the S split: N-or-S pooled into N, V shifted by ``v_offset``."""
        scores = self.logp.copy()
        scores[:, 0], scores[:, 1] = self.pooled, -np.inf
        scores[:, 2] += v_offset
        out: I64 = scores.argmax(axis=1)
        return out


def _fires(inputs: _RuleInputs, params: SRuleParams) -> npt.NDArray[np.bool_]:
    premature = ((inputs.prem < params.prematurity_max) & (inputs.share >= params.veto_s_share_max)) | (
        (inputs.prem < params.assist_prematurity_max) & (inputs.share > params.assist_s_share_min)) | (
        (inputs.prem < params.pause_prematurity_max) & (inputs.pause >= params.pause_ratio_min))
    out: npt.NDArray[np.bool_] = premature & (inputs.irr < params.irregularity_max)
    return out


def _rule_classes(base: I64, inputs: _RuleInputs, params: SRuleParams) -> I64:
    cls = base.copy()
    cls[(base == 0) & _fires(inputs, params)] = 1
    return cls


def _grid_scores(fixed: I64, fires: npt.NDArray[np.bool_], label: I64,
                 weights: Weights = SELECTION_WEIGHTS) -> npt.NDArray[np.float64]:
    """:func:`selection_score_of` for many rule outcomes at once (the same floats).

    ``fires`` (points, beats): which of the movable beats (reference classes ``label``, called
    N unless the rule fires, then S) each grid point calls S; ``fixed``: the confusion of the
    other beats."""
    to_s = (fires.astype(np.float32) @ np.eye(N_CLASSES, dtype=np.float32)[label]).astype(np.int64)
    cm = np.repeat(fixed[None], len(fires), axis=0)
    cm[:, :, 1] += to_s
    cm[:, :, 0] += np.bincount(label, minlength=N_CLASSES) - to_s
    cm = ec57_counting(cm)
    f1 = []
    for c in range(3):  # N, S, V as selection_score; class_figures' arithmetic, vectorised
        tp = cm[:, c, c].astype(np.float64)
        se = tp / np.maximum(cm[:, c, :].sum(axis=1), 1).astype(np.float64)
        ppv = tp / np.maximum(cm[:, :, c].sum(axis=1), 1).astype(np.float64)
        both = se + ppv
        f1.append(np.where(both > 0, 2 * se * ppv / np.where(both > 0, both, 1.0), 0.0))
    out: npt.NDArray[np.float64] = (
        weights[0] * f1[0] + weights[1] * f1[1] + weights[2] * f1[2]) / sum(weights)
    return out


def choose_s_rule(
    probs: F32, rr: F32, label: I64, rr_names: tuple[str, ...],
    noisy: npt.NDArray[np.bool_] | None = None, *,
    assist_grid: tuple[tuple[float, float], ...] = RULE_ASSIST, veto_grid: tuple[float, ...] = RULE_VETO,
    pause_grid: tuple[tuple[float, float], ...] = RULE_PAUSE, weights: Weights = SELECTION_WEIGHTS,
    v_offset_grid: tuple[float, ...] = RULE_V_OFFSET,
) -> tuple[SRuleParams, dict[str, dict[str, float]]]:
    """The :class:`SRuleParams` on the grid that maximise the selection score on ``probs``
    (:func:`selection_score_of` with ``weights``); ``assist_grid``, ``veto_grid``, ``v_offset_grid``:
    the assisted zones, network vetoes and V logit offsets tried (default: training's).  Then, the
    rule fixed, the pause zone on ``pause_grid`` that maximises it (the two-step choice of the
    study that adopted it).

    With ``noisy`` (a mask of noise-stressed beats), the score is the mean of the selection
    scores of the clean and the noisy beats, and the metrics returned are the clean beats'.
    Grid order decides ties (the first best wins; the assisted and pause zones start off)."""
    inputs = _RuleInputs.of(probs, rr, rr_names)
    clean = np.ones(len(label), bool) if noisy is None else ~noisy
    groups = [clean] if noisy is None else [clean, noisy]
    # only beats called N-or-S, premature and regular enough for some grid point can change
    reach = (inputs.prem < max(max(RULE_PREMATURITY), max(a for a, _ in assist_grid))) & (
        inputs.irr < max(RULE_IRREGULARITY))
    best: tuple[float, SRuleParams] | None = None
    for v in v_offset_grid:
        base = inputs.base(v)
        movable = reach & (base == 0)
        prem, share, irr = inputs.prem[movable], inputs.share[movable], inputs.irr[movable]
        fixed = [confusion(label[g & ~movable], base[g & ~movable]) for g in groups]
        sub_label, sub_groups = label[movable], [g[movable] for g in groups]
        assisted = np.stack([(prem < am) & (share > sm) for am, sm in assist_grid])
        regular = np.stack([irr < b for b in RULE_IRREGULARITY])
        for a in RULE_PREMATURITY:
            # every (irregularity, assisted zone, veto) point at once, in the grid's order
            primary = np.stack([(prem < a) & (share >= veto) for veto in veto_grid])
            fires = (assisted[None, :, None, :] | primary[None, None, :, :]) & regular[:, None, None, :]
            fires = fires.reshape(len(RULE_IRREGULARITY) * len(assist_grid) * len(veto_grid), len(prem))
            scores = np.mean(np.stack([_grid_scores(f, fires[:, g], sub_label[g], weights)
                                       for f, g in zip(fixed, sub_groups, strict=True)]), axis=0)
            i = int(np.argmax(scores))  # the first best (grid order decides ties)
            if best is None or scores[i] > best[0]:
                bi, ai, vi = np.unravel_index(i, (len(RULE_IRREGULARITY), len(assist_grid), len(veto_grid)))
                assist_max, share_min = assist_grid[ai]
                best = (float(scores[i]),
                        SRuleParams(a, RULE_IRREGULARITY[bi], v, assist_max, share_min, veto_grid[vi]))
    assert best is not None
    chosen, base = best[1], inputs.base(best[1].v_offset)
    if pause_grid != (PAUSE_OFF,):
        tried = [replace(chosen, pause_prematurity_max=pm, pause_ratio_min=r) for pm, r in pause_grid]
        scores = [float(np.mean([selection_score_of(label[g], _rule_classes(base, inputs, rule)[g], weights)
                                 for g in groups])) for rule in tried]
        chosen = tried[int(np.argmax(scores))]  # the first best: off unless a zone scores higher
    pred = _rule_classes(base, inputs, chosen)
    return chosen, per_class_metrics(label[clean], pred[clean])


def auroc(positive: npt.NDArray[np.bool_], score: npt.NDArray[np.floating]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def config_dict(cfg: TrainConfig) -> dict[str, object]:
    return asdict(cfg)
