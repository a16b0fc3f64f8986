"""Scale-out: detectors in one consumer group split the partitions; one joining and one leaving
mid-stream loses and duplicates no alert (and no beat) compared with a single instance."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from detector.onnx_classifier import OnnxClassifier
from detector.service import DetectorService, Rebalance
from replay.producer import replay
from stream.kafka import Producer, ensure_topics, start_consumer, start_reader
from stream.redis import AlertStore, beat_entry_sample
from stream.settings import Settings, load

pytestmark = [pytest.mark.integration, pytest.mark.data]

# Every partition holds a patient (by the default partitioner: 208 210 -> 0, 200 -> 1,
# 207 233 -> 2, 100 -> 3), so whichever partitions B is given, it has work to do.
RECORDS = ("100", "200", "207", "208", "210", "233")
MINUTES = 8
PARTITIONS = 4


def _settings(kafka: str, redis_url: str, prefix: str, mitdb: Path) -> Settings:
    return load(environ={}, kafka_bootstrap=kafka, redis_url=redis_url, topic_prefix=prefix,
                kafka_idempotence=False, partitions=PARTITIONS, data_dir=mitdb,
                records=",".join(RECORDS), speed="max", chunk_s=1.0,
                duration_s=MINUTES * 60.0, progress_s=0)


async def _produce(settings: Settings) -> dict[TopicPartition, int]:
    """Replay everything; the next offset after the last record of each samples partition
    (counted by reading the topic back: the bundled broker's ListOffsets is not exact)."""
    await ensure_topics(settings)
    async with Producer(settings) as producer:
        sent = (await replay(settings, producer)).messages
    reader = await start_reader(settings, settings.topic("samples"))
    ends = {TopicPartition(settings.topic("samples"), p): 0 for p in range(PARTITIONS)}
    try:
        while sum(ends.values()) < sent:
            for tp, records in (await reader.getmany(timeout_ms=1000)).items():
                ends[tp] = records[-1].offset + 1
    finally:
        await reader.stop()
    return ends


@dataclass
class _Instance:
    """One DetectorService with its own producer, store, consumer and stop event."""

    settings: Settings
    classifier: OnnxClassifier
    throttle_s: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    service: DetectorService | None = None
    consumer: Any = None
    assigned_sizes: list[int] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: hold after a batch

    def __post_init__(self) -> None:
        self.gate.set()

    def consumed(self) -> float:
        return self.registry.get_sample_value("ecgmon_chunks_consumed_total") or 0.0

    async def run(self) -> None:
        s = self.settings
        async with Producer(s) as producer, AlertStore(s.redis_url or "", self.registry,
                                                       prefix=s.topic_prefix) as store:
            service = DetectorService(s, self.classifier, self.registry, producer, store,
                                      checkpoint_s=1.0, max_records=10)
            self.service = service
            if self.throttle_s:
                process = service.process

                async def slow(batch: dict[TopicPartition, list[Any]]) -> None:
                    await process(batch)
                    self.assigned_sizes.append(len(consumer.assignment()))
                    await asyncio.sleep(self.throttle_s)  # keep data left for the rebalances
                    await self.gate.wait()

                service.process = slow  # type: ignore[method-assign]
            consumer = self.consumer = await start_consumer(s, group_id=service.group_id)
            consumer.subscribe([service.topic], listener=Rebalance(service, [consumer]))
            try:
                await service.run(consumer, self.stop)
            finally:
                await consumer.stop()  # leaves the group: the others rebalance


async def _wait(cond: Any, timeout_s: float, what: Any) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not cond():  # noqa: ASYNC110 - polling the services' counters, no event to await
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"{what()} after {timeout_s} s")


async def _stop_all(*runs: tuple[_Instance, asyncio.Task[None]]) -> None:
    for inst, _ in runs:
        inst.stop.set()
    for _, task in runs:
        await asyncio.wait_for(task, 60)


def _done(inst: _Instance, ends: dict[TopicPartition, int]) -> bool:
    svc = inst.service
    return svc is not None and all(svc.next_offsets.get(tp, 0) == end for tp, end in ends.items())


async def _outputs(settings: Settings) -> tuple[list[str], dict[str, set[int]]]:
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        raw = await client.xrange(f"{settings.topic_prefix}:alerts")
        alert_ids = [f[b"alert_id"].decode() for _, f in raw]
        beats = {}
        for rec in RECORDS:
            entries = await client.xrange(f"{settings.topic_prefix}:beats:mitdb-{rec}")
            beats[rec] = {beat_entry_sample(f) for _, f in entries}
    finally:
        await client.aclose()
    return alert_ids, beats


async def test_two_detectors_split_partitions_and_rebalance_exactly_once(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path
) -> None:
    classifier = OnnxClassifier.load("resnet")

    # reference: one instance alone
    single = _settings(kafka_bootstrap, redis_url, topic_prefix + "s", mitdb_dir)
    ends = await _produce(single)
    one = _Instance(single, classifier)
    task = asyncio.create_task(one.run())
    try:
        await _wait(lambda: _done(one, ends), 120, lambda: f"single instance at {one.consumed()}")
    finally:
        await _stop_all((one, task))
    want_alerts, want_beats = await _outputs(single)
    assert want_alerts, "the reference run raised no alert: nothing to compare"

    # A alone, then B joins (split), then B leaves (A takes everything back)
    scaled = _settings(kafka_bootstrap, redis_url, topic_prefix + "m", mitdb_dir)
    ends = await _produce(scaled)
    total = sum(ends.values())
    a = _Instance(scaled, classifier, throttle_s=0.04)
    b = _Instance(scaled, classifier, throttle_s=0.04)
    task_a = asyncio.create_task(a.run())
    task_b: asyncio.Task[None] | None = None

    def state() -> str:
        return (f"A consumed {a.consumed():.0f}, B {b.consumed():.0f} of {total}; "
                f"A assignments {sorted(set(a.assigned_sizes))}, B {sorted(set(b.assigned_sizes))}")

    try:
        # B joins before A can have finished any partition (each holds >= 1/6 of the data), and
        # A holds still until B has its share: both then have unread data in their partitions.
        await _wait(lambda: a.consumed() >= total * 0.05, 60, state)
        a.gate.clear()
        task_b = asyncio.create_task(b.run())
        await _wait(lambda: b.consumer is not None and b.consumer.assignment(), 60, state)
        a.gate.set()
        await _wait(lambda: b.consumed() >= total * 0.1
                    and min(a.assigned_sizes) < PARTITIONS, 60, state)
        await _stop_all((b, task_b))
        await _wait(lambda: _done(a, ends), 120, state)
    finally:
        a.gate.set()
        await _stop_all((a, task_a), *([(b, task_b)] if task_b is not None else []))

    assert 0 < min(b.assigned_sizes) and max(b.assigned_sizes) < PARTITIONS
    assert min(a.assigned_sizes) < PARTITIONS, "A never gave partitions to B"
    got_alerts, got_beats = await _outputs(scaled)
    assert len(got_alerts) == len(set(got_alerts)), "an alert was stored twice"
    assert sorted(got_alerts) == sorted(want_alerts)
    assert got_beats == want_beats
