"""Issue #8: 1,000 concurrent WebSocket clients on one gateway, one of them never reading.

Loopback only, bounded in count and time.  Every fast client receives every alarm, in
order, once; the stuck client only loses waveform frames (its queue is bounded), and the
memory of the process (gateway and clients) stays bounded while it is stuck.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect

from detector.gateway.clients import ClientHub
from detector.gateway.feeds import AlertTail
from stream.kafka import Producer
from stream.redis import AlertStore
from tests.integration.test_gateway import (
    TOKEN,
    WAVE_CHUNKS,
    WAVE_N,
    _alert,
    _chunk,
    _serve,
    _settings,
    _subscribe,
)

pytestmark = pytest.mark.integration

CLIENTS = 1000
ALERTS = 20


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text("<!doctype html><title>ecgmon</title>")
    return tmp_path


async def _join(url: str) -> ClientConnection:
    ws = await connect(url, open_timeout=30)
    await _subscribe(ws, ["*"])
    return ws


async def _collect(ws: ClientConnection, n: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        frame = json.loads(await ws.recv())
        if frame["type"] == "alert":
            ids.append(frame["alert_id"])
    return ids


async def test_a_thousand_clients_get_every_alarm_and_a_stuck_one_costs_bounded_memory(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, ws_queue_size=8)
    async for gw in _serve(settings):
        port = int(gw.base.rsplit(":", 1)[1])
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        stuck = await connect(f"{gw.ws_url}?token={TOKEN}", sock=sock, max_queue=1)
        fast: list[ClientConnection] = []
        try:
            await _subscribe(stuck, waveform=True)  # then never reads again

            async with asyncio.timeout(60):
                while len(fast) < CLIENTS - 1:  # join in waves of 100
                    wave = min(100, CLIENTS - 1 - len(fast))
                    fast += await asyncio.gather(*(_join(f"{gw.ws_url}?token={TOKEN}") for _ in range(wave)))
            assert len(fast) == CLIENTS - 1
            readers = [asyncio.create_task(_collect(ws, ALERTS)) for ws in fast]
            rss_before = _rss_mb()

            alerts = [_alert(f"p{i % 4}", 360 * i) for i in range(ALERTS)]
            async with Producer(settings) as producer:
                for i in range(WAVE_CHUNKS):
                    # ~25 MB of waveform JSON for the stuck client, far more than its buffers
                    chunk = _chunk("p0", WAVE_N * i, n=WAVE_N, noise=True)
                    await producer.send(settings.topic("samples"), chunk, "p0")
                    if i % (WAVE_CHUNKS // ALERTS) == 0:
                        await gw.store.write_alert(alerts[i // (WAVE_CHUNKS // ALERTS)])
                await producer.flush()
            async with asyncio.timeout(60):
                got = await asyncio.gather(*readers)
            rss_after = _rss_mb()
        finally:
            await asyncio.gather(*(ws.close() for ws in fast), return_exceptions=True)
            stuck.transport.abort()

        want = [a.alert_id for a in alerts]
        assert all(ids == want for ids in got), "a fast client missed or reordered an alarm"
        dropped = gw.registry.get_sample_value("ecgmon_ws_dropped_frames_total",
                                               {"kind": "waveform"})
        assert dropped is not None and dropped > 0  # the stuck client lost waveform only
        assert rss_after - rss_before < 150, (rss_before, rss_after)


async def test_a_closed_clients_alert_reader_stops_when_cancelled_mid_read(
    redis_url: str, topic_prefix: str
) -> None:
    """Every alert reader blocked in ``XREAD BLOCK`` ends when its session cancels it.

    redis-py 8.0-8.2 left some such tasks waiting on the socket for ever (a third of them here),
    and with them the session task and a Redis connection per closed client: the gateway's
    shutdown then hung (CI, 1,000 clients).  pyproject keeps redis below 8 for this.
    """
    store = AlertStore(redis_url, CollectorRegistry(), prefix=topic_prefix)
    await store.start()
    try:
        tail, hub = AlertTail(store, block_ms=1000), ClientHub(CollectorRegistry(), 8)
        for delay_s in (0.0, 0.001, 0.01, 0.05):  # cancel while connecting, sending, blocked
            readers = [asyncio.create_task(tail.follow(hub.add(), "0-0")) for _ in range(300)]
            await asyncio.sleep(random.uniform(0, delay_s))
            for task in readers:
                task.cancel()
            _, stuck = await asyncio.wait(readers, timeout=5)
            assert not stuck, f"{len(stuck)} of 300 alert readers ignored their cancellation"
    finally:
        await store.stop()
