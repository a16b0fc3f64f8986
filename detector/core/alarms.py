"""Alarm vocabulary of the rhythm engine: types, priorities, configuration, engine input
(classified beats, signal quality reports) and output (:class:`AlarmEvent`), and the
conversion of events to wire :class:`stream.schemas.Alert` messages.

Pure data (no state machine: that is :mod:`detector.core.rhythm`, which re-exports all of
this).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from detector.core.vf import VfConfig
from stream.schemas import (
    ALARM_LIMIT_RANGES,
    MIN_HR_GAP_BPM,
    OPTIONAL_ALARM_TYPES,
    AlarmPhase,
    AlarmPriority,
    Alert,
    BeatClass,
)


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
    LEAD_OFF = "lead_off"  # some (not all) leads unreadable: monitoring goes on with the rest


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
    AlarmType.LEAD_OFF: AlarmPriority.LOW,
    AlarmType.COUPLET: AlarmPriority.LOW,
    AlarmType.BIGEMINY: AlarmPriority.LOW,
    AlarmType.TRIGEMINY: AlarmPriority.LOW,
}

# Technical (INOP) alarms: about the signal, not the patient.
TECHNICAL_ALARMS = frozenset({AlarmType.TECHNICAL, AlarmType.LEAD_OFF})

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
    lead_off_delay_s: float = 2.0  # a lead unreadable this long (others fine) raises LEAD_OFF
    # True: the QRS detector's noise verdict (lead -1, every lead judged together) alone makes
    # the ECG unreadable (VF detection goes on).  Off by default: that judge also calls some
    # real VT runs noise (MIT-BIH 205: 3 of 6 VT episodes lost; noise stress test: false VT
    # 138 -> 53), see BENCHMARKS.md "Alarms in noise".
    noise_verdict_unreadable: bool = False
    # Readable this long before the technical alarm ends and arrhythmia analysis resumes: a
    # flapping artefact is one technical alarm, and no analysis restarts in 1 s gaps of noise.
    technical_clear_s: float = 10.0
    afib_end_beats: int = 16  # AF ends after this many beats in a row without irregularity
    pattern_end_beats: int = 3  # bigeminy/trigeminy end after this many beats off pattern
    vf_windows: int = 3  # consecutive VF windows (one per vf.step_s) to raise, and to end
    vf_max_normal_beats: int = 1  # more non-V beats than this in the last vf.window_s: not VF
    # ... counting only beats at most 200 bpm after their predecessor: flutter waves that
    # the classifier calls N or S do not make the rhythm "organised"
    vf_organised_min_rr_s: float = 0.3
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


# What a clinician may change for one patient (:class:`AlarmLimits`): the heart-rate limits,
# the pause limit, and these alarms switched off.  The lethal alarms (asystole, VF, VT, the
# extreme rates) and the technical ones stay on whatever is asked.
# (the wire contract, stream.schemas, names them; the engine's types are these)
OPTIONAL_ALARMS = tuple(AlarmType(a) for a in OPTIONAL_ALARM_TYPES)
LIMIT_RANGES = ALARM_LIMIT_RANGES


@dataclass(frozen=True, slots=True)
class AlarmLimits:
    """One patient's adjustable alarm settings: the low and high heart-rate limits (the
    extreme bradycardia and tachycardia alarms), the pause limit, and the optional alarms
    switched off.  :meth:`checked` refuses values outside :data:`LIMIT_RANGES`."""

    hr_low_bpm: float
    hr_high_bpm: float
    pause_s: float
    disabled: frozenset[AlarmType] = frozenset()

    @classmethod
    def of(cls, config: AlarmConfig) -> AlarmLimits:
        """The limits ``config`` applies (the deployment's defaults, for a new patient)."""
        return cls(config.brady_bpm, config.tachy_bpm, config.pause_s,
                   frozenset(a for a in OPTIONAL_ALARMS if a in config.disabled))

    @classmethod
    def checked(cls, hr_low_bpm: float, hr_high_bpm: float, pause_s: float,
                disabled: Sequence[str] = ()) -> AlarmLimits:
        """Limits from untrusted values; ValueError saying which value is wrong and why."""
        values = {"hr_low_bpm": hr_low_bpm, "hr_high_bpm": hr_high_bpm, "pause_s": pause_s}
        for name, v in values.items():
            lo, hi = LIMIT_RANGES[name]
            if not isinstance(v, int | float) or not lo <= v <= hi:
                unit = "s" if name == "pause_s" else "bpm"
                raise ValueError(f"{name} must be {lo:g}-{hi:g} {unit}, got {v!r}")
        if hr_high_bpm - hr_low_bpm < MIN_HR_GAP_BPM:
            raise ValueError(f"hr_high_bpm must be at least {MIN_HR_GAP_BPM:g} bpm above "
                             f"hr_low_bpm, got {hr_low_bpm:g}-{hr_high_bpm:g}")
        off: set[AlarmType] = set()
        for name in disabled:
            try:
                alarm = AlarmType(name)
            except ValueError:
                raise ValueError(f"unknown alarm type {name!r}") from None
            if alarm not in OPTIONAL_ALARMS:
                raise ValueError(f"{name} cannot be switched off; optional alarms: "
                                 + ", ".join(a.value for a in OPTIONAL_ALARMS))
            off.add(alarm)
        return cls(float(hr_low_bpm), float(hr_high_bpm), float(pause_s), frozenset(off))

    def apply(self, config: AlarmConfig) -> AlarmConfig:
        """``config`` with these limits; alarms it disables beyond the optional ones stay off."""
        disabled = (config.disabled - frozenset(OPTIONAL_ALARMS)) | self.disabled
        return dataclasses.replace(config, brady_bpm=self.hr_low_bpm, tachy_bpm=self.hr_high_bpm,
                                   pause_s=self.pause_s, disabled=disabled)

    def to_dict(self) -> dict[str, Any]:
        return {"hr_low_bpm": self.hr_low_bpm, "hr_high_bpm": self.hr_high_bpm,
                "pause_s": self.pause_s,
                "disabled": [a.value for a in OPTIONAL_ALARMS if a in self.disabled]}


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


def events_to_alerts(
    events: Sequence[AlarmEvent], fs_hz: float, created_at_ns: int, chunk_produced_at_ns: int
) -> list[Alert]:
    """Wire messages for a batch of engine events (the adapter supplies the clocks)."""
    return [e.to_alert(fs_hz, created_at_ns, chunk_produced_at_ns) for e in events]
