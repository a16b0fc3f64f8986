"""Replay throughput benchmark: whole records at max speed through a broker, consumed back bit-exact.

    python -m replay.bench --data-dir ../shared/data/mitdb

Starts a local broker unless ``--kafka-bootstrap`` / ECGMON_KAFKA_BOOTSTRAP names
one, replays every record of the folder (or ``--records``) at ``--speed max``
while a consumer in the same process reads the samples topic back, checks that
each patient's samples arrive in order and that their SHA-256 equals the one of
wfdb's own ``rdrecord(physical=False)`` array, and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from replay.producer import Progress, load_recordings, plan_patients, replay
from replay.source import Recording
from stream import logs, serde
from stream import settings as settings_mod
from stream.errors import EcgmonError
from stream.kafka import Producer, ensure_topics, start_reader
from stream.schemas import SampleChunk
from stream.services import LocalService, start_broker
from stream.settings import Settings

logger = logging.getLogger(__name__)

BENCH_CHUNK_S = 10.0  # 3,600 samples x 2 leads = 14.4 kB per message: few, well-filled batches


@dataclass(slots=True)
class _Received:
    next_index: int
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    samples: int = 0


class OrderError(EcgmonError):
    """A patient's chunks arrived out of order or with a gap."""


async def consume_back(
    settings: Settings, expected: dict[str, tuple[int, int]]
) -> dict[str, str]:
    """Read the samples topic until each patient has ``n`` samples; return per-patient SHA-256.

    ``expected`` maps patient id to ``(first_index, n_samples)``; raises OrderError
    on a gap, a repeat or a reordering.
    """
    consumer = await start_reader(
        settings, settings.topic("samples"),
        max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20,
    )
    got = {pid: _Received(first) for pid, (first, _) in expected.items()}
    left = set(expected)
    try:
        while left:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for record in records:
                    chunk = serde.decode_as(record.value, SampleChunk)
                    state = got[chunk.patient_id]
                    if chunk.first_sample_index != state.next_index:
                        raise OrderError(f"{chunk.patient_id}: chunk at {chunk.first_sample_index}, "
                                         f"expected {state.next_index}")
                    state.digest.update(chunk.samples.tobytes())
                    state.next_index = chunk.end_sample_index
                    state.samples += chunk.n_samples
                    if state.samples >= expected[chunk.patient_id][1]:
                        left.discard(chunk.patient_id)
    finally:
        await consumer.stop()
    return {pid: state.digest.hexdigest() for pid, state in got.items()}


def _reference_digests(recordings: dict[str, Recording]) -> dict[str, str]:
    return {name: hashlib.sha256(rec.samples.tobytes()).hexdigest() for name, rec in recordings.items()}


async def bench(settings: Settings) -> dict[str, float]:
    plans = plan_patients(settings)
    t_load = time.perf_counter()
    recordings = load_recordings(settings, plans)
    load_s = time.perf_counter() - t_load
    await ensure_topics(settings, ("samples",))
    expected = {p.patient_id: (0, recordings[p.record].n_samples) for p in plans}
    t0 = time.perf_counter()
    consumer = asyncio.create_task(consume_back(settings, expected))
    async with Producer(settings) as producer:
        progress: Progress = await replay(settings, producer, recordings=recordings,
                                          on_progress=lambda p: None)
    produced_s = time.perf_counter() - t0
    digests = await consumer
    total_s = time.perf_counter() - t0
    reference = _reference_digests(recordings)
    bad = [p.patient_id for p in plans if digests[p.patient_id] != reference[p.record]]
    if bad:
        raise OrderError(f"samples differ from wfdb's for {', '.join(bad)}")
    mb = progress.payload_bytes / 1e6
    signal_mb = sum(r.samples.nbytes for r in recordings.values()) / 1e6
    return {"records": len(plans), "messages": progress.messages, "payload_mb": mb,
            "signal_mb": signal_mb, "load_s": load_s, "produce_s": produced_s,
            "total_s": total_s, "mb_per_s": mb / total_s,
            "signal_hours": progress.signal_s / 3600}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m replay.bench", description=__doc__.split("\n")[0])
    settings_mod.add_flags(parser, ("data_dir", "records", "chunk_s", "kafka_bootstrap",
                                    "kafka_idempotence", "partitions", "batch_bytes", "linger_ms"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure("WARNING", "text")
    base = settings_mod.load(args)
    records = base.records
    if args.records is None and base.data_dir is not None:
        records = ",".join(sorted(p.stem for p in base.data_dir.glob("*.hea")))
    broker: LocalService | None = None
    try:
        bootstrap = base.kafka_bootstrap
        if not bootstrap:
            broker = start_broker()
            bootstrap = f"127.0.0.1:{broker.port}"
        cfg = settings_mod.load(
            args, records=records, speed="max", loop=False, start_s=0.0, duration_s=0.0,
            progress_s=0.0, chunk_s=float(args.chunk_s or BENCH_CHUNK_S),
            kafka_bootstrap=bootstrap,
            kafka_idempotence=base.kafka_idempotence if broker is None else False,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
        )
        r = asyncio.run(bench(cfg))
    except EcgmonError as exc:
        sys.stderr.write(f"replay.bench: error: {exc}\n")
        return 2
    finally:
        if broker is not None:
            broker.stop()
    sys.stdout.write(
        f"replay bench: {r['records']:.0f} records, {r['signal_hours']:.1f} h of signal, "
        f"chunk {cfg.chunk_s:g} s, {cfg.partitions} partitions, broker "
        f"{'local tansu' if broker else bootstrap}\n"
        f"  {r['messages']:.0f} messages, {r['payload_mb']:.1f} MB on the wire "
        f"({r['signal_mb']:.1f} MB of int16 samples)\n"
        f"  load {r['load_s']:.2f} s (wfdb, not in the totals); produce+flush {r['produce_s']:.2f} s; "
        f"end-to-end (all consumed back, in order, bit-exact) {r['total_s']:.2f} s = "
        f"{r['mb_per_s']:.1f} MB/s\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
