"""Rhythm alarms: a per-patient state machine over classified beats, signal quality and time.

Pure code (no asyncio, Kafka, Redis or ONNX).  Time is the sample index of the data,
never the wall clock: ``update(beats, quality_events, now_sample)`` processes beats,
quality changes, VF verdicts and timers (asystole, pause, alarm hold) in sample order up
to ``now_sample``, so the alarms do not depend on how the stream was batched.

Contract of ``update``: ``now_sample`` is a watermark, every beat with
``sample_index < now_sample`` has been delivered; later calls deliver beats and quality
starts at or after the previous watermark (earlier ones are treated as arriving at the
watermark).  A timer due at sample ``t`` fires once ``now_sample > t``.

Alarm definitions (defaults in :class:`AlarmConfig`) follow the PhysioNet/CinC Challenge
2015 (Clifford et al., "The PhysioNet/Computing in Cardiology Challenge 2015: reducing
false arrhythmia alarms in the ICU", CinC 2015) and common bedside monitors; priorities
follow IEC 60601-1-8 (high = life threatening).  Atrial fibrillation uses the RR
irregularity measures of Dash et al., "Automatic real time detection of atrial
fibrillation", Ann Biomed Eng 37(9), 2009 (normalised RMSSD, Shannon entropy,
turning-point ratio).  VF/flutter needs the raw ECG, not beats: feed one lead with
:meth:`AlarmEngine.update_signal` *before* the :meth:`AlarmEngine.update` covering the same
samples (VF-filter leakage, :mod:`detector.core.vf`); without it no VF alarm is raised.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.core.alarms import (
    DEFAULT_PRIORITIES,
    EVENT_ALARMS,
    QUALITY_KINDS,
    TECHNICAL_ALARMS,
    AlarmConfig,
    AlarmEvent,
    AlarmType,
    ClassifiedBeat,
    QualityLike,
    SignalQualityEvent,
    events_to_alerts,
)
from detector.core.rhythm_measures import af_features, integer_nrmssd, mean_rate_bpm
from detector.core.vf import VfDecision, VfDetector
from stream.schemas import AlarmPhase, BeatClass

__all__ = [  # the alarm vocabulary lives in detector.core.alarms; importable from here too
    "DEFAULT_PRIORITIES", "EVENT_ALARMS", "QUALITY_KINDS", "TECHNICAL_ALARMS", "AlarmConfig",
    "AlarmEngine", "AlarmEvent", "AlarmType", "ClassifiedBeat", "QualityLike",
    "SignalQualityEvent", "events_to_alerts",
]


@dataclass(slots=True)
class _Active:
    onset: int
    last_update: int
    until: int | None = None  # event alarms: end when data time passes this sample


@dataclass(frozen=True, slots=True)
class _Quality:
    start_sample: int
    end_sample: int | None
    kind: str
    lead: int

    def __init__(self, q: QualityLike) -> None:
        for name, value in (("start_sample", int(q.start_sample)), ("kind", str(q.kind)),
                            ("end_sample", None if q.end_sample is None else int(q.end_sample)),
                            ("lead", int(getattr(q, "lead", 0)))):
            object.__setattr__(self, name, value)


_Item = _Quality | VfDecision | ClassifiedBeat
# Timeline order at equal sample: quality reports, VF verdicts, beats; timers (asystole,
# pause, end of a latched alarm, end of an unreadable stretch) at sample t fire after them.
_ORDER: dict[type, int] = {_Quality: 0, VfDecision: 1, ClassifiedBeat: 2}


def _sample_of(x: _Item) -> int:
    return x.start_sample if isinstance(x, _Quality) else x.sample_index


_MISSING = object()
_DEFAULT_CONFIG = AlarmConfig()  # frozen: one shared default


class AlarmEngine:
    """Per-patient alarm state machine; see the module docstring for the update contract."""

    def __init__(
        self, fs_hz: float, config: AlarmConfig = _DEFAULT_CONFIG, patient_id: str = "",
        start_sample: int = 0, n_leads: int = 1, lead_names: tuple[str, ...] = (),
    ) -> None:
        if fs_hz <= 0:
            raise ValueError(f"fs_hz={fs_hz}: must be > 0")
        self.fs_hz, self.config, self.patient_id, self.n_leads = fs_hz, config, patient_id, n_leads
        self.lead_names = tuple(lead_names)
        self._bad_leads_needed = n_leads if config.technical_all_leads else 1
        c = config
        self._asystole = int(round(c.asystole_s * fs_hz))
        self._pause = int(round(c.pause_s * fs_hz))
        self._hold = int(round(c.event_hold_s * fs_hz))
        self._lead_delay = int(round(c.lead_off_delay_s * fs_hz))
        self._lead_from: int | None = None  # since when some, not all, leads are unreadable
        self._clear = int(round(c.technical_clear_s * fs_hz))
        self._suppressed = False  # unreadable, or readable for less than technical_clear_s
        self._clear_from: int | None = None  # readable again since (while still suppressed)
        self._update_every = int(round(c.update_interval_s * fs_hz))
        keep = max(c.tachy_beats, c.brady_beats, c.vt_beats, 2 * c.bigeminy_cycles,
                   3 * c.trigeminy_cycles) + 1
        self._now = start_sample  # everything before this sample is processed
        self._beats: deque[tuple[int, BeatClass]] = deque(maxlen=keep)
        self._nn: deque[int] = deque(maxlen=c.afib_window_beats)
        self._anchor: int | None = start_sample  # last readable beat (asystole/pause timers)
        self._pause_armed = True
        self._v_run = 0
        self._vt_in_run = False
        self._vf_streak = 0
        self._off_streak: dict[AlarmType, int] = {}  # beats in a row a condition was false
        self._open_quality: dict[tuple[str, int, int], int | None] = {}
        self._active: dict[AlarmType, _Active] = {}
        self._pending_vf: list[VfDecision] = []
        self._pending: list[_Item] = []  # delivered ahead of the watermark
        self._vf_detector = VfDetector(fs_hz, c.vf)
        self._out: list[AlarmEvent] = []

    # ------------------------------------------------------------------ public API
    @property
    def active_alarms(self) -> dict[AlarmType, int]:
        """Active alarm types and their onset samples."""
        return {t: a.onset for t, a in self._active.items()}

    @property
    def watermark(self) -> int:
        return self._now

    def update_signal(self, samples_mv: npt.ArrayLike, first_sample_index: int) -> None:
        """Feed raw ECG (one lead, mV) for VF detection; verdicts join the next :meth:`update`."""
        self._pending_vf.extend(self._vf_detector.update(samples_mv, first_sample_index))

    def update(
        self, beats: Iterable[ClassifiedBeat], quality_events: Iterable[QualityLike] = (),
        now_sample: int | None = None,
    ) -> list[AlarmEvent]:
        """Process everything up to ``now_sample`` (default: just past the last beat)."""
        beats = list(beats)
        if now_sample is not None:
            end = now_sample
        else:
            end = max([b.sample_index + 1 for b in beats] + [self._now])
        self._pending.extend(_Quality(q) for q in quality_events)
        self._pending.extend(beats)
        self._pending.extend(self._pending_vf)
        self._pending_vf = []
        items = [(max(_sample_of(x), self._now), _ORDER[type(x)], x) for x in self._pending]
        self._pending = [x for (at, _, x) in items if at >= end]
        items = [it for it in items if it[0] < end]
        items.sort(key=lambda it: (it[0], it[1]))
        for sample, _kind, obj in items:
            self._fire_timers(sample)
            self._now = max(self._now, sample)
            if isinstance(obj, _Quality):
                self._quality_start(sample, obj)
            elif isinstance(obj, VfDecision):
                self._vf(sample, obj)
            elif isinstance(obj, ClassifiedBeat):
                self._beat(sample, obj.beat_class)
        self._fire_timers(end)
        self._now = max(self._now, end)
        out, self._out = self._out, []
        return out

    def reconfigure(self, config: AlarmConfig, reason: str = "") -> list[AlarmEvent]:
        """Go on with ``config`` from the watermark on (a clinician changed this patient's
        limits, :class:`~detector.core.alarms.AlarmLimits`).  Only the rate and pause limits
        and the switched-off alarms may differ from the current configuration; an active alarm
        now switched off ends at once (``reason`` in its details).  Returns those end events."""
        keep = ("brady_bpm", "tachy_bpm", "pause_s", "disabled")
        old, new = self.config.to_dict(), config.to_dict()
        changed = sorted(k for k in old if old[k] != new[k] and k not in keep)
        if changed:
            raise ValueError(f"only {', '.join(keep)} can change on a running engine, not "
                             + ", ".join(changed))
        self.config = config
        self._pause = int(round(config.pause_s * self.fs_hz))
        for alarm in [a for a in self._active if not config.enabled(a)]:
            self._end(alarm, self._now, reason)
        out, self._out = self._out, []
        return out

    def end_all(self, reason: str) -> list[AlarmEvent]:
        """End every active alarm at the watermark, ``reason`` in its details (the patient was
        discharged: the engine is not used after this).  Returns those end events, oldest
        onset first."""
        for alarm in sorted(self._active, key=lambda a: (self._active[a].onset, a.value)):
            self._end(alarm, self._now, reason)
        out, self._out = self._out, []
        return out

    @property
    def _leads_unreadable(self) -> bool:
        """Enough leads unreadable right now; the QRS detector's whole-signal noise verdict
        (lead -1) counts as one lead.  VF detection stops only then."""
        return len({ld for _, ld, _ in self._open_quality}) >= self._bad_leads_needed

    @property
    def _unreadable(self) -> bool:
        """Unreadable right now: enough leads, or (``noise_verdict_unreadable``) the noise
        verdict alone."""
        if self.config.noise_verdict_unreadable and any(ld < 0 for _, ld, _ in self._open_quality):
            return True
        return self._leads_unreadable

    def _quality_start(self, sample: int, q: _Quality) -> None:
        key = (q.kind, q.lead, q.start_sample)
        if key in self._open_quality:
            if q.end_sample is not None:  # the closing report of an open stretch
                self._open_quality[key] = max(q.end_sample, sample)
            return
        self._open_quality[key] = None if q.end_sample is None else max(q.end_sample, sample)
        if self._unreadable:
            self._clear_from = None  # unreadable again before the clear time: one episode
            if not self._suppressed:
                self._suppressed = True
                vf_on = not self._leads_unreadable  # VF detection goes on (see _vf)
                keep = {AlarmType.TECHNICAL} | ({AlarmType.VFIB} if vf_on else set())
                for t in [t for t in self._active if t not in keep]:
                    self._end(t, sample, reason="signal unreadable")
                streak = self._vf_streak
                self._reset_rhythm(None)
                if vf_on:
                    self._vf_streak = streak
                self._onset(AlarmType.TECHNICAL, sample, f"ECG unreadable ({q.kind})",
                            (("kind", q.kind),))
        self._watch_leads(sample)

    def _quality_end(self, sample: int, key: tuple[str, int, int]) -> None:
        if (self._open_quality.pop(key, _MISSING) is not _MISSING and self._suppressed
                and not self._unreadable and self._clear_from is None):
            self._clear_from = sample  # analysis resumes once readable for technical_clear_s
        self._watch_leads(sample)

    def _readable_again(self, sample: int) -> None:
        self._suppressed, self._clear_from = False, None
        self._end(AlarmType.TECHNICAL, sample)
        streak = self._vf_streak  # VF detection ran through a noise verdict: keep its count
        self._reset_rhythm(sample)
        self._vf_streak = streak
        self._watch_leads(sample)

    def _watch_leads(self, sample: int) -> None:
        """LEAD_OFF follows "some leads unreadable, the rest readable" (raised by a timer once
        it has held ``lead_off_delay_s``); all leads unreadable is the TECHNICAL alarm instead."""
        # lead -1 (the QRS noise judge: the fused signal, no one lead) names no lead to check
        partial = any(ld >= 0 for _, ld, _ in self._open_quality) and not self._suppressed
        if not partial:
            self._lead_from = None
            self._end(AlarmType.LEAD_OFF, sample)
        elif self._lead_from is None:
            self._lead_from = sample

    def _lead_name(self, lead: int) -> str:
        return self.lead_names[lead] if 0 <= lead < len(self.lead_names) else f"lead {lead + 1}"

    def _lead_off_onset(self, sample: int) -> None:
        bad = sorted({(ld, k) for k, ld, _ in self._open_quality if ld >= 0})
        leads = sorted({ld for ld, _ in bad})
        names = ", ".join(self._lead_name(ld) for ld in leads)
        kinds = ", ".join(sorted({k for _, k in bad}))
        self._onset(AlarmType.LEAD_OFF, sample,
                    f"ECG {names} unreadable ({kinds}): monitoring on the other lead(s)",
                    (("leads", names), ("kind", kinds)))

    def _reset_rhythm(self, anchor: int | None) -> None:
        self._beats.clear()
        self._nn.clear()
        self._v_run, self._vt_in_run, self._vf_streak = 0, False, 0
        self._anchor, self._pause_armed = anchor, True

    def _vf(self, sample: int, v: VfDecision) -> None:
        if self._leads_unreadable:  # (the noise verdict alone does not stop VF detection)
            return
        c = self.config
        window = int(round(c.vf.window_s * self.fs_hz))
        min_rr = c.vf_organised_min_rr_s * self.fs_hz
        normal, prev = 0, None
        for b, k in self._beats:
            if (b > sample - window and k not in (BeatClass.V, BeatClass.U)
                    and (prev is None or b - prev >= min_rr)):
                normal += 1
            prev = b
        organised = normal > c.vf_max_normal_beats
        is_vf = v.is_vf and not organised
        if AlarmType.VFIB in self._active:
            self._vf_streak = 0 if is_vf else self._vf_streak + 1  # counts non-VF windows
            if self._vf_streak >= c.vf_windows:
                self._vf_streak = 0
                self._end(AlarmType.VFIB, sample)
                self._anchor = sample
            return
        self._vf_streak = self._vf_streak + 1 if is_vf else 0
        if self._vf_streak >= c.vf_windows:
            self._vf_streak = 0
            self._end(AlarmType.ASYSTOLE, sample, reason="ventricular fibrillation")
            self._onset(AlarmType.VFIB, sample, "ventricular fibrillation/flutter",
                        (("leakage", f"{v.leakage:.3f}"),))

    # ------------------------------------------------------------------ timers
    def _next_timer(self) -> tuple[int, AlarmType | tuple[str, int, int]] | None:
        due: list[tuple[int, AlarmType | tuple[str, int, int]]] = []
        due += [(e, k) for k, e in self._open_quality.items() if e is not None]
        if self._anchor is not None and AlarmType.VFIB not in self._active and not self._suppressed:
            if AlarmType.ASYSTOLE not in self._active:
                due.append((self._anchor + self._asystole, AlarmType.ASYSTOLE))
            if self._pause_armed and self._beats:
                due.append((self._anchor + self._pause, AlarmType.PAUSE))
        due += [(a.until, t) for t, a in self._active.items() if a.until is not None]
        if self._clear_from is not None:
            due.append((self._clear_from + self._clear, AlarmType.TECHNICAL))
        if (self._lead_from is not None and AlarmType.LEAD_OFF not in self._active
                and self.config.enabled(AlarmType.LEAD_OFF)):
            due.append((self._lead_from + self._lead_delay, AlarmType.LEAD_OFF))
        return min(due, default=None, key=lambda d: (d[0], str(d[1])))

    def _fire_timers(self, before: int) -> None:
        while (nxt := self._next_timer()) is not None and nxt[0] < before:
            at, alarm = nxt
            self._now = max(self._now, at)
            if isinstance(alarm, tuple):
                self._quality_end(at, alarm)
                continue
            active = self._active.get(alarm)
            if alarm is AlarmType.TECHNICAL:
                self._readable_again(at)
            elif active is not None and active.until is not None:
                self._end(alarm, at)
            elif alarm is AlarmType.LEAD_OFF:
                self._lead_off_onset(at)
            elif alarm is AlarmType.ASYSTOLE:
                for t in [t for t in self._active if t not in TECHNICAL_ALARMS | {AlarmType.PAUSE}]:
                    self._end(t, at, reason="asystole")
                self._onset(AlarmType.ASYSTOLE, at, f"asystole: no QRS for {self.config.asystole_s:g} s")
            else:
                self._pause_armed = False
                self._event(AlarmType.PAUSE, at, f"pause: RR > {self.config.pause_s:g} s")

    # ------------------------------------------------------------------ beats
    def _beat(self, s: int, cls: BeatClass) -> None:
        if self._suppressed:  # no arrhythmia analysis; the VF check still sees the beats
            if not self._leads_unreadable:
                self._beats.append((s, cls))
            return
        self._end(AlarmType.ASYSTOLE, s)
        prev = self._beats[-1] if self._beats else None
        self._beats.append((s, cls))
        self._anchor, self._pause_armed = s, True
        if prev is not None and prev[1] is BeatClass.N and cls is BeatClass.N and s > prev[0]:
            self._nn.append(s - prev[0])
        self._ventricular(s, cls)
        # the message names the limit: it is the patient's own (AlarmLimits), not one for all
        low, high = self.config.brady_bpm, self.config.tachy_bpm
        self._condition(AlarmType.EXTREME_BRADY, s, self._rate_below(self.config.brady_beats, low),
                        msg=f"extreme bradycardia: below {low:g} bpm",
                        details=(("limit_bpm", f"{low:g}"),))
        self._condition(AlarmType.EXTREME_TACHY, s, self._rate_above(self.config.tachy_beats, high),
                        msg=f"extreme tachycardia: above {high:g} bpm",
                        details=(("limit_bpm", f"{high:g}"),))
        c = self.config
        self._condition(AlarmType.BIGEMINY, s, self._every_nth_v(2, c.bigeminy_cycles),
                        c.pattern_end_beats)
        self._condition(AlarmType.TRIGEMINY, s, self._every_nth_v(3, c.trigeminy_cycles),
                        c.pattern_end_beats)
        self._condition(AlarmType.AFIB, s, self._irregular(), c.afib_end_beats)
        self._periodic_updates(s)

    def _ventricular(self, s: int, cls: BeatClass) -> None:
        c = self.config
        if cls is BeatClass.V:
            self._v_run += 1
            vt = self._v_run >= c.vt_beats and self._rate_above(c.vt_beats - 1, c.vt_bpm)
            if vt:
                self._vt_in_run = True
            self._condition(AlarmType.VTACH, s, vt and self._v_run >= c.vt_beats)
            return
        run, self._v_run = self._v_run, 0
        self._condition(AlarmType.VTACH, s, False)
        if run == 2:
            self._event(AlarmType.COUPLET, s, "ventricular couplet")
        elif run >= c.vrun_min_beats and not self._vt_in_run:
            self._event(AlarmType.VRUN, s, f"ventricular run of {run} beats", (("beats", str(run)),))
        self._vt_in_run = False

    def _rr(self, n: int) -> list[int]:
        """The last ``n`` RR intervals in samples (fewer if the history is short)."""
        s = [b[0] for b in self._beats][-(n + 1) :]
        return [b - a for a, b in zip(s, s[1:], strict=False)]

    def _rate_above(self, n: int, bpm: float) -> bool:
        rr = self._rr(n)
        return len(rr) == n and n > 0 and mean_rate_bpm(rr, self.fs_hz) > bpm

    def _rate_below(self, n: int, bpm: float) -> bool:
        rr = self._rr(n)
        return len(rr) == n and n > 0 and mean_rate_bpm(rr, self.fs_hz) < bpm

    def _every_nth_v(self, period: int, cycles: int) -> bool:
        need = period * cycles
        if len(self._beats) < need:
            return False
        classes = [b[1] for b in self._beats][-need:]
        if any(c in (BeatClass.Q, BeatClass.U) for c in classes):
            return False
        v_at = [i for i, c in enumerate(classes) if c is BeatClass.V]
        return len(v_at) == cycles and all(b - a == period for a, b in zip(v_at, v_at[1:], strict=False))

    def _irregular(self) -> bool:
        c = self.config
        if len(self._nn) < c.afib_window_beats:
            return False
        if integer_nrmssd(list(self._nn)) <= c.afib_nrmssd:
            return False  # the usual case (regular rhythm): decided without af_features
        nrmssd, entropy, tpr = af_features(np.asarray(self._nn, dtype=np.float64))
        return nrmssd > c.afib_nrmssd and entropy > c.afib_entropy and c.afib_tpr[0] <= tpr <= c.afib_tpr[1]

    def _heart_rate(self) -> float:
        rr = self._rr(4)  # a 4-beat average, as bedside monitors display
        return round(mean_rate_bpm(rr, self.fs_hz), 1) if rr else 0.0

    # ------------------------------------------------------------------ lifecycle
    def _emit(self, alarm: AlarmType, phase: AlarmPhase, onset: int, at: int, msg: str,
              details: tuple[tuple[str, str], ...] = ()) -> None:
        self._out.append(AlarmEvent(
            self.patient_id, alarm, self.config.priority(alarm), phase, onset, at,
            0.0 if alarm in (AlarmType.ASYSTOLE, AlarmType.TECHNICAL) else self._heart_rate(),
            msg, alarm in TECHNICAL_ALARMS, details,
        ))

    def _onset(self, alarm: AlarmType, s: int, msg: str,
               details: tuple[tuple[str, str], ...] = ()) -> None:
        if alarm in self._active or not self.config.enabled(alarm):
            return
        self._active[alarm] = _Active(s, s)
        self._emit(alarm, AlarmPhase.ONSET, s, s, msg, details)

    def _end(self, alarm: AlarmType, s: int, reason: str = "") -> None:
        self._off_streak.pop(alarm, None)
        active = self._active.pop(alarm, None)
        if active is not None:
            details = (("reason", reason),) if reason else ()
            self._emit(alarm, AlarmPhase.END, active.onset, s, f"{alarm.value} ended", details)

    def _condition(self, alarm: AlarmType, s: int, true: bool, end_after: int = 1, msg: str = "",
                   details: tuple[tuple[str, str], ...] = ()) -> None:
        """Raise when ``true``; end after ``end_after`` beats in a row with it false."""
        if true:
            self._off_streak.pop(alarm, None)
            self._onset(alarm, s, msg or alarm.value.replace("_", " "), details)
        elif alarm in self._active:
            off = self._off_streak.get(alarm, 0) + 1
            self._off_streak[alarm] = off
            if off >= end_after:
                self._end(alarm, s)

    def _event(self, alarm: AlarmType, s: int, msg: str,
               details: tuple[tuple[str, str], ...] = ()) -> None:
        self._onset(alarm, s, msg, details)
        active = self._active.get(alarm)
        if active is not None:
            active.until = s + self._hold
            if active.onset != s:
                active.last_update = s
                self._emit(alarm, AlarmPhase.UPDATE, active.onset, s, msg, details)

    def _periodic_updates(self, s: int) -> None:
        for alarm, active in self._active.items():
            if active.until is None and s - active.last_update >= self._update_every:
                active.last_update = s
                self._emit(alarm, AlarmPhase.UPDATE, active.onset, s, alarm.value.replace("_", " "))

    # ------------------------------------------------------------------ persistence
    def snapshot(self, arrays: bool = False) -> dict[str, Any]:
        """JSON-serialisable state; :meth:`from_snapshot` resumes exactly. ``arrays``: the VF
        detector's sample buffers as numpy arrays (see :meth:`VfDetector.snapshot`)."""
        return {
            "version": 1, "fs_hz": self.fs_hz, "patient_id": self.patient_id,
            "config": self.config.to_dict(), "now": self._now,
            "beats": [[s, c.value] for s, c in self._beats], "nn": list(self._nn),
            "anchor": self._anchor, "pause_armed": self._pause_armed, "v_run": self._v_run,
            "vt_in_run": self._vt_in_run, "vf_streak": self._vf_streak,
            "off_streak": [[t.value, n] for t, n in self._off_streak.items()],
            "n_leads": self.n_leads, "lead_names": list(self.lead_names),
            "lead_from": self._lead_from, "suppressed": self._suppressed,
            "clear_from": self._clear_from,
            "open_quality": [[k, ld, s, e] for (k, ld, s), e in self._open_quality.items()],
            "active": [[t.value, a.onset, a.last_update, a.until] for t, a in self._active.items()],
            "pending_vf": [[v.sample_index, v.is_vf, v.leakage] for v in self._pending_vf
                           + [x for x in self._pending if isinstance(x, VfDecision)]],
            "pending_beats": [[b.sample_index, b.beat_class.value, b.confidence]
                              for b in self._pending if isinstance(b, ClassifiedBeat)],
            "pending_quality": [[q.start_sample, q.end_sample, q.kind, q.lead]
                                for q in self._pending if isinstance(q, _Quality)],
            "vf_detector": self._vf_detector.snapshot(arrays),
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> AlarmEngine:
        if snap.get("version") != 1:
            raise ValueError(f"unsupported alarm engine snapshot version {snap.get('version')!r}")
        config = AlarmConfig.from_dict(snap["config"])
        eng = cls(float(snap["fs_hz"]), config, str(snap["patient_id"]), int(snap["now"]),
                  int(snap["n_leads"]), tuple(snap.get("lead_names", ())))
        lead_from = snap.get("lead_from")
        eng._lead_from = None if lead_from is None else int(lead_from)
        clear_from = snap.get("clear_from")
        eng._clear_from = None if clear_from is None else int(clear_from)
        eng._beats.extend((int(s), BeatClass(c)) for s, c in snap["beats"])
        eng._nn.extend(int(v) for v in snap["nn"])
        eng._anchor = None if snap["anchor"] is None else int(snap["anchor"])
        eng._pause_armed = bool(snap["pause_armed"])
        eng._v_run, eng._vt_in_run = int(snap["v_run"]), bool(snap["vt_in_run"])
        eng._vf_streak = int(snap["vf_streak"])
        eng._off_streak = {AlarmType(t): int(n) for t, n in snap["off_streak"]}
        eng._open_quality = {(str(k), int(ld), int(s)): (None if e is None else int(e))
                             for k, ld, s, e in snap["open_quality"]}
        # snapshots before technical_clear_s: suppressed exactly while unreadable
        eng._suppressed = bool(snap.get("suppressed", eng._unreadable))
        eng._active = {AlarmType(t): _Active(int(o), int(u), None if h is None else int(h))
                       for t, o, u, h in snap["active"]}
        eng._pending_vf = [VfDecision(int(s), bool(v), float(x)) for s, v, x in snap["pending_vf"]]
        eng._pending = [ClassifiedBeat(int(s), BeatClass(c), float(p))
                        for s, c, p in snap["pending_beats"]]
        eng._pending += [_Quality(SignalQualityEvent(int(a), None if b is None else int(b), str(k),
                                                     int(ld))) for a, b, k, ld in snap["pending_quality"]]
        eng._vf_detector = VfDetector.from_snapshot(snap["vf_detector"], eng.fs_hz, config.vf)
        return eng
