"""Redis adapter: the alert store behind the gateway (history, active alarms, acknowledgement).

Layout, with ``P`` the key prefix (default ``ecgmon``)::

    P:alerts                 stream of every alert (bounded, MAXLEN)
    P:alerts:{patient}       stream of one patient's alerts (bounded, MAXLEN)
    P:alert:{alert_id}       idempotency marker, expires after ``id_ttl_s``
    P:alarm:{alarm_id}       hash: latest phase of an alarm, who acknowledged it and when
    P:active:{patient}       set of the patient's active alarm ids
    P:patient:{patient}      hash: heart rate, last beat class and sample, last alert id, and
                             the alarm limits the detector applies (``alarm_settings``, JSON;
                             absent = the defaults; ``alarm_settings_refused``: the last change
                             it refused, and why), and what the ward entered about the
                             patient (``info``, JSON: bed label, name, note; by the gateway)
    P:alarm-settings:{patient}  stream: changes of the patient's alarm limits sent by the
                             gateway, who and when (bounded audit trail)
    P:patients               set of patient ids seen
    P:beats:{patient}        stream of the patient's recent beats (written by the detector,
                             bounded): id = data time in microseconds (:func:`beat_entry`)
    P:strip:{alert_id}       the ECG around an alarm onset (written once by the gateway,
                             ``detector.gateway.strips``; zlib JSON, expires after 7 days)
    P:discharges             stream of discharges (bounded): who, when, and the stay's ward
                             details and alarm limits (:meth:`AlertStore.discharge`)
    P:discharge:{request_id} that discharge is archived: its entry's id in ``P:discharges``
    P:discharged:{request_id}:alerts, P:discharged:{request_id}:alarm-settings
                             the discharged stay's alert stream and limit-change audit trail,
                             renamed out of the way of a later admission under the same id
                             (these three expire after ``archive_ttl_s``, ECGMON_ARCHIVE_DAYS)

``write_alert`` runs as one Lua script, so a retry after a crash or a lost reply never
adds an alert twice: the id marker and both stream entries are written together or not
at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from redis import exceptions as redis_errors

from stream import serde
from stream.errors import ConfigError, ServiceUnavailable
from stream.metrics import counter, latency_histogram
from stream.schemas import AlarmPhase, AlarmPriority, Alert, Beat, BeatClass
from stream.settings import Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")


def reply(value: Awaitable[T] | T) -> Awaitable[T]:
    """A command's reply on the asyncio client, typed as what it is: an awaitable (redis-py's
    stubs type commands of both clients as ``Awaitable[T] | T``)."""
    return cast(Awaitable[T], value)

_WRITE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) == false then return 0 end
local f = {'alert_id', ARGV[3], 'patient_id', ARGV[4], 'alarm_id', ARGV[5],
           'alarm_type', ARGV[6], 'priority', ARGV[7], 'phase', ARGV[8], 'alert', ARGV[9]}
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', unpack(f))
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[2], '*', unpack(f))
redis.call('SADD', KEYS[7], ARGV[4])
local ended = redis.call('HGET', KEYS[6], 'phase') == 'end'
if ARGV[8] == 'end' or not ended then
  redis.call('HSET', KEYS[6], 'alarm_id', ARGV[5], 'patient_id', ARGV[4], 'alarm_type', ARGV[6],
             'priority', ARGV[7], 'phase', ARGV[8], 'onset_sample_index', ARGV[10],
             'sample_index', ARGV[11], 'message', ARGV[12], 'technical', ARGV[13])
end
if ARGV[8] == 'end' then
  redis.call('SREM', KEYS[5], ARGV[5])
  redis.call('EXPIRE', KEYS[6], ARGV[1])
elseif not ended then
  redis.call('SADD', KEYS[5], ARGV[5])
end
redis.call('HSET', KEYS[4], 'last_alert_id', ARGV[3])
return 1
"""

# Discharge: archive the stay once (marker), then forget the patient (every time: a replay
# from a checkpoint before the discharge writes the patient's beats and hash again first).
_DISCHARGE = """
local first = redis.call('SET', KEYS[1], 'pending', 'NX', 'EX', ARGV[4])
if first then
  local info = redis.call('HGET', KEYS[3], 'info') or ''
  local limits = redis.call('HGET', KEYS[3], 'alarm_settings') or ''
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'patient_id', ARGV[1],
                        'discharge', ARGV[2], 'info', info, 'alarm_settings', limits)
  redis.call('SET', KEYS[1], id, 'EX', ARGV[4])
  if redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('RENAME', KEYS[6], KEYS[8])
    redis.call('EXPIRE', KEYS[8], ARGV[4])
  end
  if redis.call('EXISTS', KEYS[7]) == 1 then
    redis.call('RENAME', KEYS[7], KEYS[9])
    redis.call('EXPIRE', KEYS[9], ARGV[4])
  end
end
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
if first then return 1 end
return 0
"""

_ACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'acked_by', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'acked_at_ns', ARGV[2])
return 1
"""

# The gateway holds one blocking XREAD per WebSocket client; redis-py's default pool of 100
# connections made client 101 on fail with MaxConnectionsError (issue #8, 1,000 clients).
MAX_CONNECTIONS = 10_000

_RETRIABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, ConnectionError, OSError)


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as read back from a stream; ``stream_id`` is the cursor for the next page."""

    stream_id: str
    alert: Alert


@dataclass(frozen=True, slots=True)
class AlarmState:
    """The latest known state of one alarm."""

    alarm_id: str
    patient_id: str
    alarm_type: str
    priority: AlarmPriority
    phase: AlarmPhase
    onset_sample_index: int
    sample_index: int
    message: str
    technical: bool
    acked_by: str | None
    acked_at_ns: int | None


@dataclass(frozen=True, slots=True)
class PatientState:
    patient_id: str
    heart_rate_bpm: float | None
    last_beat_class: BeatClass | None
    last_beat_sample: int | None
    last_alert_id: str | None
    active_alarm_ids: tuple[str, ...]
    alarm_settings: dict[str, Any] | None = None  # the limits applied, None = the defaults
    info: dict[str, Any] | None = None  # bed label, name, note, who and when; None = none entered
    alarm_settings_refused: dict[str, Any] | None = None  # the last change the detector refused


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def beat_entry(beat: Beat) -> tuple[str, dict[str, str]]:
    """Id and fields of a beat in ``P:beats:{patient}``.

    The id is the beat's data time in microseconds, ``round(sample_index * 1e6 / fs_hz)``:
    deterministic, so a beat re-emitted after a restart is rejected by Redis itself, and
    increasing in time across a change of sampling rate (sample indices are not: at a lower
    rate the same moment has a lower index). Beats are >= 200 ms apart, so ids never collide.
    """
    fields = {"sample": str(int(beat.sample_index)), "class": beat.beat_class.value,
              "conf": f"{beat.confidence:.3f}", "rr_s": f"{beat.rr_prev_s:.4f}",
              "fs_hz": repr(beat.fs_hz)}
    return f"{round(beat.sample_index * 1_000_000 / beat.fs_hz)}-1", fields


def beat_entry_sample(fields: dict[Any, Any]) -> int:
    """The sample index of a ``P:beats:{patient}`` entry (raises KeyError/ValueError)."""
    raw = fields.get("sample", fields.get(b"sample"))
    if raw is None:
        raise KeyError("sample")
    return int(_s(raw))


