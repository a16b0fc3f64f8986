"""The ``/ws`` endpoint: one session per client (hello, subscribe, ack; frames out via its outbox).

Protocol (JSON text frames) -- client to server::

    {"type": "subscribe", "patients": ["*"] | [ids], "waveform": bool, "last_alert_id": id | null}
    {"type": "ack", "alarm_id": str, "user": str}

server to client: ``hello``, ``waveform``, ``beat``, ``alert``, ``state``, ``acked``,
``discharged``, ``feed``, ``error``
(see the README).  A client that falls behind on alerts is closed with code 4000 and
resumes without loss by reconnecting with the ``id`` of the last alert it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from detector.alarm_defaults import deployment_limits
from detector.gateway.clients import Client, Subscription, dumps
from detector.gateway.context import ApiError, Gateway
from detector.gateway.feeds import REDIS_ERRORS, is_stream_id
from stream.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

MAX_PATIENTS = 1000
CLOSE_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 3.0  # for a session's own tasks to end once cancelled


async def websocket_endpoint(ws: WebSocket, gw: Gateway) -> None:
    ok, subprotocol = gw.auth.websocket_ok(ws)
    if not ok:
        await _deny(ws)
        return
    await ws.accept(subprotocol=subprotocol)
    client = gw.hub.add()
    try:
        await Session(ws, client, gw).run()
    finally:
        gw.hub.remove(client)


async def _deny(ws: WebSocket) -> None:
    body = {"error": "unauthorized",
            "detail": "send ?token=<token> or the subprotocol bearer.<token>"}
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse(body, status_code=401))
    else:  # pragma: no cover - uvicorn and the test client both support denial responses
        await ws.close(code=1008, reason="unauthorized")


class Session:
    def __init__(self, ws: WebSocket, client: Client, gw: Gateway) -> None:
        self.ws, self.client, self.gw = ws, client, gw
        self.follower: asyncio.Task[None] | None = None

    def _feed(self) -> dict[str, object] | None:
        """Whether the gateway receives bedside data (None: the no-data watch is off)."""
        watch = self.gw.feeds.nodata
        return None if watch is None else watch.feed_state()

    async def run(self) -> None:
        try:
            patients = await self.gw.feeds.state.patient_ids()
        except (ServiceUnavailable, *REDIS_ERRORS):
            patients = sorted(self.gw.feeds.live.patients)
        self.client.push_urgent(dumps({"type": "hello", "server_time_ms": time.time_ns() // 1_000_000,
                                       "patients": patients,
                                       "alarm_defaults": deployment_limits(self.gw.settings).to_dict(),
                                       "feed": self._feed()}))
        tasks = [asyncio.create_task(self.client.run_sender(self.ws.send_text), name="ws-sender"),
                 asyncio.create_task(self._receive(), name="ws-receiver"),
                 asyncio.create_task(self.client.closed.wait(), name="ws-closed")]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _stop([*tasks, *([self.follower] if self.follower else [])])
        if self.client.closed.is_set():
            with contextlib.suppress(TimeoutError, RuntimeError, OSError, WebSocketDisconnect):
                await asyncio.wait_for(
                    self.ws.close(self.client.close_code, self.client.close_reason), CLOSE_TIMEOUT_S)

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            try:
                if text is None:
                    raise ApiError(400, "send JSON text frames")
                await self._handle(_parse(text))
            except ApiError as exc:
                self.client.push_urgent(dumps({"type": "error", "error": exc.message, **exc.extra}))
            except (ServiceUnavailable, *REDIS_ERRORS) as exc:
                logger.warning("websocket request failed", extra={"error": str(exc)})
                self.client.push_urgent(dumps({"type": "error", "error": "store unavailable"}))

    async def _handle(self, m: dict[str, Any]) -> None:
        kind = m.get("type")
        if kind == "subscribe":
            await self._subscribe(m)
        elif kind == "ack":
            alarm_id, user = m.get("alarm_id"), m.get("user")
            if not isinstance(alarm_id, str) or not isinstance(user, str):
                raise ApiError(400, "ack needs alarm_id and user strings")
            frame = await self.gw.acknowledge(alarm_id, user)
            # the broadcast reaches subscribers of the patient; the acking client always learns
            if not self.client.wants(alarm_id.rsplit(":", 2)[0], "alert"):
                self.client.push_urgent(dumps(frame))
        else:
            raise ApiError(400, f"unknown message type {str(kind)[:40]!r}")

    async def _subscribe(self, m: dict[str, Any]) -> None:
        patients, waveform, last = m.get("patients", ["*"]), m.get("waveform", False), m.get("last_alert_id")
        if (not isinstance(patients, list) or not all(isinstance(p, str) for p in patients)
                or len(patients) > MAX_PATIENTS):
            raise ApiError(400, f"patients must be a list of at most {MAX_PATIENTS} ids, or [\"*\"]")
        if not isinstance(waveform, bool):
            raise ApiError(400, "waveform must be true or false")
        if last is not None and (not isinstance(last, str) or not is_stream_id(last)):
            raise ApiError(400, "last_alert_id must be a Redis stream id like 1700000000000-0, or null")
        self.client.subscription = Subscription(
            None if "*" in patients else frozenset(patients), waveform)
        if waveform:  # before any await: the history must reach the client ahead of live frames
            self._send_history()
        if last is not None or self.follower is None:
            cursor = last if last is not None else await self.gw.feeds.alerts.latest_id()
            if self.follower is not None:
                await _stop([self.follower])
            self.follower = asyncio.create_task(self.gw.feeds.alerts.follow(self.client, cursor),
                                                name="ws-alert-reader")
        for pid in await self.gw.feeds.state.patient_ids():
            if self.client.wants(pid, "state"):
                self.client.offer("state", dumps(await self.gw.feeds.state.state(pid)))

    def _send_history(self) -> None:
        """Each subscribed patient's recent trace (one ``waveform`` frame, ``"history": true``),
        in bed order, in at most half the client's queue (the rest is for the state and live
        frames that follow): patients past that fill from the live feed, rather than have
        frames dropped and counted as a slow client's loss."""
        live, seconds = self.gw.feeds.live.patients, self.gw.settings.waveform_history_s
        if seconds <= 0:
            return
        for pid in sorted(live, key=natural_key):
            if self.client.room() <= self.client.queue_size // 2:
                logger.info("waveform history cut short by the client queue",
                            extra={"patients": len(live), "queue_size": self.client.queue_size})
                return
            if self.client.wants(pid, "waveform"):
                frame = live[pid].history.frame(pid, seconds)
                if frame is not None:
                    self.client.offer("waveform", dumps(frame))


