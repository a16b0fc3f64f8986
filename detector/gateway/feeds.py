"""Live data for the gateway: Kafka beats and samples, Redis alerts and per-patient state.

* :class:`LiveFeed` reads the beats and samples topics from their latest offsets
  (its own group-less consumer, every partition), decimates the waveform to
  ~120 Hz and offers waveform and beat frames to the :class:`ClientHub`; it keeps the
  last seconds of each patient's trace (:class:`TraceHistory`) for a client that
  subscribes later, so its strips are full at once, as on a central station.  A
  discharge on the samples topic (:class:`~stream.schemas.Discharge`) drops the patient
  here and tells every client (a ``discharged`` frame); data that comes later under the
  same id is a new admission.
* :class:`AlertTail` reads the global alert stream of :class:`stream.redis.AlertStore`
  with ``XREAD BLOCK`` from a stream id, so every client resumes exactly where it was.
* :class:`StatePoller` sends each patient's state (heart rate, last class, active
  alarms with who acknowledged them) about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from redis import exceptions as redis_errors

from detector.gateway.clients import Client, ClientHub, dumps
from stream import metrics, serde
from stream.errors import DecodeError, ServiceUnavailable
from stream.kafka import connect, make_consumer
from stream.redis import AlarmState, AlertStore, beat_entry_sample, reply
from stream.schemas import AlarmSettings, Alert, Beat, Discharge, SampleChunk
from stream.settings import Settings

logger = logging.getLogger(__name__)

WAVEFORM_FS_HZ = 120.0
TRACE_KEPT_S = 20.0  # at least: alarm strips (detector.gateway.strips) cut 10 s before to 5 s after
RECENT_BEATS = 50
HR_BEATS = 8
STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
REDIS_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
DISCHARGES_KEPT = 10_000  # discharged ids remembered until their data comes back


def is_stream_id(value: str) -> bool:
    return bool(STREAM_ID.match(value))


# --- frames ---------------------------------------------------------------------------------


def alert_frame(stream_id: str, a: Alert) -> dict[str, Any]:
    return {
        "type": "alert", "id": stream_id, "alert_id": a.alert_id, "alarm_id": a.alarm_id,
        "patient_id": a.patient_id, "alarm_type": a.alarm_type, "priority": a.priority.value,
        "phase": a.phase.value, "technical": a.technical,
        "onset_t_s": round(a.onset_sample_index / a.fs_hz, 3),
        "t_s": round(a.sample_index / a.fs_hz, 3), "heart_rate_bpm": round(a.heart_rate_bpm, 1),
        "message": a.message, "details": dict(a.details),
    }


def alarm_summary(a: AlarmState) -> dict[str, Any]:
    return {"alarm_id": a.alarm_id, "alarm_type": a.alarm_type, "priority": a.priority.value,
            "acknowledged_by": a.acked_by}


# --- waveform decimation (pure) ---------------------------------------------------------------


class Decimator:
    """Block-mean decimation by an integer factor, aligned to absolute sample indices.

    Output sample ``k`` is the mean of input samples ``k*f .. k*f+f-1`` however the
    stream was cut into chunks; a gap or overlap restarts at the next block boundary.
    """

    def __init__(self, factor: int) -> None:
        self.factor = max(1, factor)
        self._next: int | None = None  # input index expected next
        self._buf = np.zeros(0)
        self._buf_start = 0

    def update(self, first_index: int, x: npt.NDArray[np.float64]) -> tuple[int, npt.NDArray[np.float64]]:
        """Feed samples starting at ``first_index``; returns (first output index, outputs)."""
        f = self.factor
        end = first_index + len(x)
        if self._next != first_index:
            skip = min(len(x), (-first_index) % f)
            x = x[skip:]
            self._buf, self._buf_start = np.zeros(0), first_index + skip
        self._next = end
        data = np.concatenate([self._buf, x]) if len(self._buf) else x
        n = len(data) // f
        out = data[: n * f].reshape(n, f).mean(axis=1)
        self._buf = data[n * f:]
        start = self._buf_start // f
        self._buf_start += n * f
        return start, out


class TraceHistory:
    """The newest ``seconds`` of one patient's decimated trace, without gaps.

    A chunk that does not continue the stored samples (a gap, an overlap, a restarted
    replay, another lead or rate) starts the history over, so :meth:`frame` is always
    one contiguous stretch a client can draw as it is.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, seconds)
        self._buf = np.zeros(0, np.float32)
        self._n = 0  # samples held
        self._end = 0  # output index just after the newest sample
        self._key: tuple[str, float] | None = None  # lead, output rate

    def __len__(self) -> int:
        return self._n

    @property
    def end_s(self) -> float | None:
        """Data time just after the newest sample, or None when empty."""
        return None if not self._n or self._key is None else self._end / self._key[1]

    def window(self, t_from_s: float, t_to_s: float
               ) -> tuple[str, float, int, npt.NDArray[np.float32]] | None:
        """(lead, rate, first output index, samples) of what is held in [t_from_s, t_to_s)."""
        if not self._n or self._key is None:
            return None
        lead, fs = self._key
        first = max(self._end - self._n, int(np.ceil(t_from_s * fs - 1e-9)))
        stop = min(self._end, int(np.ceil(t_to_s * fs - 1e-9)))
        if stop <= first:
            return None
        offset = self._n - self._end  # buffer position of output index i: i + offset
        return lead, fs, first, self._buf[first + offset:stop + offset].copy()

    def add(self, lead: str, fs_hz: float, start: int, mv: npt.NDArray[np.float64]) -> None:
        """Append outputs ``start, start+1, ...`` of the trace (``fs_hz`` their rate)."""
        if self.seconds <= 0 or not len(mv):
            return
        if (lead, fs_hz) != self._key:
            self._key = (lead, fs_hz)
            self._buf = np.zeros(max(1, int(np.ceil(self.seconds * fs_hz))), np.float32)
            self._n = 0
        elif start != self._end:
            self._n = 0
        cap = len(self._buf)
        x = mv[-cap:]
        kept = min(self._n, cap - len(x))
        if kept:
            self._buf[:kept] = self._buf[self._n - kept:self._n]
        self._buf[kept:kept + len(x)] = x
        self._n, self._end = kept + len(x), start + len(mv)

    def frame(self, patient_id: str, seconds: float | None = None) -> dict[str, Any] | None:
        """A ``waveform`` frame of the history (the newest ``seconds`` of it), or None if empty."""
        if not self._n or self._key is None:
            return None
        lead, fs = self._key
        n = self._n if seconds is None else min(self._n, max(0, int(round(seconds * fs))))
        if not n:
            return None
        start = self._end - n
        mv = self._buf[self._n - n:self._n].astype(np.float64)
        return {"type": "waveform", "patient_id": patient_id, "lead": lead, "fs_hz": fs,
                "first_sample_index": start, "t_s": round(start / fs, 4),
                "mv": mv.round(4).tolist(), "history": True}


