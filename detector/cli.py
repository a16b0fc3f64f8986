"""``ecgmon detect`` (the live service) and ``ecgmon analyze`` (one recording, offline)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream import metrics
from stream.settings import ALARM_FLAGS, Settings, add_flags
from stream.shutdown import stop_on_signals

DETECT_FLAGS = (
    "kafka_bootstrap", "redis_url", "kafka_idempotence", "topic_prefix", "partitions",
    "fetch_max_wait_ms", "poll_interval_ms", "linger_ms", "model", "metrics_port", "metrics_host",
    "log_level", "log_format", *ALARM_FLAGS,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    detect = sub.add_parser(
        "detect", help="consume sample chunks, detect and classify beats, raise alarms",
        description="Kafka consumer-group member: R-peaks, beat classes and rhythm alarms for "
        "every patient on its partitions; beats and alerts to Kafka, alerts and state to Redis. "
        "Run several for scale-out; they share the partitions.",
    )
    add_flags(detect, DETECT_FLAGS)
    detect.set_defaults(run=run_detect)

    analyze = sub.add_parser(
        "analyze", help="analyse one WFDB record or CSV file offline (beats, classes, alarms)",
        description="Runs the live core over one recording and prints a summary.",
    )
    analyze.add_argument("record", type=Path,
                         help="WFDB record (path without extension, or its .hea) or a .csv file "
                         "with a header row of lead names")
    analyze.add_argument("--fs-hz", type=float, default=None,
                         help="sampling rate of a CSV without a time column")
    analyze.add_argument("--json", type=Path, default=None, help="write the full result here")
    add_flags(analyze, ("model", "log_level", "log_format"))
    analyze.set_defaults(run=run_analyze)


def run_detect(settings: Settings, args: argparse.Namespace) -> int:
    from detector.service import serve

    registry = CollectorRegistry()
    metrics.serve(settings.metrics_port, registry, settings.metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await serve(settings, stop, registry)

    asyncio.run(main())
    return 0


def run_analyze(settings: Settings, args: argparse.Namespace) -> int:
    from detector.analyze import analyze_signal, read_csv, read_wfdb
    from detector.onnx_classifier import OnnxClassifier

    path: Path = args.record
    if path.suffix.lower() == ".csv":
        signal, fs_hz, leads = read_csv(path.read_text(), args.fs_hz)
    else:
        signal, fs_hz, leads = read_wfdb(path)
    classifier = OnnxClassifier.load(settings.model)
    report = analyze_signal(signal, fs_hz, leads, classifier, patient_id=path.stem)
    s = report["summary"]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items()))
    out = [
        f"{path.name}: {report['duration_s']:.1f} s at {fs_hz:g} Hz, leads {', '.join(leads)}",
        f"beats: {s['n_beats']} ({counts}); median heart rate {s['heart_rate_bpm']} bpm",
        f"alarms: {s['n_alarm_onsets']} onsets",
    ]
    for a in report["alarms"]:
        if a["phase"] == "onset":
            out.append(f"  {a['onset_t_s']:9.1f} s  {a['priority']:<6} {a['alarm_type']}: "
                       f"{a['message']}")
    sys.stdout.write("\n".join(out) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report))
        sys.stdout.write(f"full result: {args.json}\n")
    return 0
