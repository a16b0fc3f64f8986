"""``ecgmon eval beats``: our QRS detector + beat classifier end to end, scored the EC57 (bxb) way.

Detected beats are matched to reference beats within 150 ms.  The confusion
matrix has a sixth label, ``none``: row ``none`` counts extra detections (no
reference beat), column ``none`` counts missed reference beats.  Se and +P of a
class count those too (a missed V beat lowers V Se, an extra beat called V
lowers V +P); gross statistics sum over records before dividing (``sumstats``).

Beside these per-class figures, :meth:`BeatEvaluation.ec57` gives the VEB and SVEB
statistics exactly as ``bxb`` defines them for EC57 reports, which differ in what
counts as a false positive: a fusion (F) or unclassifiable (Q) beat called V is not
a false VEB (``VFP = Nv + Sv + Ov``: a fusion beat is partly ventricular), and a Q
beat called S is not a false SVEB (``SFP = Ns + Vs + Fs + Os``).  Published
inter-patient figures (de Chazal 2004 and after) are VEB and SVEB figures.

Those figures pool a few thousand beats but only as many patients as records, and one record can
hold most of a class (DS2: record 232 has three quarters of the S beats), so
:func:`patient_intervals` adds how far they move when other patients like these are drawn: a
percentile bootstrap over the records (scipy.stats.bootstrap), each resample summing its records'
confusions as the gross statistics do.  Beside the gross statistics EC57 reports each record's
figures and their *average* over the records (WFDB ``sumstats``: the mean of the records'
ratios, a record left out of a mean where its denominator is 0): :func:`record_figures`,
:func:`average_figures`.  The gross figures weigh each beat alike, the average each patient.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import bootstrap

from detector.core.beats import BeatFeatures, extract_beats
from detector.core.classifier import AAMI_CLASSES, Classifier, select_leads
from detector.core.qrs import detect_peaks
from detector.evaluation import class_figures, ec57_counting
from detector.training.card import interval_sentence
from detector.training.data import DS2, MATCH_WINDOW_S, PACED, load_record, match_nearest, require_records
from detector.training.noise import NoiseSource, load_noise, noisy_copy
from stream.errors import ConfigError
from stream.settings import Settings, add_flags

logger = logging.getLogger(__name__)

LABELS = [c.value for c in AAMI_CLASSES] + ["none"]
_NONE = len(AAMI_CLASSES)
INTERVAL_LEVEL = 0.95
INTERVAL_RESAMPLES = 2000
INTERVAL_MIN_RECORDS = 10  # a bootstrap over fewer patients says more about the resampling than about them


def patient_intervals(per_record: dict[str, npt.NDArray[np.int64]] | dict[str, list[list[int]]],
                      level: float = INTERVAL_LEVEL, resamples: int = INTERVAL_RESAMPLES,
                      seed: int = 0) -> dict[str, Any] | None:
    """Percentile bootstrap intervals of the EC57 VEB and SVEB Se and +P over the records
    (patients): each resample draws as many records as there are, with replacement, and sums their
    confusions before dividing (``sumstats``).  A resample without a class's reference beats (or
    calls) counts its Se (+P) as 0, as the point figures do.  Fixed seed: the same confusions give
    the same intervals.  None for fewer than ``INTERVAL_MIN_RECORDS`` records."""
    if len(per_record) < INTERVAL_MIN_RECORDS:
        return None
    stack = ec57_counting(np.stack([np.asarray(v, np.int64) for v in per_record.values()]))

    def figures(idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        m = class_figures(stack[idx].sum(axis=0), LABELS[:_NONE])
        return np.array([m["V"]["se"], m["V"]["ppv"], m["S"]["se"], m["S"]["ppv"]])

    res = bootstrap((np.arange(len(stack)),), figures, vectorized=False, n_resamples=resamples,
                    confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = ([round(float(v), 4) for v in b] for b in res.confidence_interval)
    return {"level": level, "resamples": resamples, "records": len(stack), "method": "percentile bootstrap "
            "over records", "veb": {"se": [low[0], high[0]], "ppv": [low[1], high[1]]},
            "sveb": {"se": [low[2], high[2]], "ppv": [low[3], high[3]]}}


_EC57 = (("veb", 2), ("sveb", 1))  # EC57 name, AAMI class index


def record_figures(per_record: dict[str, npt.NDArray[np.int64]] | dict[str, list[list[int]]],
                   ) -> dict[str, dict[str, dict[str, float | None]]]:
    """Each record's EC57 VEB and SVEB Se and +P (``bxb``'s record-by-record line): None where the
    record has no reference beat of the class (Se) or no beat called it (+P), which ``sumstats``
    prints as "-" and leaves out of the average."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name, raw in per_record.items():
        cm = ec57_counting(np.asarray(raw, np.int64))
        figs: dict[str, dict[str, float | None]] = {}
        for key, c in _EC57:
            hit, ref, called = int(cm[c, c]), int(cm[c, :].sum()), int(cm[:, c].sum())
            figs[key] = {"se": hit / ref if ref else None, "ppv": hit / called if called else None}
        out[name] = figs
    return out