# --- per-patient live state -------------------------------------------------------------------


@dataclass
class PatientLive:
    rr_s: deque[float] = field(default_factory=lambda: deque(maxlen=HR_BEATS))
    heart_rate_bpm: float | None = None
    last_class: str | None = None
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_BEATS))
    decimators: dict[tuple[str, float], Decimator] = field(default_factory=dict)
    history: TraceHistory = field(
        default_factory=lambda: TraceHistory(Settings().waveform_history_s))

    def add_beat(self, b: Beat) -> dict[str, Any]:
        hr = heart_rate(self.rr_s, b.rr_prev_s)
        if hr is not None:
            self.heart_rate_bpm = hr
        self.last_class = b.beat_class.value
        frame = {"type": "beat", "patient_id": b.patient_id, "sample_index": b.sample_index,
                 "t_s": round(b.sample_index / b.fs_hz, 4), "class": b.beat_class.value,
                 "confidence": round(b.confidence, 4),
                 "hr_bpm": round(self.heart_rate_bpm or 0.0, 1)}
        self.recent.append(frame)
        return frame

    def waveform(self, c: SampleChunk) -> dict[str, Any] | None:
        lead = c.lead_names.index("MLII") if "MLII" in c.lead_names else 0
        dec = self.decimators.get((c.lead_names[lead], c.fs_hz))
        if dec is None:
            dec = Decimator(int(round(c.fs_hz / WAVEFORM_FS_HZ)))
            self.decimators = {(c.lead_names[lead], c.fs_hz): dec}
        mv = (c.samples[:, lead].astype(np.float64) - c.adc_baseline[lead]) / c.adc_gain[lead]
        start, out = dec.update(c.first_sample_index, mv)
        if not len(out):
            return None
        out = np.where(np.isfinite(out), out, 0.0)
        self.history.add(c.lead_names[lead], c.fs_hz / dec.factor, start, out)
        return {"type": "waveform", "patient_id": c.patient_id, "lead": c.lead_names[lead],
                "fs_hz": c.fs_hz / dec.factor, "first_sample_index": start,
                "t_s": round(start * dec.factor / c.fs_hz, 4), "mv": out.round(4).tolist()}


