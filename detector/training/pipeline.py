"""``ecgmon train`` end to end: DS1 beats -> CV over DS1 patients -> final model on all DS1 -> ONNX
-> DS2 score -> model card."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.bench_models import bench_onnx
from detector.core.beats import RR_FEATURES
from detector.eval_beats import PreparedRecord, evaluate, prepare_record
from detector.onnx_classifier import OnnxClassifier
from detector.training import DEFAULT_EPOCHS
from detector.training.card import write_card
from detector.training.cv import CVResult, cross_validate, folds_for
from detector.training.data import (
    CV_FOLDS,
    DS1,
    DS2,
    PACED,
    BeatSet,
    load_beats,
    record_sha256,
    require_records,
)
from detector.training.export import export_onnx
from detector.training.noise import SEGMENT_CHOICES, SEGMENT_S, NoiseSource, load_noise, load_noisy_beats
from detector.training.sinus import with_sinus_ratio
from detector.training.train import (
    Progress,
    SRule,
    TrainConfig,
    TrainResult,
    auroc,
    config_dict,
    train_autoencoder,
    train_ensemble,
)

# How often DS2 results were seen (the model card says it; the issue asks for it).
DS2_LOOKS = (
    "once for these models: the end-to-end DS2 scoring at the end of `ecgmon train`, after the "
    "family, features, class balance, noise-stressed training, epoch count, S rule thresholds and V "
    "offset were chosen on DS1 CV (clean and held-out noisy) and the default by the DS1 VF alarm "
    "check; then once more stressed with held-out noise (`ecgmon eval beats --noise-dir`), for the "
    "record. Earlier models of this project were scored on DS2 before (fixed validation patients: "
    "five times; the clean-trained CV-selected models: once, plus rescores); their DS2 figures were "
    "known when this procedure was designed: the previous models' DS2 errors (S missed in 232, S "
    "false positives in atrial fibrillation records) are why the S rule and its robust irregularity "
    "feature were tried, and their DS2 V +P of 70 % is one reason false V calls were studied (on "
    "DS1 CV only, where the noise finding was made). The S rule's assisted zone and the EC57 "
    "counting of false positives in the selection score (2026-12-06) were tried and kept on DS1 CV "
    "alone (cnn seeds 0 and 1, inception), with the previous models' DS2 figures known. Three-seed "
    "ensembles (2026-12-06) were adopted for every family after a DS1 CV seed-spread study of the "
    "cnn, with the single models' DS2 figures known; the default rule gained the issue's inference "
    "budget (50 us per beat, measured idle with `python -m detector.bench_models`). The S rule's "
    "assisted zone left the training grid (2026-12-06) on a nested estimate over DS1 CV outputs "
    "alone (the rule chosen on three folds, scored on the fourth), with the previous models' DS2 "
    "figures known. Other selection criteria (the V F1 weighed double, the epoch chosen on a "
    "3-epoch mean; 2026-12-06) were studied on DS1 CV outputs alone and not adopted, with the "
    "session-13 default's DS2 figures known. The S rule's pause zone (2026-12-06) was adopted by a "
    "rule fixed before its nested estimate over DS1 CV outputs was computed, with the previous "
    "models' DS2 figures known (the DS1 analysis of missed S beats that prompted it used DS1 only). "
    "A rerun of the default's command on another session's machine (2026-12-06), which trained "
    "other networks, was scored on DS2 once to measure that noise; nothing was chosen on it. "
    "So was the same procedure with seeds 5-9 (session 16). A time warp of the training beats "
    "(before that score) and ten thinner cnns (after it) were studied on DS1 CV alone by rules "
    "fixed before their runs finished, and not adopted. So were a 6-epoch schedule and members "
    "trained on different shares of the patients (session 17), by rules fixed before their runs, "
    "and not adopted; so was the CV's epoch choice against none, and batch norm adapted to each "
    "held-out patient was measured and not built. A patient adversary (domain-adversarial "
    "training, two weights and a third after the decision; session 18) was studied on DS1 CV "
    "alone by a rule fixed before its runs, with the default's DS2 figures known, and not adopted; "
    "so were label smoothing and mixup (session 19). Drawing S and V less often into the training "
    "epochs (class weight power 0.5 instead of 1; session 19) was adopted for the default cnn by a "
    "rule fixed before its runs, on DS1 CV alone, with the previous default's DS2 figures known. "
    "Powers 0.25 and 0.75 (session 20) were studied on DS1 CV alone and not adopted. Session 21 "
    "trained resnet, inception, lstm and mlp again with power 0.5, each scored on DS2 once at the "
    "end of its training; a rule fixed before the runs and reading DS1 alone (the nested selection "
    "score and the VF check against the shipped model's) chose which of them replaced the shipped "
    "ones, with the shipped models' DS2 figures known. Blending the default's five cnns with three "
    "mlps (session 22) was studied on DS1 CV alone by a rule fixed before its runs, then on fresh "
    "seeds by a second rule fixed before those runs, and not adopted; the previous beat's window as "
    "a third input (session 22) was explored on DS1 CV alone by a rule fixed before its runs and did "
    "not pass. The previous RR over a sinus-cycle estimate (the 90th percentile of 30 prior "
    "intervals; session 23), prompted partly by the known share of atrial premature beats in "
    "record 232, was studied on DS1 CV alone by a rule fixed before its runs, and not adopted; "
    "so was the second lead as an input (session 23). The focal loss and a wider cnn (session 24) "
    "were studied on DS1 CV alone by a rule fixed before their runs, and not adopted; so were an S "
    "rule whose prematurity threshold moves with the patient's RR variability and a second "
    "noise-stressed training copy of each record. A vote of each patient's beat families "
    "(morphology clusters) on the networks' outputs (session 25) was studied on saved DS1 CV "
    "outputs alone by a rule fixed before it was first run, and not adopted; so was the "
    "noise-stressed copy drawn at half weight, on DS1 CV alone, by a rule and then a confirmation "
    "rule on two more seed sets, each fixed before its runs."
)


SUMMARY = (
    "Five AAMI classes (N S V F Q) from one beat window of lead MLII, the patient's running "
    "template beat, patient-normalised RR features (the previous, next, local and 5-minute RR: "
    "a beat is classified once the next beat is detected) and five shape and rhythm features "
    "(correlation, P-wave difference and amplitude against the template; RR irregularity, mean- "
    "and median-based). The network's N and S outputs are pooled and split by a rule chosen on "
    "DS1 CV: S when the beat is premature for this patient (or mildly premature and followed by a "
    "pause) and the rhythm before it is regular. "
    "Trained on DS1 and on a noise-stressed copy of DS1 (MIT-BIH Noise Stress Test electrode-motion "
    "and muscle noise at 12 and 6 dB SNR), selected on clean and held-out noisy DS1 patients."
)


@dataclass(frozen=True)
class TrainOptions:
    data_dir: Path
    out_dir: Path
    families: list[str]
    epochs: int = DEFAULT_EPOCHS
    peaks: str = "auto"
    seed: int = 0
    threads: int = 1
    records: list[str] | None = None  # DS1 records to use (default all of DS1; tests use fewer)
    folds: int = len(CV_FOLDS)
    evaluate_ds2: bool = True
    cache_dir: Path | None = None
    max_train_beats: int = 0
    n_leads: int = 1
    ensemble: int = 1  # members per classifier (seeds seed, seed + 1, ...); the autoencoder has one
    # nstdb folder with the em and ma noise records: classifiers also train on a noise-stressed
    # copy of DS1 and the CV also scores a held-out noisy copy (detector.training.noise); None: clean only
    noise_dir: Path | None = None
    cv_predictions_dir: Path | None = None  # where to save each family's pooled CV outputs (.npz)
    rr_dropout: float = 0.0  # TrainConfig.rr_dropout (a study option; the shipped models: 0)
    time_warp: float = 0.0  # TrainConfig.time_warp
    width: int = 0  # TrainConfig.width (the cnn's; 0: its default)
    patient_subsample: float = 1.0  # TrainConfig.patient_subsample (a study option; 1.0: off)
    patient_adversary: float = 0.0  # TrainConfig.patient_adversary (a study option; 0.0: off)
    label_smoothing: float = 0.0  # TrainConfig.label_smoothing (a study option; 0.0: off)
    mixup: float = 0.0  # TrainConfig.mixup (a study option; 0.0: off)
    class_weight_power: float = 1.0  # TrainConfig.class_weight_power (the shipped models: 1.0)
    adapt_bn: bool = False  # TrainConfig.adapt_bn (a CV-only study: no final model, no card)
    blend_family: str = ""  # TrainConfig.blend_family: every classifier's ensemble also holds
    blend_members: int = 0  # this many members of that family (0: off; the model is named family+blend)
    sinus_ratio: bool = False  # a CV-only study: detector.training.sinus's feature appended (no model)
    focal_gamma: float = 0.0  # TrainConfig.focal_gamma (a study option; 0.0: off)
    # noise-stressed training copies of every DS1 record, each with its own segment plan and noise
    # offsets (copy 0, 1, ...); the CV's held-out noisy copy stays one (session 24 study; 1: the default)
    noise_copies: int = 1
    noisy_weight: float = 1.0  # TrainConfig.noisy_weight (a study option; 1.0: as the clean beats)


def run_training(opts: TrainOptions, progress: Progress) -> list[dict[str, Any]]:
    """Cross-validate, train and export every requested family; return one summary row per model."""
    recs = opts.records or list(DS1)
    require_records(opts.data_dir, recs + (list(DS2) if opts.evaluate_ds2 else []))
    progress(f"extracting beats of {len(recs)} DS1 records")
    beats, used = load_beats(opts.data_dir, recs, opts.peaks, opts.cache_dir, opts.n_leads)
    folds = folds_for(recs, opts.folds)
    progress(f"{len(beats)} DS1 beats, R-peaks: {used}; CV folds {folds}")
    noise = load_noise(opts.noise_dir) if opts.noise_dir is not None else None
    noisy_train = noisy_test = None
    if noise is not None:
        progress(f"noise-stressed copies of {len(recs)} DS1 records (nstdb em, ma): training "
                 f"({opts.noise_copies}), held-out")
        noisy_train = BeatSet.concat([load_noisy_beats(opts.data_dir, noise, recs, copy=c, source=opts.peaks,
                                                       cache_dir=opts.cache_dir, n_leads=opts.n_leads)
                                      for c in range(opts.noise_copies)])
        noisy_test = load_noisy_beats(opts.data_dir, noise, recs, held_out=True, source=opts.peaks,
                                      cache_dir=opts.cache_dir, n_leads=opts.n_leads)
    if opts.sinus_ratio:
        progress("appending the sinus-ratio feature (a CV-only study: no model is exported)")
        beats = with_sinus_ratio(beats)
        noisy_train = with_sinus_ratio(noisy_train) if noisy_train is not None else None
        noisy_test = with_sinus_ratio(noisy_test) if noisy_test is not None else None
    test_recs = list(DS2) if opts.evaluate_ds2 else []
    hashes = record_sha256(opts.data_dir, recs + test_recs)
    prepared: dict[str, PreparedRecord] = {}
    prepared_noisy: dict[str, PreparedRecord] = {}
    rows = []
    for family in opts.families:
        cfg = TrainConfig(family=family, epochs=opts.epochs, seed=opts.seed, threads=opts.threads,
                          max_train_beats=opts.max_train_beats,
                          ensemble=1 if family == "autoencoder" else opts.ensemble,
                          rr_dropout=0.0 if family == "autoencoder" else opts.rr_dropout,
                          time_warp=0.0 if family == "autoencoder" else opts.time_warp,
                          width=opts.width if family == "cnn" else 0,
                          patient_subsample=1.0 if family == "autoencoder" else opts.patient_subsample,
                          patient_adversary=0.0 if family == "autoencoder" else opts.patient_adversary,
                          label_smoothing=0.0 if family == "autoencoder" else opts.label_smoothing,
                          mixup=0.0 if family == "autoencoder" else opts.mixup,
                          focal_gamma=0.0 if family == "autoencoder" else opts.focal_gamma,
                          noisy_weight=1.0 if family == "autoencoder" else opts.noisy_weight,
                          class_weight_power=opts.class_weight_power,
                          adapt_bn=opts.adapt_bn and family != "autoencoder",
                          blend_members=0 if family == "autoencoder" else opts.blend_members,
                          blend_family="" if family == "autoencoder" else opts.blend_family)
        name = cfg.name
        noisy = noise is not None and family != "autoencoder"  # noise is an anomaly for the autoencoder
        cv = cross_validate(beats, cfg, progress, folds, noisy_train if noisy else None,
                            noisy_test if noisy else None)
        if opts.cv_predictions_dir is not None and cv.predictions is not None:
            saved = opts.cv_predictions_dir / f"{name}_cv.npz"
            cv.predictions.save(saved)
            progress(f"{name}: pooled CV outputs saved to {saved}")
        if cfg.adapt_bn:  # the exported model would not adapt: its CV would not be its own
            progress(f"{name}: adapted batch norm is a CV-only study; no final model")
            continue
        if opts.sinus_ratio:  # the live extractor does not compute the feature
            progress(f"{name}: the sinus-ratio feature is a CV-only study; no final model")
            continue
        trainer = train_autoencoder if family == "autoencoder" else train_ensemble
        progress(f"{name}: final model on all {len(recs)} DS1 records, {cv.best_epoch} epochs")
        final = BeatSet.concat([beats, noisy_train]) if noisy and noisy_train is not None else beats
        result = trainer(final, cfg, progress, epochs=cv.best_epoch)
        if family == "autoencoder":
            model = result.model
        else:
            assert cv.s_rule is not None  # chosen for every classifier
            model = SRule(result.model, cv.s_rule, RR_FEATURES).eval()
        card = _card(opts, result, cv, used, recs, beats, hashes)
        if noisy and noise is not None:
            card["data"]["noise"] = _noise_card(noise)
            card["data"]["noise"]["training_copies"] = opts.noise_copies
            card["data"]["noise"]["training_draw_weight"] = opts.noisy_weight
        path = opts.out_dir / f"{name}.onnx"
        card["onnx_sha256"] = export_onnx(model, path, opts.n_leads, name, scores=family == "autoencoder")
        card["onnx_bytes"] = path.stat().st_size
        if family != "autoencoder":
            progress(f"{name}: DS1 VF alarm check (default-model safety rule)")
            vf_check = ds1_vf_alarm_check(opts.data_dir, path, recs)
            if vf_check is not None:
                card["ds1_vf_alarm_check"] = vf_check
        card["us_per_beat_batch64_1thread"] = bench_onnx(path, 2 * opts.n_leads)
        if opts.evaluate_ds2:
            progress(f"{name}: scoring DS2 end to end")
            if family == "autoencoder":
                card["ds2_auroc"] = _ds2_auroc(opts, path, prepared)
            else:
                ev = evaluate(opts.data_dir, test_recs, OnnxClassifier(path), prepared=prepared)
                card["ds2"] = ev.as_json()
                if noise is not None:
                    progress(f"{name}: scoring DS2 under held-out noise")
                    card["ds2_noise_stress"] = ds2_noise_stress(opts.data_dir, path, noise, prepared_noisy)
        card["detector_sha256"] = _detector_sha256()
        card["ds2_looks"] = DS2_LOOKS if opts.evaluate_ds2 else "never"
        write_card(path.with_suffix(".json"), card)
        rows.append(_row(card))
        progress(f"{name}: {_row(card)}")
    return rows


def _card(
    opts: TrainOptions, result: TrainResult, cv: CVResult, used: str, recs: list[str], beats: Any,
    hashes: dict[str, dict[str, str]],
) -> dict[str, Any]:
    fam = result.config.name
    counts = np.bincount(beats.label[beats.label >= 0], minlength=5)
    return {
        "name": fam,
        "family": fam.replace("+", " + "),
        "summary": SUMMARY + _ensemble_sentence(result.config, opts.seed)
        if fam != "autoencoder" else
        "Autoencoder trained on normal (N) DS1 beats; its reconstruction error is an anomaly score.",
        "data": {
            "database": "MIT-BIH Arrhythmia Database 1.0.0 (PhysioNet mitdb), 360 Hz",
            "peak_source": "our QRS detector (detector.core.qrs), labels from reference beats within 150 ms"
            if used == "detected" else "reference annotations with +-20 ms jitter",
            "leads": "lead 0 (MLII) + running template of lead 0" if opts.n_leads == 1 else
            f"leads 0-{opts.n_leads - 1} (MLII first) + running template of each",
            "split": "inter-patient, de Chazal et al. 2004 (DS1 train, DS2 test)",
            "train_records": recs,
            "cv_folds": cv.folds,
            "test_records": list(DS2),
            "excluded_records": list(PACED),
            "train_beats_per_class": dict(zip("NSVFQ", (int(c) for c in counts), strict=True)),
            "record_sha256": hashes,
        },
        "hyperparameters": config_dict(result.config),
        "n_params": result.n_params,
        "epochs_trained": result.epochs_run,
        "cv": cv.as_json(),
        "training_seconds": round(result.train_seconds, 1),
        "training_with_cv_seconds": round(result.train_seconds + cv.seconds, 1),
        "training_machine": f"{platform.machine()} CPU ({_cpu_model()}), torch {torch.__version__}, "
                            f"{opts.threads} thread(s)",
        "reproduce": {
            "train": train_command(opts, result.config),
            "eval": f"ecgmon eval beats --data-dir ../shared/data/mitdb --model {fam} --records ds2",
        },
    }


def train_command(opts: TrainOptions, cfg: TrainConfig) -> str:
    """The ``ecgmon train`` command that trains ``cfg``'s model again (a card's ``reproduce``)."""
    return (f"ecgmon train --data-dir ../shared/data/mitdb --families {cfg.family}"
            + (f" --ensemble {cfg.ensemble}" if cfg.ensemble > 1 else "")
            + (f" --epochs {opts.epochs}" if opts.epochs != DEFAULT_EPOCHS else "")
            + (f" --seed {cfg.seed}" if cfg.seed else "")
            + (f" --rr-dropout {cfg.rr_dropout}" if cfg.rr_dropout else "")
            + (f" --time-warp {cfg.time_warp}" if cfg.time_warp else "")
            + (f" --width {cfg.width}" if cfg.width else "")
            + (f" --patient-subsample {cfg.patient_subsample}" if cfg.patient_subsample < 1.0 else "")
            + (f" --patient-adversary {cfg.patient_adversary}" if cfg.patient_adversary else "")
            + (f" --label-smoothing {cfg.label_smoothing}" if cfg.label_smoothing else "")
            + (f" --mixup {cfg.mixup}" if cfg.mixup else "")
            + (f" --focal-gamma {cfg.focal_gamma}" if cfg.focal_gamma else "")
            + (f" --class-weight-power {cfg.class_weight_power}" if cfg.class_weight_power != 1.0 else "")
            + (f" --blend {cfg.blend_family}:{cfg.blend_members}" if cfg.blend_members else "")
            + (f" --leads {opts.n_leads}" if opts.n_leads != 1 else "")
            + (f" --noise-copies {opts.noise_copies}" if opts.noise_copies != 1
               and opts.noise_dir is not None and cfg.family != "autoencoder" else "")
            + (f" --noisy-weight {cfg.noisy_weight}" if cfg.noisy_weight != 1.0
               and opts.noise_dir is not None else "")
            + ("" if opts.noise_dir is not None or cfg.family == "autoencoder" else " --no-noise"))


def _cpu_model() -> str:
    """The CPU's model name: the same seeds train other networks on another CPU (its kernels
    round differently), so a card says where it was trained (BENCHMARKS.md, session 15)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "model unknown"


