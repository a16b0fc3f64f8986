"""The gateway against the real broker and Redis: auth, live alerts, exact resume, slow clients,
acknowledgement, Kafka waveform and beats, health, metrics, OpenAPI, and the analyze upload.

Most tests run a real uvicorn server on a free port and talk to it with ``websockets`` and httpx.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import json
import socket
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
import wfdb
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from detector.gateway.app import create_app
from detector.gateway.clients import ClientHub
from detector.gateway.feeds import Feeds, PatientLive
from stream import serde
from stream.kafka import Producer, ensure_topics, start_reader
from stream.redis import AlertStore, beat_entry
from stream.schemas import (
    AlarmPhase,
    AlarmPriority,
    AlarmSettings,
    Alert,
    Beat,
    BeatClass,
    Discharge,
    SampleChunk,
)
from stream.services import free_port
from stream.settings import Settings, load

pytestmark = [pytest.mark.integration]

TOKEN = "test-token-7f3a"
WAVE_CHUNKS, WAVE_N = 100, 3 * 36_000
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _analyzer(x: np.ndarray, fs_hz: float, leads: list[str]) -> dict[str, Any]:
    """Stands in for the ONNX model: the upload path is under test here, not the classifier."""
    return {"fs_hz": fs_hz, "lead_names": leads, "n_samples": int(x.shape[0]),
            "beats": [{"sample_index": 0, "class": "N"}], "alarms": [],
            "mean_mv": float(np.mean(x))}


@dataclass
class Running:
    settings: Settings
    store: AlertStore
    feeds: Feeds
    registry: CollectorRegistry
    base: str
    ws_url: str
    http: httpx.AsyncClient


def _settings(kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path,
              **kw: Any) -> Settings:
    # no no-data alarms unless a test asks: synthetic streams here stop when a test has enough
    kw = {"no_data_alarm_s": 0.0, **kw}
    return load(environ={}, kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                topic_prefix=topic_prefix, redis_prefix=topic_prefix, kafka_idempotence=False,
                partitions=2,
                auth_token=TOKEN, web_dir=web_dir, **kw)


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>ecgmon</title><script src='app.js'></script>")
    (web / "app.js").write_text("console.log('ecgmon')")
    return web


async def _serve(settings: Settings, analyzer: Any = _analyzer) -> AsyncIterator[Running]:
    await ensure_topics(settings)
    registry = CollectorRegistry()
    store = AlertStore.from_settings(settings, registry)
    await store.start()
    feeds = Feeds(settings, store, ClientHub(registry, settings.ws_queue_size), registry,
                  state_interval_s=0.2)
    app = create_app(settings, registry, store, feeds, analyzer=analyzer)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                            ws="websockets-sansio", lifespan="on",
                            timeout_graceful_shutdown=5)  # as `ecgmon gateway` runs it
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                await asyncio.sleep(0.02)
            await feeds.live.ready.wait()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield Running(settings, store, feeds, registry, f"http://127.0.0.1:{port}",
                          f"ws://127.0.0.1:{port}/ws", http)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await store.stop()


@pytest.fixture
async def gw(kafka_bootstrap: str, redis_url: str, topic_prefix: str,
             web_dir: Path) -> AsyncIterator[Running]:
    async for running in _serve(_settings(kafka_bootstrap, redis_url, topic_prefix, web_dir)):
        yield running


def _alert(patient: str, onset: int, phase: AlarmPhase = AlarmPhase.ONSET, at: int | None = None,
           alarm_type: str = "vtach") -> Alert:
    return Alert(patient, alarm_type, AlarmPriority.HIGH, phase, onset, at if at is not None else onset,
                 360.0, 150.0, "ventricular tachycardia", time.time_ns(), time.time_ns())


# Alert frames that arrived while a test waited for something else (see _subscribe).
_STASH: weakref.WeakKeyDictionary[ClientConnection, list[dict[str, Any]]] = weakref.WeakKeyDictionary()


async def _next(ws: ClientConnection, kind: str, within_s: float = 10.0) -> dict[str, Any]:
    """The next frame of ``kind`` (others, e.g. state, are skipped)."""
    stash = _STASH.get(ws, [])
    if kind == "alert" and stash:
        return stash.pop(0)
    async with asyncio.timeout(within_s):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame  # type: ignore[no-any-return]


async def _alerts(ws: ClientConnection, n: int, within_s: float = 15.0) -> list[dict[str, Any]]:
    return [await _next(ws, "alert", within_s) for _ in range(n)]


async def _no_more_alerts(ws: ClientConnection, wait_s: float = 0.8) -> None:
    with pytest.raises(TimeoutError):
        await _next(ws, "alert", wait_s)


async def _subscribe(ws: ClientConnection, patients: list[str] | None = None, waveform: bool = False,
                     last: str | None = None) -> dict[str, Any]:
    hello = await _next(ws, "hello")
    await ws.send(json.dumps({"type": "subscribe", "patients": patients or ["*"],
                              "waveform": waveform, "last_alert_id": last}))
    # Barrier: messages are handled in order, so this reply means the subscription (and its
    # alert reader's starting point) is in place.
    await ws.send(json.dumps({"type": "ack", "alarm_id": "barrier:none:0", "user": "test"}))
    async with asyncio.timeout(10):
        while (frame := json.loads(await ws.recv()))["type"] != "error":
            if frame["type"] == "alert":  # e.g. replayed from last_alert_id: keep for the test
                _STASH.setdefault(ws, []).append(frame)
    assert frame["error"] == "unknown alarm"
    return hello


# --- auth, health, metrics, OpenAPI, static ---------------------------------------------------


async def test_rest_and_websocket_need_the_token_open_paths_do_not(gw: Running) -> None:
    r = await gw.http.get("/api/patients")
    assert r.status_code == 401 and r.json()["error"].startswith("unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    assert (await gw.http.get("/api/patients", headers={"Authorization": "Bearer nope"})).status_code == 401
    r = await gw.http.get("/api/patients", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"patients": []}

    with pytest.raises(InvalidStatus) as denied:
        async with connect(gw.ws_url):
            pass
    assert denied.value.response.status_code == 401
    assert json.loads(denied.value.response.body or b"{}")["error"] == "unauthorized"
    with pytest.raises(InvalidStatus):
        async with connect(gw.ws_url + "?token=wrong"):
            pass
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:
        assert (await _next(ws, "hello"))["patients"] == []
    async with connect(gw.ws_url, subprotocols=[f"bearer.{TOKEN}"]) as ws:  # type: ignore[list-item]
        hello = await _next(ws, "hello")
        assert ws.subprotocol == f"bearer.{TOKEN}" and abs(hello["server_time_ms"] - time.time() * 1e3) < 5e3
        assert hello["alarm_defaults"] == {"hr_low_bpm": 40.0, "hr_high_bpm": 140.0, "pause_s": 2.0,
                                           "disabled": []}  # the station marks beds that differ

    health = await gw.http.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    metrics = await gw.http.get("/metrics")
    assert metrics.status_code == 200 and "ecgmon_ws_clients" in metrics.text
    spec = (await gw.http.get("/openapi.json")).json()
    assert {"/api/patients", "/api/patients/{patient_id}", "/api/alerts",
            "/api/alarms/{alarm_id}/ack", "/api/analyze"} <= set(spec["paths"])
    assert (await gw.http.get("/docs")).status_code == 404  # no CDN-backed docs page
    index = await gw.http.get("/")
    assert index.status_code == 200 and "<title>ecgmon</title>" in index.text
    assert (await gw.http.get("/static/app.js")).text == "console.log('ecgmon')"
    assert (await gw.http.get("/app.js")).status_code == 200
    assert (await gw.http.get("/static/../index.html")).status_code in (200, 404)


async def test_healthz_is_503_with_reasons_when_kafka_is_not_consumed(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir)
    registry = CollectorRegistry()
    async with AlertStore.from_settings(settings, registry) as store:
        feeds = Feeds(settings, store, ClientHub(registry, 8), registry)  # never started
        app = create_app(settings, registry, store, feeds, analyzer=_analyzer)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gw") as http:
            r = await http.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "reasons": ["kafka: consumer not running"]}
    down = AlertStore.from_settings(settings, registry := CollectorRegistry())  # never started
    feeds = Feeds(settings, down, ClientHub(registry, 8), registry)
    app = create_app(settings, registry, down, feeds, analyzer=_analyzer)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        r = await http.get("/healthz")
        api = await http.get("/api/patients", headers=AUTH)
    assert r.status_code == 503 and r.json()["reasons"][0] == "redis: ServiceUnavailable"
    assert api.status_code == 503 and api.json() == {"error": "service unavailable"}


# --- alerts -----------------------------------------------------------------------------------


async def test_alert_written_to_redis_reaches_the_websocket_with_its_ids(gw: Running) -> None:
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:
        await _subscribe(ws)
        alert = _alert("mitdb-100", 3600)
        assert await gw.store.write_alert(alert)
        frame = await _next(ws, "alert")
    assert frame["alert_id"] == alert.alert_id and frame["alarm_id"] == alert.alarm_id
    assert frame["patient_id"] == "mitdb-100" and frame["priority"] == "high"
    assert frame["phase"] == "onset" and frame["onset_t_s"] == 10.0 and not frame["technical"]
    rows = await gw.store.history()
    assert frame["id"] == rows[-1].stream_id
    metrics = (await gw.http.get("/metrics")).text
    count = [ln for ln in metrics.splitlines() if ln.startswith("ecgmon_alert_to_websocket_seconds_count")]
    assert count and float(count[0].split()[-1]) >= 1

    r = await gw.http.get("/api/alerts", params={"patient": "mitdb-100"}, headers=AUTH)
    assert [a["alert_id"] for a in r.json()["alerts"]] == [alert.alert_id]
    r = await gw.http.get("/api/alerts", params={"after": frame["id"]}, headers=AUTH)
    assert r.json() == {"alerts": [], "next_after": frame["id"]}
    assert (await gw.http.get("/api/alerts", params={"after": "$"}, headers=AUTH)).status_code == 422


async def test_a_page_opened_late_gets_the_newest_alerts_oldest_first(gw: Running) -> None:
    alerts = [_alert("bed-9", 360 * i) for i in range(5)]
    for a in alerts:
        assert await gw.store.write_alert(a)
    for params in ({"patient": "bed-9"}, {}):
        r = await gw.http.get("/api/alerts", params={**params, "count": 2, "newest": "true"}, headers=AUTH)
        assert [a["alert_id"] for a in r.json()["alerts"]] == [a.alert_id for a in alerts[3:]]
        r = await gw.http.get("/api/alerts", params={**params, "count": 2}, headers=AUTH)
        assert [a["alert_id"] for a in r.json()["alerts"]] == [a.alert_id for a in alerts[:2]]
    first = r.json()["alerts"][0]["id"]
    r = await gw.http.get("/api/alerts", params={"after": first, "count": 10, "newest": "true"}, headers=AUTH)
    assert [a["alert_id"] for a in r.json()["alerts"]] == [a.alert_id for a in alerts[1:]]


async def test_reconnect_with_last_alert_id_replays_exactly_the_missed_alerts(gw: Running) -> None:
    first = _alert("p1", 360)
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:
        await _subscribe(ws)
        await gw.store.write_alert(first)
        seen = await _next(ws, "alert")
    missed = [_alert("p1", 360, AlarmPhase.UPDATE, at=720), _alert("p2", 1000),
              _alert("p1", 360, AlarmPhase.END, at=1080)]
    for a in missed:
        await gw.store.write_alert(a)
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:
        await _subscribe(ws, last=seen["id"])
        replayed = await _alerts(ws, 3)
        assert [f["alert_id"] for f in replayed] == [a.alert_id for a in missed]
        await _no_more_alerts(ws)
        later = _alert("p3", 50)
        await gw.store.write_alert(later)  # and it keeps going live after the replay
        assert (await _next(ws, "alert"))["alert_id"] == later.alert_id
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:  # only p2's alerts, from the start
        await _subscribe(ws, patients=["p2"], last="0-0")
        assert [f["alert_id"] for f in await _alerts(ws, 1)] == [missed[1].alert_id]
        await _no_more_alerts(ws)
        await ws.send(json.dumps({"type": "subscribe", "patients": ["p1"], "last_alert_id": "bad"}))
        assert "last_alert_id" in (await _next(ws, "error"))["error"]


async def test_a_slow_client_does_not_block_a_fast_one(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, ws_queue_size=8)
    async for gw in _serve(settings):
        # the slow client has a tiny socket buffer, subscribes to everything, then never reads
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", int(gw.base.rsplit(":", 1)[1])))
        slow = await connect(gw.ws_url + f"?token={TOKEN}", sock=sock, max_queue=1)
        try:
            await _subscribe(slow, waveform=True)
            async with connect(gw.ws_url + f"?token={TOKEN}") as fast:
                await _subscribe(fast, waveform=True)
                # ~25 MB of waveform JSON to each client, far more than `slow`'s buffers hold
                alerts = [_alert(f"p{i % 4}", 360 * i) for i in range(WAVE_CHUNKS)]
                counts: dict[str, int] = {"waveform": 0}
                reader = asyncio.create_task(_read_fast(fast, len(alerts), counts))
                async with Producer(settings) as producer:
                    for i, a in enumerate(alerts):
                        chunk = _chunk("p0", WAVE_N * i, n=WAVE_N, noise=True)
                        await producer.send(settings.topic("samples"), chunk, "p0")
                        await gw.store.write_alert(a)
                    await producer.flush()
                got = await reader
                assert [f["alert_id"] for f in got] == [a.alert_id for a in alerts]
                assert counts["waveform"] == WAVE_CHUNKS  # the fast client lost nothing
            dropped = gw.registry.get_sample_value("ecgmon_ws_dropped_frames_total",
                                                   {"kind": "waveform"})
            assert dropped is not None and dropped > 0  # the slow one lost waveform, not alerts
        finally:
            await slow.close()


async def _read_fast(ws: ClientConnection, n_alerts: int,
                     counts: dict[str, int]) -> list[dict[str, Any]]:
    """Every alert and every waveform frame (WAVE_CHUNKS of them) of the fast client."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(90):
        while len(got) < n_alerts or counts["waveform"] < WAVE_CHUNKS:
            frame = json.loads(await ws.recv())
            counts[frame["type"]] = counts.get(frame["type"], 0) + 1
            if frame["type"] == "alert":
                got.append(frame)
    return got


