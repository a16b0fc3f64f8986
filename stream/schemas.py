"""Typed messages exchanged between ecgmon stages.

Every message is a frozen dataclass with units in its field names.  The wire
encoding lives in :mod:`stream.serde`; nothing else builds or parses bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, eq=False)
class SampleChunk:
    """A block of raw ADC samples from one patient's monitor, all leads.

    ``samples`` has shape ``(n_samples, n_leads)`` and dtype int16.  Physical
    units are ``(samples - adc_baseline) / adc_gain`` in mV, per lead.
    """

    patient_id: str
    record: str
    lead_names: tuple[str, ...]
    fs_hz: float
    adc_gain: tuple[float, ...]
    adc_baseline: tuple[int, ...]
    first_sample_index: int
    samples: npt.NDArray[np.int16]
    produced_at_ns: int
    schema_version: int = SCHEMA_VERSION

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def end_sample_index(self) -> int:
        """Index one past the last sample of this chunk."""
        return self.first_sample_index + self.n_samples

    def millivolts(self) -> npt.NDArray[np.float64]:
        """Samples converted to mV, shape ``(n_samples, n_leads)``."""
        base = np.asarray(self.adc_baseline, dtype=np.float64)
        gain = np.asarray(self.adc_gain, dtype=np.float64)
        return (self.samples.astype(np.float64) - base) / gain

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleChunk):
            return NotImplemented
        return (
            self.patient_id == other.patient_id
            and self.record == other.record
            and self.lead_names == other.lead_names
            and self.fs_hz == other.fs_hz
            and self.adc_gain == other.adc_gain
            and self.adc_baseline == other.adc_baseline
            and self.first_sample_index == other.first_sample_index
            and self.produced_at_ns == other.produced_at_ns
            and self.schema_version == other.schema_version
            and self.samples.shape == other.samples.shape
            and bool(np.array_equal(self.samples, other.samples))
        )

    __hash__ = None  # type: ignore[assignment]


class BeatClass(enum.StrEnum):
    """AAMI EC57 beat classes, plus U for a beat not (yet) classified."""

    N = "N"
    S = "S"
    V = "V"
    F = "F"
    Q = "Q"
    U = "U"


@dataclass(frozen=True, slots=True)
class Beat:
    """One detected (and possibly classified) heartbeat."""

    patient_id: str
    sample_index: int
    fs_hz: float
    beat_class: BeatClass
    confidence: float
    rr_prev_s: float
    detected_at_ns: int
    chunk_produced_at_ns: int
    schema_version: int = SCHEMA_VERSION

    @property
    def beat_id(self) -> str:
        """Deterministic id: the same beat always gets the same id."""
        return f"{self.patient_id}:{self.sample_index}"


class AlarmPriority(enum.StrEnum):
    """IEC 60601-1-8 style alarm priorities."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlarmPhase(enum.StrEnum):
    ONSET = "onset"
    UPDATE = "update"
    END = "end"


@dataclass(frozen=True, slots=True)
class Alert:
    """One lifecycle event of an alarm.

    ``alarm_id`` is deterministic (patient, type, onset sample) so a replayed
    stream produces the same ids; ``alert_id`` adds the phase and the sample
    index of the event so every event is unique and idempotent to store.
    """

    patient_id: str
    alarm_type: str
    priority: AlarmPriority
    phase: AlarmPhase
    onset_sample_index: int
    sample_index: int
    fs_hz: float
    heart_rate_bpm: float
    message: str
    created_at_ns: int
    chunk_produced_at_ns: int
    technical: bool = False
    details: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    schema_version: int = SCHEMA_VERSION

    @property
    def alarm_id(self) -> str:
        return f"{self.patient_id}:{self.alarm_type}:{self.onset_sample_index}"

    @property
    def alert_id(self) -> str:
        return f"{self.alarm_id}:{self.phase.value}:{self.sample_index}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be processed, with why and where it came from."""

    source_topic: str
    partition: int
    offset: int
    key: bytes
    reason: str
    detail: str
    payload: bytes
    created_at_ns: int
    schema_version: int = SCHEMA_VERSION


# What an AlarmSettings change (and a deployment's defaults, stream.settings) may set: the
# ranges of the limits, and the alarm types that may be switched off (the optional ones; the
# lethal and the technical alarms stay on).  The detector's rules are built on these
# (detector.core.alarms.AlarmLimits).
ALARM_LIMIT_RANGES: dict[str, tuple[float, float]] = {
    "hr_low_bpm": (15.0, 120.0), "hr_high_bpm": (60.0, 300.0), "pause_s": (1.5, 3.5)}
MIN_HR_GAP_BPM = 10.0  # the high limit at least this far above the low one
OPTIONAL_ALARM_TYPES = ("atrial_fibrillation", "bigeminy", "trigeminy", "ventricular_couplet",
                        "ventricular_run", "pause")


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """A clinician's change of one patient's alarm limits.

    The gateway sends it on the samples topic, keyed by the patient like the chunks, so the
    detector applies it between that patient's chunks in stream order: a replay from a
    checkpoint applies it at the same point again.  ``disabled`` lists alarm type values
    switched off (the detector accepts only the optional ones, see
    :class:`detector.core.alarms.AlarmLimits`); ``request_id`` lets the sender see when it
    is applied.
    """

    patient_id: str
    request_id: str
    user: str
    set_at_ns: int
    hr_low_bpm: float
    hr_high_bpm: float
    pause_s: float
    disabled: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class Discharge:
    """The end of one patient's monitoring: a clinician discharged the patient.

    Sent by the gateway on the samples topic, keyed by the patient like the chunks, so the
    detector acts on it after the patient's last chunk before it: it ends the patient's active
    alarms (``reason`` "patient discharged by <user>"), archives the stay in Redis and drops
    the patient's state.  Chunks that arrive for the same ``patient_id`` afterwards start a
    new admission (fresh learning, the ward's default limits).  ``request_id`` names the
    discharge (the detector's archive entry carries it).
    """

    patient_id: str
    request_id: str
    user: str
    discharged_at_ns: int
    schema_version: int = SCHEMA_VERSION


Message = SampleChunk | Beat | Alert | DeadLetter | AlarmSettings | Discharge