def _ensemble_sentence(cfg: TrainConfig, seed: int) -> str:
    members = cfg.ensemble
    if cfg.blend_members:
        k = cfg.blend_members
        def networks(n: int, family: str) -> str:
            return (f"{n} {family} network{'s' if n > 1 else ''} with seed"
                    + (f"s {seed}-{seed + n - 1}" if n > 1 else f" {seed}"))

        return (f" A blend of two families trained alike: {networks(members, cfg.family)} and "
                f"{networks(k, cfg.blend_family)}; one ONNX graph averages all {members + k} members' "
                "probabilities alike before the rule (the CV chose the epoch and the rule on the "
                "averaged probabilities too).")
    if members <= 1:
        return ""
    return (f" An ensemble of {members} networks of this family trained alike with seeds "
            f"{seed}-{seed + members - 1}: one ONNX graph averages their probabilities before the rule "
            "(the CV chose the epoch and the rule on the averaged probabilities too).")


def _noise_card(noise: NoiseSource) -> dict[str, Any]:
    return {
        "database": "MIT-BIH Noise Stress Test Database 1.0.0 (PhysioNet nstdb), records em and ma",
        "method": "training adds a noise-stressed copy of every DS1 record (both leads, one-minute segments "
                  "clean or em / ma noise at 12 or 6 dB SNR, nstdb's SNR definition; the detector and "
                  "features run on the noisy signal); the CV scores a held-out noisy copy made from the "
                  "other half of each noise record; CV score = mean of clean and noisy held-out scores",
        "segments": [list(c) if c else "clean" for c in SEGMENT_CHOICES],
        "segment_s": SEGMENT_S,
        "record_sha256": noise.sha256,
    }


