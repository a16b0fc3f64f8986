"""The training loop: class-weighted cross-entropy, early stopping on the DS1 validation patients."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from detector.training.data import BeatSet
from detector.training.models import N_CLASSES, build, n_params

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    family: str = "cnn"
    epochs: int = 20
    patience: int = 6
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    class_weight_power: float = 1.0  # validation: resnet 0.841 vs 0.835 with 0.75
    max_class_weight: float = 30.0
    # F (fusion) beats of DS1 come almost all from one patient (208): a high weight teaches
    # "looks like patient 208" and turns other patients' N beats into F.  Keep F and Q at 1.
    rare_class_weight: float = 1.0
    noise_std: float = 0.05
    max_shift: int = 2
    seed: int = 0
    threads: int = 1
    max_train_beats: int = 0  # 0 = all; >0 subsamples N beats per epoch (tiny runs, tests)
    calibrate: bool = True  # S and V logit offsets chosen on the validation patients


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    best_epoch: int
    best_score: float
    train_seconds: float
    n_params: int
    history: list[dict[str, float]] = field(default_factory=list)
    val_metrics: dict[str, dict[str, float]] = field(default_factory=dict)


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


def per_class_metrics(y_true: I64, y_pred: I64) -> dict[str, dict[str, float]]:
    """Se, +P and F1 per class index (no missed or extra beats: those are the evaluator's job)."""
    out: dict[str, dict[str, float]] = {}
    for c, name in enumerate("NSVFQ"):
        tp = float(np.sum((y_true == c) & (y_pred == c)))
        se = tp / max(float(np.sum(y_true == c)), 1.0)
        ppv = tp / max(float(np.sum(y_pred == c)), 1.0)
        out[name] = {"se": se, "ppv": ppv, "f1": 2 * se * ppv / (se + ppv) if se + ppv else 0.0}
    return out


def selection_score(m: dict[str, dict[str, float]]) -> float:
    """Validation criterion: mean F1 of N, S and V (F and Q are too rare in the validation patients)."""
    return (m["N"]["f1"] + m["S"]["f1"] + m["V"]["f1"]) / 3.0


@torch.no_grad()
def predict(model: nn.Module, beats: F32, rr: F32) -> F32:
    model.eval()
    out = []
    for i in range(0, len(beats), 1024):
        logits = model(torch.from_numpy(beats[i : i + 1024]), torch.from_numpy(rr[i : i + 1024]))
        out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), np.float32)


