"""Issue #8: Redis dies (SIGKILL) for 30 s while a DetectorService processes a replay.

The service must not crash or drop anything: it holds the batch (no consuming, no
commit), retries with backoff, and once a new Redis is up on the same port and folder
(its append-only file restores the data) every beat and alert is there, each alert once,
exactly as in an uninterrupted run.  The outage shows in ``ecgmon_redis_retries_total``
(growing during the outage, still after it, exported on /metrics) and in WARNING log lines
whose ``down_s`` spans the outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detector.onnx_classifier import OnnxClassifier
from detector.service import DetectorService, Rebalance
from stream.kafka import Producer, start_consumer
from stream.redis import AlertStore
from stream.services import LocalService, start_redis
from stream.settings import Settings
from tests.integration.test_detect_service import _consume, _outputs, _produce, _settings

pytestmark = [pytest.mark.integration, pytest.mark.data]

OUTAGE_S = 30.0  # issue #8: "Redis stopped for 30 s"


def _retries(registry: CollectorRegistry) -> dict[str, float]:
    """``ecgmon_redis_retries_total`` by ``op``."""
    return {s.labels["op"]: s.value for m in registry.collect()
            if m.name == "ecgmon_redis_retries" for s in m.samples
            if s.name == "ecgmon_redis_retries_total"}


def _consumed(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("ecgmon_chunks_consumed_total") or 0.0


async def _run_until(settings: Settings, registry: CollectorRegistry, n: int,
                     service_box: list[DetectorService], records: int | None = None,
                     **consumer_options: Any) -> None:
    """One in-process detector until it consumed ``n`` chunks and its positions add up to
    ``records`` (default ``n``: all the topic holds, even after re-reading from a checkpoint);
    errors propagate (= a crash)."""
    classifier = OnnxClassifier.load(settings.model)
    async with Producer(settings) as producer, AlertStore.from_settings(settings, registry) as store:
        service = DetectorService(settings, classifier, registry, producer, store,
                                  checkpoint_s=1.0, max_records=200)
        service_box.append(service)
        consumer = await start_consumer(settings, group_id=service.group_id, **consumer_options)
        consumer.subscribe([service.topic], listener=Rebalance(service, [consumer]))
        stop = asyncio.Event()

        async def watch() -> None:
            # polls a metric and the positions; no event exists
            while (_consumed(registry) < n  # noqa: ASYNC110
                   or sum(service.next_offsets.values()) < (records or n)):
                await asyncio.sleep(0.05)
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            await service.run(consumer, stop)
        finally:
            watcher.cancel()
            await consumer.stop()


@pytest.mark.parametrize("poll_interval_s", [300, 5],
                         ids=["within-poll-interval", "longer-than-poll-interval"])
async def test_redis_outage_holds_and_retries_then_nothing_lost_or_doubled(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path,
    caplog: pytest.LogCaptureFixture, poll_interval_s: int,
) -> None:
    """``longer-than-poll-interval``: the held batch keeps the consumer from polling for
    longer than ``max_poll_interval_ms``, so the group drops it and its commits are refused
    once Redis is back; it must rejoin and resume from its checkpoints."""
    base = _settings(kafka_bootstrap, redis_url, topic_prefix + "a", mitdb_dir)
    n = await _produce(base)
    await _consume(base, n)
    expected = await _outputs(base)
    assert expected[1], "the uninterrupted run raised no alert: nothing to compare"

    redis = start_redis()
    workdir = redis.workdir
    assert workdir is not None
    outage_url = f"redis://127.0.0.1:{redis.port}/0"
    settings = _settings(kafka_bootstrap, outage_url, topic_prefix + "b", mitdb_dir)
    await _produce(settings)
    registry = CollectorRegistry()
    box: list[DetectorService] = []
    restarted: LocalService | None = None
    caplog.set_level(logging.WARNING, logger="stream.redis")
    try:
        task = asyncio.create_task(_run_until(settings, registry, n, box,
                                              max_poll_interval_ms=poll_interval_s * 1000))
        async with asyncio.timeout(60):
            while _consumed(registry) < n * 0.15:  # noqa: ASYNC110 - polls a metric
                assert not task.done(), task
                await asyncio.sleep(0.02)
        before = sum(_retries(registry).values())
        redis.kill()
        killed_at = time.monotonic()
        at_kill = _consumed(registry)
        await asyncio.sleep(OUTAGE_S / 2)
        mid = sum(_retries(registry).values())
        await asyncio.sleep(OUTAGE_S / 2)
        assert not task.done(), "the detector stopped during the Redis outage"
        held = _consumed(registry)
        during = sum(_retries(registry).values())
        restarted = start_redis(redis.port, workdir=workdir)
        outage_s = time.monotonic() - killed_at
        async with asyncio.timeout(60):
            await task  # raises if the service gave up
        got = await _outputs(settings)
    finally:
        if not task.done():
            task.cancel()
        if restarted is not None:
            restarted.stop()  # also removes the folder
        else:
            redis.stop()

    assert outage_s >= OUTAGE_S
    assert at_kill < n and held < n, "the replay was consumed before or during the outage"
    # metrics: no retry before the kill, retries all through the outage (the backoff is
    # capped at 5 s, so both halves of it count some), exported on /metrics
    retries = _retries(registry)
    assert before == 0, f"Redis retries before the outage: {before}"
    assert 0 < mid < during, (mid, during)
    assert retries.get("deliver", 0) + retries.get("checkpoint", 0) >= 8, retries
    exported = generate_latest(registry).decode()
    assert 'ecgmon_redis_retries_total{op="deliver"}' in exported \
        or 'ecgmon_redis_retries_total{op="checkpoint"}' in exported, exported[:500]
    # logs: WARNING lines from the first failed call to the first one that succeeds again
    lines = [r for r in caplog.records if r.name == "stream.redis"]
    down = [r for r in lines if r.getMessage().startswith("redis unavailable")]
    back = [r for r in lines if r.getMessage() == "redis reachable again"]
    assert down and back, [r.getMessage() for r in lines][:5]
    assert all(r.levelno == logging.WARNING for r in down + back)
    longest = max(float(getattr(r, "down_s", 0)) for r in back)
    assert OUTAGE_S - 5 <= longest <= outage_s + 15, (longest, outage_s)
    # longer than the poll interval: the group drops the member; its revoke finds the batch
    # still held (no checkpoint of state ahead of Redis) or its next commit is refused
    rebalanced = [r for r in caplog.records if r.name == "detector.service"
                  and r.getMessage().startswith(("offset commit refused",
                                                 "a batch is not delivered yet"))]
    assert bool(rebalanced) == (poll_interval_s * 1000 < OUTAGE_S * 1000), rebalanced

    assert got[0] == expected[0], "beats differ from the uninterrupted run"
    assert sorted(got[1]) == sorted(expected[1]), "alert ids differ from the uninterrupted run"
    assert len(got[1]) == len(set(got[1])), "an alert id was stored twice"