def ds1_vf_alarm_check(data_dir: Path, path: Path, records: list[str]) -> dict[str, Any] | None:
    """The default-model safety check: with this model's beats, does the alarm engine raise every
    ventricular fibrillation episode (``(VFL``) of the training records?  Run on the records that
    have one (MIT-BIH DS1: 207 only); None when none has."""
    import wfdb

    from detector.eval_alarms import evaluate as evaluate_alarms

    with_vf = [r for r in records if (data_dir / f"{r}.atr").is_file()
               and "(VFL" in {a.strip("\x00 ") for a in wfdb.rdann(str(data_dir / r), "atr").aux_note}]
    if not with_vf:
        return None
    result = evaluate_alarms([data_dir / r for r in with_vf], "detected", classifier=OnnxClassifier(path))
    vf = result["totals"]["ventricular_fibrillation"]
    return {
        "vf_episodes": vf["episodes"], "vf_detected": vf["detected"], "vf_alarms": vf["alarms"],
        "records": f"{', '.join(with_vf)} (the training records with VF episodes)",
        "command": f"ecgmon eval alarms --data-dir ../shared/data/mitdb --beats detected --model {path.stem} "
                   f"--only {','.join(with_vf)}",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def ds2_noise_stress(
    data_dir: Path, path: Path, noise: NoiseSource, prepared: dict[str, PreparedRecord]
) -> dict[str, Any]:
    """DS2 end to end with every record stressed by held-out nstdb noise (``eval beats --noise-dir``)."""
    ev = evaluate(data_dir, list(DS2), OnnxClassifier(path), prepared=prepared, noise=noise)
    return {**ev.as_json(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "command": f"ecgmon eval beats --data-dir ../shared/data/mitdb --records ds2 --model "
                       f"{path.stem} --noise-dir ../shared/data/nstdb"}


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
        n_rr = sess.get_inputs()[1].shape[1]  # a model trained before a feature was appended
        rr = f.rr[matched][:, :n_rr] if isinstance(n_rr, int) else f.rr[matched]
        scores.append(sess.run(None, {"beat": f.beats[matched], "rr": rr})[0])
        abnormal.append(prep.ref_labels[prep.ref_of_test[matched]] != 0)
    return auroc(np.concatenate(abnormal), np.concatenate(scores))


def _row(card: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": card["name"], "params": card["n_params"], "onnx_kb": round(card["onnx_bytes"] / 1024, 1),
        "cv_score": round(card["cv"]["score"], 4),
        "us_per_beat": round(card["us_per_beat_batch64_1thread"], 1), "train_s": card["training_seconds"],
    }
    if "ds2" in card:
        for c, m in card["ds2"]["classes"].items():
            row[c] = {k: round(100 * v, 1) for k, v in m.items()}
        row["accuracy"] = round(100 * card["ds2"]["accuracy"], 2)
        if "ec57" in card["ds2"]:
            row["ec57"] = {k: {m: round(100 * v, 1) for m, v in f.items()}
                           for k, f in card["ds2"]["ec57"].items()}
    if "ds2_auroc" in card:
        row["auroc"] = round(card["ds2_auroc"], 4)
    return row


def rescore(
    models_dir: Path, data_dir: Path, families: list[str], progress: Progress, noise_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Score the existing ONNX models on DS2 again (after a detector change) and update their cards;
    with ``noise_dir``, the classifiers on DS2 under held-out noise too."""
    import json

    prepared: dict[str, PreparedRecord] = {}
    prepared_noisy: dict[str, PreparedRecord] = {}
    noise = load_noise(noise_dir) if noise_dir is not None else None
    rows = []
    for family in families:
        path = models_dir / f"{family}.onnx"
        card = json.loads(path.with_suffix(".json").read_text())
        opts = TrainOptions(data_dir=data_dir, out_dir=models_dir, families=[family])
        progress(f"{family}: scoring DS2 end to end")
        key = "ds2_auroc" if family == "autoencoder" else "ds2"
        before = card.get(key)
        if family == "autoencoder":
            card["ds2_auroc"] = _ds2_auroc(opts, path, prepared)
        else:
            card["ds2"] = evaluate(data_dir, list(DS2), OnnxClassifier(path), prepared=prepared).as_json()
            if noise is not None:
                progress(f"{family}: scoring DS2 under held-out noise")
                card["ds2_noise_stress"] = ds2_noise_stress(data_dir, path, noise, prepared_noisy)
            vf_check = ds1_vf_alarm_check(data_dir, path, list(DS1))
            if vf_check is not None:
                card["ds1_vf_alarm_check"] = vf_check
        card["detector_sha256"] = _detector_sha256()
        # every look at DS2 is recorded in the card, with whether the figures moved
        moved = "the same figures" if _same_figures(card[key], before) else "new figures (detector change)"
        card["ds2_looks"] = (f"{card.get('ds2_looks', '').rstrip()} Rescored on "
                             f"{time.strftime('%Y-%m-%d', time.gmtime())} (`ecgmon train --rescore`, "
                             f"detector code {card['detector_sha256'][:12]}): {moved}.").strip()
        write_card(path.with_suffix(".json"), card)
        rows.append(_row(card))
    return rows


def _same_figures(now: Any, before: Any) -> bool:
    """Whether a rescore reproduced the card's DS2 result (the confusion; statistics added to the
    card since, such as ``ec57``, are derived from it)."""
    if isinstance(now, dict) and isinstance(before, dict):
        return bool(now.get("confusion") == before.get("confusion"))
    return bool(now == before)


def _detector_sha256() -> str:
    """sha256 over every ``detector/core/*.py`` file (QRS detector and feature code) when scored."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "core").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
