"""Round trips of every message kind and a precise DecodeError reason for every kind of damage."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream import serde
from stream.errors import DecodeError
from stream.schemas import (
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

ids = st.text(st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=40)
texts = st.text(max_size=200)
i64 = st.integers(-(2**63), 2**63 - 1)
nonneg = st.integers(0, 2**63 - 1)
fs = st.floats(1.0, serde.MAX_FS_HZ)


@st.composite
def chunks(draw: st.DrawFn) -> SampleChunk:
    n_leads = draw(st.integers(1, serde.MAX_LEADS))
    n = draw(st.integers(0, 300))
    data = draw(st.binary(min_size=2 * n * n_leads, max_size=2 * n * n_leads))
    return SampleChunk(
        patient_id=draw(ids),
        record=draw(st.text(max_size=20)),
        lead_names=tuple(draw(st.lists(st.text(max_size=8), min_size=n_leads, max_size=n_leads))),
        fs_hz=draw(fs),
        adc_gain=tuple(draw(st.lists(st.floats(1e-3, 1e6), min_size=n_leads, max_size=n_leads))),
        adc_baseline=tuple(
            draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n_leads, max_size=n_leads))
        ),
        first_sample_index=draw(nonneg),
        samples=np.frombuffer(data, dtype=np.int16).reshape(n, n_leads),
        produced_at_ns=draw(i64),
    )


beats = st.builds(
    Beat, patient_id=ids, sample_index=nonneg, fs_hz=fs, beat_class=st.sampled_from(BeatClass),
    confidence=st.floats(0.0, 1.0), rr_prev_s=st.floats(0.0, 1e6), detected_at_ns=i64,
    chunk_produced_at_ns=i64,
)


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    sample = draw(nonneg)
    return Alert(
        patient_id=draw(ids), alarm_type=draw(ids), priority=draw(st.sampled_from(AlarmPriority)),
        phase=draw(st.sampled_from(AlarmPhase)), onset_sample_index=draw(st.integers(0, sample)),
        sample_index=sample, fs_hz=draw(fs), heart_rate_bpm=draw(st.floats(0.0, 1000.0)),
        message=draw(texts), created_at_ns=draw(i64), chunk_produced_at_ns=draw(i64),
        technical=draw(st.booleans()),
        details=tuple(draw(st.lists(st.tuples(st.text(max_size=20), texts), max_size=5))),
    )


dead_letters = st.builds(
    DeadLetter, source_topic=st.text(max_size=50), partition=st.integers(0, 2**31 - 1),
    offset=nonneg, key=st.binary(max_size=100), reason=st.sampled_from(serde.REASONS),
    detail=texts, payload=st.binary(max_size=2000), created_at_ns=i64,
)

settings_changes = st.builds(
    AlarmSettings, patient_id=ids, request_id=ids, user=ids, set_at_ns=nonneg,
    hr_low_bpm=st.floats(0.0, 1000.0), hr_high_bpm=st.floats(0.0, 1000.0),
    pause_s=st.floats(0.0, 60.0), disabled=st.lists(ids, max_size=serde.MAX_DISABLED).map(tuple),
)

discharges = st.builds(Discharge, patient_id=ids, request_id=ids, user=ids, discharged_at_ns=nonneg)

messages = st.one_of(chunks(), beats, alerts(), dead_letters, settings_changes, discharges)


@given(messages)
def test_every_kind_round_trips(message: Message) -> None:
    payload = serde.encode(message)
    assert serde.decode(payload) == message
    assert serde.decode(memoryview(payload)) == message
    assert serde.decode_as(payload, type(message)) == message


@given(messages, st.data())
def test_any_truncation_is_a_decode_error(message: Message, data: st.DataObject) -> None:
    payload = serde.encode(message)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError) as err:
        serde.decode(payload[:cut])
    assert err.value.reason in ("truncated", "wrong_length")


@given(messages)
def test_trailing_bytes_are_rejected(message: Message) -> None:
    with pytest.raises(DecodeError) as err:
        serde.decode(serde.encode(message) + b"\0")
    expected = "wrong_length" if isinstance(message, SampleChunk) else "trailing_bytes"
    assert err.value.reason == expected


def _chunk(**kw: object) -> SampleChunk:
    fields: dict[str, object] = dict(
        patient_id="mitdb-100", record="100", lead_names=("MLII", "V5"), fs_hz=360.0,
        adc_gain=(200.0, 200.0), adc_baseline=(1024, 1024), first_sample_index=0,
        samples=np.arange(20, dtype=np.int16).reshape(10, 2), produced_at_ns=1,
    )
    fields.update(kw)
    return SampleChunk(**fields)  # type: ignore[arg-type]


def _beat(**kw: object) -> Beat:
    fields: dict[str, object] = dict(
        patient_id="p", sample_index=10, fs_hz=360.0, beat_class=BeatClass.N, confidence=0.7,
        rr_prev_s=0.8, detected_at_ns=1, chunk_produced_at_ns=2,
    )
    fields.update(kw)
    return Beat(**fields)  # type: ignore[arg-type]


def _settings(**kw: object) -> AlarmSettings:
    base: dict[str, object] = dict(patient_id="p1", request_id="r1", user="nurse a", set_at_ns=1,
                                   hr_low_bpm=50.0, hr_high_bpm=130.0, pause_s=2.5,
                                   disabled=("atrial_fibrillation",))
    return AlarmSettings(**{**base, **kw})  # type: ignore[arg-type]


def _reason(payload: bytes | None) -> str:
    with pytest.raises(DecodeError) as err:
        serde.decode(payload)
    return err.value.reason


def _patch_chunk_header(payload: bytes, fmt: str, field_offset: int, value: object) -> bytes:
    """Overwrite a fixed field of the reference chunk (offsets from the layout, see _fs_offset)."""
    out = bytearray(payload)
    struct.pack_into("<" + fmt, out, field_offset, value)
    return bytes(out)


# Layout of _chunk(): header 4, "mitdb-100" 1+9, "100" 1+3, leads 1, "MLII" 1+4, "V5" 1+2.
_FS_AT = 4 + 10 + 4 + 1 + 5 + 3
_GAIN_AT = _FS_AT + 8
_FIRST_AT = _GAIN_AT + 16 + 8
_N_AT = _FIRST_AT + 16


def test_layout_offsets_match_the_reference_chunk() -> None:
    payload = serde.encode(_chunk())
    assert struct.unpack_from("<d", payload, _FS_AT)[0] == 360.0
    assert struct.unpack_from("<I", payload, _N_AT)[0] == 10


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: None, "truncated"),
        (lambda p: b"", "truncated"),
        (lambda p: p[:3], "truncated"),
        (lambda p: b"XX" + p[2:], "bad_magic"),
        (lambda p: p[:2] + bytes([2]) + p[3:], "unsupported_version"),
        (lambda p: p[:2] + bytes([0]) + p[3:], "unsupported_version"),
        (lambda p: p[:3] + bytes([9]) + p[4:], "unknown_kind"),
        (lambda p: p[:3] + bytes([0]) + p[4:], "unknown_kind"),
        (lambda p: p + b"\0" * (serde.MAX_PAYLOAD_BYTES), "too_large"),
        (lambda p: p + b"\0\0", "wrong_length"),
        (lambda p: p[:-2], "wrong_length"),
        (lambda p: _patch_chunk_header(p, "I", _N_AT, 11), "wrong_length"),
        (lambda p: _patch_chunk_header(p, "d", _FS_AT, math.nan), "invalid_field"),
        (lambda p: _patch_chunk_header(p, "d", _FS_AT, math.inf), "invalid_field"),
        (lambda p: _patch_chunk_header(p, "d", _FS_AT, 0.0), "invalid_field"),
        (lambda p: _patch_chunk_header(p, "d", _GAIN_AT, -1.0), "invalid_field"),
        (lambda p: _patch_chunk_header(p, "q", _FIRST_AT, -5), "invalid_field"),
        (lambda p: p[:4] + b"\x00" + p[14:], "invalid_field"),  # empty patient id
        (lambda p: p[:5] + b"\xff" + p[6:], "invalid_field"),  # patient id not UTF-8
        (lambda p: p[:18] + b"\x00" + p[19:], "invalid_field"),  # zero leads
        (lambda p: p[:18] + b"\x11" + p[19:], "invalid_field"),  # 17 leads
    ],
)
def test_damaged_chunk_gives_precise_reason(damage: object, reason: str) -> None:
    payload = serde.encode(_chunk())
    assert _reason(damage(payload)) == reason  # type: ignore[operator]


@pytest.mark.parametrize(
    ("beat_kw", "offset_fmt", "value"),
    [
        ({}, (8, "d"), math.nan),  # fs_hz
        ({}, (8 + 8, "B"), 200),  # class code
        ({}, (8 + 8 + 1, "d"), 1.5),  # confidence
        ({}, (8 + 8 + 1 + 8, "d"), -0.1),  # rr_prev_s
        ({}, (0, "q"), -1),  # sample_index
    ],
)
def test_invalid_beat_fields(beat_kw: dict[str, object], offset_fmt: tuple[int, str], value: object) -> None:
    payload = bytearray(serde.encode(_beat(**beat_kw)))
    body = 4 + 1 + 1  # header, then "p" with its length byte
    struct.pack_into("<" + offset_fmt[1], payload, body + offset_fmt[0], value)
    assert _reason(bytes(payload)) == "invalid_field"


def test_alert_with_onset_after_sample_is_invalid() -> None:
    good = Alert("p", "asystole", AlarmPriority.HIGH, AlarmPhase.ONSET, 5, 5, 360.0, 0.0, "m", 1, 2)
    payload = bytearray(serde.encode(good))
    onset_at = 4 + 2 + 9 + 2
    struct.pack_into("<q", payload, onset_at, 6)
    assert _reason(bytes(payload)) == "invalid_field"


def test_decode_as_wrong_kind() -> None:
    with pytest.raises(DecodeError) as err:
        serde.decode_as(serde.encode(_beat()), SampleChunk)
    assert err.value.reason == "wrong_kind"


def test_reasons_are_all_listed() -> None:
    assert {"truncated", "bad_magic", "unsupported_version", "unknown_kind", "too_large",
            "trailing_bytes", "invalid_field", "wrong_length", "wrong_kind"} == set(serde.REASONS)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: _chunk(fs_hz=math.nan),
        lambda: _chunk(adc_gain=(200.0,)),
        lambda: _chunk(samples=np.zeros((3, 3), dtype=np.int16)),
        lambda: _chunk(samples=np.zeros((3, 2), dtype=np.int32)),
        lambda: _chunk(patient_id=""),
        lambda: _chunk(first_sample_index=-1),
        lambda: _beat(confidence=math.nan),
        lambda: _beat(sample_index=2**64),
        lambda: _chunk(patient_id="x" * 300),
        lambda: _settings(hr_low_bpm=math.inf),
        lambda: _settings(pause_s=-1.0),
        lambda: _settings(user=""),
        lambda: _settings(request_id="\n"),
        lambda: _settings(disabled=("",)),
        lambda: _settings(disabled=("pause",) * (serde.MAX_DISABLED + 1)),
        lambda: _settings(set_at_ns=-5),
        lambda: Discharge("p1", "d1", "", 1),
        lambda: Discharge("", "d1", "nurse a", 1),
        lambda: Discharge("p1", "d1", "nurse a", -1),
    ],
)
def test_encode_rejects_what_decode_would_reject(bad: object) -> None:
    with pytest.raises(ValueError):
        serde.encode(bad())  # type: ignore[operator]


def test_decoded_samples_are_int16_readonly_and_exact() -> None:
    chunk = _chunk()
    out = serde.decode_as(serde.encode(chunk), SampleChunk)
    assert out.samples.dtype == np.int16
    assert not out.samples.flags.writeable
    assert np.array_equal(out.samples, chunk.samples)
    assert np.allclose(out.millivolts(), (chunk.samples - 1024) / 200.0)
