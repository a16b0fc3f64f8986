"""Waveform decimation is independent of chunking; the trace history is the newest stretch
without gaps; beat frames carry a median heart rate."""

from __future__ import annotations

import numpy as np

from detector.gateway.feeds import Decimator, PatientLive, TraceHistory, alert_frame, is_stream_id
from detector.gateway.ws import natural_key
from stream.schemas import AlarmPhase, AlarmPriority, Alert, Beat, BeatClass, SampleChunk


def _run(x: np.ndarray, cuts: list[int], factor: int) -> tuple[int, np.ndarray]:
    dec = Decimator(factor)
    outs, first = [], None
    for a, b in zip([0, *cuts], [*cuts, len(x)], strict=True):
        start, out = dec.update(a, x[a:b])
        if len(out):
            first = start if first is None else first
            outs.append(out)
    return int(first or 0), np.concatenate(outs)


def test_decimation_does_not_depend_on_chunk_boundaries() -> None:
    x = np.random.default_rng(1).normal(size=3600)
    whole = _run(x, [], 3)
    assert whole[0] == 0 and np.allclose(whole[1], x.reshape(-1, 3).mean(axis=1))
    for cuts in ([1, 2, 1000, 1001], [7, 359, 360, 2000], list(range(5, 3600, 89))):
        first, out = _run(x, cuts, 3)
        assert first == 0 and np.allclose(out, whole[1])


def test_gap_restarts_at_the_next_block_boundary() -> None:
    dec = Decimator(3)
    dec.update(0, np.ones(4))
    start, out = dec.update(100, np.arange(10.0))  # 100 is not a multiple of 3: skip 2 samples
    assert start == 34 and np.allclose(out, [3.0, 6.0])


def test_waveform_frame_uses_mlii_in_millivolts_at_120_hz() -> None:
    samples = np.zeros((360, 2), np.int16)
    samples[:, 1] = 200 + 1024  # lead 1 is MLII: 200 ADC units above baseline 1024 = 1 mV
    chunk = SampleChunk("p1", "100", ("V5", "MLII"), 360.0, (100.0, 200.0), (0, 1024), 720,
                        samples, 0)
    frame = PatientLive().waveform(chunk)
    assert frame is not None
    assert frame["lead"] == "MLII" and frame["fs_hz"] == 120.0
    assert frame["first_sample_index"] == 240 and frame["t_s"] == 2.0
    assert len(frame["mv"]) == 120 and set(frame["mv"]) == {1.0}


def test_history_keeps_the_newest_seconds_across_chunks() -> None:
    h = TraceHistory(2.0)  # 240 samples at 120 Hz
    x = np.arange(1000.0)
    assert h.frame("p1") is None
    for a, b in [(0, 7), (7, 100), (100, 101), (101, 500), (500, 1000)]:
        h.add("MLII", 120.0, 40 + a, x[a:b])
        frame = h.frame("p1")
        assert frame is not None and len(h) == min(b, 240)
        assert frame["mv"] == list(x[max(0, b - 240):b])  # contiguous, ends at the newest sample
        assert frame["first_sample_index"] == 40 + max(0, b - 240)
    assert frame["t_s"] == round((40 + 760) / 120.0, 4) and frame["history"] is True
    assert frame["lead"] == "MLII" and frame["fs_hz"] == 120.0 and frame["patient_id"] == "p1"
    newest = h.frame("p1", seconds=0.5)
    assert newest is not None and newest["mv"] == list(x[940:]) and newest["first_sample_index"] == 980


def test_history_starts_over_at_a_gap_a_restart_or_another_lead() -> None:
    h = TraceHistory(10.0)
    h.add("MLII", 120.0, 0, np.ones(50))
    h.add("MLII", 120.0, 60, np.full(5, 2.0))  # 10 samples missing: the strip would lie
    frame = h.frame("p1")
    assert frame is not None and frame["first_sample_index"] == 60 and frame["mv"] == [2.0] * 5
    h.add("MLII", 120.0, 0, np.full(3, 3.0))  # the replay started again
    assert h.frame("p1")["mv"] == [3.0] * 3  # type: ignore[index]
    h.add("V5", 125.0, 3, np.full(4, 4.0))  # another lead and rate, though it would "continue"
    frame = h.frame("p1")
    assert frame is not None and frame["lead"] == "V5" and frame["mv"] == [4.0] * 4
    assert frame["fs_hz"] == 125.0 and frame["t_s"] == 0.024
    off = TraceHistory(0.0)
    off.add("MLII", 120.0, 0, np.ones(50))
    assert off.frame("p1") is None


def test_live_waveform_frames_fill_the_history() -> None:
    live = PatientLive()
    mv = []
    for k in range(4):
        samples = np.zeros((360, 1), np.int16)
        samples[:, 0] = np.arange(360) + 360 * k
        frame = live.waveform(SampleChunk("p1", "100", ("MLII",), 360.0, (200.0,), (0,), 360 * k,
                                          samples, 0))
        assert frame is not None and "history" not in frame
        mv += frame["mv"]
    history = live.history.frame("p1")
    assert history is not None and history["mv"] == mv and history["first_sample_index"] == 0


def test_bed_order_compares_numbers_as_numbers() -> None:
    beds = ["bed-10", "bed-2", "bed-1", "icu-3", "bed-2b", "mitdb-100", "mitdb-99"]
    assert sorted(beds, key=natural_key) == [
        "bed-1", "bed-2", "bed-2b", "bed-10", "icu-3", "mitdb-99", "mitdb-100"]


def test_beat_frames_have_a_median_heart_rate() -> None:
    live = PatientLive()
    frame = {}
    for i, rr in enumerate([1.0, 1.0, 0.5, 1.0, 5.0]):  # 5 s is not a plausible RR: ignored
        frame = live.add_beat(Beat("p1", 360 * (i + 1), 360.0, BeatClass.V, 0.9, rr, 0, 0))
    assert frame["hr_bpm"] == 60.0 and frame["class"] == "V" and frame["t_s"] == 5.0
    assert live.last_class == "V" and len(live.recent) == 5


def test_alert_frame_fields() -> None:
    a = Alert("p1", "vtach", AlarmPriority.HIGH, AlarmPhase.ONSET, 720, 1080, 360.0, 150.0, "VT",
              1, 1)
    f = alert_frame("5-0", a)
    assert f == {"type": "alert", "id": "5-0", "alert_id": a.alert_id, "alarm_id": a.alarm_id,
                 "patient_id": "p1", "alarm_type": "vtach", "priority": "high", "phase": "onset",
                 "technical": False, "onset_t_s": 2.0, "t_s": 3.0, "heart_rate_bpm": 150.0,
                 "message": "VT", "details": {}}
    ended = Alert("p1", "atrial_fibrillation", AlarmPriority.MEDIUM, AlarmPhase.END, 720, 1080, 360.0,
                  80.0, "atrial_fibrillation ended", 1, 1,
                  details=(("reason", "turned off for this patient by nurse a"),))
    assert alert_frame("6-0", ended)["details"] == {"reason": "turned off for this patient by nurse a"}
    assert is_stream_id("1700000000000-0") and is_stream_id("0")
    assert not is_stream_id("$") and not is_stream_id("1-2-3") and not is_stream_id("")