def average_figures(by_record: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, dict[str, Any]]:
    """EC57's average statistics (``sumstats``' "Average" line): for VEB and SVEB Se and +P the mean
    of the records' figures over the records that have one, with that number of records (None and
    0 when no record has one)."""
    out: dict[str, dict[str, Any]] = {}
    for key, _ in _EC57:
        out[key] = {}
        for stat in ("se", "ppv"):
            vals = [v for f in by_record.values() if (v := f[key][stat]) is not None]
            out[key][stat] = float(np.mean(vals)) if vals else None
            out[key][f"{stat}_records"] = len(vals)
    return out


@dataclass
class BeatEvaluation:
    """Confusion (reference rows x test columns, LABELS order) and per-beat detail for plots."""

    confusion: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((6, 6), np.int64))
    per_record: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    true: list[npt.NDArray[np.int64]] = field(default_factory=list)
    probabilities: list[npt.NDArray[np.float32]] = field(default_factory=list)
    examples: dict[str, list[npt.NDArray[np.float32]]] = field(default_factory=dict)
    seconds: float = 0.0
    start_s: float = 0.0  # beats before this time in each record are not scored

    def class_metrics(self) -> dict[str, dict[str, float]]:
        return class_figures(self.confusion, LABELS[:_NONE])

    def ec57(self) -> dict[str, dict[str, float]]:
        """VEB and SVEB sensitivity and positive predictivity as ``bxb`` computes them (EC57).

        Sensitivity counts every reference V (S) beat, missed ones included; the false
        positives leave out F and Q beats called V and Q beats called S (:func:`ec57_counting`)."""
        m = class_figures(ec57_counting(self.confusion), LABELS[:_NONE])
        return {name: {k: m[c][k] for k in ("se", "ppv")} for name, c in (("veb", "V"), ("sveb", "S"))}

    def accuracy(self) -> float:
        """Fraction of matched beats whose class is right (missed and extra beats excluded)."""
        matched = self.confusion[:_NONE, :_NONE]
        return float(np.trace(matched) / max(int(matched.sum()), 1))

    def as_json(self) -> dict[str, Any]:
        cm = self.confusion
        intervals = patient_intervals(self.per_record)
        by_record = record_figures(self.per_record)
        return {
            "classes": self.class_metrics(),
            "ec57": self.ec57(),
            **({"ec57_intervals": intervals} if intervals is not None else {}),
            "ec57_average": average_figures(by_record),
            "ec57_records": by_record,
            "confusion": cm.tolist(),
            "labels": LABELS,
            "accuracy": self.accuracy(),
            "missed_beats": int(cm[:_NONE, _NONE].sum()),
            "extra_beats": int(cm[_NONE, :_NONE].sum()),
            "records": {k: v.tolist() for k, v in self.per_record.items()},
            **({"start_s": self.start_s} if self.start_s else {}),
        }


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A record's detected beats, their features and their bxb match to the reference."""

    name: str
    features: BeatFeatures
    ref_labels: npt.NDArray[np.int64]
    ref_of_test: npt.NDArray[np.int64]
    ref_samples: npt.NDArray[np.int64]
    fs_hz: float


def prepare_record(
    data_dir: Path, name: str, n_leads: int, noise: NoiseSource | None = None
) -> PreparedRecord:
    """Run our QRS detector and the feature extractor over one record and match to the reference.

    With ``noise``, the record is first stressed with held-out nstdb noise
    (:func:`detector.training.noise.noisy_copy`, the noise half that training never uses)."""
    rec = load_record(data_dir, name)
    if noise is not None:
        rec = noisy_copy(rec, noise, 0, held_out=True)
    peaks = detect_peaks(rec.signal_mv, rec.fs_hz)
    feats = extract_beats(select_leads(rec.signal_mv, n_leads), rec.fs_hz, peaks)
    ref_of_test = match_nearest(rec.ref_samples, feats.sample_index, round(MATCH_WINDOW_S * rec.fs_hz))
    return PreparedRecord(name, feats, rec.ref_labels, ref_of_test, rec.ref_samples, rec.fs_hz)