def natural_key(patient_id: str) -> list[str | int]:
    """Bed order: ``bed-2`` before ``bed-10`` (digit runs compare as numbers)."""
    return [int(t) if i % 2 else t for i, t in enumerate(re.split(r"(\d+)", patient_id))]


def _parse(text: str) -> dict[str, Any]:
    try:
        m = json.loads(text)
    except ValueError:
        raise ApiError(400, "not JSON") from None
    if not isinstance(m, dict):
        raise ApiError(400, "send a JSON object with a type")
    return m


async def _stop(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel a session's tasks and wait for them, but never for ever: a task that ignores its
    cancellation (a client library bug: redis-py 8.0-8.2 did, mid ``XREAD``) is logged and left,
    so the session, and the gateway's shutdown, still end."""
    for t in tasks:
        t.cancel()
    done, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    for t in done:
        with contextlib.suppress(asyncio.CancelledError):
            await _quietly(t)
    if stuck:
        logger.error("websocket session tasks ignored their cancellation",
                     extra={"tasks": sorted(t.get_name() for t in stuck)})


async def _quietly(task: asyncio.Task[Any]) -> None:
    """Await a finished or cancelled task; a disconnect or send error just ends the session."""
    try:
        await task
    except (WebSocketDisconnect, OSError, RuntimeError) as exc:
        logger.debug("websocket task ended", extra={"error": repr(exc)})
    except (ServiceUnavailable, *REDIS_ERRORS) as exc:
        logger.warning("websocket alert reader stopped", extra={"error": str(exc)})
