"""PNG plots of a beat evaluation: confusion matrix, one-vs-rest ROC per class, example beats."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from detector.eval_beats import BeatEvaluation


def _roc(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-score, kind="stable")
    pos = positive[order]
    tpr = np.concatenate([[0.0], np.cumsum(pos) / max(pos.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~pos) / max((~pos).sum(), 1)])
    return fpr, tpr


def save_plots(ev: BeatEvaluation, out_dir: Path, model_name: str) -> list[Path]:
    """Write confusion.png, roc.png and examples.png to ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detector.eval_beats import LABELS

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 5))
    cm = ev.confusion
    ax.imshow(np.log1p(cm), cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(LABELS)), LABELS)
    ax.set_yticks(range(len(LABELS)), LABELS)
    ax.set_xlabel("ecgmon")
    ax.set_ylabel("reference")
    ax.set_title(f"{model_name}: confusion (none = missed / extra)")
    paths.append(out_dir / "confusion.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    true = np.concatenate(ev.true) if ev.true else np.zeros(0, np.int64)
    prob = np.concatenate(ev.probabilities) if ev.probabilities else np.zeros((0, 5), np.float32)
    fig, ax = plt.subplots(figsize=(5, 5))
    for c, name in enumerate(LABELS[:5]):
        positive = true == c
        if positive.any() and (~positive).any():
            fpr, tpr = _roc(positive, prob[:, c])
            ax.plot(fpr, tpr, label=f"{name} (AUC {np.trapezoid(tpr, fpr):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.5)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{model_name}: one-vs-rest ROC (matched beats)")
    ax.legend()
    paths.append(out_dir / "roc.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(1, 5, figsize=(15, 3), sharey=True)
    for ax, name in zip(axes, LABELS[:5], strict=True):
        for w in ev.examples.get(name, []):
            ax.plot(w, lw=1)
        ax.set_title(f"{name} ({len(ev.examples.get(name, []))} examples)")
        ax.set_xlabel("sample at 128 Hz")
    paths.append(out_dir / "examples.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths
