"""``ecgmon bench``: the whole pipeline under load, as in production, measured from outside.

The bench starts (unless configured) a local broker and Redis, then ``K``
``ecgmon detect`` processes (one consumer group, each with its own /metrics
port), waits until the group is stable, and starts the replay in a child
process of its own (``python -m detector.bench``).  While it runs it samples
every ``sample_s``: the detectors' Prometheus pages, the samples topic's end
offsets (lag = produced - consumed), and CPU time and RSS of every process.

Real time (``speed 1``): ``patients`` virtual patients (the records round-robin,
staggered by ``stagger_s``) stream for ``warmup_s + duration_s``; the figures
cover the last ``duration_s`` (histogram buckets are differenced between two
scrapes, CPU time likewise).  The replay is split into ``phases`` shards
started ``chunk_s / phases`` apart, so monitors are not all phase-locked to
one 250 ms clock (``phases=1`` is the stock replay: every monitor sends at the
same instant, the worst case for latency).  Latency per stage comes from the
detectors' histograms (interpolated like PromQL) and, exactly, from the beats
topic (``detected_at_ns - chunk_produced_at_ns`` of each beat).

Max speed: every record once, as fast as possible; the figure is the wall time
from the first chunk sent to the last chunk consumed and processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from aiokafka.admin import AIOKafkaAdminClient

from detector import bench_stats as st
from detector.service import group_id
from stream import settings as settings_mod
from stream.errors import EcgmonError
from stream.kafka import ensure_topics, start_reader
from stream.schemas import Beat
from stream.serde import decode_as
from stream.services import LocalService, die_with_parent, free_port
from stream.settings import Settings
from stream.up import start_missing_services

logger = logging.getLogger(__name__)

READ_EVERY_S = 1.0  # the exact-latency reader polls the beats topic this often
STAGES = ("chunk_to_consumed", "chunk_to_beat", "chunk_to_alert_redis")
_HIST = {s: f"ecgmon_{s}_seconds" for s in STAGES}


class BenchError(EcgmonError):
    """The benchmark could not run (a child died, the group never formed ...)."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    patients: int = 100
    duration_s: float = 60.0
    speed: str = "1"  # "1" or "max"
    detectors: int = 1
    warmup_s: float = 15.0
    sample_s: float = 2.0
    phases: int = 48
    exact_latency: bool = True
    drain_timeout_s: float = 60.0
    join_timeout_s: float = 60.0


@dataclass(slots=True)
class _Proc:
    name: str
    proc: psutil.Process
    popen: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    cpu0: float = 0.0
    rss: list[int] = field(default_factory=list)

    def cpu_s(self) -> float:
        """CPU seconds used so far (the last reading once the process has exited)."""
        with contextlib.suppress(psutil.Error):
            t = self.proc.cpu_times()
            self.cpu0 = float(t.user + t.system)
        return self.cpu0

    def sample_rss(self) -> int:
        if self.popen is not None and self.popen.poll() is not None:
            return self.rss[-1] if self.rss else 0
        with contextlib.suppress(psutil.Error):
            self.rss.append(int(self.proc.memory_info().rss))
        return self.rss[-1] if self.rss else 0


# ----------------------------------------------------------------------------- services
@contextlib.contextmanager
def stack(settings: Settings) -> Iterator[tuple[Settings, list[LocalService]]]:
    """The configured services, or local ones (non-idempotent producer for the local broker)."""
    started: list[LocalService] = []
    try:
        settings = start_missing_services(settings, started)
        yield settings, started
    finally:
        for service in reversed(started):
            with contextlib.suppress(OSError):
                service.stop()


def bench_settings(base: Settings, opts: BenchOptions) -> Settings:
    """Fresh topics; every record of ``data_dir`` (or ``records``); the replay's pacing."""
    records = base.records
    if base.data_dir is not None and not os.environ.get(settings_mod.env_name("records")):
        names = sorted(p.stem for p in base.data_dir.glob("*.hea"))
        records = ",".join(names) or records
    realtime = opts.speed != "max"
    return dataclasses.replace(
        base, records=records, speed=opts.speed, loop=realtime, start_s=0.0,
        patients=opts.patients if realtime else 0,
        duration_s=(opts.warmup_s + opts.duration_s) if realtime else 0.0,
        progress_s=0.0, topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
    )


