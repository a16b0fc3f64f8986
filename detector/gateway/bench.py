"""What the gateway's live feed costs per patient: CPU, memory, the subscribe burst, a strip.

``python -m detector.gateway.bench --data-dir DIR [--patients N] [--seconds T]`` feeds the
gateway's Kafka handler (:meth:`LiveFeed.handle`, no broker: the records as Kafka would
deliver them, encoded) with T seconds of MIT-BIH record 100 per patient in 0.25 s chunks (two
leads, 360 Hz) and its annotated beats, with one dashboard connected that subscribes to every
patient with waveform (each frame is serialised for it), and prints:

* CPU per chunk and per beat, and the share of one core N patients take in real time;
* memory per patient (trace history, decimator, recent beats), measured with tracemalloc;
* the subscribe burst: the history frames for every patient, bytes and time to build;
* one alarm strip: time to cut and compress it, bytes stored in Redis.

Single-threaded and deterministic in what it does; the timings are this machine's.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import wfdb
from prometheus_client import CollectorRegistry

from detector.gateway.clients import ClientHub, Subscription, dumps
from detector.gateway.feeds import TRACE_KEPT_S, LiveFeed
from detector.gateway.strips import cut_strip, encode_strip
from stream import serde
from stream.schemas import AlarmPhase, AlarmPriority, Alert, Beat, BeatClass, SampleChunk
from stream.settings import Settings

CHUNK_S = 0.25
RECORD = "100"


def _messages(data_dir: Path, n: int, seconds: float) -> tuple[list[tuple[str, bytes]], int, int, int]:
    """(topic kind, payload) in stream order for n patients; the chunk, beat and lead counts."""
    path = data_dir / RECORD
    if not path.with_suffix(".hea").is_file():
        raise SystemExit(f"error: {path}.hea not found; point --data-dir at a folder of MIT-BIH "
                         "records (e.g. ../shared/data/mitdb)")
    rec = wfdb.rdrecord(str(path), physical=False, sampto=int(seconds * 360))
    ann = wfdb.rdann(str(path), "atr", sampto=int(seconds * 360))
    samples = np.asarray(rec.d_signal, np.int16)
    fs, step = float(rec.fs), int(CHUNK_S * rec.fs)
    beats = [int(s) for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in "NLRAaJSVFejE/fQ"]
    by_chunk: dict[int, list[tuple[int, float]]] = {}
    for b, prev in zip(beats[1:], beats, strict=False):  # the first beat has no RR
        by_chunk.setdefault(b // step * step, []).append((b, (b - prev) / fs))
    out: list[tuple[str, bytes]] = []
    n_chunks = n_beats = 0
    for first in range(0, len(samples) - step + 1, step):
        for p in range(n):
            pid = f"bed-{p + 1}"
            chunk = SampleChunk(pid, RECORD, tuple(rec.sig_name), fs, tuple(rec.adc_gain),
                                tuple(rec.baseline), first, samples[first:first + step], 0)
            out.append(("samples", serde.encode(chunk)))
            n_chunks += 1
            for b, rr in by_chunk.get(first, []):
                out.append(("beats", serde.encode(Beat(pid, b, fs, BeatClass.N, 0.98, rr, 0, 0))))
                n_beats += 1
    return out, n_chunks, n_beats, samples.shape[1]


def _feed(settings: Settings, messages: list[tuple[str, bytes]]) -> tuple[LiveFeed, dict[str, float]]:
    """A fresh feed with one dashboard subscribed to everything, fed every message; CPU per topic."""
    registry = CollectorRegistry()
    hub = ClientHub(registry, settings.ws_queue_size)
    dashboard = hub.add()
    dashboard.subscription = Subscription(None, True)
    feed = LiveFeed(settings, hub, registry)
    topics = {"samples": feed.topics[0], "beats": feed.topics[1]}
    cpu = {"samples": 0.0, "beats": 0.0}
    for kind, payload in messages:
        t0 = time.process_time()
        feed.handle(topics[kind], payload)
        cpu[kind] += time.process_time() - t0
        if dashboard.room() <= 0:  # the client keeps up: what it was sent is gone
            dashboard.drain()
    dashboard.drain()
    return feed, cpu


def run(data_dir: Path, n: int, seconds: float) -> None:
    settings = Settings()
    messages, n_chunks, n_beats, n_leads = _messages(data_dir, n, seconds)
    feed, cpu = _feed(settings, messages)  # timed without tracemalloc, which slows allocation
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    measured, _ = _feed(settings, messages)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_patient = sum(s.size_diff for s in after.compare_to(before, "filename")) / len(measured.patients)

    t0 = time.perf_counter()
    burst = [dumps(f) for pid, live in feed.patients.items()
             if (f := live.history.frame(pid, settings.waveform_history_s)) is not None]
    burst_s = time.perf_counter() - t0

    live = feed.patients["bed-1"]
    end = live.history.end_s or 0.0
    alert = Alert("bed-1", "vtach", AlarmPriority.HIGH, AlarmPhase.ONSET, round((end - 8) * 360),
                  round((end - 5) * 360), 360.0, 150.0, "VT", 0, 0)
    t0 = time.perf_counter()
    rounds = 50
    for _ in range(rounds):
        strip = cut_strip(alert, live)
        stored = encode_strip(strip) if strip is not None else b""
    strip_s = (time.perf_counter() - t0) / rounds

    core = (cpu["samples"] + cpu["beats"]) / seconds
    burst_bytes = sum(map(len, burst))
    say = sys.stdout.write
    say(f"gateway live feed: {n} patients x {seconds:g} s of record {RECORD} ({CHUNK_S} s chunks, "
        f"{n_leads} leads, 360 Hz), one dashboard subscribed to all with waveform\n")
    say(f"  samples: {n_chunks} chunks, {cpu['samples'] / n_chunks * 1e6:.0f} us CPU each (decode, "
        "decimate to 120 Hz, trace history, JSON for the client)\n")
    say(f"  beats: {n_beats} beats, {cpu['beats'] / max(1, n_beats) * 1e6:.0f} us CPU each\n")
    say(f"  real time: {n} patients take {100 * core:.1f} % of one core "
        f"({100 * core / n:.3f} % per patient)\n")
    say(f"  memory: {per_patient / 1024:.1f} KiB per patient (tracemalloc: "
        f"{max(settings.waveform_history_s, TRACE_KEPT_S):g} s trace at 120 Hz, decimator, recent beats)\n")
    say(f"  subscribe burst: {len(burst)} history frames of {settings.waveform_history_s:g} s, "
        f"{burst_bytes / 1e6:.2f} MB JSON ({burst_bytes / max(1, len(burst)) / 1024:.1f} KiB each), built "
        f"in {burst_s * 1e3:.1f} ms; a client queue of {settings.ws_queue_size} takes "
        f"{settings.ws_queue_size // 2} of them\n")
    say(f"  alarm strip: cut + compress {strip_s * 1e3:.2f} ms, {len(stored) / 1024:.1f} KiB stored "
        f"({len(strip['mv']) if strip else 0} samples)\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detector.gateway.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="folder of MIT-BIH records")
    parser.add_argument("--patients", type=int, default=100, help="patients (default 100)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="seconds of record per patient (default 60; at least 30)")
    args = parser.parse_args(argv)
    if args.patients < 1 or not 30 <= args.seconds <= 1800:
        parser.error("choose --patients >= 1 and 30 <= --seconds <= 1800")
    run(args.data_dir, args.patients, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
