"""CPU cost of the detector's own path, without Kafka or Redis: ``python -m detector.bench_path``.

Every virtual patient's chunks go through :meth:`DetectorService.process` exactly as in
``ecgmon detect`` (decode, sequence, QRS, beat windows, batched ONNX classification,
alarm engine, output objects), with a producer and a store that drop what they get.
It prints the process CPU time per patient-second of ECG; the minimum over ``--repeat``
runs is the figure (a shared machine only ever adds time). ``--profile`` prints the
cProfile top instead. Used for the A/B figures of BENCHMARKS.md "Where the time goes";
the full pipeline with its I/O is measured by ``ecgmon bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import psutil
import wfdb
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from detector.heap import GcPauses, HeapFreezer
from detector.onnx_classifier import OnnxClassifier
from detector.service import DetectorService
from stream import serde
from stream.schemas import SampleChunk
from stream.settings import load

RECORDS = ("100 101 103 105 106 108 109 111 112 113 114 115 116 118 119 121 122 123 124 200 201 "
           "202 203 205 207 208 209 210 212 213 214 215 219 220 221 222 223 228 230 231 232 233 "
           "234").split()  # MIT-BIH without the paced records
STAGGER_S = 137


class _Sink:
    """Producer and Redis store stand-in: accepts everything, keeps nothing."""

    client: Any = None
    prefix = "bench"

    def __init__(self) -> None:
        self.client = self

    def pipeline(self, **_: Any) -> _Sink:
        return self

    async def __aenter__(self) -> _Sink:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:  # xadd, hset, sadd ... on the pipeline
        return lambda *a, **k: None

    async def execute(self, **_: Any) -> list[Any]:
        return []

    async def send(self, *_: Any, **__: Any) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def call_until_ok(self, op: str, fn: Any, give_up: Any) -> None:
        await fn()

    async def _call(self, op: str, fn: Any) -> None:
        await fn()

    async def write_alert(self, alert: Any) -> None:
        return None


def _batches(data_dir: Path, patients: int, seconds: float, chunk_s: float) -> list[dict[Any, Any]]:
    """One consumer batch per chunk period, holding one chunk of every patient."""
    n = int(round(chunk_s * 360))
    steps = int(seconds / chunk_s)
    need = steps * n + (patients // len(RECORDS) + 1) * STAGGER_S * 360
    sigs = {}
    for r in RECORDS[: min(patients, len(RECORDS))]:
        rec = wfdb.rdrecord(str(data_dir / r), sampto=min(650_000, need), physical=False)
        sigs[r] = (np.asarray(rec.d_signal, np.int16), tuple(float(g) for g in rec.adc_gain),
                   tuple(int(b) for b in rec.baseline), tuple(rec.sig_name))
    tps = [TopicPartition("samples", p % 12) for p in range(patients)]
    out, offset = [], 0
    for step in range(steps):
        batch: dict[Any, Any] = {}
        for p in range(patients):
            d, gain, base, names = sigs[RECORDS[p % len(RECORDS)]]
            start = (p // len(RECORDS)) * STAGGER_S * 360 % max(1, d.shape[0] - steps * n)
            i = start + step * n
            chunk = SampleChunk(f"p{p}", RECORDS[p % len(RECORDS)], names, 360.0, gain, base,
                                step * n, d[i : i + n], time.time_ns())
            offset += 1
            batch.setdefault(tps[p], []).append(
                SimpleNamespace(value=serde.encode(chunk), offset=offset))
        out.append(batch)
    return out


class _Pauses:
    """The collector's runs while measured, per generation (:class:`detector.heap.GcPauses`)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self.timer = GcPauses(lambda generation, seconds: self.pauses.append((generation, seconds)))

    def summary(self) -> str:
        full = [p for g, p in self.pauses if g == 2]
        young = [p for g, p in self.pauses if g < 2]
        return (f"GC while measured: {len(full)} full collections (max {1e3 * max(full, default=0):.1f} "
                f"ms), {len(young)} young (max {1e3 * max(young, default=0):.1f} ms)")


async def _run(batches: list[dict[Any, Any]], warm: int, classifier: OnnxClassifier,
               profile: cProfile.Profile | None, rss_every: int = 0, freeze: bool = True,
               pauses: _Pauses | None = None) -> float:
    sink = _Sink()
    heap = HeapFreezer() if freeze else None
    if heap is not None:
        heap.start()
    service = DetectorService(load(None, {}), classifier, CollectorRegistry(), sink, sink,  # type: ignore[arg-type]
                              heap=heap)
    for b in batches[:warm]:
        await service.process(b)
    if pauses is not None:
        pauses.timer.install()
    started = time.process_time()
    if profile:
        profile.enable()
    proc = psutil.Process()
    for i, b in enumerate(batches[warm:]):
        await service.process(b)
        if rss_every and (i + 1) % rss_every == 0:
            rss = proc.memory_info().rss / 2**20
            sys.stdout.write(f"  after {warm + i + 1} batches: RSS {rss:.1f} MiB\n")
    if profile:
        profile.disable()
    if pauses is not None:
        pauses.timer.remove()
    if heap is not None:
        gc.unfreeze()  # the next run starts from the same heap
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m detector.bench_path", description=__doc__)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ECGMON_DATA_DIR", "")),
                    help="MIT-BIH folder [env ECGMON_DATA_DIR]")
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0, help="ECG per patient, warm-up included")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds not measured")
    ap.add_argument("--chunk-s", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default=load().model,
                    help="beat model [env ECGMON_MODEL; default %(default)s]")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--gc", choices=("freeze", "plain"), default="freeze",
                    help="freeze: the detector's GC policy (detector.heap, as in `ecgmon detect`); "
                         "plain: CPython's default collector (the A/B of that policy)")
    ap.add_argument("--rss-every", type=int, default=0, metavar="N",
                    help="print the process RSS every N measured batches (memory over a long run)")
    args = ap.parse_args(argv)
    if not (args.data_dir / "100.hea").exists():
        ap.error(f"no MIT-BIH records in {args.data_dir!s}: pass --data-dir or set ECGMON_DATA_DIR")
    batches = _batches(args.data_dir, args.patients, args.seconds, args.chunk_s)
    warm = int(args.warmup / args.chunk_s)
    measured_s = (len(batches) - warm) * args.chunk_s * args.patients
    classifier = OnnxClassifier.load(args.model)
    profile = cProfile.Profile() if args.profile else None
    pauses = _Pauses()
    runs = [asyncio.run(_run(batches, warm, classifier, profile, args.rss_every,
                             args.gc == "freeze", pauses))
            for _ in range(1 if profile else args.repeat)]
    cpu = min(runs)
    sys.stdout.write(
          f"{args.patients} patients, {args.chunk_s:g} s chunks, {measured_s:,.0f} patient-seconds: "
          f"CPU {cpu:.2f} s (min of {len(runs)}: {', '.join(f'{r:.2f}' for r in runs)}) = "
          f"{1e3 * cpu / measured_s:.3f} ms per patient-second -> "
          f"{measured_s / cpu:,.0f} real-time patients per core, this path alone\n"
          f"{pauses.summary()} (GC policy: {args.gc}, {len(runs)} runs)\n")
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