class AlertStore:
    """Async alert store; ``start()``/``stop()`` (idempotent) or ``async with``."""

    def __init__(
        self, url: str, registry: CollectorRegistry, *, prefix: str = "ecgmon",
        maxlen: int = 100_000, id_ttl_s: int = 7 * 24 * 3600, retries: int = 5,
        archive_ttl_s: int = 90 * 24 * 3600,
        backoff_s: float = 0.05, backoff_max_s: float = 2.0,
        clock_ns: Callable[[], int] = time.time_ns, max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if maxlen < 1 or id_ttl_s < 1 or retries < 0:
            raise ValueError("maxlen and id_ttl_s must be >= 1, retries >= 0")
        self.url, self.prefix, self.maxlen, self.id_ttl_s = url, prefix, maxlen, id_ttl_s
        self.archive_ttl_s = archive_ttl_s
        self.retries, self.backoff_s, self.backoff_max_s = retries, backoff_s, backoff_max_s
        self._clock_ns = clock_ns
        self.max_connections = max_connections
        self._client: aioredis.Redis | None = None
        self._write_seconds = latency_histogram(
            "ecgmon_redis_write_seconds", "time to store one alert in Redis, retries included",
            registry)
        self._retries_total = counter(
            "ecgmon_redis_retries_total", "Redis calls retried after a connection error", registry,
            ("op",))

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry) -> AlertStore:
        """The store configured by ``ECGMON_REDIS_URL``, ``_REDIS_PREFIX`` and ``_REDIS_MAXLEN``."""
        if not settings.redis_url:
            raise ConfigError("no Redis URL: set ECGMON_REDIS_URL or --redis-url "
                              "(ecgmon up starts a local Redis and sets it)")
        return cls(settings.redis_url, registry, prefix=settings.redis_prefix,
                   maxlen=settings.redis_maxlen, archive_ttl_s=int(settings.archive_days * 86400))

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(self.url, decode_responses=False,
                                         max_connections=self.max_connections)
        self._client = client
        self._write_script = client.register_script(_WRITE)
        self._ack_script = client.register_script(_ACK)
        self._discharge_script = client.register_script(_DISCHARGE)
        try:
            await self._call("ping", lambda: reply(client.ping()))
        except BaseException:
            await self.stop()
            raise
        logger.info("alert store connected", extra={"prefix": self.prefix})

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> AlertStore:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise ServiceUnavailable("alert store is not started: call start() or use async with")
        return self._client

    async def _call(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` with exponential backoff on connection errors; ServiceUnavailable at last."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return await fn()
            except _RETRIABLE as exc:
                if attempt == self.retries:
                    raise ServiceUnavailable(
                        f"Redis at {self.url} unreachable during {op} after {attempt + 1} tries: "
                        f"{exc}; check that Redis runs or set ECGMON_REDIS_URL") from exc
                self._retries_total.labels(op=op).inc()
                logger.warning("redis call failed, retrying",
                               extra={"op": op, "attempt": attempt + 1, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        raise AssertionError("unreachable")  # pragma: no cover

    async def call_until_ok(self, op: str, fn: Callable[[], Awaitable[T]],
                            give_up: Callable[[], bool], max_delay_s: float = 5.0) -> T:
        """Like :meth:`_call`, but through an outage of any length: for a writer that must
        never drop (the detector).  Retries with backoff (doubling up to ``max_delay_s``),
        each retry counted in ``ecgmon_redis_retries_total{op}`` and logged, until ``fn``
        succeeds or ``give_up()`` is true (shutting down), which raises ServiceUnavailable."""
        delay = self.backoff_s
        failed_at: float | None = None
        while True:
            try:
                result = await self._call(op, fn)
            except (ServiceUnavailable, *_RETRIABLE) as exc:
                if give_up():
                    raise ServiceUnavailable(
                        f"Redis at {self.url} unreachable during {op} while stopping: {exc}"
                    ) from exc
                failed_at = failed_at or time.monotonic()
                self._retries_total.labels(op=op).inc()
                logger.warning("redis unavailable: outputs held, offsets not committed; retrying",
                               extra={"op": op, "down_s": round(time.monotonic() - failed_at, 1),
                                      "retry_in_s": delay, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay_s)
                continue
            if failed_at is not None:
                logger.warning("redis reachable again", extra={
                    "op": op, "down_s": round(time.monotonic() - failed_at, 1)})
            return result

    # ------------------------------------------------------------------ keys
    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # ------------------------------------------------------------------ writes
    async def write_alert(self, alert: Alert) -> bool:
        """Store one alert; False if this ``alert_id`` was stored before (idempotent)."""
        p = alert.patient_id
        keys = [self._k("alert", alert.alert_id), self._k("alerts"), self._k("alerts", p),
                self._k("patient", p), self._k("active", p), self._k("alarm", alert.alarm_id),
                self._k("patients")]
        args: list[str | bytes | int] = [
            self.id_ttl_s, self.maxlen, alert.alert_id, p, alert.alarm_id, alert.alarm_type,
            alert.priority.value, alert.phase.value, serde.encode(alert),
            alert.onset_sample_index, alert.sample_index, alert.message, int(alert.technical)]
        started = time.perf_counter()
        try:
            done = await self._call("write_alert",
                                    lambda: self._write_script(keys=keys, args=args))
        finally:
            self._write_seconds.observe(time.perf_counter() - started)
        return bool(done)

    async def update_patient(self, patient_id: str, *, heart_rate_bpm: float | None = None,
                             last_beat_class: BeatClass | None = None,
                             last_beat_sample: int | None = None) -> None:
        """Record the patient's current heart rate and last beat (fields left None are kept)."""
        fields: dict[str, str] = {}
        if heart_rate_bpm is not None:
            fields["heart_rate_bpm"] = repr(float(heart_rate_bpm))
        if last_beat_class is not None:
            fields["last_beat_class"] = last_beat_class.value
        if last_beat_sample is not None:
            fields["last_beat_sample"] = str(int(last_beat_sample))
        client = self.client

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.sadd(self._k("patients"), patient_id)
                if fields:
                    pipe.hset(self._k("patient", patient_id), mapping=fields)
                await pipe.execute()

        await self._call("update_patient", write)

    async def acknowledge(self, alarm_id: str, user: str) -> bool:
        """Record who acknowledged an alarm and when; False if unknown or already acknowledged."""
        keys = [self._k("alarm", alarm_id)]
        args: list[str | int] = [user, self._clock_ns()]
        return bool(await self._call("acknowledge", lambda: self._ack_script(keys=keys, args=args)))

    # ------------------------------------------------------------------ reads
    async def history(self, patient: str | None = None, after_id: str | None = None,
                      count: int = 100, newest: bool = False) -> list[StoredAlert]:
        """Alerts oldest first, after the stream id ``after_id`` (exclusive) if given; with
        ``newest``, the newest ``count`` of those (a page opened late wants the recent ones)."""
        key = self._k("alerts") if patient is None else self._k("alerts", patient)
        start = "-" if after_id is None else f"({after_id}"
        client = self.client
        if newest:
            rows: Any = await self._call(
                "history", lambda: client.xrevrange(key, "+", start, count=count))
            rows = list(reversed(rows))
        else:
            rows = await self._call("history", lambda: client.xrange(key, start, "+", count=count))
        return [StoredAlert(_s(sid), serde.decode_as(fields[b"alert"], Alert))
                for sid, fields in rows]

    async def alarm(self, alarm_id: str) -> AlarmState | None:
        client = self.client
        raw = await self._call("alarm", lambda: reply(client.hgetall(self._k("alarm", alarm_id))))
        return _alarm_state(raw) if raw else None

    async def active_alarms(self, patient: str) -> list[AlarmState]:
        """The patient's active alarms, oldest onset first."""
        client = self.client
        ids = await self._call("active_alarms", lambda: reply(client.smembers(self._k("active", patient))))

        async def fetch() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for alarm_id in ids:
                    pipe.hgetall(self._k("alarm", _s(alarm_id)))
                return list(await pipe.execute())

        states = [_alarm_state(raw) for raw in await self._call("active_alarms", fetch) if raw]
        return sorted(states, key=lambda a: (a.onset_sample_index, a.alarm_id))

    async def patients(self) -> list[str]:
        client = self.client
        return sorted(_s(p) for p in await self._call(
            "patients", lambda: reply(client.smembers(self._k("patients")))))

    async def patient_state(self, patient: str) -> PatientState:
        client = self.client

        async def fetch() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._k("patient", patient))
                pipe.smembers(self._k("active", patient))
                return list(await pipe.execute())

        raw, active = await self._call("patient_state", fetch)
        h = {_s(k): _s(v) for k, v in raw.items()}
        return PatientState(
            patient_id=patient,
            heart_rate_bpm=float(h["heart_rate_bpm"]) if "heart_rate_bpm" in h else None,
            last_beat_class=BeatClass(h["last_beat_class"]) if "last_beat_class" in h else None,
            last_beat_sample=int(h["last_beat_sample"]) if "last_beat_sample" in h else None,
            last_alert_id=h.get("last_alert_id"),
            active_alarm_ids=tuple(sorted(_s(a) for a in active)),
            alarm_settings=json.loads(h["alarm_settings"]) if "alarm_settings" in h else None,
            info=json.loads(h["info"]) if "info" in h else None,
            alarm_settings_refused=(json.loads(h["alarm_settings_refused"])
                                    if "alarm_settings_refused" in h else None),
        )

    async def _set_patient_json(self, op: str, patient: str, field: str, value: dict[str, Any]) -> None:
        """One JSON field of ``patient``'s hash (idempotent)."""
        client, text = self.client, json.dumps(value, sort_keys=True)
        await self._call(op, lambda: reply(client.hset(self._k("patient", patient), field, text)))

    async def set_patient_info(self, patient: str, info: dict[str, Any]) -> None:
        """Record the ward's details of ``patient`` (bed label, name, note, who and when)."""
        await self._set_patient_json("set_patient_info", patient, "info", info)

    async def set_alarm_settings(self, patient: str, applied: dict[str, Any]) -> None:
        """Record the alarm limits the detector now applies to ``patient``."""
        await self._set_patient_json("set_alarm_settings", patient, "alarm_settings", applied)

    async def refuse_alarm_settings(self, patient: str, refusal: dict[str, Any]) -> None:
        """Record that the detector refused a change of ``patient``'s alarm limits, and why."""
        await self._set_patient_json("refuse_alarm_settings", patient, "alarm_settings_refused", refusal)

    async def log_alarm_settings(self, patient: str, change: dict[str, Any]) -> None:
        """Append a change sent for ``patient`` to its audit trail (the newest 100 kept)."""
        client, value = self.client, json.dumps(change, sort_keys=True)
        await self._call("log_alarm_settings", lambda: reply(client.xadd(
            self._k("alarm-settings", patient), {"change": value}, maxlen=100, approximate=False)))

    async def alarm_settings_log(self, patient: str, count: int = 50) -> list[dict[str, Any]]:
        """The changes sent for ``patient``, newest first."""
        client = self.client
        rows = await self._call("alarm_settings_log", lambda: reply(
            client.xrevrange(self._k("alarm-settings", patient), count=count)))
        return [json.loads(_s(fields[b"change"] if b"change" in fields else fields["change"]))
                for _, fields in rows]

    async def discharge(self, patient: str, request_id: str, record: dict[str, Any]) -> bool:
        """Archive ``patient``'s stay in the discharge log (``record``, plus its ward details
        and alarm limits; its alert stream and limit-change audit trail renamed under the
        request id) and forget the patient: out of the patient set, its hash and recent beats
        deleted.  End its active alarms first.  True the first time for ``request_id``; a
        repeat (a replay) only forgets again."""
        keys = [self._k("discharge", request_id), self._k("discharges"), self._k("patient", patient),
                self._k("beats", patient), self._k("patients"), self._k("alerts", patient),
                self._k("alarm-settings", patient), self._k("discharged", request_id, "alerts"),
                self._k("discharged", request_id, "alarm-settings")]
        args: list[str | int] = [patient, json.dumps(record, sort_keys=True), self.maxlen,
                                 self.archive_ttl_s]
        return bool(await self._call("discharge", lambda: self._discharge_script(keys=keys, args=args)))

    async def discharges(self, count: int = 50) -> list[dict[str, Any]]:
        """The newest ``count`` discharges, newest first: the record the detector archived,
        with the stay's ward details (``info``) and alarm limits (``alarm_settings``; None =
        the defaults) and the archive's ``stream_id``."""
        client = self.client
        rows = await self._call("discharges", lambda: reply(
            client.xrevrange(self._k("discharges"), count=count)))
        return [_discharge_row(sid, raw) for sid, raw in rows]

    async def discharged_stay(self, request_id: str) -> dict[str, Any] | None:
        """The archive of one discharge: its record (as :meth:`discharges`), the stay's alerts
        oldest first (``alerts``: :class:`StoredAlert`) and its limit changes newest first
        (``alarm_settings_history``); None when unknown or expired."""
        client = self.client
        sid = await self._call("discharged_stay", lambda: reply(client.get(self._k("discharge", request_id))))
        if sid is None or _s(sid) == "pending":
            return None

        async def fetch() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xrange(self._k("discharges"), _s(sid), _s(sid))
                pipe.xrange(self._k("discharged", request_id, "alerts"))
                pipe.xrevrange(self._k("discharged", request_id, "alarm-settings"))
                return list(await pipe.execute())

        entry, alerts, changes = await self._call("discharged_stay", fetch)
        if not entry:  # trimmed from the discharge log
            return None
        return {
            **_discharge_row(*entry[0]),
            "alerts": [StoredAlert(_s(i), serde.decode_as(f[b"alert"], Alert)) for i, f in alerts],
            "alarm_settings_history": [json.loads(_s(f[b"change"])) for _, f in changes],
        }


def _discharge_row(sid: Any, raw: dict[Any, Any]) -> dict[str, Any]:
    h = {_s(k): _s(v) for k, v in raw.items()}
    info, limits = h.get("info"), h.get("alarm_settings")
    return {**json.loads(h["discharge"]), "stream_id": _s(sid),
            "info": json.loads(info) if info else None,
            "alarm_settings": json.loads(limits) if limits else None}


def _alarm_state(raw: dict[Any, Any]) -> AlarmState:
    h = {_s(k): _s(v) for k, v in raw.items()}
    return AlarmState(
        alarm_id=h["alarm_id"], patient_id=h["patient_id"], alarm_type=h["alarm_type"],
        priority=AlarmPriority(h["priority"]), phase=AlarmPhase(h["phase"]),
        onset_sample_index=int(h["onset_sample_index"]), sample_index=int(h["sample_index"]),
        message=h["message"], technical=h["technical"] == "1", acked_by=h.get("acked_by"),
        acked_at_ns=int(h["acked_at_ns"]) if "acked_at_ns" in h else None,
    )
