"""``ecgmon train``: train the beat classifiers on MIT-BIH DS1, score them on DS2, export ONNX + cards.

Needs the ``train`` extra (PyTorch CPU, matplotlib); imported lazily so the
rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from detector.training import DEFAULT_EPOCHS
from stream.errors import ConfigError
from stream.settings import Settings, add_flags

logger = logging.getLogger(__name__)

ALL_FAMILIES = "cnn,resnet,inception,lstm,mlp,autoencoder"


def _progress(msg: str) -> None:
    logger.info(msg)


# the DS1 training's options (TrainOptions fields, their defaults "off"): --ucr and --rescore
# train nothing of DS1, so one of these with them would be silently ignored
_STUDY_OPTIONS = ("rr_dropout", "time_warp", "width", "patient_subsample", "patient_adversary",
                  "label_smoothing", "mixup", "class_weight_power", "adapt_bn", "sinus_ratio",
                  "focal_gamma", "noise_copies", "noisy_weight")


def _run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("ecgmon train needs PyTorch: pip install -e '.[train]'") from None
    from detector.training.pipeline import TrainOptions

    given = [f"--{name.replace('_', '-')}" for name in _STUDY_OPTIONS
             if getattr(args, name) != getattr(TrainOptions, name)] + (["--blend"] if args.blend else []) + (
        ["--leads"] if args.n_leads != TrainOptions.n_leads else [])
    if given and (args.ucr or args.rescore):
        one = len(given) == 1
        raise ConfigError(f"{' '.join(given)}: {'an option' if one else 'options'} of the DS1 training, "
                          f"which {'--ucr' if args.ucr else '--rescore'} does not run; "
                          f"leave {'it' if one else 'them'} out")
    if args.ucr:
        from detector.training.ucr import cross_validate

        result: dict[str, Any] = cross_validate(
            Path(args.ucr), folds=args.folds or 5, epochs=args.ucr_epochs, seed=args.seed,
            threads=args.threads, progress=_progress,
        )
        print(  # noqa: T201 - the command's output
            f"{result['dataset']}: {result['folds']}-fold CV accuracy on the shared training split "
            f"{100 * float(result['mean_accuracy']):.2f} % (+- {100 * float(result['std_accuracy']):.2f}); "
            f"InceptionTime reports {100 * float(result['reference_test_accuracy_inceptiontime']):.2f} % "
            "on the (unavailable here) test split"
        )
        if args.out_json:
            Path(args.out_json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    if settings.data_dir is None:
        raise ConfigError(
            "--data-dir (ECGMON_DATA_DIR): point it at the MIT-BIH folder (../shared/data/mitdb)"
        )
    from detector.training.data import CV_FOLDS
    from detector.training.pipeline import rescore, run_training

    unknown = [f for f in args.families.split(",") if f not in ALL_FAMILIES.split(",")]
    if unknown:
        raise ConfigError(f"--families: unknown {', '.join(map(repr, unknown))}; choose from {ALL_FAMILIES}")
    if args.rescore:
        rows = rescore(Path(args.out), settings.data_dir, args.families.split(","), _progress,
                       _noise_dir(settings.data_dir, args))
        print(json.dumps(rows, indent=2))  # noqa: T201 - the command's output
        return 0

    if not 0.0 <= args.rr_dropout < 1.0:
        raise ConfigError(f"--rr-dropout {args.rr_dropout}: a share of the training beats, 0 <= P < 1")
    if args.width < 0 or args.width == 1:
        raise ConfigError(f"--width {args.width}: a number of channels, at least 2 (0: the cnn's default)")
    if not 0.0 < args.patient_subsample <= 1.0:
        raise ConfigError(f"--patient-subsample {args.patient_subsample}: a share of the training patients, "
                          "0 < F <= 1")
    if not 0.0 <= args.patient_adversary <= 10.0:
        raise ConfigError(f"--patient-adversary {args.patient_adversary}: the reversed gradient's weight, "
                          "0 <= W <= 10 (0: off)")
    if not 0.0 <= args.label_smoothing < 0.5:
        raise ConfigError(f"--label-smoothing {args.label_smoothing}: the target mass spread over the "
                          "classes, 0 <= E < 0.5 (0: off)")
    if not 0.0 <= args.focal_gamma <= 5.0:
        raise ConfigError(f"--focal-gamma {args.focal_gamma}: the focal loss's exponent, 0 <= G <= 5 "
                          "(0: off, the cross-entropy)")
    if args.focal_gamma and args.label_smoothing:
        raise ConfigError("--focal-gamma and --label-smoothing do not go together (two ways of softening "
                          "the loss): choose one")
    if not 1 <= args.noise_copies <= 4:
        raise ConfigError(f"--noise-copies {args.noise_copies}: noise-stressed training copies of each "
                          "record, 1 to 4")
    if not 0.0 < args.noisy_weight <= 1.0:
        raise ConfigError(f"--noisy-weight {args.noisy_weight}: the noise-stressed beats' draw weight "
                          "against the clean beats', 0 < W <= 1 (1: alike)")
    if args.noisy_weight != 1.0 and args.no_noise:
        raise ConfigError("--noisy-weight with --no-noise: there are no noise-stressed beats to weigh; "
                          "leave one out")
    if args.noise_copies != 1 and args.no_noise:
        raise ConfigError("--noise-copies with --no-noise: there is no noise-stressed training to copy; "
                          "leave one out")
    if not 0.0 <= args.mixup <= 10.0:
        raise ConfigError(f"--mixup {args.mixup}: the Beta(A, A) blend's parameter, 0 <= A <= 10 (0: off)")
    if not 0.0 <= args.class_weight_power <= 2.0:
        raise ConfigError(f"--class-weight-power {args.class_weight_power}: the inverse class frequency's "
                          "exponent, 0 <= P <= 2 (1: the default; 0: no balancing)")
    if args.mixup and args.patient_adversary:
        raise ConfigError("--mixup and --patient-adversary do not go together (a blended beat has no one "
                          "patient): choose one")
    if args.adapt_bn and not args.cv_predictions:
        raise ConfigError("--adapt-bn is a CV-only study (no model is exported): give --cv-predictions DIR")
    if args.sinus_ratio and not args.cv_predictions:
        raise ConfigError("--sinus-ratio is a CV-only study (no model is exported): "
                          "give --cv-predictions DIR")
    blend_family, blend_members = _blend(args.blend, args.families.split(","))
    if not 0.0 <= args.time_warp < 0.5:
        raise ConfigError(f"--time-warp {args.time_warp}: the largest relative stretch, 0 <= P < 0.5")
    opts = TrainOptions(
        data_dir=settings.data_dir, out_dir=Path(args.out), families=args.families.split(","),
        epochs=args.epochs, peaks=args.peaks, seed=args.seed, threads=args.threads,
        records=_split(args.train_records), folds=args.folds or len(CV_FOLDS), evaluate_ds2=not args.no_ds2,
        cache_dir=settings.cache_dir / "beats",
        max_train_beats=args.max_train_beats, ensemble=args.ensemble,
        noise_dir=_noise_dir(settings.data_dir, args),
        cv_predictions_dir=Path(args.cv_predictions) if args.cv_predictions else None,
        rr_dropout=args.rr_dropout, time_warp=args.time_warp, width=args.width,
        patient_subsample=args.patient_subsample, patient_adversary=args.patient_adversary,
        label_smoothing=args.label_smoothing, mixup=args.mixup, class_weight_power=args.class_weight_power,
        adapt_bn=args.adapt_bn, blend_family=blend_family, blend_members=blend_members,
        sinus_ratio=args.sinus_ratio, n_leads=args.n_leads, focal_gamma=args.focal_gamma,
        noise_copies=args.noise_copies, noisy_weight=args.noisy_weight,
    )
    rows = run_training(opts, _progress)
    print(json.dumps(rows, indent=2))  # noqa: T201 - the command's output
    return 0


def _noise_dir(data_dir: Path, args: argparse.Namespace) -> Path | None:
    """The nstdb folder for noise-stressed training (``--noise-dir``, else nstdb beside the data)."""
    if args.no_noise:
        return None
    folder = Path(args.noise_dir) if args.noise_dir else data_dir.resolve().parent / "nstdb"
    from detector.training.noise import missing_noise_records

    missing = missing_noise_records(folder)
    if missing:
        raise ConfigError(
            f"noise-stressed training needs the nstdb noise records {' and '.join(missing)} "
            f"in {folder}: "
            "pass --noise-dir with a copy of PhysioNet's nstdb (e.g. ../shared/data/nstdb) or --no-noise "
            "to train on clean beats only"
        )
    return folder


def _blend(raw: str | None, families: list[str]) -> tuple[str, int]:
    """``--blend FAMILY:K`` as (family, members); ("", 0) when not given."""
    if raw is None:
        return "", 0
    from detector.training.models import FAMILIES

    family, _, k = raw.partition(":")
    if family not in FAMILIES or not k.isdigit() or int(k) < 1:
        raise ConfigError(f"--blend {raw}: a classifier family ({', '.join(FAMILIES)}) and its number of "
                          "members, e.g. mlp:3")
    if family in families:
        raise ConfigError(f"--blend {raw}: {family} is also in --families; more members of one family "
                          "come from --ensemble")
    return family, int(k)


def _split(raw: str | None) -> list[str] | None:
    return [r.strip() for r in raw.split(",") if r.strip()] if raw else None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train", help="train the beat classifiers (MIT-BIH DS1) and export ONNX models with cards",
        description="Train beat classifiers on MIT-BIH DS1 and a copy of it stressed with real noise "
        "(MIT-BIH Noise Stress Test em / ma records): leave-patients-out cross-validation over DS1, "
        "scored on clean and held-out noisy beats, chooses the epoch count, the S rule and the V "
        "offset, then each model is trained on all of DS1, scored end to end on DS2 and exported to "
        "detector/models/<name>.onnx with model cards.  "
        "With --ucr, cross-validate on a UCR data set instead.",
    )
    add_flags(parser, ["data_dir", "cache_dir"])
    parser.add_argument("--families", default=ALL_FAMILIES, help=f"comma-separated (default {ALL_FAMILIES})")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help="length of the cosine learning-rate schedule (default %(default)s); DS1 CV "
                        "picks the epoch to stop at")
    parser.add_argument("--peaks", default="auto", choices=("auto", "detected", "reference"),
                        help="R-peaks: our detector (auto when present) or reference positions +-20 ms")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (a run repeats bit for bit on the same CPU model)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--ensemble", type=int, default=1,
                        help="members per classifier, trained with seeds SEED, SEED+1, ...; one ONNX "
                        "model averages their probabilities (CV and S rule use the average too)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "models"),
                        help="folder for <name>.onnx, .json and .md")
    parser.add_argument("--records", dest="train_records", default=None,
                        help="use only these DS1 records (quick runs, tests)")
    parser.add_argument("--rr-dropout", type=float, default=0.0, metavar="P",
                        help="study option: for this share of the training beats, show the networks "
                        "the timing features of a beat on time at the local rate (default 0: off)")
    parser.add_argument("--time-warp", type=float, default=0.0, metavar="P",
                        help="study option: stretch each training beat and its template in time about "
                        "the R-peak by a factor drawn from [1-P, 1+P] (default 0: off)")
    parser.add_argument("--width", type=int, default=0, metavar="N",
                        help="the cnn's channels (default 0: its own, 24); other families ignore it")
    parser.add_argument("--patient-subsample", type=float, default=1.0, metavar="F",
                        help="study option: each ensemble member trains on its own random share F of the "
                        "training patients (default 1: all)")
    parser.add_argument("--patient-adversary", type=float, default=0.0, metavar="W",
                        help="study option: train against a head that guesses the training patient from "
                        "the beat's embedding and class, its gradient reversed with weight up to W "
                        "(default 0: off)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, metavar="E",
                        help="study option: train against smoothed targets, 1-E on the beat's class and E "
                        "spread over the five (default 0: off)")
    parser.add_argument("--focal-gamma", type=float, default=0.0, metavar="G",
                        help="study option: the focal loss, each beat's cross-entropy scaled by "
                        "(1 - p) ** G, p the network's probability of its class, so beats it already gets "
                        "right weigh less (default 0: off)")
    parser.add_argument("--noise-copies", type=int, default=1, metavar="N",
                        help="study option: N noise-stressed training copies of each DS1 record, each "
                        "with its own noise segments (default 1); the CV's held-out noisy copy stays one")
    parser.add_argument("--noisy-weight", type=float, default=1.0, metavar="W",
                        help="study option: the noise-stressed training beats are drawn into the epochs "
                        "with W times the clean beats' weight (0 < W <= 1; default 1: alike; "
                        "session 25: 0.5 not adopted)")
    parser.add_argument("--mixup", type=float, default=0.0, metavar="A",
                        help="study option: train on blends of pairs of beats (beat, template and RR "
                        "features) and of their classes, weights from Beta(A, A) (default 0: off)")
    parser.add_argument("--class-weight-power", type=float, default=1.0, metavar="P",
                        help="each class (N, S, V) is drawn into the training epochs with weight (N's "
                        "count / its count) ** P, capped at 30 (default 1: S and V about as often as N, "
                        "as the shipped resnet, inception and lstm were trained; 0.5: the default cnn, "
                        "session 19, and mlp, session 21; 0: as they come)")
    parser.add_argument("--blend", default=None, metavar="FAMILY:K",
                        help="study option: each classifier's ensemble also holds K members of FAMILY "
                        "(seeds SEED, SEED+1, ..., the same options), all members' probabilities averaged "
                        "alike; the model is named <family>+FAMILY (session 22 studied --families cnn "
                        "--ensemble 5 --blend mlp:3: more V +P, less S +P, not adopted)")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="CV-only study: score the held-out patients with each network's batch-norm "
                        "statistics re-estimated on each patient's own beats (needs --cv-predictions; "
                        "no model is exported)")
    parser.add_argument("--sinus-ratio", action="store_true",
                        help="CV-only study: one more RR feature, the previous RR over the 90th "
                        "percentile of the 30 intervals before it (detector.training.sinus; needs "
                        "--cv-predictions; no model is exported; session 23: lower on DS1 CV, not "
                        "adopted)")
    parser.add_argument("--leads", dest="n_leads", type=int, choices=(1, 2), default=1,
                        help="leads per beat window: 1 (MLII, the shipped models) or 2 (MLII and the "
                        "record's second lead, each with its running template; a one-lead stream has "
                        "its lead repeated; session 23: lower on DS1 CV, not adopted)")
    parser.add_argument("--max-train-beats", type=int, default=0, help="beats per epoch (0 = all)")
    parser.add_argument("--no-ds2", action="store_true", help="skip the DS2 evaluation (quick runs)")
    parser.add_argument("--noise-dir", default=None,
                        help="MIT-BIH Noise Stress Test records em and ma: classifiers also train on a "
                        "noise-stressed copy of DS1 and the CV scores held-out noise (default: nstdb beside "
                        "--data-dir)")
    parser.add_argument("--no-noise", action="store_true",
                        help="train and cross-validate on clean beats only")
    parser.add_argument("--rescore", action="store_true",
                        help="no training: score the existing models on DS2 again (and, unless --no-noise, "
                        "on DS2 under held-out noise) and update their cards (after a QRS detector change)")
    parser.add_argument("--cv-predictions", default=None, metavar="DIR",
                        help="also save each family's pooled held-out CV outputs (per epoch) with "
                        "labels, RR features and records as DIR/<family>_cv.npz, to study rules "
                        "on DS1 CV without retraining")
    parser.add_argument("--ucr", default=None, help="UCR file (e.g. ECG5000_TRAIN.txt): k-fold CV instead")
    parser.add_argument("--folds", type=int, default=None,
                        help="cross-validation folds (DS1: 4 fixed patient folds; --ucr: 5 stratified)")
    parser.add_argument("--ucr-epochs", type=int, default=40, help="epochs per fold for --ucr")
    parser.add_argument("--out-json", default=None, help="with --ucr: write the result as JSON here")
    parser.set_defaults(run=_run)


