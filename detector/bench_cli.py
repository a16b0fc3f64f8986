"""``ecgmon bench``: replay -> Kafka -> ``ecgmon detect`` -> Kafka + Redis under load, measured."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from detector.bench import BenchOptions, run_bench, stack
from stream.settings import Settings, add_flags

BENCH_FLAGS = (
    "kafka_bootstrap", "redis_url", "kafka_idempotence", "partitions", "data_dir", "cache_dir",
    "stagger_s", "chunk_s", "fetch_max_wait_ms", "poll_interval_ms", "linger_ms", "batch_bytes", "model",
    "log_level", "log_format",
)
MAX_SPEED_CHUNK_S = 10.0  # at max speed the cost is per message: few long chunks (see replay.bench)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "bench", help="measure the pipeline: N live patients (latency, CPU, RSS, lag, loss) "
        "or the whole database at max speed (wall time)",
        description="Starts a local broker and Redis unless configured, K `ecgmon detect` "
        "processes and the replay (own process), and reports per-stage latency quantiles, CPU "
        "and RSS per process, beats/s, consumer lag over time and lost chunks.",
    )
    parser.add_argument("--patients", dest="bench_patients", metavar="N", type=int, default=100,
                        help="virtual patients streaming in real time (default 100)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="measured seconds, after the warm-up (default 60)")
    parser.add_argument("--speed", dest="bench_speed", choices=("1", "max"), default="1",
                        help="1 = real time (latency); max = every record once, as fast as possible "
                        "(wall time)")
    parser.add_argument("--detectors", type=int, default=1,
                        help="`ecgmon detect` processes in the consumer group (default 1)")
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds streamed before measuring (default 15)")
    parser.add_argument("--phases", type=int, default=48,
                        help="replay shards started chunk_s/phases apart, so monitors are not all "
                        "phase-locked (1 = every monitor sends at once; default 48)")
    parser.add_argument("--sample-every", type=float, default=2.0,
                        help="seconds between progress lines and lag/RSS samples (default 2)")
    parser.add_argument("--no-exact-latency", action="store_true",
                        help="skip reading the beats topic for exact chunk-to-beat latency")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    add_flags(parser, BENCH_FLAGS)
    parser.set_defaults(run=run)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _fmt(q: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:.1f}"

    return (f"p50 {ms(q.get('p50'))}  p95 {ms(q.get('p95'))}  p99 {ms(q.get('p99'))} ms "
            f"({q.get('count', 0):,.0f} obs)")


def summary(r: dict[str, Any]) -> str:
    if "wall_s" in r:
        return (f"whole database: {r['records']} records, {r['chunks']:,} chunks, {r['beats']:,} beats "
                f"in {r['wall_s']:.1f} s wall ({r['detectors']} detector(s), chunk {r['chunk_s']:g} s); "
                f"lost {r['lost']}; CPU {r['cpu_percent']:.0f} %; load {r['loadavg'][0]}\n")
    lines = [f"{r['patients']} patients, {r['detectors']} detector(s), {r['duration_s']:.0f} s measured:"]
    for stage, q in r["latency_s"].items():
        lines.append(f"  {stage:<22} {_fmt(q)}")
    lines.append(f"  beats/s {r['beats_per_s']:,.0f}; lost {r['lost']}; duplicates {r['duplicates']}; "
                 f"lag slope {r['lag']['slope_msgs_per_s']:+.2f} msg/s (max {r['lag']['max']:,.0f})")
    for key, what in (("detect_batch_s", "detector batch"), ("gc_pause_s", "detector GC pause")):
        if r.get(key):  # reports of older versions lack them
            lines.append(f"  {what:<22} {_fmt(r[key])}")
    lines.append(f"  CPU {r['cpu_percent']:.0f} % (all processes); detector RSS "
                 f"{r['rss_bytes'] / 2**20:,.0f} MiB, {r['rss_per_patient_bytes'] / 1024:,.1f} KiB "
                 f"per patient; load {r['loadavg'][0]}")
    for name, row in r["processes"].items():
        lines.append(f"    {name:<10} CPU {row['cpu_percent']:6.1f} %  "
                     f"RSS {row['rss_bytes'] / 2**20:7.1f} MiB")
    return "\n".join(lines) + "\n"


def run(settings: Settings, args: argparse.Namespace) -> int:
    from detector.bench import bench_settings

    if args.bench_patients < 1 or args.detectors < 1 or args.duration <= 0:
        raise SystemExit("ecgmon bench: --patients, --detectors and --duration must be positive")
    opts = BenchOptions(patients=args.bench_patients, duration_s=args.duration, speed=args.bench_speed,
                        detectors=args.detectors, warmup_s=args.warmup, phases=args.phases,
                        sample_s=args.sample_every, exact_latency=not args.no_exact_latency)
    if args.bench_speed == "max" and args.chunk_s is None:
        settings = dataclasses.replace(settings, chunk_s=MAX_SPEED_CHUNK_S)
    with stack(bench_settings(settings, opts)) as (cfg, services):
        report = asyncio.run(run_bench(cfg, opts, services, _say))
    sys.stdout.write(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        sys.stdout.write(f"report: {args.json}\n")
    return 0
