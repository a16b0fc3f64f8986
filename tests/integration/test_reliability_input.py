"""Issue #8: bad input on the live path, against the real broker and Redis.

- Garbage on the samples topic, interleaved with a real patient's chunks in the same
  partition: every bad message is dead-lettered with its reason and payload, and the
  patient's beats still come.
- A patient whose sampling rate changes mid-stream (360 Hz, then 250 Hz): detection
  restarts for that patient (WARNING), beats go on at the new rate, nothing crashes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
import wfdb
from prometheus_client import CollectorRegistry
from scipy.signal import resample_poly

from detector.service import DetectorService
from replay.producer import replay
from stream import serde
from stream.kafka import Producer, ensure_topics, start_reader
from stream.schemas import Beat, BeatClass, DeadLetter, SampleChunk
from stream.settings import Settings, load
from tests.integration.test_reliability_redis import _run_until

pytestmark = [pytest.mark.integration, pytest.mark.data]

PATIENT = "mitdb-100"


def _settings(kafka: str, redis_url: str, prefix: str, mitdb: Path) -> Settings:
    return load(environ={}, kafka_bootstrap=kafka, redis_url=redis_url, topic_prefix=prefix,
                redis_prefix=prefix, kafka_idempotence=False, partitions=2, data_dir=mitdb,
                records="100", speed="max", chunk_s=0.25, duration_s=60.0, progress_s=0)


def _garbage() -> list[tuple[bytes, str]]:
    """Bad payloads and the dead-letter reason each must get."""
    chunk = SampleChunk(PATIENT, "100", ("MLII", "V5"), 360.0, (200.0, 200.0), (1024, 1024),
                        10**9, np.zeros((90, 2), dtype=np.int16), 1)
    good = serde.encode(chunk)
    beat = serde.encode(Beat(PATIENT, 5, 360.0, BeatClass.N, 0.9, 0.8, 1, 1))
    return [
        (b"", "truncated"),
        (b"{\"samples\": [1, 2, 3]}", "bad_magic"),
        (good[:40], "truncated"),
        (good + b"\x00", "wrong_length"),  # the sample block is the tail: its size is checked
        (good[:3] + b"\x09" + good[4:], "unknown_kind"),
        (good[:2] + b"\x63" + good[3:], "unsupported_version"),
        (beat, "wrong_kind"),  # a valid message of the wrong kind for the samples topic
        (np.random.default_rng(8).bytes(300), "bad_magic"),
    ]


async def _read_all(settings: Settings, kind: str) -> list[bytes]:
    reader = await start_reader(settings, settings.topic(kind))
    values: list[bytes] = []
    try:
        while batch := await reader.getmany(timeout_ms=1500):
            for records in batch.values():
                values += [r.value for r in records]
    finally:
        await reader.stop()
    return values


async def test_garbage_is_dead_lettered_with_its_reason_and_good_chunks_flow(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, mitdb_dir)
    await ensure_topics(settings)
    garbage = _garbage()
    samples = settings.topic("samples")
    async with Producer(settings) as producer:
        for value, _ in garbage[:4]:
            await producer.send_raw(samples, value, PATIENT.encode())
        await producer.flush()
        progress = await replay(settings, producer)
        await producer.flush()
        for value, _ in garbage[4:]:
            await producer.send_raw(samples, value, PATIENT.encode())
        # one more good chunk after the garbage: consuming it means the garbage was passed
        last = SampleChunk(PATIENT, "100", ("MLII", "V5"), 360.0, (200.0, 200.0), (1024, 1024),
                           60 * 360, np.full((90, 2), 1024, dtype=np.int16), 1)
        await producer.send(samples, last, PATIENT)
    n = progress.messages + 1

    registry = CollectorRegistry()
    box: list[DetectorService] = []
    await _run_until(settings, registry, n, box)

    letters = [serde.decode_as(v, DeadLetter) for v in await _read_all(settings, "deadletter")]
    assert sorted((d.payload, d.reason) for d in letters) == sorted(garbage)
    assert {d.source_topic for d in letters} == {samples}
    assert all(d.key == PATIENT.encode() and d.detail for d in letters)
    by_reason = {s.labels["reason"]: s.value for m in registry.collect()
                 if m.name == "ecgmon_dead_letters" for s in m.samples
                 if s.name == "ecgmon_dead_letters_total"}
    assert sum(by_reason.values()) == len(garbage)
    assert by_reason["bad_magic"] == 2
    assert registry.get_sample_value("ecgmon_chunks_consumed_total") == n

    client = aioredis.Redis.from_url(redis_url)
    try:
        beats = await client.xlen(f"{settings.redis_prefix}:beats:{PATIENT}")
    finally:
        await client.aclose()
    assert beats >= 60, beats  # record 100 runs at ~75 bpm


def _chunks(mitdb: Path, pid: str) -> list[SampleChunk]:
    """30 s of record 100 at 360 Hz, then the next 30 s resampled to 250 Hz."""
    rec = wfdb.rdrecord(str(mitdb / "100"), sampto=60 * 360, physical=False)
    d = np.asarray(rec.d_signal, dtype=np.int16)
    gain, base = tuple(float(g) for g in rec.adc_gain), tuple(int(b) for b in rec.baseline)
    leads = tuple(rec.sig_name)
    out = []
    for i in range(0, 30 * 360, 90):
        out.append(SampleChunk(pid, "100", leads, 360.0, gain, base, i, d[i : i + 90], 1))
    low = np.round(resample_poly(d[30 * 360 :].astype(np.float64) - base, 25, 36) + base)
    low = low.astype(np.int16)
    for i in range(0, len(low) - 62, 62):  # ~0.25 s at 250 Hz; indices continue in time
        out.append(SampleChunk(pid, "100", leads, 250.0, gain, base, 30 * 250 + i,
                               low[i : i + 62], 1))
    return out


async def test_sampling_rate_change_restarts_the_patient_and_beats_go_on(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, mitdb_dir)
    await ensure_topics(settings)
    chunks = _chunks(mitdb_dir, "fs-change")
    async with Producer(settings) as producer:
        for c in chunks:
            await producer.send(settings.topic("samples"), c, c.patient_id)
    caplog.set_level(logging.WARNING, logger="detector.service")
    registry = CollectorRegistry()
    box: list[DetectorService] = []
    await _run_until(settings, registry, len(chunks), box)

    assert any(r.getMessage() == "sampling rate or leads changed: detection restarts"
               for r in caplog.records)
    slot = box[0].slots["fs-change"]
    assert slot.monitor.fs_hz == 250.0
    beats = [serde.decode_as(v, Beat) for v in await _read_all(settings, "beats")]
    fast = [b for b in beats if b.fs_hz == 360.0]
    slow = [b for b in beats if b.fs_hz == 250.0]
    assert len(fast) >= 30 and len(slow) >= 30, (len(fast), len(slow))  # ~37 beats each half
    assert all(7500 <= b.sample_index < 15000 for b in slow)
