"""A bedside stream that stops is a technical alarm: ``no_data``.

The detector is driven by the data's own time, so it cannot see a monitor that went silent
(unplugged, out of range, its network down): nothing arrives to advance it.  The gateway sees
chunks arrive in wall time.  :class:`NoDataWatch` raises a medium-priority technical alarm
for a patient whose chunks stop for ``ECGMON_NO_DATA_ALARM_S`` (15 s) while this gateway
receives, and ends it with the patient's next chunk.  It writes the alerts to the Redis alert
store like the detector's, with deterministic ids (onset = the sample after the last one
received, end = the first sample received again), so several gateways write each once, and
every dashboard sees, sounds and acknowledges it as any alarm.

A discharged patient is no longer watched; the detector ends an open ``no_data`` alarm of
the patient with the other alarms.

When chunks stop from every watched patient at once (two or more), the fault is upstream (this
gateway's Kafka feed, the broker, the network), not at the beds: the watch raises no per-bed
alarm then (a burst of them would bury the one message that matters) but reports the station
as not receiving (``feed_state``, the ``feed`` frame every dashboard shows as a banner with a
tone; gauge ``ecgmon_gateway_receiving``).  Once chunks flow again, a patient still silent is
alarmed ``ECGMON_NO_DATA_ALARM_S`` later.

A patient whose stream stopped while no gateway watched (a restart, an outage) is not
forgotten: once this gateway's Kafka feed is ready, it watches every patient Redis lists as
monitored as if its last chunk had arrived then, so one silent for ``ECGMON_NO_DATA_ALARM_S``
more raises the alarm, its onset the sample after the patient's last beat in Redis (the same
for every gateway).  A ``no_data`` alarm left active by a gateway that stopped is taken over:
not raised again, ended when the patient's chunks return.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from detector.gateway.feeds import REDIS_ERRORS, Background
from stream import metrics
from stream.errors import ServiceUnavailable
from stream.redis import AlertStore, beat_entry_sample, reply
from stream.schemas import AlarmPhase, AlarmPriority, Alert, SampleChunk

logger = logging.getLogger(__name__)

NO_DATA = "no_data"
CHECK_EVERY_S = 1.0


@dataclass(slots=True)
class _Seen:
    """The last chunk of one patient: where its data ended and when it arrived."""

    first: int  # the first sample this gateway received
    next_sample: int
    fs_hz: float
    at: float
    onset: int | None = None  # the open alarm's onset sample
    resumed: int | None = None  # data came back at this sample: end the alarm
    checked: bool = False  # Redis asked for an alarm left open by an earlier gateway
    seeded: bool = False  # known from Redis only: no chunk received yet


class NoDataWatch(Background):
    """Raises and ends ``no_data`` alarms (see the module docstring)."""

    task_name = "gateway-nodata"

    def __init__(self, store: AlertStore, after_s: float, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic, ready: asyncio.Event | None = None,
                 skip: Callable[[str], bool] = lambda _: False) -> None:
        self.store, self.after_s, self.clock = store, after_s, clock
        self.ready = ready  # the Kafka feed's: patients from Redis are watched once it is set
        self.skip = skip  # patients not to take from Redis (discharged, seen by the live feed)
        self._seeded = False
        self.seen: dict[str, _Seen] = {}
        self.last_any: float | None = None  # clock of the newest chunk from any patient
        self.last_any_ms: int | None = None  # the same, wall time (for the dashboards)
        self.back_at = -math.inf  # chunks came again after the station received none
        self.silent = False  # no chunk from any of 2+ watched patients for after_s
        self.on_feed: Callable[[dict[str, object]], None] | None = None  # `silent` changed
        self._receiving = metrics.gauge(
            "ecgmon_gateway_receiving",
            "1 while the gateway receives bedside data, 0 when no watched patient sent any for "
            "ECGMON_NO_DATA_ALARM_S (an upstream fault: Kafka, broker, network)", registry)
        self._receiving.set(1)
        self._wake = asyncio.Event()
        self._alarms = metrics.counter(
            "ecgmon_gateway_no_data_alarms_total",
            "bedside streams that stopped (onset) and came back (end)", registry, ("phase",))

    def chunk(self, c: SampleChunk) -> None:
        """Called by the live feed for every chunk (no I/O here)."""
        end = c.first_sample_index + int(c.samples.shape[0])
        s = self.seen.get(c.patient_id)
        if s is None:
            self.seen[c.patient_id] = s = _Seen(c.first_sample_index, end, c.fs_hz, self.clock())
            self._wake.set()  # ask Redis about an alarm an earlier gateway left open
        if s.onset is not None and s.resumed is None:
            s.resumed = c.first_sample_index
            self._wake.set()
        s.seeded = False
        s.next_sample, s.fs_hz, s.at = max(s.next_sample, end), c.fs_hz, self.clock()
        self.last_any, self.last_any_ms = s.at, time.time_ns() // 1_000_000
        if self.silent:
            self.silent, self.back_at = False, s.at
            self._feed_changed()

    def feed_state(self) -> dict[str, object]:
        """``{receiving, last_data_ms}``: what the ``feed`` frame and the hello carry."""
        return {"receiving": not self.silent, "last_data_ms": self.last_any_ms}

    def _feed_changed(self) -> None:
        self._receiving.set(0 if self.silent else 1)
        state = self.feed_state()
        if self.silent:
            logger.warning("no bedside data from any patient: the feed is down upstream",
                           extra={"patients": len(self.seen), "last_data_ms": self.last_any_ms})
        else:
            logger.warning("bedside data received again", extra={"patients": len(self.seen)})
        if self.on_feed is not None:
            self.on_feed(state)

    def forget(self, patient_id: str) -> None:
        """The patient was discharged: no more watching (the detector ends an open alarm)."""
        self.seen.pop(patient_id, None)

    async def seed(self) -> None:
        """Watch the patients Redis lists (see the module docstring); once (again on the next
        pass if Redis failed half way)."""
        for pid in await self.store.patients():
            if pid in self.seen or self.skip(pid):
                continue
            rows = await reply(self.store.client.xrevrange(f"{self.store.prefix}:beats:{pid}", count=1))
            try:
                fields = {k.decode() if isinstance(k, bytes) else k: v for k, v in rows[0][1].items()}
                after = beat_entry_sample(fields) + 1
                fs_hz = float(fields["fs_hz"])
            except (IndexError, KeyError, ValueError):
                continue  # no beat yet: nothing to place an onset at
            if pid not in self.seen:  # (a chunk may have come meanwhile)
                self.seen[pid] = _Seen(after, after, fs_hz, self.clock(), seeded=True)
        if self.last_any is None:  # nothing received yet: silence counts from now
            self.last_any = self.clock()
        self._seeded = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), CHECK_EVERY_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                if not self._seeded and (self.ready is None or self.ready.is_set()):
                    await self.seed()
                await self.step()
            except (ServiceUnavailable, *REDIS_ERRORS) as exc:
                logger.warning("no-data watch could not write to Redis", extra={"error": str(exc)})

    async def step(self) -> None:
        """Raise, end and adopt alarms as the chunks seen so far say (one pass)."""
        now = self.clock()
        if (not self.silent and len(self.seen) >= 2 and self.last_any is not None
                and now - self.last_any >= self.after_s):
            self.silent = True
            self._feed_changed()
        for pid, s in list(self.seen.items()):
            if not s.checked:
                await self._adopt(pid, s)
            if s.onset is not None and s.resumed is not None:
                await self._write(pid, s, AlarmPhase.END, s.onset, max(s.onset, s.resumed),
                                  "monitor data received again")
                s.onset = s.resumed = None
            elif s.onset is None and not self.silent and now - max(s.at, self.back_at) >= self.after_s:
                s.onset, s.resumed = s.next_sample, None
                await self._write(pid, s, AlarmPhase.ONSET, s.onset, s.onset,
                                  f"no data from the bedside monitor for {self.after_s:g} s")

    async def _adopt(self, pid: str, s: _Seen) -> None:
        """An open ``no_data`` alarm of ``pid`` in Redis (left by an earlier gateway) ends now
        that its data flows."""
        for a in await self.store.active_alarms(pid):
            if a.alarm_type == NO_DATA and s.onset is None:
                s.onset = a.onset_sample_index
                # still silent (known from Redis only): it stays open until the data returns
                s.resumed = None if s.seeded else max(a.onset_sample_index, s.first)
        s.checked = True

    async def _write(self, pid: str, s: _Seen, phase: AlarmPhase, onset: int, at: int, msg: str) -> None:
        now_ns = time.time_ns()
        alert = Alert(pid, NO_DATA, AlarmPriority.MEDIUM, phase, onset, at, s.fs_hz, 0.0, msg,
                      now_ns, now_ns, technical=True)
        if await self.store.write_alert(alert):
            self._alarms.labels(phase=phase.value).inc()
            logger.warning("bedside data stopped" if phase is AlarmPhase.ONSET else "bedside data back",
                           extra={"patient": pid, "sample": at})