def score_record(
    prep: PreparedRecord, classifier: Classifier, ev: BeatEvaluation, start_s: float = 0.0
) -> None:
    """Classify a prepared record's beats and add its confusion counts to ``ev``.

    Every beat is classified (the classifier sees the whole record, as live); beats before
    ``start_s`` are not scored (``bxb -f``: EC57 leaves the first 5 minutes out as a learning
    period).  A matched pair counts when its reference beat is scored."""
    result = classifier.classify(prep.features)
    pred = result.class_index
    start = round(start_s * prep.fs_hz)
    ref_scored = prep.ref_samples >= start
    matched = prep.ref_of_test >= 0
    matched &= ref_scored[np.maximum(prep.ref_of_test, 0)]
    extra = (prep.ref_of_test < 0) & (prep.features.sample_index >= start)
    cm = np.zeros((6, 6), np.int64)
    true = prep.ref_labels[prep.ref_of_test[matched]]
    np.add.at(cm, (true, pred[matched]), 1)
    np.add.at(cm, (np.full(int(extra.sum()), _NONE), pred[extra]), 1)
    missed = ref_scored.copy()
    missed[prep.ref_of_test[prep.ref_of_test >= 0]] = False
    np.add.at(cm, (prep.ref_labels[missed], np.full(int(missed.sum()), _NONE)), 1)
    ev.confusion += cm
    ev.per_record[prep.name] = cm
    ev.true.append(true)
    ev.probabilities.append(result.probabilities[matched])
    beats = prep.features.beats[matched]
    for c in np.unique(true):
        shown = ev.examples.setdefault(LABELS[int(c)], [])
        for i in np.flatnonzero(true == c)[: max(0, 4 - len(shown))]:
            shown.append(beats[i, 0])


def evaluate(
    data_dir: Path, records: list[str], classifier: Classifier, progress: bool = False,
    prepared: dict[str, PreparedRecord] | None = None, noise: NoiseSource | None = None,
    start_s: float = 0.0,
) -> BeatEvaluation:
    """Score ``classifier`` on ``records`` end to end (our detector's beats), from ``start_s``.

    ``prepared`` caches detection and features between models (training compares many).
    """
    ev = BeatEvaluation(start_s=start_s)
    start = time.perf_counter()
    for i, name in enumerate(records):
        prep = prepared.get(name) if prepared is not None else None
        if prep is None:
            prep = prepare_record(data_dir, name, classifier.n_leads, noise)
            if prepared is not None:
                prepared[name] = prep
        score_record(prep, classifier, ev, start_s)
        if progress:
            m = ev.class_metrics()
            logger.info(
                "record %s (%d/%d) done; running S Se %.3f +P %.3f, V Se %.3f +P %.3f",
                name, i + 1, len(records), m["S"]["se"], m["S"]["ppv"], m["V"]["se"], m["V"]["ppv"],
            )
    ev.seconds = time.perf_counter() - start
    return ev


def parse_records(raw: str) -> list[str]:
    """``ds2`` (the de Chazal test set) or a comma-separated list; paced records are refused."""
    names = list(DS2) if raw.strip().lower() == "ds2" else [r.strip() for r in raw.split(",") if r.strip()]
    paced = sorted(set(names) & set(PACED))
    if paced:
        raise ConfigError(f"records {paced} contain paced beats and are excluded from classification (EC57)")
    if not names:
        raise ConfigError("--records: give ds2 or a comma-separated list of record names")
    return names


def format_table(ev: BeatEvaluation) -> str:
    m = ev.class_metrics()
    lines = ["class     Se     +P     F1"]
    lines += [f"{c:5s} {m[c]['se']:6.3f} {m[c]['ppv']:6.3f} {m[c]['f1']:6.3f}" for c in LABELS[:_NONE]]
    e = ev.ec57()
    lines.append(f"EC57 (bxb) VEB Se {e['veb']['se']:.3f} +P {e['veb']['ppv']:.3f}, "
                 f"SVEB Se {e['sveb']['se']:.3f} +P {e['sveb']['ppv']:.3f} "
                 "(F and Q beats called V, Q called S: not false positives)")
    iv = patient_intervals(ev.per_record)
    if iv is not None:
        lines.append(interval_sentence(iv, percent=False))
    lines.append(f"accuracy (matched beats) {ev.accuracy():.4f}")
    lines.append("confusion (rows reference, columns ecgmon): " + " ".join(LABELS))
    lines += [f"{LABELS[i]:5s} " + " ".join(f"{v:6d}" for v in row) for i, row in enumerate(ev.confusion)]
    return "\n".join(lines + [""] + record_table(ev))


