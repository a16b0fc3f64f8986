# mypy: disable-error-code="no-untyped-call"
"""UCR-format data sets (ECG5000): k-fold cross-validated accuracy of the InceptionTime-style model."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from detector.training.models import InceptionTime
from detector.training.train import set_seeds

#: Reported by the InceptionTime authors (Ismail Fawaz et al. 2020) on ECG5000's *test* split.
INCEPTIONTIME_ECG5000_TEST_ACCURACY = 0.9412


def load_ucr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x (n, 1, length) float32 z-normalised per series, y (n,) int64 from 0)."""
    raw = np.loadtxt(path)
    y = raw[:, 0].astype(np.int64)
    classes = np.unique(y)
    y = np.searchsorted(classes, y)
    x = raw[:, 1:]
    x = (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)
    return x[:, None, :].astype(np.float32), y


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        for i, j in enumerate(idx):
            folds[i % k].append(int(j))
    return [np.sort(np.array(f)) for f in folds]


def cross_validate(
    path: Path, folds: int = 5, epochs: int = 40, seed: int = 0, threads: int = 1,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, object]:
    """Train on k-1 folds, test on the held-out one; returns per-fold and mean accuracy."""
    x, y = load_ucr(path)
    n_classes = int(y.max()) + 1
    parts = stratified_folds(y, folds, seed)
    accs = []
    start = time.perf_counter()
    for f, test_idx in enumerate(parts):
        set_seeds(seed + f, threads)
        train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
        model = InceptionTime(1, 1, n_out=n_classes)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        xt, yt = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
        rr = torch.zeros(len(train_idx), 1)
        gen = torch.Generator().manual_seed(seed + f)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(train_idx), generator=gen)
            for i in range(0, len(perm), 32):
                b = perm[i : i + 32]
                if len(b) < 2:
                    continue
                loss = nn.functional.cross_entropy(model(xt[b], rr[b]), yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            pred = model(torch.from_numpy(x[test_idx]), torch.zeros(len(test_idx), 1)).argmax(1).numpy()
        accs.append(float((pred == y[test_idx]).mean()))
        elapsed = time.perf_counter() - start
        progress(f"ECG5000 fold {f + 1}/{folds}: accuracy {accs[-1]:.4f} ({elapsed:.0f} s)")
    return {
        "dataset": str(path.name), "beats": int(len(y)), "folds": folds, "epochs": epochs,
        "fold_accuracy": accs, "mean_accuracy": float(np.mean(accs)), "std_accuracy": float(np.std(accs)),
        "reference_test_accuracy_inceptiontime": INCEPTIONTIME_ECG5000_TEST_ACCURACY,
        "seconds": time.perf_counter() - start,
    }
