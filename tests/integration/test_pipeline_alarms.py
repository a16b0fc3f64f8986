"""The whole live path: replay at x20 -> broker -> detect -> Redis -> gateway -> WebSocket.

Records 203, 207, 210 and 233 (issue #5): ventricular alarms must reach Redis and a
real WebSocket client with the same ids, every alert id exactly once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from replay.producer import replay
from stream.kafka import Producer, ensure_topics
from stream.settings import Settings, load
from tests.integration.test_detect_service import _consume
from tests.integration.test_gateway import TOKEN, _serve, _subscribe

pytestmark = [pytest.mark.integration, pytest.mark.data]

RECORDS = ("203", "207", "210", "233")
MINUTES = 4.0
VENTRICULAR = {"ventricular_tachycardia", "ventricular_fibrillation", "ventricular_run",
               "ventricular_couplet", "bigeminy", "trigeminy"}


def _settings(kafka: str, redis_url: str, prefix: str, mitdb: Path, web: Path) -> Settings:
    return load(environ={}, kafka_bootstrap=kafka, redis_url=redis_url, topic_prefix=prefix,
                redis_prefix=prefix, kafka_idempotence=False, partitions=4, data_dir=mitdb,
                records=",".join(RECORDS), speed="20", chunk_s=0.25,
                duration_s=MINUTES * 60.0, progress_s=0, auth_token=TOKEN, web_dir=web)


async def _redis_alert_ids(settings: Settings) -> list[str]:
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        rows = await client.xrange(f"{settings.redis_prefix}:alerts")
    finally:
        await client.aclose()
    return [f[b"alert_id"].decode() for _, f in rows]


async def test_alarms_reach_redis_and_websocket_with_the_same_ids_once(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path, tmp_path: Path
) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>ecgmon</title>")
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, mitdb_dir, web)
    await ensure_topics(settings)
    ws_frames: list[dict[str, Any]] = []

    async for gw in _serve(settings):
        async with connect(f"{gw.ws_url}?token={TOKEN}", max_size=None) as ws:
            await _subscribe(ws, ["*"])

            async def listen() -> None:
                async for raw in ws:
                    frame = json.loads(raw)
                    if frame["type"] == "alert":
                        ws_frames.append(frame)

            listener = asyncio.create_task(listen())
            async with Producer(settings) as producer:
                progress, _ = await asyncio.gather(
                    replay(settings, producer),
                    _consume(settings, int(len(RECORDS) * MINUTES * 60 / settings.chunk_s)),
                )
            assert progress.messages == len(RECORDS) * MINUTES * 60 / settings.chunk_s
            redis_ids = await _redis_alert_ids(settings)
            async with asyncio.timeout(30):  # the WebSocket catches up with Redis
                while len(ws_frames) < len(redis_ids):  # noqa: ASYNC110 - frames arrive on a task
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # anything extra (a duplicate) would arrive now
            listener.cancel()

    ws_ids = [f["alert_id"] for f in ws_frames]
    assert len(redis_ids) == len(set(redis_ids)), "an alert was stored twice in Redis"
    assert len(ws_ids) == len(set(ws_ids)), "an alert was sent twice on the WebSocket"
    assert ws_ids == redis_ids  # same ids, same order
    for rec in ("203", "207", "233"):
        types = {f["alarm_type"] for f in ws_frames if f["patient_id"] == f"mitdb-{rec}"}
        assert types & VENTRICULAR, (rec, types)
