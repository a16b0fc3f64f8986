"""One bounded outbox per WebSocket client, and the hub that fans frames out to them.

Each client has two channels.  *Data* frames (waveform, beat, state) go to a
bounded deque: when it is full the oldest frame is dropped and counted, so a slow
client sees a gap in its waveform but never slows the feed or other clients.
*Urgent* frames (alerts, acks, hello, errors) are never dropped: alerts are pulled
from Redis by the client's own reader, which waits while the client is behind
(``soft_cap``); if it stays behind for ``stall_s`` or the urgent backlog passes
``hard_cap``, the client is closed with :data:`CLOSE_LAGGING` and must reconnect
with its ``last_alert_id`` -- it resumes from Redis and misses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream import metrics

logger = logging.getLogger(__name__)

CLOSE_LAGGING = 4000
"""WebSocket close code: the client fell behind on alerts; reconnect with ``last_alert_id``."""
CLOSE_REASON_LAGGING = "lagging: reconnect with last_alert_id"
DROPPABLE = ("waveform", "beat", "state")


def dumps(frame: dict[str, Any]) -> str:
    """Compact JSON for a frame (serialised once, shared by every client)."""
    return json.dumps(frame, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class ClientMetrics:
    dropped: Counter
    clients: Gauge
    alert_latency: Histogram
    lagging: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ClientMetrics:
        return cls(
            dropped=metrics.counter(
                "ecgmon_ws_dropped_frames_total",
                "frames dropped because a WebSocket client was slow", registry, ("kind",)),
            clients=metrics.gauge("ecgmon_ws_clients", "connected WebSocket clients", registry),
            alert_latency=metrics.latency_histogram(
                "ecgmon_alert_to_websocket_seconds",
                "alert creation in the detector to its send on a WebSocket (live alerts only)",
                registry),
            lagging=metrics.counter(
                "ecgmon_ws_lagging_closes_total",
                "WebSocket clients closed because they fell behind on alerts", registry),
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    patients: frozenset[str] | None  # None = every patient
    waveform: bool

    def wants(self, patient_id: str, kind: str) -> bool:
        if kind == "waveform" and not self.waveform:
            return False
        return self.patients is None or patient_id in self.patients


class Client:
    """Outbox of one WebSocket client; :meth:`run_sender` drains it into the socket."""

    def __init__(
        self, metrics_: ClientMetrics, queue_size: int, *, soft_cap: int = 256,
        hard_cap: int = 4096, clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.m = metrics_
        self.queue_size = queue_size
        self.soft_cap, self.hard_cap = soft_cap, hard_cap
        self.subscription: Subscription | None = None
        self.connected_at_ns = clock_ns()
        self._clock_ns = clock_ns
        self._data: deque[tuple[str, str]] = deque()
        self._urgent: deque[tuple[str, int | None]] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.closed = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""

    def wants(self, patient_id: str, kind: str) -> bool:
        return self.subscription is not None and self.subscription.wants(patient_id, kind)

    def room(self) -> int:
        """Data frames the queue takes before it starts dropping."""
        return self.queue_size - len(self._data)

    def drain(self) -> int:
        """Forget the queued data frames (a benchmark's client that has sent them); how many."""
        n = len(self._data)
        self._data.clear()
        return n

    def offer(self, kind: str, text: str) -> None:
        """Queue a droppable frame; if full, the oldest data frame is dropped and counted."""
        if len(self._data) >= self.queue_size:
            old_kind, _ = self._data.popleft()
            self.m.dropped.labels(kind=old_kind).inc()
        self._data.append((kind, text))
        self._wake.set()

    def push_urgent(self, text: str, created_at_ns: int | None = None) -> None:
        """Queue a frame that must not be dropped; past ``hard_cap`` the client is closed."""
        if self.closed.is_set():
            return
        if len(self._urgent) >= self.hard_cap:
            self.close_lagging()
            return
        self._urgent.append((text, created_at_ns))
        if len(self._urgent) >= self.soft_cap:
            self._room.clear()
        self._wake.set()

    async def push_alert(self, text: str, created_at_ns: int, stall_s: float) -> bool:
        """Queue an alert, waiting up to ``stall_s`` for room; False if the client was closed."""
        if not self._room.is_set():
            try:
                await asyncio.wait_for(self._room.wait(), stall_s)
            except TimeoutError:
                self.close_lagging()
                return False
        if self.closed.is_set():
            return False
        self.push_urgent(text, created_at_ns)
        return not self.closed.is_set()

    def close_lagging(self) -> None:
        if not self.closed.is_set():
            self.m.lagging.inc()
            self.close(CLOSE_LAGGING, CLOSE_REASON_LAGGING)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        self.closed.set()
        self._room.set()
        self._wake.set()

    @property
    def backlog(self) -> tuple[int, int]:
        """(urgent, data) frames waiting."""
        return len(self._urgent), len(self._data)

    def _next(self) -> tuple[str, int | None] | None:
        if self._urgent:
            item = self._urgent.popleft()
            if len(self._urgent) < self.soft_cap:
                self._room.set()
            return item
        if self._data:
            return self._data.popleft()[1], None
        return None

    async def run_sender(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Send queued frames, urgent first, until :meth:`close`; send errors propagate."""
        while not self.closed.is_set():
            item = self._next()
            if item is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            text, created_at_ns = item
            await send(text)
            if created_at_ns is not None and created_at_ns >= self.connected_at_ns:
                self.m.alert_latency.observe(max(0.0, (self._clock_ns() - created_at_ns) / 1e9))


class ClientHub:
    """The connected clients; frames are serialised once and offered to each interested one."""

    def __init__(self, registry: CollectorRegistry, queue_size: int, **client_options: Any) -> None:
        self.m = ClientMetrics.create(registry)
        self.queue_size = queue_size
        self._options = client_options
        self.clients: set[Client] = set()

    def add(self) -> Client:
        client = Client(self.m, self.queue_size, **self._options)
        self.clients.add(client)
        self.m.clients.set(len(self.clients))
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        self.m.clients.set(len(self.clients))

    def publish(self, patient_id: str, kind: str, frame: dict[str, Any]) -> None:
        """Offer a droppable frame to every client subscribed to ``patient_id``."""
        targets = [c for c in self.clients if c.wants(patient_id, kind)]
        if targets:
            text = dumps(frame)
            for c in targets:
                c.offer(kind, text)

    def publish_many(self, patient_id: str, kind: str, frames: Iterable[dict[str, Any]]) -> None:
        for frame in frames:
            self.publish(patient_id, kind, frame)

    def broadcast_urgent(self, patient_id: str, frame: dict[str, Any]) -> None:
        """Send a never-dropped frame (e.g. ``acked``) to every client subscribed to the patient."""
        text = dumps(frame)
        for c in list(self.clients):
            if c.wants(patient_id, "alert"):
                c.push_urgent(text)

    def broadcast_all(self, frame: dict[str, Any]) -> None:
        """Send a never-dropped frame to every client, whatever it subscribed to (``feed``)."""
        text = dumps(frame)
        for c in list(self.clients):
            c.push_urgent(text)

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        for c in list(self.clients):
            c.close(code, reason)
