"""Versioned binary encoding of :mod:`stream.schemas` messages.

Layout of every payload (little endian)::

    magic  b"EG"      2 bytes
    version u8        SCHEMA_VERSION
    kind    u8        1 chunk, 2 beat, 3 alert, 4 dead letter, 5 alarm settings,
                      6 discharge
    body              kind-specific, fixed field order, see the _BODY functions

Strings are UTF-8 with a u8 (short) or u16 (long) length prefix; samples are
int16 interleaved by lead.  Decoding validates every length and value and
raises :class:`~stream.errors.DecodeError` whose ``reason`` is one of
:data:`REASONS`, so dead letters can be counted by reason.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from stream.errors import DecodeError
from stream.schemas import (
    SCHEMA_VERSION,
    AlarmPhase,
    AlarmPriority,
    AlarmSettings,
    Alert,
    Beat,
    BeatClass,
    DeadLetter,
    Discharge,
    Message,
    SampleChunk,
)

MAGIC = b"EG"
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
MAX_LEADS = 16
MAX_FS_HZ = 20_000.0

REASONS = (
    "truncated",
    "bad_magic",
    "unsupported_version",
    "unknown_kind",
    "too_large",
    "trailing_bytes",
    "invalid_field",
    "wrong_length",
    "wrong_kind",
)

_KIND_CHUNK, _KIND_BEAT, _KIND_ALERT, _KIND_DEAD, _KIND_SETTINGS, _KIND_DISCHARGE = 1, 2, 3, 4, 5, 6
MAX_DISABLED = 32
_HEADER = struct.Struct("<2sBB")
_PRIORITIES = list(AlarmPriority)
_PHASES = list(AlarmPhase)
_CLASSES = list(BeatClass)

M = TypeVar("M", SampleChunk, Beat, Alert, DeadLetter, AlarmSettings, Discharge)


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def pack(self, fmt: str, *values: object) -> None:
        self.parts.append(struct.pack("<" + fmt, *values))

    def text(self, value: str, long: bool = False) -> None:
        self.blob(value.encode("utf-8"), "H" if long else "B")

    def blob(self, value: bytes, size_fmt: str = "I") -> None:
        limit = (1 << (8 * struct.calcsize(size_fmt))) - 1
        if len(value) > limit:
            raise ValueError(f"field of {len(value)} bytes exceeds its {limit}-byte limit")
        self.parts.append(struct.pack("<" + size_fmt, len(value)))
        self.parts.append(value)

    def raw(self, value: bytes) -> None:
        self.parts.append(value)


@functools.lru_cache(maxsize=256)
def _struct(fmt: str) -> struct.Struct:
    return struct.Struct("<" + fmt)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int) -> None:
        self.buf = memoryview(buf)
        self.pos = pos

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        st = _struct(fmt)
        if self.pos + st.size > len(self.buf):
            raise DecodeError("truncated", f"payload ends inside {what} at byte {self.pos}")
        values = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return values

    def int_(self, fmt: str, what: str) -> int:
        return int(self.unpack(fmt, what)[0])

    def blob(self, what: str, size_fmt: str = "I") -> bytes:
        return self.take(self.int_(size_fmt, f"{what} length"), what)

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.buf):
            raise DecodeError(
                "truncated", f"{what} needs {n} bytes, {len(self.buf) - self.pos} left"
            )
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def text(self, what: str, long: bool = False) -> str:
        raw = self.blob(what, "H" if long else "B")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid_field", f"{what} is not UTF-8: {exc.reason}") from None

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError("trailing_bytes", f"{len(self.buf) - self.pos} bytes after the body")


# --- validation, shared by encode (ValueError) and decode (DecodeError "invalid_field") ------


def _check(ok: bool, what: str, *args: object) -> None:
    """Raise invalid_field unless ``ok``; ``what % args`` is only formatted on failure (hot path)."""
    if not ok:
        raise DecodeError("invalid_field", what % args if args else what)


def _check_id(value: str, what: str) -> None:
    _check(0 < len(value) and value.isprintable(), "%s must be non-empty printable text", what)


def _check_finite(value: float, what: str, lo: float = -math.inf, hi: float = math.inf) -> None:
    _check(math.isfinite(value) and lo <= value <= hi, "%s=%r out of range %s..%s", what, value, lo, hi)


def _validate_chunk(m: SampleChunk) -> None:
    _check_id(m.patient_id, "patient_id")
    n_leads = len(m.lead_names)
    _check(1 <= n_leads <= MAX_LEADS, "lead count %d not in 1..%d", n_leads, MAX_LEADS)
    _check(
        len(m.adc_gain) == len(m.adc_baseline) == n_leads,
        "adc_gain and adc_baseline need one value per lead",
    )
    _check_finite(m.fs_hz, "fs_hz", 1.0, MAX_FS_HZ)
    for g in m.adc_gain:
        _check(math.isfinite(g) and g > 0, "adc_gain %r must be finite and > 0", g)
    _check(m.first_sample_index >= 0, "first_sample_index %d is negative", m.first_sample_index)


def _validate_beat(m: Beat) -> None:
    _check_id(m.patient_id, "patient_id")
    _check(m.sample_index >= 0, "sample_index %d is negative", m.sample_index)
    _check_finite(m.fs_hz, "fs_hz", 1.0, MAX_FS_HZ)
    _check_finite(m.confidence, "confidence", 0.0, 1.0)
    _check_finite(m.rr_prev_s, "rr_prev_s", 0.0)


def _validate_alert(m: Alert) -> None:
    _check_id(m.patient_id, "patient_id")
    _check_id(m.alarm_type, "alarm_type")
    _check(
        0 <= m.onset_sample_index <= m.sample_index,
        "onset_sample_index must be in 0..sample_index",
    )
    _check_finite(m.fs_hz, "fs_hz", 1.0, MAX_FS_HZ)
    _check_finite(m.heart_rate_bpm, "heart_rate_bpm", 0.0, 1000.0)
    _check(len(m.details) <= 255, "%d details, at most 255", len(m.details))


def _validate_dead(m: DeadLetter) -> None:
    _check(m.partition >= -1 and m.offset >= -1, "partition and offset must be >= -1")


def _validate_settings(m: AlarmSettings) -> None:
    _check_id(m.patient_id, "patient_id")
    _check_id(m.request_id, "request_id")
    _check_id(m.user, "user")
    _check(m.set_at_ns >= 0, "set_at_ns %d is negative", m.set_at_ns)
    _check_finite(m.hr_low_bpm, "hr_low_bpm", 0.0, 1000.0)
    _check_finite(m.hr_high_bpm, "hr_high_bpm", 0.0, 1000.0)
    _check_finite(m.pause_s, "pause_s", 0.0, 60.0)
    _check(len(m.disabled) <= MAX_DISABLED, "%d disabled alarms, at most %d", len(m.disabled),
           MAX_DISABLED)
    for name in m.disabled:
        _check_id(name, "disabled alarm type")


def _validate_discharge(m: Discharge) -> None:
    _check_id(m.patient_id, "patient_id")
    _check_id(m.request_id, "request_id")
    _check_id(m.user, "user")
    _check(m.discharged_at_ns >= 0, "discharged_at_ns %d is negative", m.discharged_at_ns)


# --- sample chunk -------------------------------------------------------------------------


def _write_chunk(w: _Writer, m: SampleChunk) -> None:
    n_leads = len(m.lead_names)
    if m.samples.dtype != np.int16 or m.samples.ndim != 2 or m.samples.shape[1] != n_leads:
        raise ValueError(
            f"samples must be int16 of shape (n, {n_leads}), got {m.samples.dtype} {m.samples.shape}"
        )
    samples = np.ascontiguousarray(m.samples, dtype="<i2")
    w.text(m.patient_id)
    w.text(m.record)
    w.pack("B", n_leads)
    for name in m.lead_names:
        w.text(name)
    w.pack("d", m.fs_hz)
    w.pack(f"{n_leads}d", *m.adc_gain)
    w.pack(f"{n_leads}i", *m.adc_baseline)
    w.pack("qqI", m.first_sample_index, m.produced_at_ns, samples.shape[0])
    w.raw(samples.tobytes())


def _read_chunk(r: _Reader) -> SampleChunk:
    patient_id = r.text("patient_id")
    record = r.text("record")
    n_leads = r.int_("B", "lead count")
    _check(1 <= n_leads <= MAX_LEADS, "lead count %d not in 1..%d", n_leads, MAX_LEADS)
    lead_names = tuple(r.text(f"lead name {i}") for i in range(n_leads))
    fs_hz = float(r.unpack("d", "fs_hz")[0])
    gains = tuple(float(g) for g in r.unpack(f"{n_leads}d", "adc_gain"))
    baselines = tuple(int(b) for b in r.unpack(f"{n_leads}i", "adc_baseline"))
    first, produced, n = (int(v) for v in r.unpack("qqI", "chunk header"))
    expected = n * n_leads * 2
    left = len(r.buf) - r.pos
    if left != expected:
        raise DecodeError(
            "wrong_length",
            f"{n} samples x {n_leads} leads need {expected} bytes, payload has {left}",
        )
    samples = np.frombuffer(r.take(expected, "samples"), dtype="<i2").reshape(n, n_leads)
    return SampleChunk(
        patient_id=patient_id,
        record=record,
        lead_names=lead_names,
        fs_hz=fs_hz,
        adc_gain=gains,
        adc_baseline=baselines,
        first_sample_index=first,
        samples=samples.astype(np.int16, copy=False),
        produced_at_ns=produced,
    )


# --- beat -----------------------------------------------------------------------------------

_BEAT = "qdBddqq"


def _write_beat(w: _Writer, m: Beat) -> None:
    w.text(m.patient_id)
    w.pack(
        _BEAT,
        m.sample_index,
        m.fs_hz,
        _CLASSES.index(m.beat_class),
        m.confidence,
        m.rr_prev_s,
        m.detected_at_ns,
        m.chunk_produced_at_ns,
    )


def _read_beat(r: _Reader) -> Beat:
    patient_id = r.text("patient_id")
    sample, fs, cls, conf, rr, detected, produced = r.unpack(_BEAT, "beat")
    _check(cls < len(_CLASSES), "beat class code %d unknown", cls)
    return Beat(
        patient_id=patient_id,
        sample_index=sample,
        fs_hz=fs,
        beat_class=_CLASSES[cls],
        confidence=conf,
        rr_prev_s=rr,
        detected_at_ns=detected,
        chunk_produced_at_ns=produced,
    )


# --- alert ----------------------------------------------------------------------------------


def _write_alert(w: _Writer, m: Alert) -> None:
    w.text(m.patient_id)
    w.text(m.alarm_type)
    w.pack("BB", _PRIORITIES.index(m.priority), _PHASES.index(m.phase))
    w.pack("qqdd", m.onset_sample_index, m.sample_index, m.fs_hz, m.heart_rate_bpm)
    w.text(m.message, long=True)
    w.pack("qqBB", m.created_at_ns, m.chunk_produced_at_ns, int(m.technical), len(m.details))
    for key, value in m.details:
        w.text(key)
        w.text(value, long=True)


def _read_alert(r: _Reader) -> Alert:
    patient_id = r.text("patient_id")
    alarm_type = r.text("alarm_type")
    prio, phase = r.unpack("BB", "priority and phase")
    _check(prio < len(_PRIORITIES), "priority code %d unknown", prio)
    _check(phase < len(_PHASES), "phase code %d unknown", phase)
    onset, sample, fs, hr = r.unpack("qqdd", "alert indices")
    message = r.text("message", long=True)
    created, produced, technical, n_details = r.unpack("qqBB", "alert tail")
    _check(technical in (0, 1), "technical flag must be 0 or 1")
    details = tuple(
        (r.text("detail key"), r.text("detail value", long=True)) for _ in range(n_details)
    )
    return Alert(
        patient_id=patient_id,
        alarm_type=alarm_type,
        priority=_PRIORITIES[prio],
        phase=_PHASES[phase],
        onset_sample_index=onset,
        sample_index=sample,
        fs_hz=fs,
        heart_rate_bpm=hr,
        message=message,
        created_at_ns=created,
        chunk_produced_at_ns=produced,
        technical=bool(technical),
        details=details,
    )


# --- dead letter ----------------------------------------------------------------------------


def _write_dead(w: _Writer, m: DeadLetter) -> None:
    w.text(m.source_topic)
    w.pack("iq", m.partition, m.offset)
    w.blob(m.key, "H")
    w.text(m.reason)
    w.text(m.detail, long=True)
    w.blob(m.payload, "I")
    w.pack("q", m.created_at_ns)


def _read_dead(r: _Reader) -> DeadLetter:
    topic = r.text("source_topic")
    partition, offset = r.unpack("iq", "position")
    key = r.blob("key", "H")
    reason = r.text("reason")
    detail = r.text("detail", long=True)
    payload = r.blob("payload", "I")
    created = r.int_("q", "created_at_ns")
    return DeadLetter(topic, partition, offset, key, reason, detail, payload, created)


# --- alarm settings -------------------------------------------------------------------------


def _write_settings(w: _Writer, m: AlarmSettings) -> None:
    w.text(m.patient_id)
    w.text(m.request_id)
    w.text(m.user)
    w.pack("qdddB", m.set_at_ns, m.hr_low_bpm, m.hr_high_bpm, m.pause_s, len(m.disabled))
    for name in m.disabled:
        w.text(name)


def _read_settings(r: _Reader) -> AlarmSettings:
    patient_id = r.text("patient_id")
    request_id = r.text("request_id")
    user = r.text("user")
    set_at, low, high, pause, n = r.unpack("qdddB", "alarm settings")
    disabled = tuple(r.text("disabled alarm type") for _ in range(n))
    return AlarmSettings(patient_id, request_id, user, set_at, low, high, pause, disabled)


# --- discharge ------------------------------------------------------------------------------


def _write_discharge(w: _Writer, m: Discharge) -> None:
    w.text(m.patient_id)
    w.text(m.request_id)
    w.text(m.user)
    w.pack("q", m.discharged_at_ns)


def _read_discharge(r: _Reader) -> Discharge:
    patient_id = r.text("patient_id")
    request_id = r.text("request_id")
    user = r.text("user")
    (at,) = r.unpack("q", "discharge")
    return Discharge(patient_id, request_id, user, at)


_KINDS: dict[type, tuple[int, Callable[[_Writer, Any], None], Callable[[Any], None]]] = {
    SampleChunk: (_KIND_CHUNK, _write_chunk, _validate_chunk),
    Beat: (_KIND_BEAT, _write_beat, _validate_beat),
    Alert: (_KIND_ALERT, _write_alert, _validate_alert),
    DeadLetter: (_KIND_DEAD, _write_dead, _validate_dead),
    AlarmSettings: (_KIND_SETTINGS, _write_settings, _validate_settings),
    Discharge: (_KIND_DISCHARGE, _write_discharge, _validate_discharge),
}
_VALIDATORS: dict[type, Callable[[Any], None]] = {cls: v for cls, (_, _, v) in _KINDS.items()}
_READERS: dict[int, Callable[[_Reader], Message]] = {
    _KIND_CHUNK: _read_chunk,
    _KIND_BEAT: _read_beat,
    _KIND_ALERT: _read_alert,
    _KIND_DEAD: _read_dead,
    _KIND_SETTINGS: _read_settings,
    _KIND_DISCHARGE: _read_discharge,
}


def encode(message: Message) -> bytes:
    """Encode a message; raises ValueError if decode would reject it (fail at the producer)."""
    kind, writer, validator = _KINDS[type(message)]
    try:
        validator(message)
    except DecodeError as exc:
        raise ValueError(f"invalid {type(message).__name__}: {exc.detail}") from None
    w = _Writer()
    w.raw(_HEADER.pack(MAGIC, SCHEMA_VERSION, kind))
    try:
        writer(w, message)
    except struct.error as exc:
        raise ValueError(f"invalid {type(message).__name__}: a field does not fit ({exc})") from None
    out = b"".join(w.parts)
    if len(out) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"encoded message is {len(out)} bytes, limit {MAX_PAYLOAD_BYTES}")
    return out


def decode(payload: bytes | bytearray | memoryview | None) -> Message:
    """Decode and validate any message; raises DecodeError with a precise reason."""
    if payload is None:
        raise DecodeError("truncated", "empty (null) payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise DecodeError("too_large", f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    if len(payload) < _HEADER.size:
        raise DecodeError("truncated", f"{len(payload)} bytes, header needs {_HEADER.size}")
    magic, version, kind = _HEADER.unpack_from(payload, 0)
    if magic != MAGIC:
        raise DecodeError("bad_magic", f"starts with {bytes(magic)!r}, expected {MAGIC!r}")
    if version != SCHEMA_VERSION:
        raise DecodeError(
            "unsupported_version", f"schema version {version}, this build reads {SCHEMA_VERSION}"
        )
    reader = _READERS.get(kind)
    if reader is None:
        raise DecodeError("unknown_kind", f"message kind {kind}")
    r = _Reader(payload, _HEADER.size)
    message = reader(r)
    r.done()
    _VALIDATORS[type(message)](message)
    return message


def decode_as(payload: bytes | bytearray | memoryview | None, cls: type[M]) -> M:
    """Decode and require a particular message type."""
    message = decode(payload)
    if not isinstance(message, cls):
        raise DecodeError(
            "wrong_kind", f"expected {cls.__name__}, got {type(message).__name__}"
        )
    return message
