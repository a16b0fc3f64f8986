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

import dataclasses
import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from detector.core.rhythm_measures import af_features, mean_rate_bpm
from detector.core.vf import VfConfig, VfDecision, VfDetector
from stream.schemas import AlarmPhase, AlarmPriority, Alert, BeatClass


class AlarmType(enum.StrEnum):
    ASYSTOLE = "asystole"
    VFIB = "ventricular_fibrillation"
    VTACH = "ventricular_tachycardia"
    EXTREME_BRADY = "extreme_bradycardia"
    EXTREME_TACHY = "extreme_tachycardia"
    VRUN = "ventricular_run"
    COUPLET = "ventricular_couplet"
    BIGEMINY = "bigeminy"
    TRIGEMINY = "trigeminy"
    PAUSE = "pause"
    AFIB = "atrial_fibrillation"
    TECHNICAL = "signal_inoperable"


DEFAULT_PRIORITIES: dict[AlarmType, AlarmPriority] = {
    AlarmType.ASYSTOLE: AlarmPriority.HIGH,
    AlarmType.VFIB: AlarmPriority.HIGH,
    AlarmType.VTACH: AlarmPriority.HIGH,
    AlarmType.EXTREME_BRADY: AlarmPriority.HIGH,
    AlarmType.EXTREME_TACHY: AlarmPriority.HIGH,
    AlarmType.VRUN: AlarmPriority.MEDIUM,
    AlarmType.PAUSE: AlarmPriority.MEDIUM,
    AlarmType.AFIB: AlarmPriority.MEDIUM,
    AlarmType.TECHNICAL: AlarmPriority.MEDIUM,
    AlarmType.COUPLET: AlarmPriority.LOW,
    AlarmType.BIGEMINY: AlarmPriority.LOW,
    AlarmType.TRIGEMINY: AlarmPriority.LOW,
}

# Alarms that latch for ``event_hold_s`` after each occurrence (the rest follow a condition).
EVENT_ALARMS = frozenset({AlarmType.VRUN, AlarmType.COUPLET, AlarmType.PAUSE})

QUALITY_KINDS = ("noise", "saturation", "flat", "lead_off", "nan", "gap", "clipped", "artefact")


@dataclass(frozen=True, slots=True)
class ClassifiedBeat:
    """A detected beat with its AAMI class, as the classifier hands it to the alarm engine."""

    sample_index: int
    beat_class: BeatClass
    confidence: float = 1.0


class QualityLike(Protocol):
    """What the engine reads from a quality report (:class:`detector.core.quality.QualityEvent`
    and :class:`SignalQualityEvent` both fit; a report without ``lead`` counts as lead 0)."""

    @property
    def start_sample(self) -> int: ...
    @property
    def end_sample(self) -> int | None: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, slots=True)