# --- background tasks -----------------------------------------------------------------------


class Background:
    """One named task running ``_run`` between :meth:`start` and :meth:`stop` (both idempotent)."""

    task_name = "gateway-task"
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- Kafka ----------------------------------------------------------------------------------


class LiveFeed(Background):
    """Beats and samples from Kafka (latest offsets, no group) to the hub; reconnects forever."""

    task_name = "gateway-kafka"

    def __init__(self, settings: Settings, hub: ClientHub, registry: CollectorRegistry) -> None:
        self.settings, self.hub = settings, hub
        self.topics = (settings.topic("samples"), settings.topic("beats"))
        self.patients: dict[str, PatientLive] = {}
        self.ready = asyncio.Event()
        self.running = False
        self.on_trace: Callable[[str], None] | None = None  # after each patient's waveform chunk
        self.on_chunk: Callable[[SampleChunk], None] | None = None  # every chunk (no-data watch)
        self.on_discharge: list[Callable[[str], None]] = []  # a patient discharged (no I/O)
        # patients discharged, and the request: hidden until a chunk under their id comes again
        # (a new admission); the detector's beats of the ended stay that arrive late are dropped
        self.discharged: dict[str, str] = {}
        self._bad = metrics.counter("ecgmon_gateway_bad_messages_total",
                                    "Kafka messages the gateway could not decode", registry, ("topic",))

    async def stop(self) -> None:
        await super().stop()
        self.running = False

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                consumer = await self._connect()
            except ServiceUnavailable as exc:
                logger.warning("gateway kafka feed not connected, retrying",
                               extra={"error": str(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            try:
                self.running = True
                await self._consume(consumer)
            except KafkaError as exc:  # reconnect from the latest offsets
                logger.warning("gateway kafka feed failed, reconnecting", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
            finally:
                self.running = False
                await consumer.stop()

    async def _connect(self) -> AIOKafkaConsumer:
        async def close(c: AIOKafkaConsumer) -> None:
            await c.stop()

        consumer: AIOKafkaConsumer = await connect(
            lambda: make_consumer(self.settings, *self.topics, group_id=None,
                                  auto_offset_reset="latest", metadata_max_age_ms=5000),
            lambda c: c.start(), close, self.settings, "gateway feed")
        return consumer

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not self.ready.is_set() and consumer.assignment():
                for tp in consumer.assignment():
                    await consumer.position(tp)
                self.ready.set()
            for records in batches.values():
                for record in records:
                    self.handle(record.topic, record.value, record.partition, record.offset)

    def handle(self, topic: str, value: bytes | None, partition: int = -1, offset: int = -1) -> None:
        """Decode one record and offer its frames; bad records are counted and skipped."""
        try:
            if topic == self.topics[0]:
                message = serde.decode(value)
                if isinstance(message, AlarmSettings):  # the detector's business (in-band)
                    return
                if isinstance(message, Discharge):
                    self.discharge(message)
                    return
                if not isinstance(message, SampleChunk):
                    raise DecodeError("wrong_kind", f"{type(message).__name__} on the samples topic")
                chunk = message
                self.discharged.pop(chunk.patient_id, None)  # data again: a new admission
                if self.on_chunk is not None:
                    self.on_chunk(chunk)
                frame = self._patient(chunk.patient_id).waveform(chunk)
                if frame is not None:
                    self.hub.publish(chunk.patient_id, "waveform", frame)
                    if self.on_trace is not None:
                        self.on_trace(chunk.patient_id)
            else:
                beat = serde.decode_as(value, Beat)
                if beat.patient_id in self.discharged:  # of the stay that ended
                    return
                self.hub.publish(beat.patient_id, "beat", self._patient(beat.patient_id).add_beat(beat))
        except DecodeError as exc:
            self._bad.labels(topic=topic).inc()
            logger.warning("gateway skipped an undecodable message",
                           extra={"topic": topic, "partition": partition, "offset": offset,
                                  "reason": exc.reason})

    def discharge(self, d: Discharge) -> None:
        """``d.patient_id`` was discharged: forget its live data and tell every client (once
        per discharge)."""
        if self.discharged.get(d.patient_id) == d.request_id:
            return
        self.discharged[d.patient_id] = d.request_id
        while len(self.discharged) > DISCHARGES_KEPT:
            del self.discharged[next(iter(self.discharged))]
        self.patients.pop(d.patient_id, None)
        for forget in self.on_discharge:
            forget(d.patient_id)
        self.hub.broadcast_urgent(d.patient_id, {
            "type": "discharged", "patient_id": d.patient_id, "request_id": d.request_id,
            "user": d.user, "at_ms": d.discharged_at_ns // 1_000_000})
        logger.info("gateway saw a discharge", extra={"patient": d.patient_id, "request_id": d.request_id})

    def _patient(self, patient_id: str) -> PatientLive:
        live = self.patients.get(patient_id)
        if live is None:
            live = self.patients[patient_id] = PatientLive(
                history=TraceHistory(max(self.settings.waveform_history_s, TRACE_KEPT_S)))
            logger.debug("gateway sees a new patient", extra={"patient_id": patient_id})
        return live


# --- Redis alerts -----------------------------------------------------------------------------


class AlertTail:
    """Blocking reads of the global alert stream from a cursor (``XREAD BLOCK``)."""

    def __init__(self, store: AlertStore, block_ms: int = 1000, count: int = 100) -> None:
        self.store, self.block_ms, self.count = store, block_ms, count
        self.key = f"{store.prefix}:alerts"

    async def latest_id(self) -> str:
        """Id of the newest alert, or ``0-0``: the start for a client that wants only new ones."""
        rows: Any = await self.store.client.xrevrange(self.key, "+", "-", count=1)
        return _s(rows[0][0]) if rows else "0-0"

    async def read(self, cursor: str) -> list[tuple[str, Alert | None]]:
        """Alerts after ``cursor`` (waits up to ``block_ms``); None for an undecodable entry."""
        rows: Any = await self.store.client.xread({self.key: cursor}, count=self.count,
                                                  block=self.block_ms)
        out: list[tuple[str, Alert | None]] = []
        for _key, entries in rows or []:
            for sid, fields in entries:
                try:
                    out.append((_s(sid), serde.decode_as(fields.get(b"alert"), Alert)))
                except DecodeError:
                    out.append((_s(sid), None))
        return out

    async def follow(self, client: Client, cursor: str, stall_s: float = 30.0) -> None:
        """Push every alert after ``cursor`` that the client subscribes to, until it closes."""
        while not client.closed.is_set():
            try:
                rows = await self.read(cursor)
            except REDIS_ERRORS as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # the read failed because we were cancelled
                logger.warning("alert stream read failed, retrying", extra={"error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            for sid, alert in rows:
                cursor = sid
                if alert is None:
                    logger.warning("undecodable alert in the stream", extra={"stream_id": sid})
                    continue
                if client.wants(alert.patient_id, "alert"):
                    text = dumps(alert_frame(sid, alert))
                    if not await client.push_alert(text, alert.created_at_ns, stall_s):
                        return


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def heart_rate(rr_s: deque[float], rr_prev_s: float) -> float | None:
    """The heart rate a beat frame carries: the median of the last ``HR_BEATS`` plausible RR
    intervals (0.2-3 s), updated with this beat's; None before the first plausible one."""
    if 0.2 <= rr_prev_s <= 3.0:
        rr_s.append(rr_prev_s)
    return 60.0 / statistics.median(rr_s) if rr_s else None


def _decoded(fields: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in fields.items()}


def _beat_rows(patient_id: str, rows: Any, lead_in: Any = ()) -> list[dict[str, Any]]:
    """Beat dicts (as the live frames, without ``type``) from ``P:beats:{patient}`` entries in
    time order; ``lead_in``, the entries just before, only prime the heart rate. Undecodable
    entries are skipped."""
    rr_s: deque[float] = deque(maxlen=HR_BEATS)
    for _, fields in lead_in or []:
        with contextlib.suppress(ValueError):
            heart_rate(rr_s, float(_decoded(fields).get("rr_s", "0")))
    out: list[dict[str, Any]] = []
    for _, fields in rows or []:
        try:
            f = _decoded(fields)
            sample, fs = beat_entry_sample(f), float(f["fs_hz"])
            hr = heart_rate(rr_s, float(f.get("rr_s", "0")))
            out.append({"patient_id": patient_id, "sample_index": sample,
                        "t_s": round(sample / fs, 4), "class": f["class"],
                        "confidence": float(f.get("conf", "0")),
                        "hr_bpm": None if hr is None else round(hr, 1)})
        except (KeyError, ValueError, ZeroDivisionError):
            continue
    return out


async def stored_beats(store: AlertStore, key_prefix: str, patient_id: str,
                       count: int) -> list[dict[str, Any]]:
    """The detector's recent beats of a patient from Redis (``{prefix}:beats:{patient}``, see
    ``stream.redis.beat_entry``), oldest first; for a gateway that restarted and has seen none
    live."""
    rows: Any = await store.client.xrevrange(f"{key_prefix}:beats:{patient_id}", "+", "-",
                                             count=count + HR_BEATS)
    rows = list(reversed(rows or []))
    return _beat_rows(patient_id, rows[-count:], rows[:-count]) if count > 0 else []


async def stored_beats_since(store: AlertStore, key_prefix: str, patient_id: str, seconds: float,
                             limit: int) -> list[dict[str, Any]]:
    """The patient's beats in the last ``seconds`` of data time before its newest (at most the
    newest ``limit``) from the detector's Redis stream, oldest first, each with the heart rate
    its live frame carried (the HR_BEATS entries before the window prime it). Stream ids are
    data times in microseconds (``beat_entry``), so the window is a range read."""
    key = f"{key_prefix}:beats:{patient_id}"
    newest: Any = await store.client.xrevrange(key, "+", "-", count=1)
    if not newest:
        return []
    end_us = int(_s(newest[0][0]).split("-")[0])
    start = f"{max(0, end_us - int(seconds * 1_000_000))}-0"
    window: Any = await store.client.xrevrange(key, "+", start, count=limit)
    lead_in: Any = await store.client.xrevrange(key, f"({_s(window[-1][0])}", "-", count=HR_BEATS)
    return _beat_rows(patient_id, list(reversed(window)), list(reversed(lead_in or [])))


# --- state ----------------------------------------------------------------------------------


class StatePoller(Background):
    """Per-patient state frames from Redis and the live feed, offered to clients every interval."""

    task_name = "gateway-state"

    def __init__(self, store: AlertStore, live: LiveFeed, hub: ClientHub, interval_s: float = 1.0) -> None:
        self.store, self.live, self.hub, self.interval_s = store, live, hub, interval_s

    async def patient_ids(self) -> list[str]:
        """The patients being monitored: Redis's and the live feed's, less those discharged (the
        detector may not have archived them yet)."""
        stored = set(await self.store.patients()) - set(self.live.discharged)
        return sorted(stored | set(self.live.patients))

    async def state(self, patient_id: str) -> dict[str, Any]:
        st = await self.store.patient_state(patient_id)
        alarms = await self.store.active_alarms(patient_id)
        live = self.live.patients.get(patient_id)
        hr = live.heart_rate_bpm if live and live.heart_rate_bpm is not None else st.heart_rate_bpm
        last = live.last_class if live and live.last_class else (
            st.last_beat_class.value if st.last_beat_class else None)
        return {"type": "state", "patient_id": patient_id, "heart_rate_bpm": round(hr or 0.0, 1),
                "last_class": last or "U", "active_alarms": [alarm_summary(a) for a in alarms],
                "alarm_settings": st.alarm_settings, "info": st.info}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not self.hub.clients:
                continue
            try:
                for pid in await self.patient_ids():
                    if any(c.wants(pid, "state") for c in self.hub.clients):
                        self.hub.publish(pid, "state", await self.state(pid))
            except (ServiceUnavailable, *REDIS_ERRORS) as exc:
                logger.warning("state poll failed", extra={"error": str(exc)})


class Feeds:
    """Everything the gateway reads, started and stopped together."""

    def __init__(self, settings: Settings, store: AlertStore, hub: ClientHub,
                 registry: CollectorRegistry, *, state_interval_s: float = 1.0) -> None:
        from detector.gateway.nodata import NoDataWatch  # these build on this module
        from detector.gateway.strips import StripRecorder

        self.settings, self.store, self.hub = settings, store, hub
        self.live = LiveFeed(settings, hub, registry)
        self.alerts = AlertTail(store)
        self.state = StatePoller(store, self.live, hub, state_interval_s)
        self.strips = StripRecorder(store, self.live, registry)
        self.live.on_trace = self.strips.check
        self.nodata = None
        if settings.no_data_alarm_s > 0:
            live = self.live
            self.nodata = NoDataWatch(store, settings.no_data_alarm_s, registry, ready=live.ready,
                                      skip=lambda pid: pid in live.discharged)
            self.live.on_chunk = self.nodata.chunk
            self.live.on_discharge.append(self.nodata.forget)
            self.nodata.on_feed = lambda state: hub.broadcast_all({"type": "feed", **state})

    async def start(self) -> None:
        await self.strips.start()
        if self.nodata is not None:
            await self.nodata.start()
        await self.live.start()
        await self.state.start()

    async def stop(self) -> None:
        self.hub.close_all()
        await self.state.stop()
        await self.live.stop()
        await self.strips.stop()
        if self.nodata is not None:
            await self.nodata.stop()

    async def problems(self, timeout_s: float = 2.0) -> list[str]:
        """Why the gateway is unhealthy (empty = healthy): Redis ping, Kafka consumer running."""
        out: list[str] = []
        try:
            await asyncio.wait_for(reply(self.store.client.ping()), timeout_s)
        except (TimeoutError, ServiceUnavailable, *REDIS_ERRORS) as exc:
            out.append(f"redis: {type(exc).__name__}")
        if not self.live.running:
            out.append("kafka: consumer not running")
        return out