def _augment(beats: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    if cfg.max_shift:
        shift = int(torch.randint(-cfg.max_shift, cfg.max_shift + 1, (1,), generator=gen))
        beats = torch.roll(beats, shift, dims=2)
    if cfg.noise_std:
        beats = beats + cfg.noise_std * torch.randn(beats.shape, generator=gen)
    return beats


def _epoch_indices(y: I64, cfg: TrainConfig, rng: np.random.Generator) -> I64:
    idx = np.arange(len(y))
    if cfg.max_train_beats and len(idx) > cfg.max_train_beats:
        idx = rng.choice(idx, cfg.max_train_beats, replace=False)
    return rng.permutation(idx)


def train_classifier(train: BeatSet, val: BeatSet, cfg: TrainConfig, progress: Progress) -> TrainResult:
    """Train one family; keep the weights of the epoch with the best validation score."""
    set_seeds(cfg.seed, cfg.threads)
    train = train.take(train.label >= 0)
    val = val.take(val.label >= 0)
    n_leads, window = train.features.beats.shape[1:]
    model = build(cfg.family, n_leads, train.features.rr.shape[1], window)
    weights = class_weights(train.label, cfg.class_weight_power, cfg.max_class_weight, cfg.rare_class_weight)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_b, x_r = torch.from_numpy(train.features.beats), torch.from_numpy(train.features.rr)
    y = torch.from_numpy(train.label)
    result = TrainResult(model, cfg, -1, -1.0, 0.0, n_params(model))
    best_state: dict[str, torch.Tensor] = {}
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        total = 0.0
        idx = torch.from_numpy(_epoch_indices(train.label, cfg, rng))
        for i in range(0, len(idx), cfg.batch_size):
            b = idx[i : i + cfg.batch_size]
            if len(b) < 2:
                continue
            loss = loss_fn(model(_augment(x_b[b], cfg, gen), x_r[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        sched.step()
        pred = predict(model, val.features.beats, val.features.rr).argmax(axis=1)
        m = per_class_metrics(val.label, pred)
        score = selection_score(m)
        result.history.append({"epoch": epoch + 1, "loss": total / max(len(idx), 1), "val_score": score})
        progress(
            f"{cfg.family} epoch {epoch + 1}/{cfg.epochs} loss {total / max(len(idx), 1):.4f} "
            f"val N/S/V F1 {m['N']['f1']:.3f}/{m['S']['f1']:.3f}/{m['V']['f1']:.3f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
        if score > result.best_score:
            result.best_score, result.best_epoch, result.val_metrics = score, epoch + 1, m
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch + 1 - result.best_epoch >= cfg.patience:
            progress(f"{cfg.family}: early stop, best epoch {result.best_epoch}")
            break
    model.load_state_dict(best_state)
    model.eval()
    if cfg.calibrate:
        result.model, result.val_metrics, bias = calibrate(model, val)
        result.best_score = selection_score(result.val_metrics)
        progress(f"{cfg.family}: validation logit bias {[round(b, 2) for b in bias]}, "
                 f"val score {result.best_score:.3f}")
    result.train_seconds = time.perf_counter() - start
    return result


class Biased(nn.Module):
    """A classifier with a constant per-class logit offset (prior shift chosen on validation)."""

    def __init__(self, model: nn.Module, bias: list[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32))

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(beat, rr) + self.bias
        return out


def calibrate(model: nn.Module, val: BeatSet) -> tuple[nn.Module, dict[str, dict[str, float]], list[float]]:
    """Shift the S and V logits to maximise the validation score (coordinate search on a grid)."""
    logp = np.log(predict(model, val.features.beats, val.features.rr) + 1e-9)
    bias = np.zeros(N_CLASSES)
    grid = np.arange(-2.0, 4.01, 0.25)
    for _ in range(2):
        for c in (1, 2):
            scores = []
            for g in grid:
                trial = bias.copy()
                trial[c] = g
                pred = (logp + trial).argmax(axis=1)
                scores.append(selection_score(per_class_metrics(val.label, pred)))
            bias[c] = grid[int(np.argmax(scores))]
    pred = (logp + bias).argmax(axis=1)
    return Biased(model, bias.tolist()).eval(), per_class_metrics(val.label, pred), bias.tolist()


def train_autoencoder(train: BeatSet, val: BeatSet, cfg: TrainConfig, progress: Progress) -> TrainResult:
    """Autoencoder on normal (N) DS1 training beats; early stopping on validation AUROC (abnormal vs N)."""
    set_seeds(cfg.seed, cfg.threads)
    train = train.take(train.label == 0)
    val = val.take(val.label >= 0)
    n_leads, window = train.features.beats.shape[1:]
    model = build("autoencoder", n_leads, train.features.rr.shape[1], window)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    x_b, x_r = torch.from_numpy(train.features.beats), torch.from_numpy(train.features.rr)
    result = TrainResult(model, cfg, -1, -1.0, 0.0, n_params(model))
    best_state: dict[str, torch.Tensor] = {}
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        total = 0.0
        idx = torch.from_numpy(_epoch_indices(train.label, cfg, rng))
        for i in range(0, len(idx), cfg.batch_size):
            b = idx[i : i + cfg.batch_size]
            loss = model(x_b[b], x_r[b]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        auc = auroc(val.label != 0, anomaly_scores(model, val.features.beats, val.features.rr))
        result.history.append({"epoch": epoch + 1, "loss": total / len(idx), "val_auroc": auc})
        progress(f"autoencoder epoch {epoch + 1}/{cfg.epochs} loss {total / len(idx):.4f} "
                 f"val AUROC {auc:.3f}")
        if auc > result.best_score:
            result.best_score, result.best_epoch = auc, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch + 1 - result.best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    result.train_seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def anomaly_scores(model: nn.Module, beats: F32, rr: F32) -> F32:
    model.eval()
    parts = [model(torch.from_numpy(beats[i : i + 2048]), torch.from_numpy(rr[i : i + 2048])).numpy()
             for i in range(0, len(beats), 2048)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


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