class SignalQualityEvent:
    """An unreadable stretch ``[start_sample, end_sample]`` of one lead; ``None`` = still open.

    Close an open stretch later by sending the same ``kind``, ``lead`` and ``start_sample``
    with the end filled in.  ``kind`` is one of :data:`QUALITY_KINDS`.
    """

    start_sample: int
    end_sample: int | None
    kind: str
    lead: int = 0


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    """Alarm thresholds in physical units; ``disabled`` switches types off."""

    asystole_s: float = 4.0
    pause_s: float = 2.0
    brady_bpm: float = 40.0
    brady_beats: int = 5
    tachy_bpm: float = 140.0
    tachy_beats: int = 17
    vt_beats: int = 5
    vt_bpm: float = 100.0
    vrun_min_beats: int = 3
    bigeminy_cycles: int = 4
    trigeminy_cycles: int = 3
    afib_window_beats: int = 32
    # AF thresholds: Dash et al. 2009 (TPR 0.54-0.77), nRMSSD/entropy chosen on MIT-BIH DS1 only
    afib_nrmssd: float = 0.12
    afib_entropy: float = 0.7
    afib_tpr: tuple[float, float] = (0.54, 0.77)
    technical_all_leads: bool = True  # False: one unreadable lead already suppresses
    afib_end_beats: int = 16  # AF ends after this many beats in a row without irregularity
    pattern_end_beats: int = 3  # bigeminy/trigeminy end after this many beats off pattern
    vf_windows: int = 3  # consecutive VF windows (one per vf.step_s) to raise, and to end
    vf_max_normal_beats: int = 1  # more non-V beats than this in the last vf.window_s: not VF
    event_hold_s: float = 10.0
    update_interval_s: float = 10.0
    disabled: frozenset[AlarmType] = frozenset()
    priorities: tuple[tuple[AlarmType, AlarmPriority], ...] = ()
    vf: VfConfig = field(default_factory=VfConfig)

    def priority(self, alarm: AlarmType) -> AlarmPriority:
        return dict(self.priorities).get(alarm, DEFAULT_PRIORITIES[alarm])

    def enabled(self, alarm: AlarmType) -> bool:
        return alarm not in self.disabled

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["disabled"] = sorted(a.value for a in self.disabled)
        d["priorities"] = [[a.value, p.value] for a, p in self.priorities]
        d["afib_tpr"] = list(self.afib_tpr)
        d["vf"] = {**d["vf"], "band_hz": list(self.vf.band_hz)}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlarmConfig:
        vf = d["vf"]
        return cls(**{
            **d,
            "disabled": frozenset(AlarmType(a) for a in d["disabled"]),
            "priorities": tuple((AlarmType(a), AlarmPriority(p)) for a, p in d["priorities"]),
            "afib_tpr": tuple(d["afib_tpr"]),
            "vf": VfConfig(**{**vf, "band_hz": tuple(vf["band_hz"])}),
        })


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One lifecycle event of an alarm, in data time; :meth:`to_alert` makes the wire message."""

    patient_id: str
    alarm_type: AlarmType
    priority: AlarmPriority
    phase: AlarmPhase
    onset_sample_index: int
    sample_index: int
    heart_rate_bpm: float
    message: str
    technical: bool = False
    details: tuple[tuple[str, str], ...] = ()

    @property
    def alarm_id(self) -> str:
        return f"{self.patient_id}:{self.alarm_type.value}:{self.onset_sample_index}"

    def to_alert(self, fs_hz: float, created_at_ns: int, chunk_produced_at_ns: int) -> Alert:
        return Alert(
            patient_id=self.patient_id, alarm_type=self.alarm_type.value, priority=self.priority,
            phase=self.phase, onset_sample_index=self.onset_sample_index,
            sample_index=self.sample_index, fs_hz=fs_hz, heart_rate_bpm=self.heart_rate_bpm,
            message=self.message, created_at_ns=created_at_ns,
            chunk_produced_at_ns=chunk_produced_at_ns, technical=self.technical,
            details=self.details,
        )


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


class AlarmEngine:
    """Per-patient alarm state machine; see the module docstring for the update contract."""

    def __init__(
        self, fs_hz: float, config: AlarmConfig = AlarmConfig(), patient_id: str = "",
        start_sample: int = 0, n_leads: int = 1,
    ) -> None:
        if fs_hz <= 0:
            raise ValueError(f"fs_hz={fs_hz}: must be > 0")
        self.fs_hz, self.config, self.patient_id, self.n_leads = fs_hz, config, patient_id, n_leads
        self._bad_leads_needed = n_leads if config.technical_all_leads else 1
        c = config
        self._asystole = int(round(c.asystole_s * fs_hz))
        self._pause = int(round(c.pause_s * fs_hz))
        self._hold = int(round(c.event_hold_s * fs_hz))
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

    @property
    def _unreadable(self) -> bool:
        return len({lead for _, lead, _ in self._open_quality}) >= self._bad_leads_needed

    def _quality_start(self, sample: int, q: _Quality) -> None:
        key = (q.kind, q.lead, q.start_sample)
        if key in self._open_quality:
            if q.end_sample is not None:  # the closing report of an open stretch
                self._open_quality[key] = max(q.end_sample, sample)
            return
        was = self._unreadable
        self._open_quality[key] = None if q.end_sample is None else max(q.end_sample, sample)
        if not was and self._unreadable:
            for t in [t for t in self._active if t is not AlarmType.TECHNICAL]:
                self._end(t, sample, reason="signal unreadable")
            self._reset_rhythm(None)
            self._onset(AlarmType.TECHNICAL, sample, f"ECG unreadable ({q.kind})",
                        (("kind", q.kind),))

    def _quality_end(self, sample: int, key: tuple[str, int, int]) -> None:
        was = self._unreadable
        if self._open_quality.pop(key, _MISSING) is _MISSING or not was or self._unreadable:
            return
        self._end(AlarmType.TECHNICAL, sample)
        self._reset_rhythm(sample)

    def _reset_rhythm(self, anchor: int | None) -> None:
        self._beats.clear()
        self._nn.clear()
        self._v_run, self._vt_in_run, self._vf_streak = 0, False, 0
        self._anchor, self._pause_armed = anchor, True

    def _vf(self, sample: int, v: VfDecision) -> None:
        if self._unreadable:
            return
        c = self.config
        window = int(round(c.vf.window_s * self.fs_hz))
        organised = sum(1 for b, k in self._beats if b > sample - window
                        and k not in (BeatClass.V, BeatClass.U)) > c.vf_max_normal_beats
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
        if self._anchor is not None and AlarmType.VFIB not in self._active:
            if AlarmType.ASYSTOLE not in self._active:
                due.append((self._anchor + self._asystole, AlarmType.ASYSTOLE))
            if self._pause_armed and self._beats:
                due.append((self._anchor + self._pause, AlarmType.PAUSE))
        due += [(a.until, t) for t, a in self._active.items() if a.until is not None]
        return min(due, default=None, key=lambda d: (d[0], str(d[1])))

    def _fire_timers(self, before: int) -> None:
        while (nxt := self._next_timer()) is not None and nxt[0] < before:
            at, alarm = nxt
            self._now = max(self._now, at)
            if isinstance(alarm, tuple):
                self._quality_end(at, alarm)
                continue
            active = self._active.get(alarm)
            if active is not None and active.until is not None:
                self._end(alarm, at)
            elif alarm is AlarmType.ASYSTOLE:
                for t in [t for t in self._active if t not in (AlarmType.TECHNICAL, AlarmType.PAUSE)]:
                    self._end(t, at, reason="asystole")
                self._onset(AlarmType.ASYSTOLE, at, f"asystole: no QRS for {self.config.asystole_s:g} s")
            else:
                self._pause_armed = False
                self._event(AlarmType.PAUSE, at, f"pause: RR > {self.config.pause_s:g} s")

    # ------------------------------------------------------------------ beats
    def _beat(self, s: int, cls: BeatClass) -> None:
        if self._unreadable:
            return
        self._end(AlarmType.ASYSTOLE, s)
        prev = self._beats[-1] if self._beats else None
        self._beats.append((s, cls))
        self._anchor, self._pause_armed = s, True
        if prev is not None and prev[1] is BeatClass.N and cls is BeatClass.N and s > prev[0]:
            self._nn.append(s - prev[0])
        self._ventricular(s, cls)
        self._condition(AlarmType.EXTREME_BRADY, s, self._rate_below(self.config.brady_beats,
                                                                     self.config.brady_bpm))
        self._condition(AlarmType.EXTREME_TACHY, s, self._rate_above(self.config.tachy_beats,
                                                                     self.config.tachy_bpm))
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
            msg, alarm is AlarmType.TECHNICAL, details,
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

    def _condition(self, alarm: AlarmType, s: int, true: bool, end_after: int = 1) -> None:
        """Raise when ``true``; end after ``end_after`` beats in a row with it false."""
        if true:
            self._off_streak.pop(alarm, None)
            self._onset(alarm, s, alarm.value.replace("_", " "))
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
    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state; :meth:`from_snapshot` resumes exactly."""
        return {
            "version": 1, "fs_hz": self.fs_hz, "patient_id": self.patient_id,
            "config": self.config.to_dict(), "now": self._now,
            "beats": [[s, c.value] for s, c in self._beats], "nn": list(self._nn),
            "anchor": self._anchor, "pause_armed": self._pause_armed, "v_run": self._v_run,
            "vt_in_run": self._vt_in_run, "vf_streak": self._vf_streak,
            "off_streak": [[t.value, n] for t, n in self._off_streak.items()],
            "n_leads": self.n_leads,
            "open_quality": [[k, ld, s, e] for (k, ld, s), e in self._open_quality.items()],
            "active": [[t.value, a.onset, a.last_update, a.until] for t, a in self._active.items()],
            "pending_vf": [[v.sample_index, v.is_vf, v.leakage] for v in self._pending_vf
                           + [x for x in self._pending if isinstance(x, VfDecision)]],
            "pending_beats": [[b.sample_index, b.beat_class.value, b.confidence]
                              for b in self._pending if isinstance(b, ClassifiedBeat)],
            "pending_quality": [[q.start_sample, q.end_sample, q.kind, q.lead]
                                for q in self._pending if isinstance(q, _Quality)],
            "vf_detector": self._vf_detector.snapshot(),
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> AlarmEngine:
        if snap.get("version") != 1:
            raise ValueError(f"unsupported alarm engine snapshot version {snap.get('version')!r}")
        config = AlarmConfig.from_dict(snap["config"])
        eng = cls(float(snap["fs_hz"]), config, str(snap["patient_id"]), int(snap["now"]),
                  int(snap["n_leads"]))
        eng._beats.extend((int(s), BeatClass(c)) for s, c in snap["beats"])
        eng._nn.extend(int(v) for v in snap["nn"])
        eng._anchor = None if snap["anchor"] is None else int(snap["anchor"])
        eng._pause_armed = bool(snap["pause_armed"])
        eng._v_run, eng._vt_in_run = int(snap["v_run"]), bool(snap["vt_in_run"])
        eng._vf_streak = int(snap["vf_streak"])
        eng._off_streak = {AlarmType(t): int(n) for t, n in snap["off_streak"]}
        eng._open_quality = {(str(k), int(ld), int(s)): (None if e is None else int(e))
                             for k, ld, s, e in snap["open_quality"]}
        eng._active = {AlarmType(t): _Active(int(o), int(u), None if h is None else int(h))
                       for t, o, u, h in snap["active"]}
        eng._pending_vf = [VfDecision(int(s), bool(v), float(x)) for s, v, x in snap["pending_vf"]]
        eng._pending = [ClassifiedBeat(int(s), BeatClass(c), float(p))
                        for s, c, p in snap["pending_beats"]]
        eng._pending += [_Quality(SignalQualityEvent(int(a), None if b is None else int(b), str(k),
                                                     int(ld))) for a, b, k, ld in snap["pending_quality"]]
        eng._vf_detector = VfDetector.from_snapshot(snap["vf_detector"], eng.fs_hz, config.vf)
        return eng


def events_to_alerts(
    events: Sequence[AlarmEvent], fs_hz: float, created_at_ns: int, chunk_produced_at_ns: int
) -> list[Alert]:
    """Wire messages for a batch of engine events (the adapter supplies the clocks)."""
    return [e.to_alert(fs_hz, created_at_ns, chunk_produced_at_ns) for e in events]