# ----------------------------------------------------------------------------- children
def _spawn(name: str, argv: list[str], settings: Settings, workdir: Path, **env: str) -> _Proc:
    log = workdir / f"{name}.log"
    full_env = {**os.environ, **settings_mod.to_env(settings), **env}
    with open(log, "wb") as err:
        popen = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=err,
                                 preexec_fn=die_with_parent, start_new_session=True)
    return _Proc(name, psutil.Process(popen.pid), popen, log)


def _stop(p: _Proc, grace_s: float = 10.0) -> None:
    if p.popen is None or p.popen.poll() is not None:
        return
    p.popen.terminate()
    try:
        p.popen.wait(grace_s)
    except subprocess.TimeoutExpired:
        p.popen.kill()
        p.popen.wait(5)


def _tail(p: _Proc) -> str:
    if p.log is None or not p.log.exists():
        return ""
    return p.log.read_text(errors="replace")[-1500:]


def _scrape(port: int) -> st.Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return st.parse_metrics(r.read().decode())


async def _scrape_all(ports: list[int]) -> st.Samples:
    pages = await asyncio.gather(*(asyncio.to_thread(_scrape, p) for p in ports))
    return st.merge(pages)


async def _wait_group(settings: Settings, members: int, timeout_s: float,
                      detectors: list[_Proc]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for d in detectors:
                if d.popen is not None and d.popen.poll() is not None:
                    raise BenchError(f"{d.name} exited with code {d.popen.returncode}:\n{_tail(d)}")
            groups = (await admin.describe_consumer_groups([group_id(settings)]))[0].to_object()
            g = groups["groups"][0]
            if g["state"] == "Stable" and len(g["members"]) == members:
                return
            await asyncio.sleep(0.25)
    finally:
        await admin.close()
    raise BenchError(f"the {members} detectors did not form a stable consumer group in {timeout_s} s")


class _ReplayWatch:
    """Reads the replay child's JSON lines (ready, progress, done) in a thread.

    Chunks produced are counted by the replay's producer, not from the topic's end
    offsets: the bundled broker (Tansu) answers ListOffsets with batch counts.
    """

    def __init__(self, proc: _Proc) -> None:
        assert proc.popen is not None and proc.popen.stdout is not None
        self.stdout = proc.popen.stdout
        self.ready = threading.Event()
        self.sent = 0
        self.done = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for raw in self.stdout:
            with contextlib.suppress(ValueError):
                msg = json.loads(raw)
                self.sent = int(msg.get("messages", self.sent))
                self.done = self.done or msg.get("event") == "done"
                self.ready.set()
        self.ready.set()


async def _read_beats(settings: Settings, since_ns: list[int], out: list[float],
                      stop: asyncio.Event) -> int:
    """Exact chunk-to-beat latencies of beats detected after ``since_ns[0]``; returns all beats."""
    reader = await start_reader(settings, settings.topic("beats"), fetch_max_wait_ms=100)
    n = 0
    try:
        while not stop.is_set():
            # the latencies are stamped in the records, so reading late costs nothing but
            # reading often does: every fetch is work for the broker under test
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READ_EVERY_S)
            batch = await reader.getmany(timeout_ms=200, max_records=1_000_000)
            for records in batch.values():
                for r in records:
                    beat = decode_as(r.value, Beat)
                    n += 1
                    if beat.detected_at_ns >= since_ns[0]:
                        out.append((beat.detected_at_ns - beat.chunk_produced_at_ns) / 1e9)
    finally:
        await reader.stop()
    return n


