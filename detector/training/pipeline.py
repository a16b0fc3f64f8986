"""``ecgmon train`` end to end: DS1 beats -> train each family -> ONNX -> DS2 score -> model card."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.eval_beats import PreparedRecord, evaluate, prepare_record
from detector.onnx_classifier import OnnxClassifier
from detector.training.data import DS1, DS2, PACED, VALIDATION, load_beats, record_sha256
from detector.training.export import bench_onnx, export_onnx, write_card
from detector.training.train import (
    Progress,
    TrainConfig,
    TrainResult,
    auroc,
    config_dict,
    train_autoencoder,
    train_classifier,
)


@dataclass(frozen=True)
class TrainOptions:
    data_dir: Path
    out_dir: Path
    families: list[str]
    epochs: int = 12
    peaks: str = "auto"
    seed: int = 0
    threads: int = 1
    train_records: list[str] | None = None
    val_records: list[str] | None = None
    evaluate_ds2: bool = True
    cache_dir: Path | None = None
    max_train_beats: int = 0
    n_leads: int = 1


def run_training(opts: TrainOptions, progress: Progress) -> list[dict[str, Any]]:
    """Train every requested family; return one summary row per model."""
    train_recs = opts.train_records or [r for r in DS1 if r not in VALIDATION]
    val_recs = opts.val_records or list(VALIDATION)
    progress(f"extracting beats of {len(train_recs) + len(val_recs)} DS1 records")
    beats, used = load_beats(opts.data_dir, train_recs + val_recs, opts.peaks, opts.cache_dir, opts.n_leads)
    is_val = np.isin(beats.record, val_recs)
    train, val = beats.take(~is_val), beats.take(is_val)
    progress(f"{len(train)} training beats, {len(val)} validation beats, R-peaks: {used}")
    test_recs = list(DS2) if opts.evaluate_ds2 else []
    hashes = record_sha256(opts.data_dir, train_recs + val_recs + test_recs)
    prepared: dict[str, PreparedRecord] = {}
    rows = []
    for family in opts.families:
        cfg = TrainConfig(family=family, epochs=opts.epochs, seed=opts.seed, threads=opts.threads,
                          max_train_beats=opts.max_train_beats)
        trainer = train_autoencoder if family == "autoencoder" else train_classifier
        result = trainer(train, val, cfg, progress)
        card = _card(opts, result, used, train_recs, val_recs, train, hashes)
        path = opts.out_dir / f"{family}.onnx"
        card["onnx_sha256"] = export_onnx(result.model, path, opts.n_leads, family,
                                          scores=family == "autoencoder")
        card["onnx_bytes"] = path.stat().st_size
        card["us_per_beat_batch64_1thread"] = bench_onnx(path, 2 * opts.n_leads)
        if opts.evaluate_ds2:
            progress(f"{family}: scoring DS2 end to end")
            if family == "autoencoder":
                card["ds2_auroc"] = _ds2_auroc(opts, path, prepared)
            else:
                ev = evaluate(opts.data_dir, test_recs, OnnxClassifier(path), prepared=prepared)
                card["ds2"] = ev.as_json()
        card["detector_sha256"] = _detector_sha256()
        write_card(path.with_suffix(".json"), card)
        rows.append(_row(card))
        progress(f"{family}: {_row(card)}")
    return rows


def _card(
    opts: TrainOptions, result: TrainResult, used: str, train_recs: list[str], val_recs: list[str],
    train: Any, hashes: dict[str, dict[str, str]],
) -> dict[str, Any]:
    fam = result.config.family
    counts = np.bincount(train.label[train.label >= 0], minlength=5)
    return {
        "name": fam,
        "family": fam,
        "summary": "Five AAMI classes (N S V F Q) from one beat window of lead MLII, the patient's running "
        "template beat and patient-normalised RR features (the previous, next, local and 5-minute RR: "
        "a beat is classified once the next beat is detected)."
        if fam != "autoencoder" else
        "Autoencoder trained on normal (N) DS1 beats; its reconstruction error is an anomaly score.",
        "data": {
            "database": "MIT-BIH Arrhythmia Database 1.0.0 (PhysioNet mitdb), 360 Hz",
            "peak_source": "our QRS detector (detector.core.qrs), labels from reference beats within 150 ms"
            if used == "detected" else "reference annotations with +-20 ms jitter",
            "leads": "lead 0 (MLII) + running template of lead 0" if opts.n_leads == 1 else f"{opts.n_leads}",
            "split": "inter-patient, de Chazal et al. 2004 (DS1 train, DS2 test)",
            "train_records": train_recs,
            "validation_records": val_recs,
            "test_records": list(DS2),
            "excluded_records": list(PACED),
            "train_beats_per_class": dict(zip("NSVFQ", (int(c) for c in counts), strict=True)),
            "record_sha256": hashes,
        },
        "hyperparameters": config_dict(result.config),
        "n_params": result.n_params,
        "best_epoch": result.best_epoch,
        "validation_score": result.best_score,
        "validation_metrics": result.val_metrics,
        "training_seconds": round(result.train_seconds, 1),
        "training_machine": f"{platform.machine()} CPU, torch {torch.__version__}, {opts.threads} thread(s)",
        "reproduce": {
            "train": f"ecgmon train --data-dir ../shared/data/mitdb --families {fam}",
            "eval": f"ecgmon eval beats --data-dir ../shared/data/mitdb --model {fam} --records ds2",
        },
    }


def _ds2_auroc(opts: TrainOptions, path: Path, prepared: dict[str, PreparedRecord]) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores, abnormal = [], []
    for name in DS2:
        if name not in prepared:
            prepared[name] = prepare_record(opts.data_dir, name, opts.n_leads)
        prep = prepared[name]
        matched = prep.ref_of_test >= 0
        f = prep.features
        scores.append(sess.run(None, {"beat": f.beats[matched], "rr": f.rr[matched]})[0])
        abnormal.append(prep.ref_labels[prep.ref_of_test[matched]] != 0)
    return auroc(np.concatenate(abnormal), np.concatenate(scores))


def _row(card: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": card["name"], "params": card["n_params"], "onnx_kb": round(card["onnx_bytes"] / 1024, 1),
        "us_per_beat": round(card["us_per_beat_batch64_1thread"], 1), "train_s": card["training_seconds"],
    }
    if "ds2" in card:
        for c, m in card["ds2"]["classes"].items():
            row[c] = {k: round(100 * v, 1) for k, v in m.items()}
        row["accuracy"] = round(100 * card["ds2"]["accuracy"], 2)
    if "ds2_auroc" in card:
        row["auroc"] = round(card["ds2_auroc"], 4)
    return row


def rescore(
    models_dir: Path, data_dir: Path, families: list[str], progress: Progress
) -> list[dict[str, Any]]:
    """Score the existing ONNX models on DS2 again (after a detector change) and update their cards."""
    import json

    from detector.training.export import write_card

    prepared: dict[str, PreparedRecord] = {}
    rows = []
    for family in families:
        path = models_dir / f"{family}.onnx"
        card = json.loads(path.with_suffix(".json").read_text())
        opts = TrainOptions(data_dir=data_dir, out_dir=models_dir, families=[family])
        progress(f"{family}: scoring DS2 end to end")
        if family == "autoencoder":
            card["ds2_auroc"] = _ds2_auroc(opts, path, prepared)
        else:
            card["ds2"] = evaluate(data_dir, list(DS2), OnnxClassifier(path), prepared=prepared).as_json()
        card["detector_sha256"] = _detector_sha256()
        write_card(path.with_suffix(".json"), card)
        rows.append(_row(card))
    return rows


def _detector_sha256() -> str:
    """sha256 over every ``detector/core/*.py`` file (QRS detector and feature code) when scored."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "core").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
