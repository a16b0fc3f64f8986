"""Replay planning, chunking and pacing, without a broker."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from replay import producer as rp
from replay.source import Recording
from stream import serde
from stream.schemas import Message, SampleChunk
from stream.settings import load


def _settings(**kw: Any) -> Any:
    return load(environ={}, **kw)


# --- virtual patients ---------------------------------------------------------------------


def test_one_patient_per_record_by_default() -> None:
    plans = rp.plan_patients(_settings(records="100,203", start_s=5.0))
    assert plans == [rp.PatientPlan("mitdb-100", "100", 5.0), rp.PatientPlan("mitdb-203", "203", 5.0)]


def test_fewer_patients_than_records_takes_the_first() -> None:
    assert [p.record for p in rp.plan_patients(_settings(records="100,203,210", patients=2))] == [
        "100", "203"]


def test_virtual_patients_reuse_records_with_staggered_starts() -> None:
    plans = rp.plan_patients(_settings(records="100,203", patients=5, stagger_s=100.0, start_s=1.0))
    assert [(p.patient_id, p.record, p.start_s) for p in plans] == [
        ("mitdb-100", "100", 1.0), ("mitdb-203", "203", 1.0),
        ("mitdb-100-v1", "100", 101.0), ("mitdb-203-v1", "203", 101.0),
        ("mitdb-100-v2", "100", 201.0),
    ]
    assert len({p.patient_id for p in plans}) == 5


# --- chunking -----------------------------------------------------------------------------


def test_chunks_cover_the_record_once_with_a_short_last_chunk() -> None:
    spans = list(rp.chunk_spans(10, 0, 4, loop=False))
    assert spans == [(0, 0, 4), (4, 4, 8), (8, 8, 10)]


def test_start_offset_keeps_record_positions() -> None:
    assert list(rp.chunk_spans(10, 3, 4, loop=False)) == [(3, 3, 7), (7, 7, 10)]
    assert list(rp.chunk_spans(10, 10, 4, loop=False)) == []


def test_loop_wraps_the_record_but_the_stream_index_keeps_counting() -> None:
    spans = list(rp.chunk_spans(10, 6, 4, loop=True, limit=15))
    assert spans == [(6, 6, 10), (10, 0, 4), (14, 4, 8), (18, 8, 10), (20, 0, 1)]
    indices = [i for i, _, _ in spans]
    assert indices == sorted(indices)
    # contiguous: each chunk starts where the previous ended
    assert all(spans[k][0] + spans[k][2] - spans[k][1] == spans[k + 1][0] for k in range(len(spans) - 1))
    assert sum(b - a for _, a, b in spans) == 15


def test_limit_without_loop() -> None:
    assert list(rp.chunk_spans(100, 0, 30, loop=False, limit=45)) == [(0, 0, 30), (30, 30, 45)]


@pytest.mark.parametrize(("n", "start", "chunk"), [(1, 0, 1), (7, 2, 3), (650_000, 0, 90), (37, 36, 40)])
def test_concatenated_chunks_equal_the_record(n: int, start: int, chunk: int) -> None:
    data = np.arange(n)
    out = np.concatenate([data[a:b] for _, a, b in rp.chunk_spans(n, start, chunk, loop=False)])
    assert np.array_equal(out, data[start:])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        list(rp.chunk_spans(0, 0, 4, loop=False))
    with pytest.raises(ValueError):
        list(rp.chunk_spans(10, 0, 0, loop=False))


# --- pacing -------------------------------------------------------------------------------


def test_pacing_is_computed_from_the_sample_index() -> None:
    pacer = rp.Pacer(fs_hz=360.0, speed=1.0, t0=100.0)
    assert pacer.due(0) == 100.0
    assert pacer.due(360) == pytest.approx(101.0)
    assert pacer.delay(90, now=100.0) == pytest.approx(0.25)
    assert pacer.delay(90, now=100.3) == 0.0  # late: send at once, never negative


def test_pacing_speed_factor_and_max() -> None:
    assert rp.Pacer(360.0, 10.0, 0.0).due(3600) == pytest.approx(1.0)
    assert rp.Pacer(360.0, None, 5.0).delay(10**9, now=5.0) == 0.0


def test_pacing_does_not_accumulate_drift() -> None:
    """A late wake-up (e.g. a 7 ms oversleep each time) is caught up by the next delay."""
    pacer = rp.Pacer(fs_hz=360.0, speed=1.0, t0=0.0)
    now, sent = 0.0, 0
    for _ in range(1000):
        sent += 90
        now += pacer.delay(sent, now) + 0.007  # the scheduler always wakes 7 ms late
    # after 1000 chunks (250 s) we are still only one oversleep behind, not 7 s
    assert now - sent / 360.0 == pytest.approx(0.007)


# --- the replay loop with a fake producer and an injected clock ------------------------------


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message, str]] = []
        self.sent_bytes = 0
        self.flushed = 0

    async def send(self, topic: str, message: Message, key: str) -> None:
        self.sent_bytes += len(serde.encode(message))
        self.sent.append((topic, message, key))

    async def flush(self) -> None:
        self.flushed += 1


def _recording(name: str, n: int) -> Recording:
    samples = np.arange(2 * n, dtype=np.int16).reshape(n, 2)
    return Recording(name, 100.0, ("MLII", "V1"), (200.0, 200.0), (1024, 1024), samples)


async def test_replay_max_speed_sends_every_sample_in_order_per_patient() -> None:
    recs = {"a": _recording("a", 1000), "b": _recording("b", 555)}
    fake = FakeProducer()
    s = _settings(records="a,b", patients=3, speed="max", chunk_s=0.5, stagger_s=2.0, progress_s=0)
    progress = await rp.replay(s, fake, recordings=recs)  # type: ignore[arg-type]
    assert fake.flushed == 1
    by_patient: dict[str, list[SampleChunk]] = {}
    for topic, msg, key in fake.sent:
        assert topic == "ecgmon.samples" and isinstance(msg, SampleChunk) and key == msg.patient_id
        by_patient.setdefault(key, []).append(msg)
    assert set(by_patient) == {"mitdb-a", "mitdb-b", "mitdb-a-v1"}
    for pid, chunks in by_patient.items():
        rec = recs[chunks[0].record]
        start = 200 if pid.endswith("-v1") else 0
        assert [c.first_sample_index for c in chunks] == list(range(start, rec.n_samples, 50))
        assert np.array_equal(np.concatenate([c.samples for c in chunks]), rec.samples[start:])
    assert progress.messages == len(fake.sent)
    assert progress.signal_s == pytest.approx((1000 + 555 + 800) / 100.0)


@pytest.mark.parametrize("late_s", [0.0, 0.007])
async def test_replay_real_time_paces_with_the_injected_clock(late_s: float) -> None:
    """2x speed, 1 s chunks: a chunk every 0.5 s; a scheduler waking late is caught up."""
    clock = [10.0]
    sleeps: list[float] = []
    sent_at: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds + late_s

    fake = FakeProducer()
    real_send = fake.send

    async def send(topic: str, message: Message, key: str) -> None:
        sent_at.append(clock[0])
        await real_send(topic, message, key)

    fake.send = send  # type: ignore[method-assign]
    s = _settings(records="a", speed="2", chunk_s=1.0, duration_s=4.0, progress_s=0)
    await rp.replay(s, fake, recordings={"a": _recording("a", 1000)},  # type: ignore[arg-type]
                    clock=lambda: clock[0], sleep=fake_sleep)
    assert sleeps == pytest.approx([0.5] + [0.5 - late_s] * 3)
    assert sent_at == pytest.approx([10.5 + late_s, 11.0 + late_s, 11.5 + late_s, 12.0 + late_s])


async def test_stop_ends_the_replay_and_flushes() -> None:
    fake = FakeProducer()
    stop = asyncio.Event()
    s = _settings(records="a", speed="1", chunk_s=0.25, loop=True, progress_s=0)
    task = asyncio.create_task(
        rp.replay(s, fake, stop, recordings={"a": _recording("a", 1000)})  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.6)
    stop.set()
    progress = await asyncio.wait_for(task, 2)
    assert 1 <= progress.messages <= 3 and fake.flushed == 1


def test_progress_line() -> None:
    p = rp.Progress(patients=4, active=3, messages=100, payload_bytes=2_000_000, signal_s=50.0,
                    started=0.0)
    assert p.line(now=2.0) == "3/4 patients, 50 s of signal sent, 50 msg/s, 1.0 MB/s"


def test_progress_printer_uses_one_tty_line_or_log_lines() -> None:
    import io

    from replay.cli import progress_printer

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    show = progress_printer(tty)
    show(rp.Progress(patients=2, active=2, messages=1, payload_bytes=1, signal_s=1.0))
    show(rp.Progress(patients=2, active=1, messages=2, payload_bytes=2, signal_s=2.0))
    assert tty.getvalue().count("\r") == 2 and "\n" not in tty.getvalue()
    assert progress_printer(io.StringIO()) is rp.log_progress
