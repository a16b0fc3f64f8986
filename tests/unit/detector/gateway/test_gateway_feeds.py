"""Waveform decimation is independent of chunking; beat frames carry a median heart rate."""

from __future__ import annotations

import numpy as np

from detector.gateway.feeds import Decimator, PatientLive, alert_frame, is_stream_id
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
                 "message": "VT"}
    assert is_stream_id("1700000000000-0") and is_stream_id("0")
    assert not is_stream_id("$") and not is_stream_id("1-2-3") and not is_stream_id("")
