"""The "Beat classification" section of BENCHMARKS.md, rendered from the committed model cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FAMILIES = ("cnn", "resnet", "inception", "lstm", "mlp")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def section(models_dir: Path, default: str, ucr: dict[str, Any] | None = None) -> str:
    cards = {n: json.loads((models_dir / f"{n}.json").read_text()) for n in FAMILIES}
    lines = [
        "| model | params | ONNX KB | us/beat (batch 64, 1 thread) | train s (final / with CV) | "
        "DS1 CV score | DS1 CV S Se/+P | DS1 CV V Se/+P | N Se/+P | S Se/+P | V Se/+P | F Se/+P | accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, c in cards.items():
        m = c["ds2"]["classes"]
        cv = c["cv"]["metrics"]
        cells = [f"{_pct(m[k]['se'])} / {_pct(m[k]['ppv'])}" for k in "NSVF"]
        star = " (default)" if n == default else ""
        lines.append(
            f"| {n}{star} | {c['n_params']:,} | {c['onnx_bytes'] / 1024:.0f} | "
            f"{c['us_per_beat_batch64_1thread']:.1f} | {c['training_seconds']:.0f} / "
            f"{c['training_with_cv_seconds']:.0f} | {c['cv']['score']:.3f} | "
            + "".join(f"{_pct(cv[k]['se'])} / {_pct(cv[k]['ppv'])} | " for k in "SV")
            + " | ".join(cells) + f" | {100 * c['ds2']['accuracy']:.2f} |"
        )
    ae = json.loads((models_dir / "autoencoder.json").read_text())
    lines += [
        "",
        f"Autoencoder (dense, {ae['n_params']:,} params, trained on normal DS1 beats only): reconstruction "
        f"error as anomaly score, DS2 AUROC abnormal (S, V, F, Q) vs N = {ae['ds2_auroc']:.3f} "
        f"(DS1 CV pooled held-out AUROC {ae['cv']['score']:.3f}) "
        f"({ae['us_per_beat_batch64_1thread']:.1f} us/beat, trained in {ae['training_seconds']:.0f} s).",
    ]
    if ucr:
        lines += [
            "",
            f"ECG5000 (UCR), InceptionTime-style model, {ucr['folds']}-fold cross-validation on the shared "
            f"500-beat training split: {100 * ucr['mean_accuracy']:.2f} % +- {100 * ucr['std_accuracy']:.2f} "
            f"(folds: {', '.join(f'{100 * a:.1f}' for a in ucr['fold_accuracy'])}; {ucr['seconds']:.0f} s). "
            f"The InceptionTime paper reports {100 * ucr['reference_test_accuracy_inceptiontime']:.2f} % on "
            "the 4,500-beat test split, not available here: the figures are not directly comparable.",
        ]
    return "\n".join(lines) + "\n"
