"""Real records through the real broker at max speed, consumed back bit-exact and in order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import wfdb
from prometheus_client import CollectorRegistry

from replay.producer import replay
from stream import serde
from stream.errors import DecodeError, ServiceUnavailable
from stream.kafka import DeadLetterPublisher, Producer, ensure_topics, start_reader
from stream.schemas import DeadLetter, SampleChunk
from stream.services import free_port
from stream.settings import Settings, load

pytestmark = [pytest.mark.integration]

MINUTES = 5


def _settings(kafka_bootstrap: str, topic_prefix: str, **kw: object) -> Settings:
    return load(environ={}, kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix,
                kafka_idempotence=False, partitions=4, **kw)


async def _read_all(settings: Settings, topic: str, n_messages: int) -> list[object]:
    consumer = await start_reader(settings, topic)
    records: list[object] = []
    try:
        while len(records) < n_messages:
            batches = await consumer.getmany(timeout_ms=2000)
            if not batches:
                break
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.mark.data
async def test_two_records_bit_exact_and_in_order(
    kafka_bootstrap: str, topic_prefix: str, mitdb_dir: Path
) -> None:
    settings = _settings(kafka_bootstrap, topic_prefix, data_dir=mitdb_dir, records="100,203",
                         speed="max", chunk_s=1.0, duration_s=MINUTES * 60.0, progress_s=0)
    await ensure_topics(settings)
    async with Producer(settings) as producer:
        progress = await replay(settings, producer)
    n_chunk = MINUTES * 60
    assert progress.messages == 2 * n_chunk

    records = await _read_all(settings, settings.topic("samples"), 2 * n_chunk)
    assert len(records) == 2 * n_chunk
    chunks: dict[str, list[SampleChunk]] = {}
    for record in records:
        chunk = serde.decode_as(record.value, SampleChunk)  # type: ignore[attr-defined]
        assert record.key == chunk.patient_id.encode()  # type: ignore[attr-defined]
        chunks.setdefault(chunk.patient_id, []).append(chunk)
    assert set(chunks) == {"mitdb-100", "mitdb-203"}
    n = MINUTES * 60 * 360
    for pid, got in chunks.items():
        ref = wfdb.rdrecord(str(mitdb_dir / pid.split("-")[1]), physical=False, sampto=n).d_signal
        assert [c.first_sample_index for c in got] == list(range(0, n, 360))  # in order, no gap
        assert all(c.fs_hz == 360.0 and c.samples.shape == (360, 2) for c in got)
        sent = np.concatenate([c.samples for c in got])
        assert hashlib.sha256(sent.tobytes()).hexdigest() == hashlib.sha256(
            np.ascontiguousarray(ref, dtype=np.int16).tobytes()).hexdigest()
        assert np.array_equal(sent, ref)


async def test_dead_letter_is_published_counted_and_readable(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = _settings(kafka_bootstrap, topic_prefix)
    assert await ensure_topics(settings) == await ensure_topics(settings)  # existing is fine
    bad = b"EG\x01\x07garbage"
    async with Producer(settings) as producer:
        await producer.send_raw(settings.topic("samples"), bad, b"mitdb-100")
    (record,) = await _read_all(settings, settings.topic("samples"), 1)
    with pytest.raises(DecodeError) as err:
        serde.decode(record.value)  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    async with Producer(settings) as producer:
        letter = await DeadLetterPublisher(producer, settings, registry).publish(record, err.value)
    assert registry.get_sample_value(
        "ecgmon_dead_letters_total", {"reason": "unknown_kind", "topic": settings.topic("samples")}
    ) == 1.0
    (dead,) = await _read_all(settings, settings.topic("deadletter"), 1)
    got = serde.decode_as(dead.value, DeadLetter)  # type: ignore[attr-defined]
    assert got == letter
    assert (got.source_topic, got.offset, got.key, got.reason, got.payload) == (
        settings.topic("samples"), record.offset, b"mitdb-100", "unknown_kind", bad)  # type: ignore[attr-defined]


async def test_unreachable_broker_names_the_env_var() -> None:
    settings = load(environ={}, kafka_bootstrap=f"127.0.0.1:{free_port()}", connect_attempts=2,
                    connect_backoff_s=0.01)
    with pytest.raises(ServiceUnavailable, match="ECGMON_KAFKA_BOOTSTRAP"):
        await Producer(settings).start()


async def test_idempotent_producer_against_tansu_says_how_to_fix(kafka_bootstrap: str) -> None:
    settings = load(environ={}, kafka_bootstrap=kafka_bootstrap, kafka_idempotence=True)
    with pytest.raises(ServiceUnavailable, match="ECGMON_KAFKA_IDEMPOTENCE=false"):
        await Producer(settings).start()