# ----------------------------------------------------------------------------- the run
@dataclass(slots=True)
class _Run:
    settings: Settings
    opts: BenchOptions
    ports: list[int]
    procs: list[_Proc]
    say: Callable[[str], None]
    watch: _ReplayWatch | None = None
    lag: list[tuple[float, float]] = field(default_factory=list)
    t0: float = 0.0
    replay_end: float = math.inf

    async def tick(self, phase: str) -> tuple[st.Samples, int]:
        page = await _scrape_all(self.ports)
        produced = self.watch.sent if self.watch is not None else 0
        consumed = st.total(page, "ecgmon_chunks_consumed_total")
        now = time.monotonic() - self.t0
        self.lag.append((now, produced - consumed))
        rss = {p.name: p.sample_rss() for p in self.procs}
        for p in self.procs:
            p.cpu_s()  # keep the last reading of a child that is about to exit
        det_rss = sum(v for k, v in rss.items() if k.startswith("detector"))
        self.say(f"[{phase} {now:6.1f}s] produced {produced:,} consumed {consumed:,.0f} "
                 f"lag {produced - consumed:,.0f} beats {st.total(page, 'ecgmon_beats_total'):,.0f} "
                 f"patients {st.total(page, 'ecgmon_patients'):,.0f} detector RSS "
                 f"{det_rss / 2**20:,.0f} MiB load {os.getloadavg()[0]:.1f}")
        return page, produced


async def _drain(run: _Run, replay: _Proc, timeout_s: float) -> tuple[st.Samples, int]:
    """Wait for the replay to end, then until every produced chunk was consumed (or timeout)."""
    while replay.popen is not None and replay.popen.poll() is None:
        await asyncio.sleep(run.opts.sample_s)
        await run.tick("run")
    run.replay_end = time.monotonic() - run.t0
    if replay.popen is not None and replay.popen.returncode:
        raise BenchError(f"replay exited with code {replay.popen.returncode}:\n{_tail(replay)}")
    if run.watch is not None:
        await asyncio.to_thread(run.watch.thread.join, 10)
    deadline = time.monotonic() + timeout_s
    while True:
        page, produced = await run.tick("drain")
        if st.total(page, "ecgmon_chunks_consumed_total") >= produced or time.monotonic() > deadline:
            return page, produced
        await asyncio.sleep(min(run.opts.sample_s, 0.5))


def _cpu_rows(procs: list[_Proc], cpu_a: dict[str, float], wall: float) -> dict[str, dict[str, float]]:
    rows = {}
    for p in procs:
        rows[p.name] = {"cpu_percent": 100.0 * (p.cpu_s() - cpu_a[p.name]) / wall,
                        "rss_bytes": float(p.rss[-1] if p.rss else 0),
                        "rss_max_bytes": float(max(p.rss) if p.rss else 0)}
    return rows


async def run_bench(settings: Settings, opts: BenchOptions, services: list[LocalService],
                    say: Callable[[str], None]) -> dict[str, Any]:
    """Run the benchmark on ready services; the report as a JSON-able dict."""
    await ensure_topics(settings)
    workdir = Path(tempfile.mkdtemp(prefix="ecgmon-bench-"))
    procs: list[_Proc] = [_Proc(s.name if s.name != "kafka" else "broker", psutil.Process(s.proc.pid))
                          for s in services]
    ports = [free_port() for _ in range(opts.detectors)]
    detectors = [
        _spawn(f"detector{k}", [sys.executable, "-m", "stream.cli", "detect"], settings, workdir,
               ECGMON_METRICS_PORT=str(port), ECGMON_LOG_LEVEL="WARNING")
        for k, port in enumerate(ports)
    ]
    procs += detectors
    run = _Run(settings, opts, ports, procs, say)
    try:
        say(f"waiting for {opts.detectors} detector(s) to join the consumer group ...")
        await _wait_group(settings, opts.detectors, opts.join_timeout_s, detectors)
        idle_rss = sum(d.sample_rss() for d in detectors)
        replay = _spawn("replay", [sys.executable, "-m", "detector.bench", str(opts.phases)],
                        settings, workdir)
        procs.append(replay)
        if opts.speed == "max":
            return await _max_speed(run, replay, idle_rss)
        return await _realtime(run, replay, idle_rss)
    finally:
        for p in procs:
            if p.popen is not None:
                _stop(p)
        say(f"logs of the child processes: {workdir}")