async def test_ack_over_rest_is_recorded_and_broadcast(gw: Running) -> None:
    alert = _alert("bed-7", 7200)
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws, \
            connect(gw.ws_url + f"?token={TOKEN}") as other:
        await _subscribe(ws, patients=["bed-7"])
        await _subscribe(other, patients=["bed-9"])
        await gw.store.write_alert(alert)
        await _next(ws, "alert")
        r = await gw.http.post(f"/api/alarms/{alert.alarm_id}/ack", json={"user": "nurse.k"},
                               headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        assert body["alarm_id"] == alert.alarm_id and body["user"] == "nurse.k"
        assert abs(body["at_ms"] - time.time() * 1e3) < 5e3
        acked = await _next(ws, "acked")
        assert acked == {"type": "acked", **body}
        async with asyncio.timeout(5):  # a state frame computed just before the ack may come first
            while not (state := await _next(ws, "state"))["active_alarms"][0]["acknowledged_by"]:
                pass
        assert state["patient_id"] == "bed-7" and state["active_alarms"] == [
            {"alarm_id": alert.alarm_id, "alarm_type": "vtach", "priority": "high",
             "acknowledged_by": "nurse.k"}]
        with pytest.raises(TimeoutError):  # not subscribed to bed-7
            await _next(other, "acked", 0.5)
    stored = await gw.store.alarm(alert.alarm_id)
    assert stored is not None and stored.acked_by == "nurse.k"
    again = await gw.http.post(f"/api/alarms/{alert.alarm_id}/ack", json={"user": "dr.b"}, headers=AUTH)
    assert again.status_code == 409 and again.json()["acked_by"] == "nurse.k"
    missing = await gw.http.post("/api/alarms/nope:x:1/ack", json={"user": "dr.b"}, headers=AUTH)
    assert missing.status_code == 404
    assert (await gw.http.post(f"/api/alarms/{alert.alarm_id}/ack", json={}, headers=AUTH)).status_code == 422
    detail = (await gw.http.get("/api/patients/bed-7", headers=AUTH)).json()
    assert detail["active_alarms"][0]["acknowledged_by"] == "nurse.k"
    assert detail["last_alert_id"] == alert.alert_id
    assert (await gw.http.get("/api/patients/bed-404", headers=AUTH)).status_code == 404


async def test_patient_detail_falls_back_to_the_beats_the_detector_keeps_in_redis(gw: Running) -> None:
    """A restarted gateway has seen no beats live: it serves the detector's recent beats."""
    await gw.store.update_patient("bed-5", heart_rate_bpm=61.0, last_beat_class=BeatClass.V,
                                  last_beat_sample=720)
    for sample, cls in ((360, "N"), (720, "V")):
        entry_id, fields = beat_entry(Beat("bed-5", sample, 360.0, BeatClass(cls), 0.9, 1.0, 0, 0))
        await gw.store.client.xadd(f"{gw.settings.topic_prefix}:beats:bed-5",
                                   fields, id=entry_id)  # type: ignore[arg-type]
    detail = (await gw.http.get("/api/patients/bed-5", headers=AUTH)).json()
    assert detail["heart_rate_bpm"] == 61.0 and detail["last_class"] == "V"
    assert detail["recent_beats"] == [
        {"patient_id": "bed-5", "sample_index": s, "t_s": s / 360, "class": c, "confidence": 0.9,
         "hr_bpm": 60.0} for s, c in ((360, "N"), (720, "V"))]


async def test_beat_history_is_a_data_time_window_with_the_live_heart_rate(gw: Running) -> None:
    """What a page opened late draws its 10-minute trend from: the detector's beats in Redis."""
    beats, t = [], 0.0
    for k in range(40):
        rr = 0.6 + 0.05 * (k % 7) if k != 25 else 4.0  # k = 25: an implausible RR, not counted
        t += rr
        beats.append(Beat("bed-7", round(t * 360), 360.0, BeatClass.V if k % 9 == 0 else BeatClass.N,
                          0.9, rr, 0, 0))
    for b in beats:
        entry_id, fields = beat_entry(b)
        await gw.store.client.xadd(f"{gw.settings.redis_prefix}:beats:bed-7",
                                   fields, id=entry_id)  # type: ignore[arg-type]
    await gw.store.update_patient("bed-7", heart_rate_bpm=70.0, last_beat_class=BeatClass.N,
                                  last_beat_sample=beats[-1].sample_index)
    live = PatientLive()
    frames = [{k: v for k, v in live.add_beat(b).items() if k not in ("type", "patient_id")}
              for b in beats]
    url = "/api/patients/bed-7/beats"
    got = (await gw.http.get(url, params={"seconds": 10}, headers=AUTH)).json()
    newest = beats[-1].sample_index / 360
    expected = [f for f in frames if f["t_s"] >= round(newest - 10, 4)]
    assert 10 < len(expected) < 40 and got == {"patient_id": "bed-7", "beats": expected}
    newest3 = (await gw.http.get(url, params={"limit": 3}, headers=AUTH)).json()["beats"]
    assert newest3 == frames[-3:]
    everything = (await gw.http.get(url, headers=AUTH)).json()["beats"]
    assert everything == frames  # the default window (600 s) holds all 40
    assert (await gw.http.get("/api/patients/bed-404/beats", headers=AUTH)).status_code == 404
    assert (await gw.http.get(url, params={"seconds": 0}, headers=AUTH)).status_code == 422
    assert (await gw.http.get(url, params={"limit": 10_000}, headers=AUTH)).status_code == 422


async def _sent_in_band(gw: Running) -> list[tuple[bytes, Any]]:
    """The (key, message) pairs on the samples topic, once there are any."""
    reader = await start_reader(gw.settings, gw.settings.topic("samples"))
    try:
        found: list[tuple[bytes, Any]] = []
        async with asyncio.timeout(10):
            while not found:
                for records in (await reader.getmany(timeout_ms=500)).values():
                    found += [(r.key, serde.decode(r.value)) for r in records]
    finally:
        await reader.stop()
    return found


async def test_an_alarm_settings_change_is_checked_sent_in_band_logged_and_shown_once_applied(
    gw: Running,
) -> None:
    """The gateway's half of a change of a patient's alarm limits (the detector's half is in
    test_detect_service): checked, sent on the samples topic keyed by the patient, logged,
    ``pending`` until the detector reports it applied, then in the state frames."""
    await gw.store.update_patient("bed-3", heart_rate_bpm=72.0, last_beat_class=BeatClass.N,
                                  last_beat_sample=360)
    url = "/api/patients/bed-3/alarm-settings"
    before = (await gw.http.get(url, headers=AUTH)).json()
    assert before["applied"] is None and before["pending"] is None and before["history"] == []
    assert before["effective"] == before["defaults"] == {
        "hr_low_bpm": 40.0, "hr_high_bpm": 140.0, "pause_s": 2.0, "disabled": []}
    assert "atrial_fibrillation" in before["optional_alarms"]
    assert "asystole" not in before["optional_alarms"]

    body = {"user": "nurse a", "hr_low_bpm": 50, "hr_high_bpm": 130, "pause_s": 2.5,
            "disabled": ["pause", "atrial_fibrillation"]}
    for bad, words in [({"hr_low_bpm": 10}, "hr_low_bpm must be 15-120 bpm"),
                       ({"hr_high_bpm": 55}, "hr_high_bpm must be 60-300 bpm"),
                       ({"disabled": ["ventricular_fibrillation"]}, "cannot be switched off"),
                       ({"user": "  "}, "user must be")]:
        r = await gw.http.post(url, json={**body, **bad}, headers=AUTH)
        assert r.status_code == 422 and words in r.json()["error"], r.text
    assert (await gw.http.post(url, json=body)).status_code == 401
    assert (await gw.http.post("/api/patients/bed-404/alarm-settings", json=body,
                               headers=AUTH)).status_code == 404

    r = await gw.http.post(url, json=body, headers=AUTH)
    assert r.status_code == 202, r.text
    sent = r.json()
    entry = sent["settings"]
    assert sent["status"] == "sent" and entry["request_id"] == sent["request_id"]
    assert entry["disabled"] == ["atrial_fibrillation", "pause"] and entry["user"] == "nurse a"
    found = await _sent_in_band(gw)
    assert len(found) == 1 and found[0][0] == b"bed-3"
    change = found[0][1]
    assert isinstance(change, AlarmSettings) and change.set_at_ns // 1_000_000 == entry["set_at_ms"]
    assert dataclasses.replace(change, set_at_ns=0) == AlarmSettings(
        "bed-3", sent["request_id"], "nurse a", 0, 50.0, 130.0, 2.5, ("atrial_fibrillation", "pause"))
    waiting = (await gw.http.get(url, headers=AUTH)).json()
    assert waiting["pending"] == entry and waiting["history"] == [entry] and waiting["applied"] is None

    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:
        await _subscribe(ws, ["bed-3"])
        assert (await _next(ws, "state"))["alarm_settings"] is None
        await gw.store.set_alarm_settings("bed-3", entry)  # what the detector writes once applied
        async with asyncio.timeout(10):
            while (state := await _next(ws, "state"))["alarm_settings"] is None:
                pass
        assert state["alarm_settings"] == entry
    done = (await gw.http.get(url, headers=AUTH)).json()
    assert done["applied"] == entry and done["pending"] is None
    assert done["effective"] == {k: entry[k] for k in ("hr_low_bpm", "hr_high_bpm", "pause_s", "disabled")}


async def test_patient_details_are_stored_once_and_reach_every_dashboard(gw: Running) -> None:
    await gw.store.update_patient("bed-4", heart_rate_bpm=72.0, last_beat_class=BeatClass.N,
                                  last_beat_sample=360)
    url = "/api/patients/bed-4/info"
    assert (await gw.http.get(url, headers=AUTH)).json() == {
        "patient_id": "bed-4", "bed": "", "name": "", "note": "", "updated_by": None,
        "updated_at_ms": None}
    for bad, status, words in [({"bed": "x" * 17}, 422, "bed"), ({"name": "a\nb"}, 422, "name must be"),
                               ({"user": " "}, 422, "user must be")]:
        r = await gw.http.post(url, json={"user": "nurse a", "bed": "12", **bad}, headers=AUTH)
        assert r.status_code == status and words in r.text, r.text
    assert (await gw.http.post("/api/patients/bed-404/info", json={"user": "a"},
                               headers=AUTH)).status_code == 404
    assert (await gw.http.post(url, json={"user": "a", "bed": "12"})).status_code == 401

    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:
        await _subscribe(ws, ["bed-4"])
        assert (await _next(ws, "state"))["info"] is None
        r = await gw.http.post(url, json={"user": "nurse a", "bed": " ICU-12 ", "name": "Doe, J.",
                                          "note": "pacemaker"}, headers=AUTH)
        assert r.status_code == 200, r.text
        saved = r.json()
        assert {k: saved[k] for k in ("bed", "name", "note", "updated_by")} == {
            "bed": "ICU-12", "name": "Doe, J.", "note": "pacemaker", "updated_by": "nurse a"}
        async with asyncio.timeout(10):
            while (state := await _next(ws, "state"))["info"] is None:
                pass
        assert state["info"] == saved
    assert (await gw.http.get(url, headers=AUTH)).json() == saved
    rows = (await gw.http.get("/api/patients", headers=AUTH)).json()["patients"]
    assert [r["info"] for r in rows if r["patient_id"] == "bed-4"] == [saved]
    cleared = (await gw.http.post(url, json={"user": "nurse b"}, headers=AUTH)).json()
    assert (cleared["bed"], cleared["name"], cleared["updated_by"]) == ("", "", "nurse b")


async def test_a_discharge_is_sent_in_band_every_dashboard_drops_the_patient_and_the_archive_lists_it(
    gw: Running,
) -> None:
    """The gateway's half of a discharge (the detector's half is in test_detect_service): sent on
    the samples topic keyed by the patient; the gateway's own feed reads it back, tells every
    client and stops listing the patient, though Redis still does until the detector archives
    it; data under the id again is a new admission."""
    for pid in ("bed-5", "bed-6"):
        await gw.store.update_patient(pid, heart_rate_bpm=72.0, last_beat_class=BeatClass.N,
                                      last_beat_sample=360)
    url = "/api/patients/bed-5/discharge"
    assert (await gw.http.post(url, json={"user": "nurse b"})).status_code == 401
    r = await gw.http.post(url, json={"user": " "}, headers=AUTH)
    assert r.status_code == 422 and "user must be" in r.text, r.text
    assert (await gw.http.post("/api/patients/bed-404/discharge", json={"user": "nurse b"},
                               headers=AUTH)).status_code == 404

    async with connect(gw.ws_url + f"?token={TOKEN}") as ws, \
            connect(gw.ws_url + f"?token={TOKEN}") as other:
        await _subscribe(ws, ["bed-5"])
        await _subscribe(other)
        r = await gw.http.post(url, json={"user": "nurse b"}, headers=AUTH)
        assert r.status_code == 202, r.text
        sent = r.json()
        assert (sent["patient_id"], sent["user"], sent["status"]) == ("bed-5", "nurse b", "sent")
        for client in (ws, other):
            frame = await _next(client, "discharged")
            assert frame == {"type": "discharged", "patient_id": "bed-5", "request_id": sent["request_id"],
                             "user": "nurse b", "at_ms": sent["discharged_at_ms"]}
    found = await _sent_in_band(gw)
    assert found == [(b"bed-5", Discharge("bed-5", sent["request_id"], "nurse b",
                                          found[0][1].discharged_at_ns))]
    assert "bed-5" in await gw.store.patients()  # no detector here to archive it
    rows = (await gw.http.get("/api/patients", headers=AUTH)).json()["patients"]
    assert [r["patient_id"] for r in rows] == ["bed-6"]
    assert (await gw.http.get("/api/patients/bed-5/info", headers=AUTH)).status_code == 404

    # what the detector archives; the list shows it, newest first
    await gw.store.set_patient_info("bed-5", {"bed": "5", "name": "J. Doe", "note": ""})
    assert await gw.store.discharge("bed-5", sent["request_id"], {
        "patient_id": "bed-5", "request_id": sent["request_id"], "user": "nurse b",
        "discharged_at_ms": sent["discharged_at_ms"], "alarms_ended": []})
    assert "bed-5" not in await gw.store.patients()
    listed = (await gw.http.get("/api/discharges?count=5", headers=AUTH)).json()["discharges"]
    assert [(d["patient_id"], d["user"], d["info"]["name"], d["alarm_settings"]) for d in listed] == [
        ("bed-5", "nurse b", "J. Doe", None)]
    assert (await gw.http.get("/api/discharges?count=0", headers=AUTH)).status_code == 422
    one = (await gw.http.get(f"/api/discharges/{sent['request_id']}", headers=AUTH)).json()
    assert (one["patient_id"], one["info"]["name"], one["alerts"], one["alarm_settings_history"]) == (
        "bed-5", "J. Doe", [], [])
    r = await gw.http.get("/api/discharges/nope", headers=AUTH)
    assert r.status_code == 404 and "ECGMON_ARCHIVE_DAYS" in r.json()["error"]

    async with Producer(gw.settings) as producer:  # the monitor streams on: a new admission
        await producer.send(gw.settings.topic("samples"), _chunk("bed-5", 720), "bed-5")
    async with asyncio.timeout(10):
        while "bed-5" not in [r["patient_id"] for r in (await gw.http.get(  # noqa: ASYNC110
                "/api/patients", headers=AUTH)).json()["patients"]]:
            await asyncio.sleep(0.1)  # polls the REST view a dashboard sees
    assert (await gw.http.get("/api/patients/bed-5/info", headers=AUTH)).json()["name"] == ""


async def test_a_bedside_stream_that_stops_raises_a_no_data_alarm_that_ends_when_it_returns(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path,
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, no_data_alarm_s=3.0)
    async for gw in _serve(settings):
        chunk = functools.partial(SampleChunk, "bed-8", "x", ("MLII",), 360.0, (200.0,), (0,))
        async with connect(gw.ws_url + f"?token={TOKEN}") as ws, Producer(settings) as producer:
            await _subscribe(ws, ["bed-8"])
            for i in range(4):
                await producer.send(settings.topic("samples"),
                                    chunk(i * 90, np.zeros((90, 1), np.int16), time.time_ns()), "bed-8")
            await producer.flush()
            sent = time.monotonic()
            onset = await _next(ws, "alert", within_s=15)
            assert time.monotonic() - sent >= 2.5  # not before the stream was silent 3 s
            assert (onset["alarm_type"], onset["phase"], onset["technical"], onset["priority"]) == (
                "no_data", "onset", True, "medium")
            assert onset["alarm_id"] == "bed-8:no_data:360"  # the sample after the last received
            active = await gw.store.active_alarms("bed-8")
            assert [a.alarm_id for a in active] == ["bed-8:no_data:360"]
            await producer.send(settings.topic("samples"),
                                chunk(5 * 90, np.zeros((90, 1), np.int16), time.time_ns()), "bed-8")
            await producer.flush()
            end = await _next(ws, "alert", within_s=10)
            assert (end["alarm_id"], end["phase"], end["t_s"]) == ("bed-8:no_data:360", "end", 1.25)
            assert await gw.store.active_alarms("bed-8") == []
        metric = gw.registry.get_sample_value("ecgmon_gateway_no_data_alarms_total", {"phase": "onset"})
        assert metric == 1


async def test_silence_from_every_bed_is_one_feed_frame_not_a_no_data_alarm_per_bed(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path,
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, no_data_alarm_s=3.0)
    async for gw in _serve(settings):
        async with connect(gw.ws_url + f"?token={TOKEN}") as ws, Producer(settings) as producer:
            hello = await _subscribe(ws, ["bed-1"])  # the feed frame reaches every client anyway
            assert hello["feed"] == {"receiving": True, "last_data_ms": None}
            for pid in ("bed-1", "bed-2"):
                await producer.send(settings.topic("samples"), _chunk(pid, 0, 90), pid)
            await producer.flush()
            sent_ms = time.time_ns() // 1_000_000
            silent = await _next(ws, "feed", within_s=15)  # both stop: the feed, upstream
            assert silent["receiving"] is False and sent_ms - 2000 <= silent["last_data_ms"] <= sent_ms + 2000
            assert gw.registry.get_sample_value("ecgmon_gateway_receiving") == 0
            await _no_more_alerts(ws, wait_s=3.5)
            assert await gw.store.active_alarms("bed-1") == []
            await producer.send(settings.topic("samples"), _chunk("bed-2", 90, 90), "bed-2")
            await producer.flush()
            assert (await _next(ws, "feed", within_s=10))["receiving"] is True
            # bed-1 stays silent while bed-2 streams: now it is that bed's monitor
            for i in range(2, 20):
                await producer.send(settings.topic("samples"), _chunk("bed-2", i * 90, 90), "bed-2")
                await producer.flush()
                await asyncio.sleep(0.25)
            onset = await _next(ws, "alert", within_s=10)
            assert (onset["alarm_id"], onset["phase"]) == ("bed-1:no_data:90", "onset")


async def test_ack_over_websocket(gw: Running) -> None:
    alert = _alert("bed-3", 100)
    await gw.store.write_alert(alert)
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws:
        await _subscribe(ws, patients=["bed-3"])
        await ws.send(json.dumps({"type": "ack", "alarm_id": alert.alarm_id, "user": "rn.j"}))
        acked = await _next(ws, "acked")
        assert acked["alarm_id"] == alert.alarm_id and acked["user"] == "rn.j"
        await ws.send(json.dumps({"type": "ack", "alarm_id": alert.alarm_id, "user": "rn.j"}))
        assert (await _next(ws, "error"))["error"] == "alarm already acknowledged"
        await ws.send("not json")
        assert (await _next(ws, "error"))["error"] == "not JSON"


# --- Kafka: waveform and beats ------------------------------------------------------------------


def _chunk(patient: str, first: int, n: int = 360, noise: bool = False) -> SampleChunk:
    t = (first + np.arange(n)) / 360.0
    mlii = (np.round(200 * np.sin(2 * np.pi * t)) + 1024).astype(np.int16)
    if noise:  # incompressible, so permessage-deflate cannot shrink it below the socket buffers
        mlii = np.random.default_rng(first).integers(-2000, 2000, n).astype(np.int16)
    samples = np.stack([mlii, np.full(n, 7, np.int16)], axis=1)
    return SampleChunk(patient, "100", ("MLII", "V5"), 360.0, (200.0, 200.0), (1024, 0), first,
                       samples, time.time_ns())


async def test_waveform_and_beats_from_kafka(gw: Running) -> None:
    async with connect(gw.ws_url + f"?token={TOKEN}") as ws, \
            connect(gw.ws_url + f"?token={TOKEN}") as no_wave:
        await _subscribe(ws, patients=["mitdb-100"], waveform=True)
        await _subscribe(no_wave, patients=["mitdb-100"], waveform=False)
        async with Producer(gw.settings) as producer:
            for k in range(3):
                await producer.send(gw.settings.topic("samples"), _chunk("mitdb-100", 360 * k),
                                    "mitdb-100")
            for k in range(1, 4):
                beat = Beat("mitdb-100", 360 * k, 360.0, BeatClass.N, 0.97, 1.0, time.time_ns(), 0)
                await producer.send(gw.settings.topic("beats"), beat, "mitdb-100")
            await producer.flush()
        got: dict[str, list[dict[str, Any]]] = {"waveform": [], "beat": []}
        async with asyncio.timeout(15):  # the two topics interleave in any order
            while len(got["waveform"]) < 3 or len(got["beat"]) < 3:
                frame = json.loads(await ws.recv())
                got.setdefault(frame["type"], []).append(frame)
        waves, beats = got["waveform"], got["beat"]
        assert (await _next(no_wave, "beat"))["sample_index"] == 360
        with pytest.raises(TimeoutError):
            await _next(no_wave, "waveform", 0.5)
    assert [w["first_sample_index"] for w in waves] == [0, 120, 240]
    assert all(w["fs_hz"] == 120.0 and w["lead"] == "MLII" for w in waves)
    mv = np.concatenate([w["mv"] for w in waves])
    t = np.arange(360 * 3) / 360.0
    expected = (np.round(200 * np.sin(2 * np.pi * t)) / 200).reshape(-1, 3).mean(axis=1)
    assert np.allclose(mv, expected, atol=1e-4)
    assert waves[1]["t_s"] == 1.0
    assert [(b["sample_index"], b["class"], b["hr_bpm"]) for b in beats] == [
        (360, "N", 60.0), (720, "N", 60.0), (1080, "N", 60.0)]
    detail = (await gw.http.get("/api/patients/mitdb-100", headers=AUTH)).json()
    assert detail["heart_rate_bpm"] == 60.0 and detail["last_class"] == "N"
    assert [b["sample_index"] for b in detail["recent_beats"]] == [360, 720, 1080]
    patients = (await gw.http.get("/api/patients", headers=AUTH)).json()["patients"]
    assert [p["patient_id"] for p in patients] == ["mitdb-100"]


async def _frames_until_quiet(ws: ClientConnection, kind: str, quiet_s: float = 1.0) -> list[dict[str, Any]]:
    """Every frame of ``kind`` until none has come for ``quiet_s``."""
    out: list[dict[str, Any]] = []
    with pytest.raises(TimeoutError):
        while True:
            out.append(await _next(ws, kind, quiet_s))
    return out


async def test_a_late_subscriber_gets_the_recent_trace_before_the_live_one(gw: Running) -> None:
    async with connect(gw.ws_url + f"?token={TOKEN}") as first:
        await _subscribe(first, patients=["mitdb-100"], waveform=True)
        async with Producer(gw.settings) as producer:
            for k in range(3):
                await producer.send(gw.settings.topic("samples"), _chunk("mitdb-100", 360 * k),
                                    "mitdb-100")
            await producer.flush()
        seen = [await _next(first, "waveform") for _ in range(3)]  # the gateway has all three
    async with connect(gw.ws_url + f"?token={TOKEN}") as late, \
            connect(gw.ws_url + f"?token={TOKEN}") as no_wave:
        await _next(late, "hello")
        await late.send(json.dumps({"type": "subscribe", "patients": ["*"], "waveform": True}))
        history = await _next(late, "waveform")
        await _subscribe(no_wave, patients=["mitdb-100"], waveform=False)
        async with Producer(gw.settings) as producer:
            await producer.send(gw.settings.topic("samples"), _chunk("mitdb-100", 360 * 3),
                                "mitdb-100")
            await producer.flush()
        following = await _next(late, "waveform")
        with pytest.raises(TimeoutError):
            await _next(no_wave, "waveform", 0.5)
    assert history["history"] is True and history["patient_id"] == "mitdb-100"
    assert history["lead"] == "MLII" and history["fs_hz"] == 120.0
    assert history["first_sample_index"] == 0 and history["t_s"] == 0.0
    assert np.allclose(history["mv"], np.concatenate([w["mv"] for w in seen]), atol=1e-4)
    # the live trace goes on exactly where the history ends
    assert "history" not in following and following["first_sample_index"] == len(history["mv"]) == 360


async def test_an_alarm_onset_gets_its_strip_recorded(gw: Running) -> None:
    """10 s before to 5 s after the alarm, from the live trace, stored in Redis for review."""
    async with connect(gw.ws_url + f"?token={TOKEN}") as watcher, Producer(gw.settings) as producer:
        await _subscribe(watcher, patients=["bed-9"], waveform=True)
        for k in range(14):  # 0-14 s of trace, then the alarm at 12 s, then the rest
            await producer.send(gw.settings.topic("samples"), _chunk("bed-9", 360 * k), "bed-9")
        await producer.flush()
        while (await _next(watcher, "waveform"))["first_sample_index"] < 13 * 120:
            pass
        onset = _alert("bed-9", 9 * 360, at=12 * 360)
        update = _alert("bed-9", 9 * 360, AlarmPhase.UPDATE, at=13 * 360)
        await gw.store.write_alert(onset)
        await gw.store.write_alert(update)
        for k in range(14, 20):
            await producer.send(gw.settings.topic("samples"), _chunk("bed-9", 360 * k), "bed-9")
        await producer.flush()
        url = f"/api/alerts/{onset.alert_id}/strip"
        async with asyncio.timeout(15):
            while (res := await gw.http.get(url, headers=AUTH)).status_code == 404:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    strip = res.json()
    assert res.status_code == 200 and strip["complete"] is True
    assert strip["t_s"] == 2.0 and strip["alert_t_s"] == 12.0 and strip["onset_t_s"] == 9.0
    assert strip["lead"] == "MLII" and strip["fs_hz"] == 120.0 and len(strip["mv"]) == 15 * 120
    t = np.arange(2 * 360, 17 * 360) / 360.0
    expected = (np.round(200 * np.sin(2 * np.pi * t)) / 200).reshape(-1, 3).mean(axis=1)
    assert np.allclose(strip["mv"], expected, atol=1e-3)
    later = await gw.http.get(f"/api/alerts/{update.alert_id}/strip", headers=AUTH)
    assert later.status_code == 404 and "each alarm onset" in later.json()["error"]
    assert gw.registry.get_sample_value("ecgmon_gateway_alarm_strips_total",
                                        {"result": "recorded"}) == 1


async def test_the_history_takes_half_the_queue_in_bed_order(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path
) -> None:
    beds = ["bed-10", "bed-2", "bed-1", "bed-11", "bed-3", "bed-4"]
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, ws_queue_size=8)
    async for gw in _serve(settings):
        async with connect(gw.ws_url + f"?token={TOKEN}") as first:
            await _subscribe(first, waveform=True)
            async with Producer(settings) as producer:
                for bed in beds:
                    await producer.send(settings.topic("samples"), _chunk(bed, 0), bed)
                await producer.flush()
            assert len({(await _next(first, "waveform"))["patient_id"] for _ in beds}) == len(beds)
        async with connect(gw.ws_url + f"?token={TOKEN}") as late:
            await _next(late, "hello")
            await late.send(json.dumps({"type": "subscribe", "patients": ["*"], "waveform": True}))
            got = await _frames_until_quiet(late, "waveform")
        assert [f["patient_id"] for f in got] == ["bed-1", "bed-2", "bed-3", "bed-4"]
        assert all(f["history"] and len(f["mv"]) == 120 for f in got)
        assert not gw.registry.get_sample_value("ecgmon_ws_dropped_frames_total", {"kind": "waveform"})


