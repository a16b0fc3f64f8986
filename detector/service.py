"""``ecgmon detect``: the Kafka consumer-group member around the pure per-patient core.

Per batch of records: decode (bad ones dead-lettered), ingest into each
patient's :class:`~detector.core.monitor.PatientMonitor`, classify every
complete beat of every patient in one ONNX call, advance the alarm engines,
then publish beats and alerts and write alerts (and beats) to Redis.  Every
``checkpoint_s`` seconds, once all of that is durable, per-partition
checkpoints go to Redis and offsets are committed (see
:mod:`detector.checkpoint` for why this loses and duplicates nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from prometheus_client import CollectorRegistry

from detector.alarm_defaults import deployment_alarm_config
from detector.checkpoint import Checkpoint, CheckpointStore
from detector.core.alarms import AlarmLimits
from detector.core.beats import BeatFeatures
from detector.core.classifier import Classifier
from detector.core.monitor import (
    MonitorConfig,
    MonitorOutput,
    PatientMonitor,
    Pending,
    ingest_batch,
    warm_up,
)
from detector.core.rhythm import AlarmEvent, events_to_alerts
from detector.core.sequencer import ChunkFate
from detector.heap import HeapFreezer
from stream import metrics
from stream.errors import ConfigError, DecodeError, DeliveryFailed
from stream.kafka import BROKER_WATCH, DeadLetterPublisher, Producer
from stream.redis import AlertStore, beat_entry
from stream.schemas import AlarmPhase, AlarmSettings, Alert, Beat, Discharge, SampleChunk
from stream.serde import decode
from stream.settings import Settings, env_name

logger = logging.getLogger(__name__)



CHECKPOINT_BUDGET = 0.05  # periodic checkpoints may take this share of the detector's time
# A periodic checkpoint snapshots its partition's patients a slice at a time, between batches,
# so that no batch waits for a whole partition (~40-100 ms at 80 patients per partition).
SNAPSHOT_SLICE_S = 0.005


@dataclass
class _Round:
    """A periodic checkpoint of one partition in progress, taken a slice at a time.

    ``offset`` is the partition's next offset when the round began; a patient
    snapshotted later is ahead of it, which is safe: on restore, its sequencer drops
    the chunks between (already-seen samples are ``DUPLICATE`` and produce nothing),
    and everything those chunks produced was delivered before its snapshot was taken
    (snapshots happen only between delivered batches; the producer is flushed before
    the round is saved)."""

    tp: TopicPartition
    offset: int
    todo: list[tuple[str, PatientMonitor]]
    patients: dict[str, bytes] = field(default_factory=dict)
    snapshot_s: float = 0.0


def group_id(settings: Settings) -> str:
    """Consumer group of the detectors of one deployment (one topic prefix)."""
    return f"{settings.topic_prefix}.detect"


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        h = metrics.latency_histogram
        self.consumed = h("ecgmon_chunk_to_consumed_seconds",
                          "chunk produced -> consumed by the detector", registry)
        self.beat = h("ecgmon_chunk_to_beat_seconds",
                      "chunk that completed a beat produced -> beat classified", registry)
        self.alert = h("ecgmon_chunk_to_alert_redis_seconds",
                       "chunk that raised an alert produced -> alert written to Redis", registry)
        self.batch = h("ecgmon_detect_batch_seconds", "processing time of one consumed batch",
                       registry)
        self.chunks = metrics.counter("ecgmon_chunks_consumed_total", "sample chunks consumed",
                                      registry)
        self.beats = metrics.counter("ecgmon_beats_total", "beats classified", registry, ("class",))
        self.alarms = metrics.counter("ecgmon_alarms_total", "alarm events by type and phase",
                                      registry, ("type", "phase"))
        self.fates = metrics.counter("ecgmon_chunk_sequence_total",
                                     "chunks by sequencing fate (duplicate, gap, trimmed ...)",
                                     registry, ("fate",))
        self.lag = metrics.gauge("ecgmon_consumer_lag_messages",
                                 "messages behind the end of each samples partition", registry,
                                 ("partition",))
        self.patients = metrics.gauge("ecgmon_patients", "patients with live detector state",
                                      registry)
        self.settings = h("ecgmon_alarm_settings_to_applied_seconds",
                          "a clinician's change of alarm limits sent by the gateway -> applied",
                          registry)
        self.discharge = h("ecgmon_discharge_to_applied_seconds",
                           "a patient's discharge sent by the gateway -> alarms ended, stay archived",
                           registry)
        self.rewinds = metrics.counter(
            "ecgmon_detector_rewinds_total",
            "Kafka delivery failures after which the detector went back to its checkpoints",
            registry)
        self._children: dict[tuple[str, str], Any] = {}

    def fate(self, fate: str) -> Any:
        """``fates.labels(fate=...)``, looked up once per label value (``labels`` validates its
        arguments on every call: 2.0 instead of 0.5 us per increment, once per chunk and beat)."""
        return self._child("fate", fate, lambda: self.fates.labels(fate=fate))

    def beat_class(self, cls: str) -> Any:
        return self._child("class", cls, lambda: self.beats.labels(**{"class": cls}))

    def _child(self, kind: str, value: str, make: Any) -> Any:
        child = self._children.get((kind, value))
        if child is None:
            child = self._children[(kind, value)] = make()
        return child


@dataclass(slots=True)
class _PatientSlot:
    monitor: PatientMonitor
    tp: TopicPartition
    hr_bpm: float | None = None
    held: list[AlarmEvent] = field(default_factory=list)  # events to deliver with its next chunk


@dataclass(slots=True)
class _Work:
    chunk: SampleChunk
    slot: _PatientSlot
    pending: Pending
    offset: int


@dataclass(slots=True)
class _Outputs:
    beats: list[Beat] = field(default_factory=list)
    alerts: list[tuple[Alert, int]] = field(default_factory=list)  # alert, chunk produced_at


class DetectorService:
    """Consume samples, detect, classify, alarm, publish; checkpoint and commit."""

    def __init__(
        self, settings: Settings, classifier: Classifier, registry: CollectorRegistry,
        producer: Producer, store: AlertStore, *, monitor_config: MonitorConfig | None = None,
        checkpoint_s: float = 5.0, max_records: int = 2000,
        clock_ns: Callable[[], int] = time.time_ns, snapshot_slice_s: float = SNAPSHOT_SLICE_S,
        heap: HeapFreezer | None = None,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.producer = producer
        self.store = store
        # new patients start on the deployment's alarm limits (ECGMON_ALARM_*)
        self.monitor_config = monitor_config or MonitorConfig(alarms=deployment_alarm_config(settings))
        self.checkpoint_s = checkpoint_s
        self.snapshot_slice_s = snapshot_slice_s
        self.max_records = max_records
        self.clock_ns = clock_ns
        self.heap = heap  # GC policy of a long-running process (`serve`); None in most tests
        self.m = _Metrics(registry)
        self.dead = DeadLetterPublisher(producer, settings, registry)
        self.topic = settings.topic("samples")
        self.group_id = group_id(settings)
        self.checkpoints = CheckpointStore(store.client, settings.redis_prefix, self.group_id)
        self.slots: dict[str, _PatientSlot] = {}
        self.next_offsets: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._last_checkpoint = time.monotonic()
        self._last_poll = 0.0
        self._next_partition = -1
        self._round: _Round | None = None
        self._stop: asyncio.Event | None = None
        # True while a batch is ingested but its outputs are not yet all handed over: the
        # in-memory state is then ahead of what is durable, and must not be checkpointed
        self._undelivered = False
        self._rewind_wait_s = 0.0
        self._snapshot_s = 0.0  # CPU-bound time of the last checkpoint's snapshots (pacing)

    def _stopping(self) -> bool:
        """Redis writes retry through an outage unless the service is stopping."""
        return self._stop is None or self._stop.is_set()

    # ------------------------------------------------------------------ main loop
    async def run(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; checkpoint and commit on the way out."""
        self.consumer = consumer
        self._stop = stop
        try:
            while not stop.is_set():
                try:
                    await self._pace(stop)
                    batch = await consumer.getmany(timeout_ms=100, max_records=self.max_records)
                    if batch:
                        await self.process(batch)
                        self._rewind_wait_s = 0.0
                        BROKER_WATCH.reachable()
                    if self._round is not None:
                        await self._advance_round()
                    elif time.monotonic() - self._last_checkpoint >= self._checkpoint_every():
                        self._start_round()
                        await self._advance_round()
                        self._update_lag(consumer)
                except DeliveryFailed as exc:
                    await self._rewind(consumer, exc)
        finally:
            await self.checkpoint()

    async def _pace(self, stop: asyncio.Event) -> None:
        """Hold the next poll until ``poll_interval_ms`` after the previous one: at hundreds of
        patients every poll otherwise returns a handful of chunks, and each cycle's fixed
        cost (a fetch request on the broker, two Redis round trips, a produce request) is
        paid hundreds of times a second.  Records wait at the broker meanwhile."""
        interval = self.settings.poll_interval_ms / 1000
        rest = self._last_poll + interval - time.monotonic()
        if rest > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rest)
        self._last_poll = time.monotonic()

    async def process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        self._undelivered = True
        taken: list[tuple[SampleChunk, _PatientSlot, int]] = []
        for tp, records in batch.items():
            for record in records:
                message = await self._decode(record)
                if isinstance(message, SampleChunk):
                    taken.append((message, self._slot(message, tp), record.offset))
                elif message is not None:
                    # a change of alarm limits or a discharge applies between the patient's
                    # chunks, where the stream put it: the chunks before it are processed first
                    await self._run(taken)
                    taken = []
                    if isinstance(message, Discharge):
                        await self._discharge(message)
                        self.next_offsets[tp] = record.offset + 1
                        await self._checkpoint_after_discharge(tp)
                    else:
                        await self._apply_settings(message, record)
                self.next_offsets[tp] = record.offset + 1
        await self._run(taken)
        self._undelivered = False
        self.m.batch.observe(time.perf_counter() - started)
        if self.heap is not None:
            self.heap.after_batch(len(self.slots))

    async def _run(self, taken: list[tuple[SampleChunk, _PatientSlot, int]]) -> None:
        """Ingest, classify, alarm and deliver ``taken`` chunks."""
        if not taken:
            return
        # every chunk through its patient's monitor, the beat windows of all cut together
        pendings = ingest_batch([(slot.monitor, chunk.first_sample_index, chunk.millivolts())
                                 for chunk, slot, _ in taken])
        work: list[_Work] = []
        for (chunk, slot, offset), pending in zip(taken, pendings, strict=True):
            self.m.fate(pending.fate.value).inc()
            if pending.fate is ChunkFate.GAP:
                logger.warning("sample gap", extra={"patient": chunk.patient_id,
                                                    "gap_samples": pending.gap_samples})
            work.append(_Work(chunk, slot, pending, offset))
        outputs = self._classify_and_alarm(work)
        await self._deliver(outputs)

    async def _decode(self, record: Any) -> SampleChunk | AlarmSettings | Discharge | None:
        """The chunk, settings change or discharge of ``record``, or None after sending it to
        the dead-letter topic."""
        now = self.clock_ns()
        try:
            message = decode(record.value)
            if not isinstance(message, SampleChunk | AlarmSettings | Discharge):
                raise DecodeError("wrong_kind", f"expected SampleChunk, AlarmSettings or Discharge, "
                                                f"got {type(message).__name__}")
        except DecodeError as exc:
            await self.dead.publish(record, exc)
            return None
        if isinstance(message, SampleChunk):
            self.m.chunks.inc()
            self.m.consumed.observe(max(0.0, (now - message.produced_at_ns) / 1e9))
        return message

    async def _apply_settings(self, change: AlarmSettings, record: Any) -> None:
        """A clinician's change of one patient's alarm limits, applied at this point of the
        patient's stream; its effect (an alarm switched off ends) delivered, and what is
        applied written to the patient's Redis hash for the gateway.  A change that is
        invalid or for a patient without a stream here is dead-lettered."""
        slot = self.slots.get(change.patient_id)
        try:
            if slot is None:
                raise DecodeError("unknown_patient", f"alarm settings for {change.patient_id!r}, "
                                  "whose stream this detector has not seen")
            try:
                limits = AlarmLimits.checked(change.hr_low_bpm, change.hr_high_bpm, change.pause_s,
                                             change.disabled)
            except ValueError as exc:
                raise DecodeError("invalid_field", str(exc)) from None
        except DecodeError as exc:
            await self.dead.publish(record, exc)
            refusal = {"request_id": change.request_id, "reason": exc.reason, "detail": exc.detail}
            await self.store.call_until_ok(  # so the sender sees why, not "pending" for ever
                "alarm settings", lambda: self.store.refuse_alarm_settings(change.patient_id, refusal),
                self._stopping)
            return
        events = slot.monitor.set_alarm_limits(
            limits, f"turned off for this patient by {change.user}", change.request_id)
        if events is None:  # applied before the checkpoint this replay started from
            return
        out = _Outputs()
        now = self.clock_ns()
        for alert in events_to_alerts(events, slot.monitor.fs_hz, now, change.set_at_ns):
            out.alerts.append((alert, change.set_at_ns))
            self.m.alarms.labels(type=alert.alarm_type, phase=alert.phase.value).inc()
        await self._deliver(out)
        applied = {**limits.to_dict(), "request_id": change.request_id, "user": change.user,
                   "set_at_ms": change.set_at_ns // 1_000_000}
        await self.store.call_until_ok(
            "alarm settings", lambda: self.store.set_alarm_settings(change.patient_id, applied),
            self._stopping)
        self.m.settings.observe(max(0.0, (self.clock_ns() - change.set_at_ns) / 1e9))
        logger.info("alarm settings applied", extra={
            "patient": change.patient_id, "request_id": change.request_id, **limits.to_dict()})

    async def _discharge(self, d: Discharge) -> None:
        """The end of a patient's monitoring, at this point of its stream: its active alarms end
        (reason "patient discharged by <user>"; alarms in Redis that are not the detector's,
        such as the gateway's ``no_data``, too), the stay is archived in Redis and the
        patient's state dropped.  Chunks that come later under the same id start a new
        admission.  A replay from a checkpoint before it does all of this again with the same
        ids, so nothing is stored twice."""
        reason = f"patient discharged by {d.user}"
        slot = self.slots.pop(d.patient_id, None)
        out = _Outputs()
        fs_hz = 0.0
        if slot is not None:
            if self._round is not None and self._round.tp == slot.tp:
                # its checkpoint began before the discharge and would restore nothing of this
                # patient; the chunks between would meet a fresh monitor.  Start the round again.
                self._round = None
            fs_hz = slot.monitor.fs_hz
            events = [*slot.held, *slot.monitor.discharge(reason)]
            now = self.clock_ns()
            for alert in events_to_alerts(events, fs_hz, now, d.discharged_at_ns):
                out.alerts.append((alert, d.discharged_at_ns))
                self.m.alarms.labels(type=alert.alarm_type, phase=alert.phase.value).inc()
            self.m.patients.set(len(self.slots))
            if self.heap is not None:
                self.heap.patients_dropped()
        await self._deliver(out)
        ended = {a.alarm_id for a, _ in out.alerts}

        async def archive() -> bool:
            stray = await self._end_stray_alarms(d.patient_id, fs_hz, reason)
            record = {"patient_id": d.patient_id, "request_id": d.request_id, "user": d.user,
                      "discharged_at_ms": d.discharged_at_ns // 1_000_000,
                      "alarms_ended": sorted(ended | set(stray))}
            return await self.store.discharge(d.patient_id, d.request_id, record)

        first = await self.store.call_until_ok("discharge", archive, self._stopping)
        self.m.discharge.observe(max(0.0, (self.clock_ns() - d.discharged_at_ns) / 1e9))
        if first:
            logger.info("patient discharged", extra={
                "patient": d.patient_id, "request_id": d.request_id, "alarms_ended": len(out.alerts)})

    async def _checkpoint_after_discharge(self, tp: TopicPartition) -> None:
        """Checkpoint the discharged patient's partition at once, before its next record.

        A restart from an older checkpoint would replay the stay's last chunks, writing its
        beats to Redis again after the archive, and the discharge after them, by then also
        after a new admission's data under the same id.  Discharges are rare (a clinician's
        action), and one partition's checkpoint takes tens of milliseconds."""
        if self.consumer is None or any(s.held for s in self.slots.values() if s.tp == tp):
            return  # no consumer (tests) / a restored patient's events wait: the periodic one
        await self._save([tp])  # DeliveryFailed: the run loop rewinds to the checkpoints

    async def _end_stray_alarms(self, patient_id: str, fs_hz: float, reason: str) -> list[str]:
        """End the patient's alarms still active in Redis after the detector's own ended (the
        gateway's ``no_data``, or one of a stream this detector never saw); their ids."""
        ended: list[str] = []
        for a in await self.store.active_alarms(patient_id):
            if fs_hz <= 0:  # any positive rate: a stray alarm's sample indices are its own
                fs_hz = 250.0
            at = max(a.sample_index, a.onset_sample_index)
            now = self.clock_ns()
            alert = Alert(patient_id, a.alarm_type, a.priority, AlarmPhase.END, a.onset_sample_index,
                          at, fs_hz, 0.0, f"{a.alarm_type} ended", now, now, technical=a.technical,
                          details=(("reason", reason),))
            await self.store.write_alert(alert)
            self.m.alarms.labels(type=alert.alarm_type, phase=alert.phase.value).inc()
            ended.append(a.alarm_id)
        return ended

    def _slot(self, chunk: SampleChunk, tp: TopicPartition) -> _PatientSlot:
        slot = self.slots.get(chunk.patient_id)
        if slot is not None and (
            slot.monitor.fs_hz != chunk.fs_hz or slot.monitor.lead_names != chunk.lead_names
        ):
            logger.warning("sampling rate or leads changed: detection restarts",
                           extra={"patient": chunk.patient_id, "fs_hz": chunk.fs_hz})
            config = slot.monitor.config  # the patient's own alarm limits stay
            slot = None
        else:
            config = self.monitor_config
        if slot is None:
            monitor = PatientMonitor(chunk.patient_id, chunk.fs_hz, chunk.lead_names,
                                     self.classifier.n_leads, config)
            slot = self.slots[chunk.patient_id] = _PatientSlot(monitor, tp)
            self.m.patients.set(len(self.slots))
        slot.tp = tp
        return slot

    def _classify_and_alarm(self, work: list[_Work]) -> _Outputs:
        feats = [w.pending.features for w in work]
        total = sum(len(f) for f in feats)
        result = None
        if total:
            result = self.classifier.classify(BeatFeatures.concat(feats, self.classifier.n_leads))
        out = _Outputs()
        start = 0
        now = self.clock_ns()
        for w, f in zip(work, feats, strict=True):
            part = None
            if len(f) and result is not None:
                sl = slice(start, start + len(f))
                part = type(result)(result.labels, result.class_index[sl], result.probabilities[sl])
                start += len(f)
            mo = w.slot.monitor.complete(w.pending, part)
            self._collect(w, mo, now, out)
        return out

    def _collect(self, w: _Work, mo: MonitorOutput, now: int, out: _Outputs) -> None:
        c = w.chunk
        alarms = mo.alarms
        if w.slot.held:  # from a restore (see _restored), before this chunk's own
            alarms, w.slot.held = [*w.slot.held, *alarms], []
        for b in mo.beats:
            out.beats.append(Beat(c.patient_id, b.sample_index, c.fs_hz, b.beat_class,
                                  b.confidence, b.rr_prev_s, now, c.produced_at_ns))
            self.m.beat_class(b.beat_class.value).inc()
            self.m.beat.observe(max(0.0, (now - c.produced_at_ns) / 1e9))
            if b.rr_prev_s > 0:
                w.slot.hr_bpm = 60.0 / b.rr_prev_s
        for alert in events_to_alerts(alarms, c.fs_hz, now, c.produced_at_ns):
            out.alerts.append((alert, c.produced_at_ns))
            self.m.alarms.labels(type=alert.alarm_type, phase=alert.phase.value).inc()

    async def _deliver(self, out: _Outputs) -> None:
        beats_topic, alerts_topic = self.settings.topic("beats"), self.settings.topic("alerts")
        for beat in out.beats:
            await self.producer.send(beats_topic, beat, beat.patient_id)
        for alert, _ in out.alerts:
            await self.producer.send(alerts_topic, alert, alert.patient_id)
        # Redis down: hold this batch (no more consuming, no commit) and retry until it is back;
        # every write below is idempotent, so a retry of a half-written batch adds nothing twice.
        await self.store.call_until_ok("deliver", lambda: self._write_redis(out), self._stopping)

    async def _write_redis(self, out: _Outputs) -> None:
        await self._write_beats(out.beats)
        for alert, produced in out.alerts:
            await self.store.write_alert(alert)
            self.m.alert.observe(max(0.0, (self.clock_ns() - produced) / 1e9))

    async def _write_beats(self, beats: list[Beat]) -> None:
        """Recent beats per patient in a bounded Redis stream whose ids are the beats' data
        times (``beat_entry``: a re-emitted beat is rejected by Redis itself), and the
        patient's current state."""
        if not beats:
            return
        client = self.store.client
        prefix = self.settings.redis_prefix
        last: dict[str, Beat] = {}
        async with client.pipeline(transaction=False) as pipe:
            for b in beats:
                entry_id, fields = beat_entry(b)
                pipe.xadd(f"{prefix}:beats:{b.patient_id}", fields,  # type: ignore[arg-type]
                          id=entry_id, maxlen=2000, approximate=True)
                last[b.patient_id] = b
            await pipe.execute(raise_on_error=False)
        await self._update_patients(last)

    async def _update_patients(self, last: dict[str, Beat]) -> None:
        """What ``AlertStore.update_patient`` writes, for every patient of the batch in one
        transaction (one round trip instead of one per patient)."""
        client, prefix = self.store.client, self.store.prefix

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.sadd(f"{prefix}:patients", *last)  # one command for the batch's patients
                for pid, b in last.items():
                    slot = self.slots.get(pid)
                    fields = {"last_beat_class": b.beat_class.value,
                              "last_beat_sample": str(int(b.sample_index))}
                    if slot is not None and slot.hr_bpm is not None:
                        fields = {"heart_rate_bpm": repr(float(slot.hr_bpm)), **fields}
                    pipe.hset(f"{prefix}:patient:{pid}", mapping=fields)
                await pipe.execute()

        await self.store._call("update_patient", write)

    # ------------------------------------------------------------------ checkpoints
    async def checkpoint(self) -> None:
        """Flush outputs, save snapshots + next offsets of every partition, then commit.

        Skipped (the previous checkpoints stand, so the outputs since are produced again)
        when the state is ahead of what was delivered: a batch failed half way, or Kafka
        refused a message."""
        self._last_checkpoint = time.monotonic()
        self._round = None  # a full save supersedes a round in progress
        if not self.next_offsets or self.consumer is None:
            return
        if self._undelivered or self._holding():  # e.g. a rebalance while a batch waits for Redis
            logger.warning("a batch is not delivered yet: no checkpoint now; its partitions "
                           "resume from their previous checkpoints")
            return
        try:
            await self._save(list(self.next_offsets))
        except DeliveryFailed as exc:
            logger.error("kafka delivery failed: no checkpoint; the partitions resume from "
                         "their previous checkpoints", extra={"error": str(exc)})

    def _checkpoint_every(self) -> float:
        """Periodic checkpoints take one partition at a time, round robin: each partition is
        saved every ``checkpoint_s``, and its patients are snapshotted ``snapshot_slice_s``
        at a time between batches (:class:`_Round`).  With many patients per partition the
        pace slows so that snapshots take at most ``CHECKPOINT_BUDGET`` of the time (~0.5-1 ms
        per patient); a restart then re-processes a little more, nothing is lost."""
        round_robin = self.checkpoint_s / max(1, len(self.next_offsets))
        return max(round_robin, self._snapshot_s / CHECKPOINT_BUDGET)

    def _start_round(self) -> None:
        """Begin the periodic checkpoint of the next partition, round robin."""
        self._last_checkpoint = time.monotonic()
        if not self.next_offsets or self.consumer is None:
            return
        order = sorted(self.next_offsets, key=lambda tp: (tp.topic, tp.partition))
        self._next_partition = (self._next_partition + 1) % len(order)
        tp = order[self._next_partition]
        self._round = _Round(tp, self.next_offsets[tp],
                             [(pid, s.monitor) for pid, s in self.slots.items() if s.tp == tp])

    async def _advance_round(self) -> None:
        """Snapshot the next slice of the round's patients; save and commit once all are."""
        rnd = self._round
        if rnd is None or self._holding():  # a restored patient's events wait for its next chunk
            return
        if rnd.tp not in self.next_offsets:  # revoked meanwhile
            self._round = None
            return
        started = time.perf_counter()
        while rnd.todo:
            pid, monitor = rnd.todo.pop()
            slot = self.slots.get(pid)
            if slot is None or slot.tp != rnd.tp:
                continue
            if slot.monitor is not monitor:
                # restarted meanwhile (new sampling rate or leads): its chunks since the round
                # began would meet a monitor of the other rate on restore; try again later
                self._round = None
                return
            rnd.patients[pid] = monitor.snapshot()
            if time.perf_counter() - started >= self.snapshot_slice_s:
                break
        rnd.snapshot_s += time.perf_counter() - started
        if rnd.todo:
            return
        self._round = None
        self._snapshot_s = rnd.snapshot_s
        await self.producer.flush()  # every output before the last snapshot is acknowledged
        await self._store_and_commit({rnd.tp: Checkpoint(rnd.offset, rnd.patients)})
        self._last_checkpoint = time.monotonic()

    async def _save(self, tps: list[TopicPartition]) -> None:
        """Checkpoint ``tps``: what was sent before is flushed first, the offsets committed after."""
        assert self.consumer is not None
        await self.producer.flush()
        await self._store_and_commit({
            tp: Checkpoint(self.next_offsets[tp], {pid: s.monitor.snapshot()
                                                   for pid, s in self.slots.items() if s.tp == tp})
            for tp in tps})

    async def _store_and_commit(self, checkpoints: dict[TopicPartition, Checkpoint]) -> None:
        """Write the checkpoints to Redis (retried through an outage), then commit their offsets."""
        assert self.consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for tp, cp in checkpoints.items():
            save = functools.partial(self.checkpoints.save, tp.topic, tp.partition, cp)
            await self.store.call_until_ok("checkpoint", save, self._stopping)
            offsets[tp] = cp.offset
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group dropped this member (no poll for max_poll_interval_ms while a batch
                # was held, or a broker restart).  The Redis checkpoint just saved is where a
                # partition resumes, so nothing is lost: the consumer rejoins on its next poll.
                logger.warning("offset commit refused: the group rebalanced; resuming from the "
                               "Redis checkpoints", extra={"error": str(exc).splitlines()[0]})

    async def _rewind(self, consumer: AIOKafkaConsumer, exc: DeliveryFailed) -> None:
        """Kafka refused an output: drop the state of every assigned partition and resume
        from the last checkpoints, which were saved only after everything before them was
        delivered.  Outputs since then are produced again (Redis ignores them by id, Kafka
        consumers see them twice: at-least-once); nothing is lost."""
        self.m.rewinds.inc()
        self._rewind_wait_s = min(5.0, max(0.2, 2 * self._rewind_wait_s))
        logger.error("kafka delivery failed: rewinding to the last checkpoints",
                     extra={"error": str(exc), "retry_in_s": self._rewind_wait_s})
        await asyncio.sleep(self._rewind_wait_s)
        assigned = set(consumer.assignment())
        self.forget(assigned)
        self._undelivered = False
        restored = await self.restore(consumer, assigned)
        for tp in assigned - restored:  # no checkpoint yet: back to the committed offset
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        self._last_checkpoint = time.monotonic()

    async def restore(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
    ) -> set[TopicPartition]:
        """Load the checkpoints of ``assigned`` and seek there; returns those restored."""
        restored: set[TopicPartition] = set()
        for tp in assigned:
            cp = await self.checkpoints.load(tp.topic, tp.partition)
            if cp is None:
                continue
            restored.add(tp)
            for pid, blob in cp.patients.items():
                self.slots[pid] = self._restored(PatientMonitor.from_snapshot(blob), tp)
            consumer.seek(tp, cp.offset)
            self.next_offsets[tp] = cp.offset
            logger.info("partition restored from checkpoint",
                        extra={"partition": tp.partition, "offset": cp.offset,
                               "patients": len(cp.patients)})
        self.m.patients.set(len(self.slots))
        return restored

    def _holding(self) -> bool:
        """Events of a restored patient not delivered yet: its state is ahead of the outputs, so
        no checkpoint may be taken (a restart from the previous one makes them again)."""
        return any(slot.held for slot in self.slots.values())

    def _restored(self, monitor: PatientMonitor, tp: TopicPartition) -> _PatientSlot:
        """A patient back from its snapshot.  One that never had limits of its own goes on with
        the deployment's current defaults (they may have changed since the snapshot: the
        dashboard shows those as its limits); an alarm they switch off ends with its next chunk."""
        slot = _PatientSlot(monitor, tp)
        defaults = AlarmLimits.of(self.monitor_config.alarms)
        if not monitor.has_own_limits and monitor.alarm_limits != defaults:
            logger.info("deployment alarm defaults changed: patient follows them",
                        extra={"patient": monitor.patient_id, **defaults.to_dict()})
            slot.held = monitor.set_alarm_limits(defaults, "alarm turned off for every patient") or []
        return slot

    def forget(self, revoked: set[TopicPartition]) -> None:
        if self._round is not None and self._round.tp in revoked:
            self._round = None
        dropped = [p for p, s in self.slots.items() if s.tp in revoked]
        for pid in dropped:
            del self.slots[pid]
        if dropped and self.heap is not None:
            self.heap.patients_dropped()
        for tp in revoked:
            self.next_offsets.pop(tp, None)
        self.m.patients.set(len(self.slots))

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            pos = self.next_offsets.get(tp)
            if end is not None and pos is not None:
                self.m.lag.labels(partition=str(tp.partition)).set(max(0, end - pos))


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Checkpoint what we give away; restore what we get."""

    def __init__(self, service: DetectorService, consumer_ref: list[AIOKafkaConsumer]) -> None:
        self.service = service
        self.consumer_ref = consumer_ref

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            try:
                await self.service.checkpoint()
            finally:  # whatever happened, the next owner resumes from the last checkpoint
                self.service.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.restore(self.consumer_ref[0], set(assigned))



async def serve(settings: Settings, stop: asyncio.Event, registry: CollectorRegistry) -> None:
    """Run the detector service until ``stop``: the body of ``ecgmon detect``."""
    from detector.onnx_classifier import OnnxClassifier
    from stream.kafka import ensure_topics, start_consumer

    if not settings.redis_url:
        raise ConfigError(f"no Redis: set {env_name('redis_url')} or --redis-url "
                          "(or use `ecgmon up`, which starts one)")
    classifier = OnnxClassifier.load(settings.model)
    warm_up(classifier_leads=classifier.n_leads)  # compiled kernels loaded before the first chunk
    await ensure_topics(settings)
    heap = HeapFreezer(registry)
    heap.start()
    async with Producer(settings) as producer, AlertStore.from_settings(settings, registry) as store:
        service = DetectorService(settings, classifier, registry, producer, store, heap=heap)
        consumer = await start_consumer(settings, group_id=service.group_id,
                                        max_partition_fetch_bytes=4 * 1024 * 1024)
        ref = [consumer]
        consumer.subscribe([service.topic], listener=Rebalance(service, ref))
        logger.info("detector consuming", extra={"topic": service.topic, "model": classifier.name})
        try:
            await service.run(consumer, stop)
        finally:
            heap.stop()
            await consumer.stop()


def up_part(settings: Settings) -> Any:
    """``ecgmon up`` runs the detector as a child process (its own core, its own crash domain).

    ``ecgmon up`` itself serves ``/metrics`` on ``metrics_port`` (replay); the detector
    child serves its own on the next port, ``metrics_port + 1``.
    """
    import sys

    from stream.up import child_process_part

    argv = [sys.executable, "-m", "stream.cli", "detect"]
    if settings.metrics_port:
        argv += ["--metrics-port", str(settings.metrics_port + 1)]
    return child_process_part("detector", argv)
