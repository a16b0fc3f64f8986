"""The detector service against the real broker and Redis, with the committed default model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from detector.evaluation import drop_excluded, load_reference, score
from detector.onnx_classifier import OnnxClassifier
from detector.service import DetectorService, Rebalance
from replay.producer import replay
from stream import serde
from stream.kafka import Producer, ensure_topics, start_consumer, start_reader
from stream.redis import AlertStore
from stream.schemas import Alert
from stream.settings import Settings, load

pytestmark = [pytest.mark.integration, pytest.mark.data]

MINUTES = 6
RECORDS = ("203", "207")


def _settings(kafka: str, redis_url: str, prefix: str, mitdb: Path) -> Settings:
    return load(environ={}, kafka_bootstrap=kafka, redis_url=redis_url, topic_prefix=prefix,
                redis_prefix=prefix,
                kafka_idempotence=False, partitions=4, data_dir=mitdb,
                records=",".join(RECORDS), speed="max", chunk_s=0.25,
                duration_s=MINUTES * 60.0, progress_s=0)


async def _produce(settings: Settings) -> int:
    await ensure_topics(settings)
    async with Producer(settings) as producer:
        progress = await replay(settings, producer)
    return progress.messages


async def _consume(settings: Settings, until_chunks: int = 0, *, drain_to: int = 0,
                   crash: bool = False) -> None:
    """Run one service instance until it has consumed ``until_chunks`` chunks (counted from
    its own start) or, with ``drain_to``, until its positions summed over the partitions reach
    that many messages (the end of the topic, also after resuming from a checkpoint).
    ``crash`` skips the final checkpoint, like kill -9."""
    registry = CollectorRegistry()
    classifier = OnnxClassifier.load(settings.model)
    async with Producer(settings) as producer, AlertStore.from_settings(settings, registry) as store:
        service = DetectorService(settings, classifier, registry, producer, store,
                                  checkpoint_s=1.0, max_records=200)
        consumer = await start_consumer(settings, group_id=service.group_id)
        consumer.subscribe([service.topic], listener=Rebalance(service, [consumer]))
        stop = asyncio.Event()

        async def watch() -> None:
            # polls a metric the service updates; no event exists to wait on
            def done() -> bool:
                consumed = registry.get_sample_value("ecgmon_chunks_consumed_total") or 0
                return consumed >= until_chunks and sum(service.next_offsets.values()) >= drain_to

            while not done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if crash:
                async def no_checkpoint() -> None:
                    return None
                service.checkpoint = no_checkpoint  # type: ignore[method-assign]
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait_for(service.run(consumer, stop), timeout=240)
        finally:
            watcher.cancel()
            await consumer.stop()


async def _outputs(settings: Settings) -> tuple[dict[str, set[int]], list[str], list[str]]:
    """Beats per patient (Redis beat streams), alert ids in Redis, alert ids on Kafka."""
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        beats: dict[str, set[int]] = {}
        for rec in RECORDS:
            pid = f"mitdb-{rec}"
            entries = await client.xrange(f"{settings.redis_prefix}:beats:{pid}")
            beats[pid] = {int(eid.split(b"-")[0]) for eid, _ in entries}
        raw = await client.xrange(f"{settings.redis_prefix}:alerts")
        redis_ids = [f[b"alert_id"].decode() for _, f in raw]
    finally:
        await client.aclose()
    reader = await start_reader(settings, settings.topic("alerts"))
    kafka_ids: list[str] = []
    try:
        while batch := await reader.getmany(timeout_ms=1500):
            for records in batch.values():
                kafka_ids += [serde.decode_as(r.value, Alert).alert_id for r in records]
    finally:
        await reader.stop()
    return beats, redis_ids, kafka_ids


async def test_ventricular_alarms_beats_and_exactly_once_alerts(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, mitdb_dir)
    n = await _produce(settings)
    await _consume(settings, n)
    beats, redis_ids, kafka_ids = await _outputs(settings)

    end = MINUTES * 60 * 360 - 2 * 360  # the last beats wait for their successor
    for rec in RECORDS:
        ref = load_reference(mitdb_dir / rec)
        want = drop_excluded(ref.beats[ref.beats < end], ref.excluded)
        got = drop_excluded(np.array(sorted(b for b in beats[f"mitdb-{rec}"] if b < end)),
                            ref.excluded)
        counts = score(want, got, int(0.15 * 360))  # EC57: 150 ms, VF episodes excluded
        assert counts.se >= 0.98 and counts.ppv >= 0.98, (rec, counts)
    assert len(redis_ids) == len(set(redis_ids)), "an alert was stored twice"
    assert set(redis_ids) == set(kafka_ids)
    types = {i.split(":")[1] for i in redis_ids if i.startswith("mitdb-203")}
    assert types & {"ventricular_tachycardia", "ventricular_run", "ventricular_couplet"}, types
    types_207 = {i.split(":")[1] for i in redis_ids if i.startswith("mitdb-207")}
    assert types_207 & {"ventricular_fibrillation", "ventricular_tachycardia"}, types_207


async def test_crash_and_restart_lose_and_duplicate_nothing(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path
) -> None:
    base = _settings(kafka_bootstrap, redis_url, topic_prefix + "a", mitdb_dir)
    n = await _produce(base)
    await _consume(base, n)
    expected = await _outputs(base)

    crashed = _settings(kafka_bootstrap, redis_url, topic_prefix + "b", mitdb_dir)
    await _produce(crashed)
    await _consume(crashed, n // 2, crash=True)
    await _consume(crashed, drain_to=n)  # resumes from the last checkpoint, re-does the rest
    got = await _outputs(crashed)

    assert got[0] == expected[0]
    assert sorted(got[1]) == sorted(expected[1])
    assert len(got[1]) == len(set(got[1]))
    # the Kafka alert topic is at-least-once: the same ids, re-sent ones allowed
    assert set(got[2]) == set(expected[2])