# --- analyze ------------------------------------------------------------------------------------


async def test_analyze_csv_wfdb_and_limits(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, upload_max_bytes=200_000)
    async for gw in _serve(settings):
        csv = "MLII,V5\n" + "".join(f"{0.001 * i:.3f},0.5\n" for i in range(1000))
        r = await gw.http.post("/api/analyze", files={"files": ("ecg.csv", csv.encode())},
                               data={"fs_hz": "250"}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["source"] == "csv" and body["fs_hz"] == 250.0 and body["n_samples"] == 1000
        assert body["lead_names"] == ["MLII", "V5"]

        sig = np.stack([np.sin(np.arange(3600) / 50.0), np.zeros(3600)], axis=1)
        wfdb.wrsamp("rec1", fs=360, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=sig,
                    fmt=["212", "212"], write_dir=str(tmp_path))
        wfdb.wrann("rec1", "atr", np.array([100, 460, 820]), np.array(["N", "V", "N"]),
                   write_dir=str(tmp_path))
        files = [("files", (f"rec1.{ext}", (tmp_path / f"rec1.{ext}").read_bytes()))
                 for ext in ("hea", "dat", "atr")]
        r = await gw.http.post("/api/analyze", files=files, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["source"] == "wfdb" and body["record"] == "rec1" and body["n_samples"] == 3600
        assert body["lead_names"] == ["MLII", "V1"]
        assert body["reference"] == {"n_beats": 3, "counts": {"N": 2, "V": 1}}

        r = await gw.http.post("/api/analyze", files=files[:1], headers=AUTH)  # .dat missing
        assert r.status_code == 422 and "rec1.dat" in r.json()["error"]
        r = await gw.http.post("/api/analyze", files={"files": ("ecg.csv", csv.encode())},
                               headers=AUTH)  # no fs_hz
        assert r.status_code == 422 and "fs_hz" in r.json()["error"]
        big = io.BytesIO(b"MLII\n" + b"0.1\n" * 60_000)
        r = await gw.http.post("/api/analyze", files={"files": ("big.csv", big)}, data={"fs_hz": "250"},
                               headers=AUTH)
        assert r.status_code == 413
        r = await gw.http.post("/api/analyze", files={"files": ("../x.csv", b"a\n1\n")}, headers=AUTH)
        assert r.status_code == 422
        assert (await gw.http.post("/api/analyze", files={"files": ("a.csv", b"a\n1\n")})).status_code == 401


async def test_analyze_time_limit_is_503(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path
) -> None:
    def slow(x: np.ndarray, fs_hz: float, leads: list[str]) -> dict[str, Any]:
        time.sleep(1.0)
        return {}

    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, analyze_timeout_s=0.3)
    async for gw in _serve(settings, analyzer=slow):
        files = {"files": ("ecg.csv", b"MLII\n" + b"0.1\n" * 500)}
        r = await gw.http.post("/api/analyze", files=files, data={"fs_hz": "250"}, headers=AUTH)
        assert r.status_code == 503 and "longer than" in r.json()["error"]
        busy = await gw.http.post("/api/analyze", files=files, data={"fs_hz": "250"}, headers=AUTH)
        assert busy.status_code == 503 and "another analysis" in busy.json()["error"]
        await asyncio.sleep(1.0)


@pytest.mark.data
async def test_analyze_a_real_record_with_the_real_model(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path, tmp_path: Path,
    mitdb_dir: Path,
) -> None:
    """One minute of MIT-BIH 100 uploaded as WFDB through the default (ONNX) analyzer."""
    rec = wfdb.rdrecord(str(mitdb_dir / "100"), sampto=360 * 60)
    ann = wfdb.rdann(str(mitdb_dir / "100"), "atr", sampto=360 * 60)
    wfdb.wrsamp("m100", fs=360, units=["mV", "mV"], sig_name=rec.sig_name, p_signal=rec.p_signal,
                fmt=["212", "212"], write_dir=str(tmp_path))
    wfdb.wrann("m100", "atr", ann.sample, np.array(ann.symbol), write_dir=str(tmp_path))
    files = [("files", (f"m100.{ext}", (tmp_path / f"m100.{ext}").read_bytes()))
             for ext in ("hea", "dat", "atr")]
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir)
    async for gw in _serve(settings, analyzer=None):
        r = await gw.http.post("/api/analyze", files=files, headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    n_ref = body["reference"]["n_beats"]
    assert n_ref == 74 and abs(body["summary"]["n_beats"] - n_ref) <= 2
    assert body["summary"]["counts"].get("N", 0) >= n_ref - 3
    assert 65 <= body["summary"]["heart_rate_bpm"] <= 85
    assert body["lead_names"] == ["MLII", "V5"] and body["source"] == "wfdb"


async def test_cors_only_for_configured_origins(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, web_dir: Path
) -> None:
    for origins, allowed in (("", False), ("https://ward.example", True)):
        settings = _settings(kafka_bootstrap, redis_url, topic_prefix, web_dir, cors_origins=origins)
        registry = CollectorRegistry()
        async with AlertStore.from_settings(settings, registry) as store:
            feeds = Feeds(settings, store, ClientHub(registry, 8), registry)
            app = create_app(settings, registry, store, feeds, analyzer=_analyzer)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://gw") as http:
                r = await http.options("/api/patients", headers={
                    "Origin": "https://ward.example", "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization"})
                evil = await http.get("/api/patients", headers={**AUTH, "Origin": "https://evil.example"})
        assert (r.headers.get("access-control-allow-origin") == "https://ward.example") is allowed
        assert "access-control-allow-origin" not in evil.headers
