"""Alarm engine: every alarm type on synthetic beat streams, lifecycle, suppression, restarts."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.core.rhythm import (
    AlarmConfig,
    AlarmEngine,
    AlarmEvent,
    AlarmType,
    ClassifiedBeat,
    SignalQualityEvent,
)
from stream.schemas import AlarmPhase, AlarmPriority, BeatClass

FS = 250.0
N, V, S = BeatClass.N, BeatClass.V, BeatClass.S


def beats_at(start_s: float, rr_s: float, classes: str) -> list[ClassifiedBeat]:
    """Beats every ``rr_s`` seconds from ``start_s`` with classes from a string like 'NNVN'."""
    return [ClassifiedBeat(int(round((start_s + i * rr_s) * FS)), BeatClass(c))
            for i, c in enumerate(classes)]


def sinus(start_s: float, seconds: float, bpm: float = 75.0) -> list[ClassifiedBeat]:
    rr = 60.0 / bpm
    return beats_at(start_s, rr, "N" * int(seconds / rr))


def run(beats: list[ClassifiedBeat], now_s: float | None = None,
        quality: list[SignalQualityEvent] | None = None,
        config: AlarmConfig | None = None) -> list[AlarmEvent]:
    eng = AlarmEngine(FS, config or AlarmConfig(), patient_id="p1")
    now = None if now_s is None else int(now_s * FS)
    return eng.update(beats, quality or [], now)


def of(events: list[AlarmEvent], alarm: AlarmType, phase: AlarmPhase = AlarmPhase.ONSET
       ) -> list[AlarmEvent]:
    return [e for e in events if e.alarm_type is alarm and e.phase is phase]


def types(events: list[AlarmEvent]) -> set[AlarmType]:
    return {e.alarm_type for e in events}


def test_regular_sinus_rhythm_raises_nothing() -> None:
    assert run(sinus(0, 120), now_s=120.5) == []


def test_asystole_within_5_s_of_last_beat_and_ends_on_next_beat() -> None:
    beats = sinus(0, 10)
    last = beats[-1].sample_index
    events = run(beats + [ClassifiedBeat(last + int(8 * FS), N)], now_s=last / FS + 11)
    onset = of(events, AlarmType.ASYSTOLE)
    assert len(onset) == 1
    assert 0 < onset[0].sample_index - last <= 5 * FS
    assert onset[0].priority is AlarmPriority.HIGH
    end = of(events, AlarmType.ASYSTOLE, AlarmPhase.END)
    assert end[0].sample_index == last + int(8 * FS)
    assert end[0].alarm_id == onset[0].alarm_id == f"p1:asystole:{onset[0].onset_sample_index}"


def test_asystole_fires_on_time_passing_alone() -> None:
    eng = AlarmEngine(FS, patient_id="p1")
    beats = sinus(0, 10)
    last = beats[-1].sample_index
    assert eng.update(beats, now_sample=last + 1) == []
    assert AlarmType.ASYSTOLE not in types(eng.update([], now_sample=last + int(3.9 * FS)))
    later = eng.update([], now_sample=last + int(4.1 * FS))
    assert AlarmType.ASYSTOLE in types(later)


def test_pause_is_raised_at_2_s_and_latched() -> None:
    beats = sinus(0, 10) + sinus(12.6, 30)
    events = run(beats)
    onset = of(events, AlarmType.PAUSE)
    assert len(onset) == 1 and onset[0].priority is AlarmPriority.MEDIUM
    assert AlarmType.ASYSTOLE not in types(events)
    end = of(events, AlarmType.PAUSE, AlarmPhase.END)
    assert end[0].sample_index - onset[0].sample_index == int(AlarmConfig().event_hold_s * FS)


def test_extreme_bradycardia_after_5_slow_beats_and_end() -> None:
    events = run(sinus(0, 20, 35) + sinus(20, 30, 70), now_s=50)
    onset = of(events, AlarmType.EXTREME_BRADY)
    assert len(onset) == 1
    first = int(round(0 * FS))
    assert onset[0].sample_index == first + 5 * int(round(60 / 35 * FS)) or onset[0].sample_index < 10 * FS
    assert onset[0].heart_rate_bpm < 40
    assert len(of(events, AlarmType.EXTREME_BRADY, AlarmPhase.END)) == 1


def test_extreme_tachycardia_after_17_fast_beats() -> None:
    events = run(sinus(0, 10, 75) + sinus(10, 30, 150), now_s=40)
    onset = of(events, AlarmType.EXTREME_TACHY)
    assert len(onset) == 1
    assert onset[0].sample_index >= int((10 + 16 * 0.4) * FS)
    assert onset[0].sample_index <= int((10 + 19 * 0.4) * FS)
    assert AlarmType.VTACH not in types(events)


def test_ventricular_tachycardia_within_2_s_of_fifth_v_and_ends() -> None:
    beats = sinus(0, 10) + beats_at(10.0, 0.4, "VVVVVVVV") + sinus(13.6, 10)
    events = run(beats, now_s=25)
    onset = of(events, AlarmType.VTACH)
    fifth_v = beats[len(sinus(0, 10)) + 4].sample_index
    assert len(onset) == 1 and 0 <= onset[0].sample_index - fifth_v <= 2 * FS
    assert onset[0].priority is AlarmPriority.HIGH and onset[0].heart_rate_bpm > 100
    assert len(of(events, AlarmType.VTACH, AlarmPhase.END)) == 1
    assert AlarmType.VRUN not in types(events)


def test_slow_ventricular_rhythm_is_a_run_not_vt() -> None:
    beats = sinus(0, 10) + beats_at(10.0, 0.9, "VVVVVV") + sinus(15.4, 5)
    events = run(beats, now_s=40)
    assert AlarmType.VTACH not in types(events)
    assert len(of(events, AlarmType.VRUN)) == 1


def test_ventricular_run_of_three_and_couplet() -> None:
    run3 = run(sinus(0, 10) + beats_at(10, 0.45, "VVVN"), now_s=12)
    assert types(run3) == {AlarmType.VRUN}
    assert run3[0].details == (("beats", "3"),)
    couplet = run(sinus(0, 10) + beats_at(10, 0.45, "VVN"), now_s=12)
    assert types(couplet) == {AlarmType.COUPLET}
    assert couplet[0].priority is AlarmPriority.LOW


def test_repeated_couplets_update_one_latched_alarm() -> None:
    beats = sinus(0, 5) + beats_at(5, 0.8, "VVNNNN" * 3) + sinus(20, 30)
    events = run(beats, now_s=50)
    c = [e for e in events if e.alarm_type is AlarmType.COUPLET]
    assert [e.phase for e in c] == [AlarmPhase.ONSET, AlarmPhase.UPDATE, AlarmPhase.UPDATE,
                                    AlarmPhase.END]
    assert len({e.alarm_id for e in c}) == 1


def test_bigeminy_and_trigeminy() -> None:
    big = run(sinus(0, 5) + beats_at(5, 0.8, "NV" * 10) + sinus(21, 10), now_s=31)
    assert len(of(big, AlarmType.BIGEMINY)) == 1
    assert len(of(big, AlarmType.BIGEMINY, AlarmPhase.END)) == 1
    assert AlarmType.TRIGEMINY not in types(big)
    tri = run(sinus(0, 5) + beats_at(5, 0.8, "NNV" * 8), now_s=25)
    assert len(of(tri, AlarmType.TRIGEMINY)) == 1
    assert AlarmType.BIGEMINY not in types(tri)


def test_atrial_fibrillation_on_irregular_rr_not_on_regular() -> None:
    rng = np.random.default_rng(7)
    t, beats = 0.0, []
    for _ in range(40):
        beats.append(ClassifiedBeat(int(t * FS), N))
        t += 0.8 + rng.normal(0, 0.01)
    for _ in range(150):
        beats.append(ClassifiedBeat(int(t * FS), N))
        t += float(rng.uniform(0.4, 1.1))
    beats += [ClassifiedBeat(int((t + i * 0.8) * FS), N) for i in range(60)]
    events = run(beats)
    onset = of(events, AlarmType.AFIB)
    assert len(onset) >= 1
    assert onset[0].sample_index > beats[40].sample_index
    assert of(events, AlarmType.AFIB, AlarmPhase.END)[-1].sample_index > beats[190].sample_index
    assert AlarmType.AFIB not in types(run(sinus(0, 200)))


def test_technical_alarm_suppresses_arrhythmia_and_asystole() -> None:
    vt = beats_at(10.0, 0.4, "VVVVVVVV")
    q_open = SignalQualityEvent(int(12.2 * FS), None, "lead_off")
    eng = AlarmEngine(FS, patient_id="p1")
    first = eng.update(sinus(0, 10) + vt[:6], [q_open], int(12.5 * FS))
    assert [(e.alarm_type, e.phase) for e in first] == [
        (AlarmType.VTACH, AlarmPhase.ONSET), (AlarmType.VTACH, AlarmPhase.END),
        (AlarmType.TECHNICAL, AlarmPhase.ONSET)]
    assert first[1].details == (("reason", "signal unreadable"),)
    assert first[2].technical and first[2].sample_index == int(12.2 * FS)
    # beats and silence during the unreadable stretch raise nothing
    during = eng.update(beats_at(13, 0.4, "VVVVVVVVV"), [], int(40 * FS))
    assert during == []
    closed = SignalQualityEvent(int(12.2 * FS), int(40 * FS), "lead_off")
    after = eng.update(sinus(41, 10), [closed], int(51 * FS))
    assert [(e.alarm_type, e.phase) for e in after] == [(AlarmType.TECHNICAL, AlarmPhase.END)]
    # readable again: asystole timing restarts from the end of the stretch
    assert AlarmType.ASYSTOLE in types(eng.update([], [], int(60 * FS)))


def test_one_bad_lead_of_two_does_not_suppress_by_default() -> None:
    eng = AlarmEngine(FS, n_leads=2)
    q = SignalQualityEvent(int(5 * FS), None, "noise", lead=1)
    events = eng.update(sinus(0, 10) + beats_at(10, 0.4, "VVVVVV"), [q], int(13 * FS))
    assert AlarmType.VTACH in types(events) and AlarmType.TECHNICAL not in types(events)


def test_one_lead_off_raises_a_low_priority_lead_alarm_and_ends_when_the_lead_is_back() -> None:
    eng = AlarmEngine(FS, patient_id="p1", n_leads=2, lead_names=("MLII", "V5"))
    off = SignalQualityEvent(int(5 * FS), None, "flat", lead=1)
    events = eng.update(sinus(0, 10), [off], int(10 * FS))
    (onset,) = of(events, AlarmType.LEAD_OFF)
    assert onset.sample_index == int(7 * FS)  # after lead_off_delay_s = 2 s
    assert onset.technical and onset.priority is AlarmPriority.LOW
    assert "V5" in onset.message and "MLII" not in onset.message
    assert AlarmType.TECHNICAL not in types(events) and onset.heart_rate_bpm > 0
    back = SignalQualityEvent(int(5 * FS), int(12 * FS), "flat", lead=1)
    after = eng.update(sinus(10, 5), [back], int(15 * FS))
    assert [(e.alarm_type, e.phase, e.sample_index) for e in after] == [
        (AlarmType.LEAD_OFF, AlarmPhase.END, int(12 * FS))]


def test_noise_of_the_fused_signal_names_no_lead() -> None:
    """The QRS noise judge reports lead -1 (no one lead): that is not a lead off."""
    eng = AlarmEngine(FS, n_leads=2)
    noisy = SignalQualityEvent(int(5 * FS), None, "noise", lead=-1)
    assert AlarmType.LEAD_OFF not in types(eng.update(sinus(0, 20), [noisy], int(20 * FS)))


def test_a_lead_glitch_shorter_than_the_delay_raises_nothing() -> None:
    eng = AlarmEngine(FS, n_leads=2)
    glitch = SignalQualityEvent(int(5 * FS), int(6.5 * FS), "noise", lead=0)
    assert eng.update(sinus(0, 20), [glitch], int(20 * FS)) == []


def test_both_leads_off_replace_the_lead_alarm_by_the_technical_one() -> None:
    eng = AlarmEngine(FS, n_leads=2)
    one = SignalQualityEvent(int(5 * FS), None, "flat", lead=1)
    both = SignalQualityEvent(int(9 * FS), None, "flat", lead=0)
    events = eng.update(sinus(0, 9), [one, both], int(12 * FS))
    assert [(e.alarm_type, e.phase) for e in events] == [
        (AlarmType.LEAD_OFF, AlarmPhase.ONSET), (AlarmType.LEAD_OFF, AlarmPhase.END),
        (AlarmType.TECHNICAL, AlarmPhase.ONSET)]
    # lead 0 comes back, lead 1 stays off: technical ends once lead 0 has been readable for
    # technical_clear_s (10 s), the lead alarm follows lead_off_delay_s (2 s) later
    back = SignalQualityEvent(int(9 * FS), int(13 * FS), "flat", lead=0)
    later = eng.update(sinus(13, 17), [back], int(30 * FS))
    assert [(e.alarm_type, e.phase, e.sample_index) for e in later] == [
        (AlarmType.TECHNICAL, AlarmPhase.END, int(23 * FS)),
        (AlarmType.LEAD_OFF, AlarmPhase.ONSET, int(25 * FS))]


def test_flapping_artefact_is_one_technical_alarm_and_no_analysis_in_its_gaps() -> None:
    """Unreadable 1 s stretches with readable 3 s gaps (electrode motion): one technical
    alarm from the first stretch to technical_clear_s after the last, and the V beats in
    the gaps raise no VT (they were the noise-stress-test false VT alarms)."""
    eng = AlarmEngine(FS, patient_id="p1")
    bursts = [SignalQualityEvent(int(t * FS), int((t + 1) * FS), "artefact") for t in (10, 14, 18)]
    noise_vt = beats_at(15.1, 0.4, "VVVVVVV")  # 15.1-17.5 s: between two bursts
    events = eng.update(sinus(0, 10) + noise_vt + sinus(30, 10), bursts, int(40 * FS))
    assert [(e.alarm_type, e.phase, e.sample_index) for e in events] == [
        (AlarmType.TECHNICAL, AlarmPhase.ONSET, int(10 * FS)),
        (AlarmType.TECHNICAL, AlarmPhase.END, int(29 * FS))]
    # with the old behaviour (no clear time) the same input raises VT in a gap
    flapping = run(sinus(0, 10) + noise_vt + sinus(30, 10), now_s=40, quality=bursts,
                   config=AlarmConfig(technical_clear_s=0.0))
    assert len(of(flapping, AlarmType.TECHNICAL)) == 3 and of(flapping, AlarmType.VTACH)


def test_snapshot_in_the_clear_time_resumes_identically() -> None:
    q = [SignalQualityEvent(int(10 * FS), int(12 * FS), "flat")]
    beats = sinus(0, 10) + sinus(12, 20)
    whole = run(beats, now_s=32, quality=q)
    eng = AlarmEngine(FS, patient_id="p1")
    part = eng.update([b for b in beats if b.sample_index < 16 * FS], q, int(16 * FS))
    again = AlarmEngine.from_snapshot(json.loads(json.dumps(eng.snapshot())))
    part += again.update([b for b in beats if b.sample_index >= 16 * FS], [], int(32 * FS))
    assert part == whole and of(whole, AlarmType.TECHNICAL, AlarmPhase.END)[0].sample_index == 22 * FS


def test_noise_verdict_alone_suppresses_only_when_configured() -> None:
    """The QRS detector's noise verdict (lead -1) is one lead of two by default (it also
    calls some real VT runs noise); ``noise_verdict_unreadable`` makes it enough alone."""
    noisy = [SignalQualityEvent(int(10 * FS), int(15 * FS), "noise", lead=-1)]
    beats = sinus(0, 10) + beats_at(10.2, 0.4, "VVVVVVVV") + sinus(14, 30)
    default = AlarmEngine(FS, n_leads=2).update(beats, noisy, int(44 * FS))
    assert AlarmType.VTACH in types(default) and AlarmType.TECHNICAL not in types(default)
    cfg = AlarmConfig(noise_verdict_unreadable=True)
    strict = AlarmEngine(FS, cfg, n_leads=2).update(beats, noisy, int(44 * FS))
    assert [(e.alarm_type, e.phase, e.sample_index) for e in strict] == [
        (AlarmType.TECHNICAL, AlarmPhase.ONSET, int(10 * FS)),
        (AlarmType.TECHNICAL, AlarmPhase.END, int(25 * FS))]


def test_disabled_types_and_priority_overrides() -> None:
    beats = sinus(0, 10) + beats_at(10.0, 0.4, "VVVVVVVV") + sinus(13.6, 5)
    cfg = AlarmConfig(disabled=frozenset({AlarmType.VTACH}),
                      priorities=((AlarmType.EXTREME_TACHY, AlarmPriority.MEDIUM),))
    assert AlarmType.VTACH not in types(run(beats, config=cfg))
    tachy = run(sinus(0, 30, 150), config=cfg)
    assert of(tachy, AlarmType.EXTREME_TACHY)[0].priority is AlarmPriority.MEDIUM


def test_long_alarm_gets_periodic_updates_with_same_alarm_id() -> None:
    events = run(sinus(0, 40, 150))
    tachy = [e for e in events if e.alarm_type is AlarmType.EXTREME_TACHY]
    assert [e.phase for e in tachy][:2] == [AlarmPhase.ONSET, AlarmPhase.UPDATE]
    assert len({e.alarm_id for e in tachy}) == 1
    assert len({e.to_alert(FS, 1, 1).alert_id for e in tachy}) == len(tachy)


def test_ventricular_fibrillation_from_raw_signal() -> None:
    t = np.arange(int(20 * FS)) / FS
    ecg = np.zeros_like(t)
    ecg[(np.arange(t.size) % int(0.8 * FS)) < 8] = 1.5  # narrow QRS-like spikes
    ecg[int(10 * FS):] = 0.8 * np.sin(2 * np.pi * 4.5 * t[int(10 * FS):])
    eng = AlarmEngine(FS, patient_id="p1")
    events: list[AlarmEvent] = []
    for i in range(0, t.size, int(FS / 2)):
        eng.update_signal(ecg[i:i + int(FS / 2)], i)
        beats = [b for b in sinus(0, 10) if i <= b.sample_index < i + int(FS / 2)]
        events += eng.update(beats, [], i + int(FS / 2))
    vf = of(events, AlarmType.VFIB)
    assert len(vf) == 1 and 10 * FS < vf[0].sample_index <= 17 * FS
    # no QRS in VF: asystole may come first, VF supersedes it (no asystole while VF lasts)
    asy_end = of(events, AlarmType.ASYSTOLE, AlarmPhase.END)
    assert len(of(events, AlarmType.ASYSTOLE)) == len(asy_end) <= 1
    assert all(e.sample_index == vf[0].sample_index for e in asy_end)
    assert not of(events, AlarmType.VFIB, AlarmPhase.END)


def _vf_run(beats_in_vf: list[ClassifiedBeat]) -> list[AlarmEvent]:
    """10 s of sinus spikes, then 10 s of 4.5 Hz sine (VF) during which ``beats_in_vf`` come."""
    t = np.arange(int(20 * FS)) / FS
    ecg = np.zeros_like(t)
    ecg[(np.arange(t.size) % int(0.8 * FS)) < 8] = 1.5
    ecg[int(10 * FS):] = 0.8 * np.sin(2 * np.pi * 4.5 * t[int(10 * FS):])
    eng, events, step = AlarmEngine(FS, patient_id="p1"), [], int(FS / 2)
    all_beats = sinus(0, 10) + beats_in_vf
    for i in range(0, t.size, step):
        eng.update_signal(ecg[i:i + step], i)
        events += eng.update([b for b in all_beats if i <= b.sample_index < i + step], [], i + step)
    return events


def test_vf_is_not_vetoed_by_flutter_waves_the_classifier_calls_normal() -> None:
    """Detected "beats" at 270 bpm in VF, labelled N (record 207 with detected beats lost
    VF episodes so): too fast to be an organised rhythm. At 75 bpm they do veto VF."""
    flutter = beats_at(10.2, 60 / 270, "N" * 40)
    assert of(_vf_run(flutter), AlarmType.VFIB)
    organised = beats_at(10.2, 0.8, "N" * 12)
    assert not of(_vf_run(organised), AlarmType.VFIB)


def test_snapshot_restore_continues_identically() -> None:
    beats = (sinus(0, 10) + beats_at(10.0, 0.4, "VVVVVVVV") + sinus(13.6, 10)
             + beats_at(24, 0.8, "NV" * 6) + sinus(34, 10))
    q = [SignalQualityEvent(int(50 * FS), int(55 * FS), "noise")]
    whole = run(beats, now_s=70, quality=q)
    cut = int(12 * FS)
    eng = AlarmEngine(FS, patient_id="p1")
    part = eng.update([b for b in beats if b.sample_index < cut], q, cut)
    snap = json.loads(json.dumps(eng.snapshot()))
    again = AlarmEngine.from_snapshot(snap)
    part += again.update([b for b in beats if b.sample_index >= cut], [], int(70 * FS))
    assert part == whole
    assert json.loads(json.dumps(again.snapshot())) == again.snapshot()


def test_empty_update_and_bad_fs() -> None:
    eng = AlarmEngine(FS)
    assert eng.update([], [], 0) == []
    try:
        AlarmEngine(0.0)
    except ValueError as exc:
        assert "fs_hz" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("fs_hz=0 accepted")


def test_core_imports_no_io_libraries() -> None:
    for name in ("rhythm.py", "rhythm_measures.py", "vf.py"):
        path = Path(__file__).resolve().parents[4] / "detector" / "core" / name
        tree = ast.parse(path.read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
        mods |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom)}
        assert not mods & {"asyncio", "aiokafka", "redis", "onnxruntime"}, name


# ---------------------------------------------------------------- batching independence
_CLASSES = st.sampled_from([N, N, N, N, V, V, S, BeatClass.Q])


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[ClassifiedBeat], list[SignalQualityEvent], int, int]:
    leads = draw(st.sampled_from([1, 2]))
    n = draw(st.integers(0, 120))
    rr = draw(st.lists(st.sampled_from([0.3, 0.4, 0.6, 0.8, 1.0, 1.7, 2.5, 5.0]),
                       min_size=n, max_size=n))
    cls = draw(st.lists(_CLASSES, min_size=n, max_size=n))
    t, beats = 0.5, []
    for r, c in zip(rr, cls, strict=True):
        t += r
        beats.append(ClassifiedBeat(int(t * FS), c))
    end = int((t + 8) * FS)
    quality = []
    for _ in range(draw(st.integers(0, 2))):
        a = draw(st.integers(0, end))
        quality.append(SignalQualityEvent(a, min(end, a + draw(st.integers(1, int(10 * FS)))),
                                          draw(st.sampled_from(["noise", "flat"])),
                                          draw(st.integers(-1, leads - 1))))
    return beats, quality, end, leads


@settings(max_examples=60, deadline=None)
@given(streams(), st.lists(st.floats(0, 1), max_size=8))
def test_events_do_not_depend_on_batching(
    stream: tuple[list[ClassifiedBeat], list[SignalQualityEvent], int, int], cuts_frac: list[float]
) -> None:
    beats, quality, end, leads = stream
    whole = AlarmEngine(FS, patient_id="p", n_leads=leads).update(beats, quality, end)
    cuts = sorted({int(f * end) for f in cuts_frac} | {end})
    eng, got, lo = AlarmEngine(FS, patient_id="p", n_leads=leads), [], 0
    for hi in cuts:
        b = [x for x in beats if lo <= x.sample_index < hi]
        q = [x for x in quality if lo <= x.start_sample < hi]
        got += eng.update(b, q, hi)
        if hi < end and hi % 3 == 0:  # restart from a snapshot now and then
            eng = AlarmEngine.from_snapshot(json.loads(json.dumps(eng.snapshot())))
        lo = hi
    assert got == whole


def test_vf_detector_verdicts_do_not_depend_on_chunking_and_refuse_nan_and_flat() -> None:
    from detector.core.vf import VfDetector

    rng = np.random.default_rng(3)
    t = np.arange(int(30 * FS)) / FS
    x = 0.6 * np.sin(2 * np.pi * 5 * t) + 0.05 * rng.normal(size=t.size)
    x[int(20 * FS):int(21 * FS)] = np.nan
    x[int(24 * FS):] = 0.0
    whole = VfDetector(FS).update(x, 0)
    det, parts, i = VfDetector(FS), [], 0
    for size in [1, 37, 250, 999, 3] * 200:
        if i >= x.size:
            break
        parts += det.update(x[i:i + size], i)
        i += size
        if size == 999:
            det = VfDetector.from_snapshot(json.loads(json.dumps(det.snapshot())), FS)
    assert [(d.sample_index, d.is_vf) for d in parts] == [(d.sample_index, d.is_vf) for d in whole]
    assert np.allclose([d.leakage for d in parts], [d.leakage for d in whole], equal_nan=True)
    by_end = {d.sample_index: d for d in whole}
    assert by_end[int(10 * FS)].is_vf
    assert not by_end[int(22 * FS)].is_vf and np.isnan(by_end[int(22 * FS)].leakage)  # NaN inside
    assert not by_end[int(30 * FS)].is_vf  # flat line is not VF
