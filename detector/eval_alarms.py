"""``ecgmon eval alarms``: rhythm alarm episodes against the MIT-BIH rhythm annotations.

``--beats reference`` (default) drives the alarm engine with the REFERENCE beat annotations
(labels mapped to the AAMI classes), not with our detector and classifier: this scores the
alarm rules alone.  Reference noise annotations (``~`` with both leads noisy or unreadable)
become signal quality events, and lead 0 of the raw signal feeds the VF detector.
``--beats detected`` runs the whole per-patient pipeline instead
(:class:`detector.core.monitor.PatientMonitor`: QRS detection, signal quality, the ONNX
classifier chosen with ``--model``, the same alarm engine) on both leads.

Episode matching: an annotated episode of rhythm R (e.g. ``(VT``) runs from its rhythm
annotation to the next rhythm annotation (or the end of the record).  An alarm of the
type mapped to R *matches* an episode if the alarm's onset lies in
``[episode start - tolerance, episode end + tolerance]``.  Episode sensitivity Se =
episodes with at least one matching alarm / episodes; positive predictivity +P = alarm
onsets matching an episode / alarm onsets; onset delay = first matching onset - episode
start.  Totals are summed over records before dividing (gross statistics).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import wfdb

from detector.core.rhythm import (
    AlarmConfig,
    AlarmEngine,
    AlarmEvent,
    AlarmType,
    ClassifiedBeat,
    SignalQualityEvent,
)
from stream import settings as settings_mod
from stream.errors import ConfigError, DataUnavailable
from stream.schemas import AlarmPhase, BeatClass
from stream.settings import Settings

if TYPE_CHECKING:
    from detector.core.classifier import Classifier

AAMI = {**dict.fromkeys("NLRej", BeatClass.N), **dict.fromkeys("aAJS", BeatClass.S),
        **dict.fromkeys("VE", BeatClass.V), "F": BeatClass.F, **dict.fromkeys("/fQ", BeatClass.Q)}

# alarm type -> MIT-BIH rhythm label(s) it is scored against
REFERENCE_RHYTHMS: dict[AlarmType, tuple[str, ...]] = {
    AlarmType.VTACH: ("(VT",),
    AlarmType.VFIB: ("(VFL",),
    AlarmType.AFIB: ("(AFIB",),
    AlarmType.BIGEMINY: ("(B",),
    AlarmType.TRIGEMINY: ("(T",),
}
LONG_EPISODE_S = 10.0
CHUNK_S = 10.0


@dataclass(frozen=True, slots=True)
class Episode:
    rhythm: str
    start: int
    end: int


@dataclass(slots=True)
class TypeScore:
    """Gross counts for one alarm type (summed over records)."""

    episodes: int = 0
    detected: int = 0
    long_episodes: int = 0
    long_detected: int = 0
    alarms: int = 0
    matched_alarms: int = 0
    delays_s: list[float] = field(default_factory=list)

    def add(self, other: TypeScore) -> None:
        for name in ("episodes", "detected", "long_episodes", "long_detected", "alarms",
                     "matched_alarms"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays_s += other.delays_s

    def summary(self) -> dict[str, Any]:
        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {**asdict(self), "se": ratio(self.detected, self.episodes),
                "se_long": ratio(self.long_detected, self.long_episodes),
                "ppv": ratio(self.matched_alarms, self.alarms),
                "median_delay_s": round(statistics.median(self.delays_s), 2) if self.delays_s else None}


def rhythm_episodes(samples: Sequence[int], symbols: Sequence[str], aux: Sequence[str],
                    record_end: int) -> list[Episode]:
    """Rhythm episodes from ``+`` annotations whose aux note starts with ``(``."""
    marks = [(int(s), a.strip("\x00 ")) for s, sym, a in zip(samples, symbols, aux, strict=True)
             if sym == "+" and a.strip("\x00 ").startswith("(")]
    ends = [s for s, _ in marks[1:]] + [record_end]
    return [Episode(r, s, e) for (s, r), e in zip(marks, ends, strict=True)]


def score_type(episodes: Sequence[Episode], onsets: Sequence[int], tol: int, fs_hz: float
               ) -> TypeScore:
    """Match alarm onsets of one type to the annotated episodes of its rhythm(s)."""
    score = TypeScore(episodes=len(episodes), alarms=len(onsets))
    long_n = int(LONG_EPISODE_S * fs_hz)
    for ep in episodes:
        hits = [o for o in onsets if ep.start - tol <= o <= ep.end + tol]
        is_long = ep.end - ep.start >= long_n
        score.long_episodes += is_long
        if hits:
            score.detected += 1
            score.long_detected += is_long
            score.delays_s.append((min(hits) - ep.start) / fs_hz)
    score.matched_alarms = sum(
        any(ep.start - tol <= o <= ep.end + tol for ep in episodes) for o in onsets)
    return score


def reference_beats(ann: wfdb.Annotation) -> list[ClassifiedBeat]:
    return [ClassifiedBeat(int(s), AAMI[sym]) for s, sym in zip(ann.sample, ann.symbol, strict=True)
            if sym in AAMI]


def reference_noise(ann: wfdb.Annotation, record_end: int) -> list[SignalQualityEvent]:
    """Stretches annotated ``~`` with both leads noisy (subtype 3) or unreadable (-1)."""
    out: list[SignalQualityEvent] = []
    start: int | None = None
    for s, sym, sub in zip(ann.sample, ann.symbol, ann.subtype, strict=True):
        if sym != "~":
            continue
        bad = int(sub) in (-1, 3)
        if bad and start is None:
            start = int(s)
        elif not bad and start is not None:
            out.append(SignalQualityEvent(start, int(s), "noise"))
            start = None
    if start is not None:
        out.append(SignalQualityEvent(start, record_end, "noise"))
    return out


BEAT_MODES = ("reference", "detected")


def _reference_events(path: Path, ann: wfdb.Annotation, config: AlarmConfig
                      ) -> tuple[list[AlarmEvent], float, int]:
    rec = wfdb.rdrecord(str(path), channels=[0])
    fs = float(rec.fs)
    sig = np.asarray(rec.p_signal[:, 0], dtype=np.float64)
    n = sig.size
    beats = reference_beats(ann)
    quality = reference_noise(ann, n)
    engine = AlarmEngine(fs, config, patient_id=path.name)
    events: list[AlarmEvent] = []
    step = int(CHUNK_S * fs)
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        engine.update_signal(sig[lo:hi], lo)
        events += engine.update([b for b in beats if lo <= b.sample_index < hi],
                                [q for q in quality if lo <= q.start_sample < hi], hi)
    return events, fs, n


def _detected_events(path: Path, config: AlarmConfig, classifier: Classifier
                     ) -> tuple[list[AlarmEvent], float, int]:
    from detector.core.monitor import MonitorConfig, PatientMonitor

    rec = wfdb.rdrecord(str(path))
    fs = float(rec.fs)
    x = np.asarray(rec.p_signal, dtype=np.float64)
    monitor = PatientMonitor(path.name, fs, tuple(rec.sig_name), classifier.n_leads,
                             MonitorConfig(alarms=config))
    events: list[AlarmEvent] = []
    step = int(round(fs))
    for lo in range(0, x.shape[0], step):
        pending = monitor.ingest(lo, x[lo:lo + step])
        result = classifier.classify(pending.features) if len(pending.features) else None
        events += monitor.complete(pending, result).alarms
    return events, fs, int(x.shape[0])


def run_record(path: Path, beats_mode: str, config: AlarmConfig,
               classifier: Classifier | None = None) -> tuple[list[AlarmEvent], float,
                                                              list[Episode], int]:
    """Stream one record through a fresh engine in chunks; return its alarm events."""
    ann = wfdb.rdann(str(path), "atr")
    if beats_mode == "reference":
        events, fs, n = _reference_events(path, ann, config)
    elif beats_mode == "detected" and classifier is not None:
        events, fs, n = _detected_events(path, config, classifier)
    else:
        raise ConfigError(f"beats mode {beats_mode!r} needs one of {BEAT_MODES} (and a model)")
    episodes = rhythm_episodes(ann.sample, ann.symbol, ann.aux_note, n)
    return events, fs, episodes, n


def evaluate(records: Iterable[Path], beats_mode: str = "reference", tolerance_s: float = 5.0,
             config: AlarmConfig | None = None,
             progress: Callable[[str], None] = lambda _: None,
             classifier: Classifier | None = None) -> dict[str, Any]:
    totals = {t: TypeScore() for t in AlarmType}
    per_record: dict[str, Any] = {}
    hours = 0.0
    paths = list(records)
    for i, path in enumerate(paths, 1):
        progress(f"[{i}/{len(paths)}] record {path.name}")
        events, fs, episodes, n = run_record(path, beats_mode, config or AlarmConfig(), classifier)
        hours += n / fs / 3600
        tol = int(tolerance_s * fs)
        rec_scores: dict[str, Any] = {}
        for alarm in AlarmType:
            onsets = [e.sample_index for e in events
                      if e.alarm_type is alarm and e.phase is AlarmPhase.ONSET]
            rhythms = REFERENCE_RHYTHMS.get(alarm, ())
            score = score_type([e for e in episodes if e.rhythm in rhythms], onsets, tol, fs)
            totals[alarm].add(score)
            if score.alarms or score.episodes:
                rec_scores[alarm.value] = score.summary()
        per_record[path.name] = rec_scores
    return {
        "beats": beats_mode,
        "classifier": None if classifier is None else classifier.name,
        "tolerance_s": tolerance_s, "records": len(paths),
        "hours": round(hours, 3),
        "reference_rhythms": {t.value: list(r) for t, r in REFERENCE_RHYTHMS.items()},
        "totals": {t.value: s.summary() for t, s in totals.items()},
        "per_record": per_record,
    }


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"Alarm episodes vs MIT-BIH rhythm annotations: {result['records']} records, "
        f"{result['hours']:.1f} h, beats = {result['beats'].upper()} "
        f"(tolerance {result['tolerance_s']:g} s)",
        "",
        "| alarm | reference | episodes | Se % | Se % (>=10 s) | alarms | +P % | alarms/h "
        "| median onset delay s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in result["totals"].items():
        ref = " ".join(result["reference_rhythms"].get(name, [])) or "(none)"
        delay = "-" if s["median_delay_s"] is None else f"{s['median_delay_s']:.1f}"
        scored = name in result["reference_rhythms"]
        lines.append(
            f"| {name} | {ref} | {s['episodes'] if scored else '-'} | {_pct(s['se'])} "
            f"| {_pct(s['se_long'])} | {s['alarms']} | {_pct(s['ppv']) if scored else '-'} "
            f"| {s['alarms'] / result['hours']:.2f} | {delay} |")
    return "\n".join(lines)


def _record_paths(data_dir: Path, only: str | None) -> list[Path]:
    names = sorted(p.stem for p in data_dir.glob("*.atr"))
    if only:
        wanted = [r.strip() for r in only.split(",") if r.strip()]
        missing = [r for r in wanted if r not in names]
        if missing:
            raise DataUnavailable(f"records {missing} have no .atr annotations in {data_dir}")
        names = wanted
    if not names:
        raise DataUnavailable(f"no WFDB records with .atr annotations in {data_dir}")
    return [data_dir / n for n in names]


def run(cfg: Settings, args: argparse.Namespace) -> int:
    data_dir = cfg.data_dir or (cfg.cache_dir / cfg.physionet_db)
    if not data_dir.is_dir():
        raise ConfigError(f"no records at {data_dir}: pass --data-dir (e.g. ../shared/data/mitdb)")
    paths = _record_paths(data_dir, args.only)
    classifier: Classifier | None = None
    if args.beats == "detected":
        from detector.onnx_classifier import OnnxClassifier

        classifier = OnnxClassifier.load(cfg.model)
    result = evaluate(paths, args.beats, args.tolerance_s, classifier=classifier,
                      progress=lambda m: print(m, file=sys.stderr, flush=True))  # noqa: T201
    print(format_table(result))  # noqa: T201
    if args.beats == "reference":
        print("\nbeats: reference -- the engine is fed the cardiologists' beat annotations, "  # noqa: T201
              "not ecgmon's QRS detector and classifier")
    else:
        print(f"\nbeats: detected -- QRS detector + classifier {result['classifier']}")  # noqa: T201
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "alarms", help="rhythm alarm episodes vs MIT-BIH rhythm annotations (Se, +P, delay)",
        description="\n\n".join(__doc__.split("\n\n")[1:3]) if __doc__ else None)
    settings_mod.add_flags(parser, ["data_dir", "model"])
    parser.add_argument("--json", metavar="FILE", help="also write the full result as JSON")
    parser.add_argument("--beats", choices=BEAT_MODES, default="reference",
                        help="reference = annotated beats and labels (scores the alarm rules "
                        "alone); detected = QRS detector + --model classifier [default reference]")
    parser.add_argument("--only", metavar="RECORDS", help="comma-separated records (default all)")
    parser.add_argument("--tolerance-s", type=float, default=5.0,
                        help="episode matching tolerance, seconds [default 5]")
    parser.set_defaults(run=run)
