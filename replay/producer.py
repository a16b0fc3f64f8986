"""Stream WFDB records into Kafka as live bedside monitors, one patient per task.

The pure parts (:func:`plan_patients`, :func:`chunk_spans`, :class:`Pacer`) hold
the logic and are tested without a broker; :func:`replay` wires them to a
:class:`stream.kafka.Producer`.

Sample indices: ``first_sample_index`` is the position in the patient's stream,
which equals the position in the record until the record loops; after that it
keeps counting (record position = index mod record length), so downstream time
never goes backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from prometheus_client import CollectorRegistry, Counter

from replay.source import Recording, load_record
from stream import metrics
from stream.kafka import Producer
from stream.schemas import SampleChunk
from stream.settings import Settings

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PatientPlan:
    """One simulated monitor: which record it plays and from which second."""

    patient_id: str
    record: str
    start_s: float


def plan_patients(settings: Settings) -> list[PatientPlan]:
    """One patient per record; beyond that, virtual patients ``<db>-<rec>-v<k>`` staggered in time.

    ``settings.patients`` = 0 means one per record; fewer than the records takes the
    first ones; more reuses records round-robin, copy ``k`` starting
    ``k * stagger_s`` later than ``start_s``.
    """
    records = settings.record_list
    n = settings.patients or len(records)
    plans = []
    for i in range(n):
        record, copy = records[i % len(records)], i // len(records)
        pid = f"{settings.physionet_db}-{record}" + (f"-v{copy}" if copy else "")
        plans.append(PatientPlan(pid, record, settings.start_s + copy * settings.stagger_s))
    return plans


def chunk_spans(
    n_samples: int, start: int, chunk_len: int, loop: bool, limit: int | None = None
) -> Iterator[tuple[int, int, int]]:
    """Yield ``(stream_index, record_from, record_to)`` covering the record in chunks.

    Starts at record position ``start`` (wrapped if looping), cuts a short chunk
    at the record end, wraps to 0 when ``loop``, and stops after ``limit``
    samples if given.  ``stream_index`` starts at ``start`` and never goes back.
    """
    if n_samples <= 0 or chunk_len <= 0:
        raise ValueError("need n_samples > 0 and chunk_len > 0")
    if not loop and start >= n_samples:
        return
    pos, sent = start % n_samples, 0
    while limit is None or sent < limit:
        end = min(pos + chunk_len, n_samples)
        if limit is not None:
            end = min(end, pos + limit - sent)
        yield start + sent, pos, end
        sent += end - pos
        pos = end
        if pos >= n_samples:
            if not loop:
                return
            pos = 0


@dataclass(slots=True)
class Pacer:
    """When may the chunk ending at ``samples_sent`` go out?  Computed from the index, no drift.

    ``speed`` is the factor against real time (None = as fast as possible).  A
    chunk is due once its last sample would have been recorded:
    ``t0 + samples_sent / fs / speed`` on a monotonic clock.
    """

    fs_hz: float
    speed: float | None
    t0: float

    def due(self, samples_sent: int) -> float:
        if self.speed is None:
            return self.t0
        return self.t0 + samples_sent / self.fs_hz / self.speed

    def delay(self, samples_sent: int, now: float) -> float:
        """Seconds to wait before sending (0 when on time or late)."""
        return max(0.0, self.due(samples_sent) - now)


@dataclass(slots=True)
class Progress:
    """Running totals of one replay, readable by a progress display."""

    patients: int = 0
    active: int = 0
    messages: int = 0
    payload_bytes: int = 0
    signal_s: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (time.monotonic() if now is None else now) - self.started)
        return (
            f"{self.active}/{self.patients} patients, {self.signal_s:,.0f} s of signal sent, "
            f"{self.messages / elapsed:,.0f} msg/s, {self.payload_bytes / elapsed / 1e6:,.1f} MB/s"
        )

    def fields(self) -> dict[str, float | int]:
        elapsed = max(1e-9, time.monotonic() - self.started)
        return {"patients": self.patients, "active": self.active, "messages": self.messages,
                "bytes": self.payload_bytes, "signal_s": round(self.signal_s, 1),
                "msg_per_s": round(self.messages / elapsed, 1),
                "mb_per_s": round(self.payload_bytes / elapsed / 1e6, 2)}


def load_recordings(settings: Settings, plans: Sequence[PatientPlan]) -> dict[str, Recording]:
    """Each distinct record once (blocking: call it in a thread from async code)."""
    return {name: load_record(name, settings) for name in dict.fromkeys(p.record for p in plans)}


async def _play(
    plan: PatientPlan,
    rec: Recording,
    settings: Settings,
    producer: Producer,
    progress: Progress,
    stop: asyncio.Event,
    clock: Clock,
    sleep: Sleep,
    t0: float,
    sent: Counter | None = None,
) -> None:
    topic = settings.topic("samples")
    chunk_len = max(1, round(settings.chunk_s * rec.fs_hz))
    limit = round(settings.duration_s * rec.fs_hz) if settings.duration_s > 0 else None
    start = round(plan.start_s * rec.fs_hz)
    if settings.loop:
        start %= rec.n_samples
    pacer = Pacer(rec.fs_hz, settings.speed_factor, t0)
    progress.active += 1
    try:
        for index, a, b in chunk_spans(rec.n_samples, start, chunk_len, settings.loop, limit):
            delay = pacer.delay(index + (b - a) - start, clock())
            if delay > 0:
                await sleep(delay)
            if stop.is_set():
                return
            chunk = SampleChunk(
                patient_id=plan.patient_id, record=rec.name, lead_names=rec.lead_names,
                fs_hz=rec.fs_hz, adc_gain=rec.adc_gain, adc_baseline=rec.adc_baseline,
                first_sample_index=index, samples=rec.samples[a:b], produced_at_ns=time.time_ns(),
            )
            await producer.send(topic, chunk, plan.patient_id)
            progress.messages += 1
            if sent is not None:
                sent.inc()
            progress.payload_bytes = producer.sent_bytes
            progress.signal_s += (b - a) / rec.fs_hz
            if delay == 0:
                await asyncio.sleep(0)  # let other patients, progress and signals run
    finally:
        progress.active -= 1


STOP_CHECK_S = 1.0  # a sleeping patient notices ``stop`` within this


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, returning within STOP_CHECK_S once ``stop`` is set.  Plain sleeps:
    ``wait_for(stop.wait(), ...)`` made a task and a timer per chunk, a third of the
    replay's own CPU at 1,000 patients."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not stop.is_set():
        left = end - loop.time()
        if left <= 0:
            return
        await asyncio.sleep(min(left, STOP_CHECK_S))


async def _report(progress: Progress, every_s: float, on_progress: Callable[[Progress], None]) -> None:
    while True:
        await asyncio.sleep(every_s)
        on_progress(progress)


def log_progress(progress: Progress) -> None:
    logger.info("replay progress", extra=progress.fields())


async def replay(
    settings: Settings,
    producer: Producer,
    stop: asyncio.Event | None = None,
    *,
    recordings: Mapping[str, Recording] | None = None,
    on_progress: Callable[[Progress], None] = log_progress,
    clock: Clock = time.monotonic,
    sleep: Sleep | None = None,
    registry: CollectorRegistry | None = None,
) -> Progress:
    """Stream every planned patient concurrently until the records end or ``stop`` is set.

    Everything handed to the producer is flushed before returning.  ``clock`` and
    ``sleep`` are injectable for tests; the default sleep returns early on ``stop``.
    With a ``registry``, chunks sent are counted in ``ecgmon_replay_messages_total``.
    """
    sent = None if registry is None else metrics.counter(
        "ecgmon_replay_messages_total", "sample chunks sent to the samples topic", registry)
    stop = stop or asyncio.Event()
    sleep = sleep or partial(_sleep_unless, stop)
    plans = plan_patients(settings)
    if recordings is None:
        recordings = await asyncio.to_thread(load_recordings, settings, plans)
    progress = Progress(patients=len(plans))
    logger.info("replay starting", extra={"patients": len(plans), "speed": settings.speed,
                                          "chunk_s": settings.chunk_s, "loop": settings.loop,
                                          "topic": settings.topic("samples")})
    t0 = clock()
    reporter = None
    if settings.progress_s > 0:
        reporter = asyncio.create_task(_report(progress, settings.progress_s, on_progress))
    try:
        async with asyncio.TaskGroup() as group:
            for plan in plans:
                group.create_task(_play(plan, recordings[plan.record], settings, producer,
                                        progress, stop, clock, sleep, t0, sent))
        await producer.flush()
    except ExceptionGroup as group_error:  # one failing patient stops all: report its error
        raise group_error.exceptions[0] from group_error
    finally:
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    if on_progress is not log_progress:
        on_progress(progress)
    logger.info("replay finished", extra=progress.fields())
    return progress
