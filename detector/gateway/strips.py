"""Alarm strips: the ECG around each alarm's onset, recorded by the gateway for later review.

A central station keeps, with every alarm, the strip the nurse would have seen when it sounded,
so a clinician (or an alarm researcher) can judge afterwards whether it was real. For each
``onset`` alert on the global alert stream, :class:`StripRecorder` waits until the live trace
reaches ``STRIP_AFTER_S`` past the alarm, cuts ``STRIP_BEFORE_S`` before it to
``STRIP_AFTER_S`` after it from the patient's :class:`~detector.gateway.feeds.TraceHistory`
(the decimated ~120 Hz lead the dashboard draws), adds the beats the gateway saw in that window,
and stores it in Redis (``{prefix}:strip:{alert_id}``, zlib-compressed JSON, kept
``STRIP_TTL_S``; written once: several gateways record the same strip, the first one stays).

Best effort, and it says so: the gateway records only what it sees live. A strip cut short (a
gap in the trace, a gateway started moments before) is stored with ``complete: false``; no
strip at all (the gateway was not running) is a 404 naming why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from detector.gateway.feeds import REDIS_ERRORS, AlertTail, Background, LiveFeed, PatientLive
from stream import metrics
from stream.errors import ServiceUnavailable
from stream.redis import AlertStore
from stream.schemas import AlarmPhase, Alert

logger = logging.getLogger(__name__)

STRIP_BEFORE_S = 10.0
STRIP_AFTER_S = 5.0
STRIP_WAIT_S = 30.0  # wall seconds to wait for the trace to reach the window's end
STRIP_TTL_S = 7 * 24 * 3600


def cut_strip(alert: Alert, live: PatientLive | None) -> dict[str, Any] | None:
    """The strip of ``alert`` from what ``live`` holds now, or None if it holds none of it."""
    t_alert = alert.sample_index / alert.fs_hz
    if live is None:
        return None
    got = live.history.window(t_alert - STRIP_BEFORE_S, t_alert + STRIP_AFTER_S)
    if got is None:
        return None
    lead, fs, first, mv = got
    t0, t1 = first / fs, (first + len(mv)) / fs
    complete = len(mv) >= round((STRIP_BEFORE_S + STRIP_AFTER_S) * fs) - 1
    beats = [{"t_s": b["t_s"], "class": b["class"]} for b in live.recent if t0 <= b["t_s"] < t1]
    return {"alert_id": alert.alert_id, "alarm_id": alert.alarm_id, "patient_id": alert.patient_id,
            "alarm_type": alert.alarm_type, "priority": alert.priority.value,
            "technical": alert.technical, "message": alert.message,
            "alert_t_s": round(t_alert, 4), "onset_t_s": round(alert.onset_sample_index / alert.fs_hz, 4),
            "window_t_s": [round(t_alert - STRIP_BEFORE_S, 4), round(t_alert + STRIP_AFTER_S, 4)],
            "lead": lead, "fs_hz": fs, "first_sample_index": first, "t_s": round(t0, 4),
            "mv": [round(float(v), 3) for v in mv], "beats": beats, "complete": complete}


def encode_strip(strip: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(strip, separators=(",", ":")).encode(), 6)


def decode_strip(raw: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(zlib.decompress(raw))
    return out


@dataclass
class _Pending:
    alert: Alert
    due_t_s: float  # data time the trace must reach
    deadline: float  # monotonic wall time after which what is there is cut


class StripRecorder(Background):
    """Follows the global alert stream from its newest entry and records a strip per onset."""

    task_name = "gateway-strips"

    def __init__(self, store: AlertStore, live: LiveFeed, registry: CollectorRegistry, *,
                 wait_s: float = STRIP_WAIT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.live, self.wait_s, self.clock = store, live, wait_s, clock
        self.tail = AlertTail(store)
        self.pending: dict[str, list[_Pending]] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._count = metrics.counter(
            "ecgmon_gateway_alarm_strips_total",
            "alarm onsets by what the gateway could record of their strip", registry, ("result",))

    def key(self, alert_id: str) -> str:
        return f"{self.store.prefix}:strip:{alert_id}"

    def add(self, alert: Alert) -> None:
        """Start waiting for the strip of an onset alert (other phases are ignored)."""
        if alert.phase is not AlarmPhase.ONSET:
            return
        due = alert.sample_index / alert.fs_hz + STRIP_AFTER_S
        self.pending.setdefault(alert.patient_id, []).append(
            _Pending(alert, due, self.clock() + self.wait_s))
        self.check(alert.patient_id)

    def check(self, patient_id: str) -> None:
        """Cut the strips of ``patient_id`` whose window the trace has reached (called by the
        live feed after each waveform chunk, and for time-outs once a second)."""
        waiting = self.pending.get(patient_id)
        if not waiting:
            return
        live = self.live.patients.get(patient_id)
        end = live.history.end_s if live is not None else None
        now = self.clock()
        keep: list[_Pending] = []
        for p in waiting:
            if (end is not None and end >= p.due_t_s) or now >= p.deadline:
                self._record(p.alert, live)
            else:
                keep.append(p)
        if keep:
            self.pending[patient_id] = keep
        else:
            del self.pending[patient_id]

    def _record(self, alert: Alert, live: PatientLive | None) -> None:
        strip = cut_strip(alert, live)
        if strip is None:
            self._count.labels(result="missed").inc()
            logger.info("no trace for an alarm strip", extra={"alert_id": alert.alert_id})
            return
        self._count.labels(result="recorded" if strip["complete"] else "partial").inc()
        task = asyncio.create_task(self._save(alert.alert_id, encode_strip(strip)),
                                   name="gateway-strip-write")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _save(self, alert_id: str, raw: bytes) -> None:
        try:
            await self.store.client.set(self.key(alert_id), raw, nx=True, ex=STRIP_TTL_S)
        except (ServiceUnavailable, *REDIS_ERRORS) as exc:
            logger.warning("alarm strip not stored", extra={"alert_id": alert_id, "error": str(exc)})

    async def load(self, alert_id: str) -> dict[str, Any] | None:
        raw: Any = await self.store.client.get(self.key(alert_id))
        return None if raw is None else decode_strip(raw)

    async def stop(self) -> None:
        await super().stop()
        if self._writes:  # strips already cut are stored, not dropped
            await asyncio.wait(set(self._writes), timeout=2.0)

    async def _run(self) -> None:
        cursor: str | None = None
        while True:
            try:
                if cursor is None:
                    cursor = await self.tail.latest_id()
                rows = await self.tail.read(cursor)
            except (ServiceUnavailable, *REDIS_ERRORS) as exc:
                logger.warning("alarm strip recorder: alert stream read failed, retrying",
                               extra={"error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            for sid, alert in rows:
                cursor = sid
                if alert is not None:
                    self.add(alert)
            for pid in list(self.pending):  # time-outs, when a patient's trace has stopped
                self.check(pid)