def record_table(ev: BeatEvaluation) -> list[str]:
    """EC57's record-by-record table (reference beats, VEB and SVEB Se / +P; "-": no reference
    beats of the class, or none called it), then the gross and the average statistics."""
    def cell(v: float | None) -> str:
        return f"{'-':>7s}" if v is None else f"{v:7.3f}"

    by_record = record_figures(ev.per_record)
    lines = ["per record, EC57 counting: reference beats (all, S, V), VEB and SVEB Se / +P "
             "(\"-\": none of the class, or none called so)",
             "record  beats      S      V  VEB Se  VEB +P SVEB Se SVEB +P"]
    for name, figs in by_record.items():
        cm = ev.per_record[name]
        lines.append(f"{name:6s} {int(cm[:_NONE].sum()):6d} {int(cm[1].sum()):6d} {int(cm[2].sum()):6d} "
                     + " ".join(cell(figs[k][s]) for k, _ in _EC57 for s in ("se", "ppv")))
    gross, avg = ev.ec57(), average_figures(by_record)
    lines.append("gross" + " " * 23 + " ".join(cell(gross[k][s]) for k, _ in _EC57 for s in ("se", "ppv"))
                 + "  (beats pooled)")
    lines.append("average" + " " * 21 + " ".join(cell(avg[k][s]) for k, _ in _EC57 for s in ("se", "ppv"))
                 + "  (mean over records, each alike; records: "
                 + " / ".join(str(avg[k][f"{s}_records"]) for k, _ in _EC57 for s in ("se", "ppv")) + ")")
    return lines


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from detector.onnx_classifier import OnnxClassifier

    if settings.data_dir is None:
        raise ConfigError("--data-dir (ECGMON_DATA_DIR): point it at a folder of MIT-BIH records")
    records = parse_records(args.eval_records)
    require_records(settings.data_dir, records)
    if not args.score_from_s >= 0:
        raise ConfigError(f"--score-from {args.score_from_s}: give seconds into each record, >= 0")
    classifier = OnnxClassifier.load(settings.model)
    noise = load_noise(Path(args.noise_dir)) if args.noise_dir else None  # NoiseUnavailable: a clear error
    logger.info("evaluating model %s on %d records%s", classifier.name, len(records),
                " stressed with held-out nstdb noise" if noise else "")
    ev = evaluate(settings.data_dir, records, classifier, progress=True, noise=noise,
                  start_s=args.score_from_s)
    print(format_table(ev))  # noqa: T201 - the command's output
    if args.json:
        Path(args.json).write_text(json.dumps(ev.as_json(), indent=2) + "\n")
    if args.plots:
        from detector.training.plots import save_plots

        save_plots(ev, Path(args.plots), classifier.name)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "beats", help="beat classification (N S V F Q) end to end on MIT-BIH records",
        description="Detect beats with our QRS detector, classify them with an ONNX model and score "
        "against the reference labels (150 ms matching, missed and extra beats counted as in bxb): "
        "Se, +P and F1 per class, and the EC57 VEB and SVEB figures as bxb computes them, with (for 10 "
        "records or more) their 95 % intervals over the patients: a percentile bootstrap of the records; "
        "then EC57's record-by-record table with the gross and the average statistics (sumstats).",
    )
    add_flags(parser, ["data_dir", "model"])
    parser.add_argument("--records", dest="eval_records", default="ds2",
                        help="ds2 (de Chazal test set, default) or a comma-separated list")
    parser.add_argument("--score-from", dest="score_from_s", type=float, default=0.0, metavar="SECONDS",
                        help="score beats from this many seconds into each record (default 0: the whole "
                        "record, as published inter-patient figures; 300 = bxb's default and EC57's "
                        "5-minute learning period). Every beat is still classified")
    parser.add_argument("--json", default=None, help="write the metrics as JSON to this file")
    parser.add_argument("--noise-dir", default=None,
                        help="noise stress test: add MIT-BIH Noise Stress Test noise (records em, ma from "
                        "this folder, e.g. ../shared/data/nstdb) to every record first, in one-minute "
                        "segments clean or at 12 / 6 dB SNR, from the half of each noise record that "
                        "training never uses")
    parser.add_argument("--plots", default=None,
                        help="write PNG plots to this folder (needs the train extra: matplotlib)")
    parser.set_defaults(run=_run)
