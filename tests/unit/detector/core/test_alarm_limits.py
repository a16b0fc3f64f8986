"""A patient's own alarm limits: checking, applying to a running engine, surviving snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from detector.core.alarms import OPTIONAL_ALARMS, AlarmLimits
from detector.core.monitor import PatientMonitor
from detector.core.rhythm import AlarmConfig, AlarmEngine, AlarmType, ClassifiedBeat
from stream.schemas import AlarmPhase, BeatClass

FS = 250.0


def _sinus(start_s: float, seconds: float, bpm: float) -> list[ClassifiedBeat]:
    rr = 60.0 / bpm
    return [ClassifiedBeat(int(round((start_s + i * rr) * FS)), BeatClass.N)
            for i in range(int(seconds / rr))]


def _irregular(start_s: float, n: int, seed: int = 7) -> list[ClassifiedBeat]:
    rng, t, out = np.random.default_rng(seed), start_s, []
    for _ in range(n):
        out.append(ClassifiedBeat(int(t * FS), BeatClass.N))
        t += float(rng.uniform(0.4, 1.1))
    return out


def test_checked_names_the_wrong_value() -> None:
    ok = AlarmLimits.checked(50, 130, 2.5, ["atrial_fibrillation"])
    assert ok == AlarmLimits(50.0, 130.0, 2.5, frozenset({AlarmType.AFIB}))
    for args, words in [((10, 130, 2.0), "hr_low_bpm must be 15-120 bpm"),
                        ((50, 400, 2.0), "hr_high_bpm must be 60-300 bpm"),
                        ((50, 130, 5.0), "pause_s must be 1.5-3.5 s"),
                        ((float("nan"), 130, 2.0), "hr_low_bpm"),
                        ((100, 105, 2.0), "at least 10 bpm above")]:
        with pytest.raises(ValueError, match=words):
            AlarmLimits.checked(*args)
    with pytest.raises(ValueError, match="asystole cannot be switched off"):
        AlarmLimits.checked(50, 130, 2.0, ["asystole"])
    with pytest.raises(ValueError, match="unknown alarm type 'afib'"):
        AlarmLimits.checked(50, 130, 2.0, ["afib"])


def test_apply_keeps_what_the_deployment_switched_off_beyond_the_optional_alarms() -> None:
    deployment = AlarmConfig(disabled=frozenset({AlarmType.LEAD_OFF, AlarmType.BIGEMINY}))
    assert AlarmLimits.of(deployment) == AlarmLimits(40.0, 140.0, 2.0, frozenset({AlarmType.BIGEMINY}))
    cfg = AlarmLimits.checked(50, 130, 3.0, ["pause"]).apply(deployment)
    assert (cfg.brady_bpm, cfg.tachy_bpm, cfg.pause_s) == (50.0, 130.0, 3.0)
    assert cfg.disabled == frozenset({AlarmType.LEAD_OFF, AlarmType.PAUSE})  # bigeminy back on
    assert AlarmLimits.of(cfg).to_dict() == {"hr_low_bpm": 50.0, "hr_high_bpm": 130.0,
                                             "pause_s": 3.0, "disabled": ["pause"]}
    assert {a.value for a in OPTIONAL_ALARMS} >= {"atrial_fibrillation", "pause"}


def test_a_raised_low_limit_alarms_at_a_rate_the_default_lets_pass() -> None:
    beats = _sinus(0, 60, 45)  # 45 bpm: above the default 40
    default = AlarmEngine(FS, patient_id="p1")
    assert default.update(beats, now_sample=int(60 * FS)) == []
    eng = AlarmEngine(FS, patient_id="p1")
    eng.update(beats[:10], now_sample=beats[10].sample_index)
    assert eng.reconfigure(AlarmLimits.checked(50, 140, 2.0).apply(eng.config)) == []
    events = eng.update(beats[10:], now_sample=int(60 * FS))
    onsets = [e for e in events if e.alarm_type is AlarmType.EXTREME_BRADY and e.phase is AlarmPhase.ONSET]
    assert len(onsets) == 1 and onsets[0].heart_rate_bpm == 45.0
    assert onsets[0].message == "extreme bradycardia: below 50 bpm"  # the patient's own limit
    assert onsets[0].details == (("limit_bpm", "50"),)
    assert onsets[0].sample_index == beats[10].sample_index  # the first beat after the change


def test_switching_off_an_active_alarm_ends_it_at_once_with_the_reason() -> None:
    eng = AlarmEngine(FS, patient_id="p1")
    beats = _sinus(0, 30, 75) + _irregular(30, 150)
    events = eng.update(beats, now_sample=beats[-1].sample_index + 1)
    assert AlarmType.AFIB in eng.active_alarms
    onset = [e for e in events if e.alarm_type is AlarmType.AFIB and e.phase is AlarmPhase.ONSET][-1]
    ended = eng.reconfigure(AlarmLimits.checked(40, 140, 2.0, ["atrial_fibrillation"]).apply(eng.config),
                            "turned off for this patient by nurse a")
    assert [(e.alarm_type, e.phase, e.alarm_id) for e in ended] == [
        (AlarmType.AFIB, AlarmPhase.END, onset.alarm_id)]
    assert ended[0].details == (("reason", "turned off for this patient by nurse a"),)
    assert ended[0].sample_index == eng.watermark
    more = eng.update(_irregular(beats[-1].sample_index / FS + 0.8, 100, seed=8))
    assert AlarmType.AFIB not in {e.alarm_type for e in more} and AlarmType.AFIB not in eng.active_alarms


def test_a_longer_pause_limit_lets_a_shorter_pause_pass() -> None:
    beats = _sinus(0, 10, 75) + _sinus(11.4, 20, 75)  # the last beat at 8.8 s: a 2.6 s pause
    eng = AlarmEngine(FS, patient_id="p1")
    eng.reconfigure(AlarmLimits.checked(40, 140, 3.0).apply(eng.config))
    assert eng.update(beats) == []
    assert any(e.alarm_type is AlarmType.PAUSE for e in AlarmEngine(FS).update(beats))


def test_only_limits_change_on_a_running_engine() -> None:
    eng = AlarmEngine(FS)
    with pytest.raises(ValueError, match="not asystole_s"):
        eng.reconfigure(AlarmConfig(asystole_s=6.0))


def _monitor() -> tuple[PatientMonitor, np.ndarray]:
    fs, seconds = 360.0, 20
    t = np.arange(int(seconds * fs)) / fs
    x = np.exp(-0.5 * (((t % 0.8) - 0.4) / 0.012) ** 2)[:, None].repeat(2, axis=1)
    return PatientMonitor("p1", fs, ("MLII", "V1"), 1), x


def test_monitor_limits_survive_a_snapshot_and_a_restart_of_detection() -> None:
    mon, x = _monitor()
    mon.ingest(0, x[:3600])
    limits = AlarmLimits.checked(50, 120, 2.5, ["bigeminy"])
    assert mon.set_alarm_limits(limits, change_id="r1") == []
    assert mon.set_alarm_limits(AlarmLimits.checked(45, 120, 2.0), change_id="r1") is None  # seen
    assert mon.alarm_limits == limits
    back = PatientMonitor.from_snapshot(mon.snapshot())
    assert back.alarm_limits == limits and back.config.alarms == mon.config.alarms
    assert back.set_alarm_limits(AlarmLimits.checked(45, 120, 2.0), change_id="r1") is None
    # a long gap restarts detection (a new engine): the patient's limits go on
    back.ingest(3600 + int(60 * 360), x[3600:])
    assert back.alarm_limits == limits


def test_default_monitor_reports_the_deployment_limits() -> None:
    mon, _ = _monitor()
    assert mon.alarm_limits == AlarmLimits.of(AlarmConfig())


def test_a_discharge_ends_every_active_alarm_at_the_watermark_with_the_reason() -> None:
    eng = AlarmEngine(FS, patient_id="p1")
    beats = _sinus(0, 30, 75) + _irregular(30, 150)
    eng.update(beats, now_sample=beats[-1].sample_index + 1)
    eng.update(_sinus(beats[-1].sample_index / FS + 3.0, 1, 75))  # a 3 s gap: a pause too
    active = dict(eng.active_alarms)
    assert {AlarmType.AFIB, AlarmType.PAUSE} <= set(active)
    ended = eng.end_all("patient discharged by nurse b")
    assert [(e.alarm_type, e.onset_sample_index) for e in ended] == sorted(
        active.items(), key=lambda kv: (kv[1], kv[0].value))
    assert all(e.phase is AlarmPhase.END and e.sample_index == eng.watermark
               and e.details == (("reason", "patient discharged by nurse b"),) for e in ended)
    assert eng.active_alarms == {} and eng.end_all("again") == []


def test_a_discharged_monitor_ends_its_alarms_and_drops_the_beats_still_waiting() -> None:
    mon, x = _monitor()
    mon.ingest(0, x[:5000])
    assert mon._waiting  # the newest beat waits for its next R-peak
    mon.engine._onset(AlarmType.PAUSE, mon.engine.watermark, "pause")
    assert [e.phase for e in mon.engine.update([])] == [AlarmPhase.ONSET]
    ended = mon.discharge("patient discharged by nurse b")
    assert [(e.alarm_type, e.phase) for e in ended] == [(AlarmType.PAUSE, AlarmPhase.END)]
    assert not mon._waiting and mon.engine.active_alarms == {}