async def _replay_ready(run: _Run, replay: _Proc) -> float:
    """Wait for the replay child's ``ready`` line (records loaded); its monotonic time."""
    run.watch = _ReplayWatch(replay)
    await asyncio.to_thread(run.watch.ready.wait)
    if replay.popen is not None and replay.popen.poll():
        raise BenchError(f"replay ended before it was ready:\n{_tail(replay)}")
    return time.monotonic()


async def _realtime(run: _Run, replay: _Proc, idle_rss: int) -> dict[str, Any]:
    opts, settings = run.opts, run.settings
    run.t0 = await _replay_ready(run, replay)
    stop_reader = asyncio.Event()
    exact: list[float] = []
    since = [time.time_ns() + 10**18]  # set when the measured window starts
    reader = asyncio.create_task(_read_beats(settings, since, exact, stop_reader)) \
        if opts.exact_latency else None
    while time.monotonic() - run.t0 < opts.warmup_s:
        await asyncio.sleep(opts.sample_s)
        await run.tick("warmup")
    page_a, _ = await run.tick("measure")
    consumed_a = st.total(page_a, "ecgmon_chunks_consumed_total")
    lag_from = len(run.lag) - 1
    cpu_a = {p.name: p.cpu_s() for p in run.procs}
    t_a = time.monotonic()
    since[0] = time.time_ns()
    for p in run.procs:
        p.rss.clear()
    page_b, produced = await _drain(run, replay, opts.drain_timeout_s)
    wall = time.monotonic() - t_a
    stop_reader.set()
    if reader is not None:
        await reader
    rows = _cpu_rows(run.procs, cpu_a, wall)
    consumed = st.total(page_b, "ecgmon_chunks_consumed_total")
    latency: dict[str, Any] = {
        s: st.quantiles_from_buckets(st.bucket_delta(st.buckets(page_b, h), st.buckets(page_a, h)))
        for s, h in _HIST.items()
    }
    if opts.exact_latency:
        latency["chunk_to_beat_exact"] = st.exact_quantiles(exact)
    batch, gc_pause = (
        st.quantiles_from_buckets(st.bucket_delta(st.buckets(page_b, h), st.buckets(page_a, h)))
        for h in ("ecgmon_detect_batch_seconds", "ecgmon_gc_pause_seconds"))
    det_rows = [r for k, r in rows.items() if k.startswith("detector")]
    det_rss = sum(r["rss_bytes"] for r in det_rows)
    lag = run.lag[lag_from:]
    live = [(t, v) for t, v in lag if t <= run.replay_end]  # the trend while patients stream
    beats = st.total(page_b, "ecgmon_beats_total") - st.total(page_a, "ecgmon_beats_total")
    return {
        "patients": opts.patients, "duration_s": round(wall, 1), "latency_s": latency,
        "lost": _lost(page_b, produced),
        "cpu_percent": round(sum(r["cpu_percent"] for k, r in rows.items() if k != "bench"), 1),
        "rss_bytes": int(det_rss),
        "detectors": opts.detectors, "phases": opts.phases, "chunk_s": settings.chunk_s,
        "warmup_s": opts.warmup_s,
        "chunks_produced": produced, "chunks_consumed": int(consumed),
        "chunks_consumed_in_window": int(consumed - consumed_a),
        "duplicates": _fates(page_b).get("duplicate", 0),
        "beats_per_s": round(beats / wall, 1),
        "rss_per_patient_bytes": int((det_rss - idle_rss) / max(1, opts.patients)),
        "detector_idle_rss_bytes": idle_rss,
        "detector_rss_growth_bytes": int(det_rss - sum(_first_rss(p) for p in run.procs
                                                       if p.name.startswith("detector"))),
        "lag": {"slope_msgs_per_s": round(st.slope(live), 2), "max": max((v for _, v in lag), default=0),
                "end": lag[-1][1] if lag else 0, "samples": [[round(t, 1), v] for t, v in lag]},
        "dead_letters": int(st.total(page_b, "ecgmon_dead_letters_total")),
        "detect_batch_s": batch,
        "gc_pause_s": gc_pause,  # the detectors' garbage-collector pauses (detector.heap)
        "chunks_per_batch": round((consumed - consumed_a) / max(1.0, batch["count"] or 0.0), 1),
        "chunk_fates": _fates(page_b),
        "processes": st.per_process(rows),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def _fates(page: st.Samples) -> dict[str, int]:
    return {dict(labels).get("fate", ""): int(v) for (n, labels), v in page.items()
            if n == "ecgmon_chunk_sequence_total"}


def _lost(page: st.Samples, produced: int) -> int:
    """Chunks sent but never processed: produced - (consumed - re-delivered duplicates)."""
    consumed = st.total(page, "ecgmon_chunks_consumed_total")
    return int(max(0.0, produced - (consumed - _fates(page).get("duplicate", 0))))


def _first_rss(p: _Proc) -> int:
    return p.rss[0] if p.rss else 0


async def _until_idle(detectors: list[_Proc], every_s: float = 0.1) -> None:
    """Every chunk was consumed: wait until the batch that took the last ones is processed
    too (detectors idle: under 10 % CPU over ``every_s``); lags the true end by <= every_s."""
    while True:
        before = sum(d.cpu_s() for d in detectors)
        await asyncio.sleep(every_s)
        if sum(d.cpu_s() for d in detectors) - before < 0.1 * every_s * len(detectors):
            return


async def _max_speed(run: _Run, replay: _Proc, idle_rss: int) -> dict[str, Any]:
    run.t0 = await _replay_ready(run, replay)
    cpu_a = {p.name: p.cpu_s() for p in run.procs}
    page, produced = await _drain(run, replay, run.opts.drain_timeout_s)
    await _until_idle([p for p in run.procs if p.name.startswith("detector")])
    wall = time.monotonic() - run.t0
    page = await _scrape_all(run.ports)
    rows = _cpu_rows(run.procs, cpu_a, wall)
    return {
        "wall_s": round(wall, 2), "records": len(run.settings.record_list),
        "beats": int(st.total(page, "ecgmon_beats_total")),
        "lost": _lost(page, produced),
        "chunks": produced, "detectors": run.opts.detectors, "chunk_s": run.settings.chunk_s,
        "cpu_percent": round(sum(r["cpu_percent"] for k, r in rows.items() if k != "bench"), 1),
        "processes": st.per_process(rows),
        "detector_idle_rss_bytes": idle_rss,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


# ----------------------------------------------------------------------------- replay child
async def _replay_child(settings: Settings, phases: int, out: IO[str]) -> None:
    """Replay in ``phases`` shards of the records started ``chunk_s / phases`` apart."""
    from replay.producer import load_recordings, plan_patients, replay
    from stream.kafka import Producer

    plans = plan_patients(settings)
    recordings = await asyncio.to_thread(load_recordings, settings, plans)
    records = settings.record_list
    n = settings.patients or len(records)
    shards = st.split_round_robin(records, max(1, phases) if settings.speed != "max" else 1)
    counts = st.patients_per_shard(n, records, shards)
    out.write(json.dumps({"event": "ready"}) + "\n")
    out.flush()
    async with Producer(settings) as producer:
        async def report() -> None:
            while True:
                await asyncio.sleep(0.5)
                out.write(json.dumps({"event": "progress", "messages": producer.sent_messages}) + "\n")
                out.flush()

        reporter = asyncio.create_task(report())

        async def shard(j: int, recs: list[str], count: int) -> int:
            await asyncio.sleep(j * settings.chunk_s / len(shards))
            cfg = dataclasses.replace(settings, records=",".join(recs), patients=count)
            progress = await replay(cfg, producer, recordings=recordings, on_progress=lambda p: None)
            return progress.messages

        sent = await asyncio.gather(*(shard(j, r, c) for j, (r, c) in
                                      enumerate(zip(shards, counts, strict=True)) if c))
        reporter.cancel()
    out.write(json.dumps({"event": "done", "messages": sum(sent)}) + "\n")
    out.flush()


def _child_main(argv: list[str]) -> int:
    from stream import logs

    settings = settings_mod.load()
    logs.configure("WARNING", "json")
    asyncio.run(_replay_child(settings, int(argv[0]) if argv else 1, sys.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
