"""One patient's live pipeline: chunks in, classified beats and alarm events out.

The monitor is pure and two-phase so that classification can be batched
across patients by the caller::

    pending = monitor.ingest(first_sample_index, samples_mv)   # detect + cut beats
    result = classifier.classify(pending.features)             # batched elsewhere
    out = monitor.complete(pending, result)                    # beats + alarms

Chunk order problems are handled here, explicitly (:mod:`detector.core.sequencer`):
duplicates are ignored, overlaps trimmed, a short gap is filled with NaN (the
quality monitor reports it, which raises the technical alarm and suppresses
arrhythmia alarms), a long gap restarts detection at the new index.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detector.core.alarms import AlarmLimits
from detector.core.arrays import pack as pack_arrays
from detector.core.arrays import unpack as unpack_arrays
from detector.core.beats import BeatFeatureExtractor, BeatFeatures, CutRequest, cut_windows
from detector.core.classifier import Classification, lead_order, select_leads
from detector.core.qrs import QrsConfig, QrsDetector
from detector.core.quality import QualityEvent
from detector.core.rhythm import AlarmConfig, AlarmEngine, AlarmEvent, ClassifiedBeat
from detector.core.sequencer import ChunkFate, ChunkSequencer
from stream.schemas import BeatClass

CHANGES_KEPT = 64  # ids of applied alarm-limit changes a monitor remembers (snapshotted)


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Per-patient pipeline parameters, physical units."""

    qrs: QrsConfig = field(default_factory=QrsConfig)
    alarms: AlarmConfig = field(default_factory=AlarmConfig)
    max_fill_gap_s: float = 10.0  # gaps up to this are NaN-filled; longer ones restart detection
    decision_lag_s: float = 0.5  # alarm time trails the stream end by this (QRS decision delay)
    max_hold_s: float = 3.0  # a beat with no next R-peak this long is emitted without it


@dataclass(frozen=True, slots=True)
class DetectedBeat:
    """A classified beat, absolute sample index."""

    sample_index: int
    beat_class: BeatClass
    confidence: float
    rr_prev_s: float


@dataclass(frozen=True, slots=True)
class Pending:
    """Output of :meth:`PatientMonitor.ingest`, waiting for classification."""

    features: BeatFeatures
    quality: list[QualityEvent]
    fate: ChunkFate
    stream_end: int  # absolute index one past the last sample seen
    gap_samples: int = 0


@dataclass(slots=True)
class Opened:
    """A chunk between :meth:`PatientMonitor.ingest_begin` and ``ingest_finish``."""

    monitor: PatientMonitor
    quality: list[QualityEvent]
    fate: ChunkFate
    stream_end: int
    gap_samples: int
    abs_peaks: list[int]
    requests: list[CutRequest] = field(default_factory=list)
    parts: list[BeatFeatures] | None = None  # features already made (the hold-release path)


def ingest_batch(items: list[tuple[PatientMonitor, int, npt.NDArray[np.floating]]]) -> list[Pending]:
    """:meth:`PatientMonitor.ingest` of many chunks (of many patients, in order), with the beat
    windows of all of them cut in one batch (:func:`detector.core.beats.cut_windows`).  The
    result is the same as ingesting them one by one; a patient's next chunk waits until its
    previous one is finished."""
    out: list[Pending | None] = [None] * len(items)
    opened: list[tuple[int, Opened]] = []
    busy: set[int] = set()

    def close() -> None:
        cut_windows([r for _, o in opened for r in o.requests])
        for i, o in opened:
            out[i] = o.monitor.ingest_finish(o)
        opened.clear()
        busy.clear()

    for i, (monitor, first, samples) in enumerate(items):
        if id(monitor) in busy:
            close()
        res = monitor.ingest_begin(first, samples)
        if isinstance(res, Pending):
            out[i] = res
        else:
            opened.append((i, res))
            busy.add(id(monitor))
    close()
    done = [p for p in out if p is not None]
    if len(done) != len(items):  # pragma: no cover - every item is finished above
        raise RuntimeError("ingest_batch left a chunk unfinished")
    return done


@dataclass(frozen=True, slots=True)
class MonitorOutput:
    beats: list[DetectedBeat]
    alarms: list[AlarmEvent]
    quality: list[QualityEvent]
    fate: ChunkFate
    gap_samples: int = 0


class PatientMonitor:
    """Detector, beat extractor and alarm engine of one patient, in absolute sample indices.

    Parameters
    ----------
    patient_id : str
    fs_hz : float
        Sampling rate of the stream (125-1000 Hz).
    lead_names : tuple of str
        Leads of the incoming samples; the classifier gets MLII first.
    classifier_leads : int
        Number of leads the classifier's windows need.
    config : MonitorConfig
    """

    def __init__(
        self, patient_id: str, fs_hz: float, lead_names: tuple[str, ...], classifier_leads: int,
        config: MonitorConfig | None = None,
    ) -> None:
        self.patient_id = patient_id
        self.fs_hz = float(fs_hz)
        self.lead_names = tuple(lead_names)
        self.classifier_leads = classifier_leads
        self.config = config or MonitorConfig()
        self._order = lead_order(self.lead_names)
        self._max_fill = int(round(self.config.max_fill_gap_s * self.fs_hz))
        self._lag = int(round(self.config.decision_lag_s * self.fs_hz))
        self._max_hold = int(round(self.config.max_hold_s * self.fs_hz))
        self._hold_deadline = self._max_hold + self._lag
        self.sequencer = ChunkSequencer()
        self.engine = AlarmEngine(
            self.fs_hz, self.config.alarms, patient_id=patient_id, n_leads=len(self.lead_names),
            lead_names=self.lead_names,
        )
        self._restart(0)
        self._last_beat: int | None = None
        self._changes: deque[str] = deque(maxlen=CHANGES_KEPT)  # applied alarm-limit changes

    def _restart(self, base: int) -> None:
        """(Re)start detection at absolute index ``base`` (stream start or after a long gap)."""
        self.base = base
        self.qrs = QrsDetector(self.fs_hz, len(self.lead_names), self.config.qrs)
        self.extractor = BeatFeatureExtractor(self.fs_hz, self.classifier_leads)
        self._waiting: deque[int] = deque()  # peaks given to the extractor, not yet emitted
        self._last_beat = None

    @property
    def next_sample_index(self) -> int | None:
        return self.sequencer.next_sample_index

    def ingest(self, first_sample_index: int, samples_mv: npt.NDArray[np.floating]) -> Pending:
        """Sequence a chunk, detect R-peaks and cut the beats that became complete."""
        return ingest_batch([(self, first_sample_index, samples_mv)])[0]

    def ingest_begin(self, first_sample_index: int, samples_mv: npt.NDArray[np.floating]) -> Pending | Opened:
        """First half of :meth:`ingest` (see :func:`ingest_batch`): everything up to the
        beat windows to cut.  A duplicate chunk is done here (its :class:`Pending`)."""
        x = np.asarray(samples_mv, dtype=np.float64).reshape(-1, len(self.lead_names))
        seq = self.sequencer.push(first_sample_index, x)  # type: ignore[arg-type]
        if seq.fate is ChunkFate.DUPLICATE:
            return Pending(BeatFeatures.empty(self.classifier_leads), [], seq.fate,
                           self.sequencer.next_sample_index or 0)
        x = np.asarray(seq.samples, dtype=np.float64)
        start = seq.first_sample_index
        if seq.fate is ChunkFate.FIRST:
            self._restart(start)
            self.engine = AlarmEngine(self.fs_hz, self.config.alarms, patient_id=self.patient_id,
                                      start_sample=start, n_leads=len(self.lead_names),
                                      lead_names=self.lead_names)
        elif seq.fate is ChunkFate.GAP:
            if seq.gap_samples <= self._max_fill:
                fill = np.full((seq.gap_samples, x.shape[1]), np.nan)
                x = np.concatenate([fill, x])
                start -= seq.gap_samples
            else:
                self._restart(start)
        result = self.qrs.update(x)
        quality = [self._shift(q) for q in result.quality]
        peaks = np.array([p.sample_index for p in result.peaks], dtype=np.int64)
        self.engine.update_signal(x[:, self._order[0]], start)
        stream_end = start + x.shape[0]
        abs_peaks = [int(p) + self.base for p in peaks]
        opened = Opened(self, quality, seq.fate, stream_end, seq.gap_samples, abs_peaks)
        if self._waiting and abs_peaks and abs_peaks[0] > self._waiting[-1] + self._max_hold:
            opened.parts = [self.extractor.update(self._classifier_view(x))]
            opened.parts.append(self._release_waiting())  # the next beat came after the hold: no RR link
            opened.parts.append(self.extractor.update(np.zeros((0, self.classifier_leads)), peaks))
        else:  # the same beats and features as the three steps above, in one pass
            opened.requests = self.extractor.begin(self._classifier_view(x), peaks)
        return opened

    def ingest_finish(self, opened: Opened) -> Pending:
        """Second half of :meth:`ingest`, once ``opened.requests`` have their windows."""
        parts = opened.parts if opened.parts is not None else [self.extractor.finish()]
        self._waiting.extend(opened.abs_peaks)
        if self._waiting and opened.stream_end - self._waiting[-1] >= self._hold_deadline:
            parts.append(self._release_waiting())
        feats = BeatFeatures.concat(parts, self.classifier_leads)
        feats = BeatFeatures(feats.sample_index + self.base, feats.beats, feats.rr)
        return Pending(feats, opened.quality, opened.fate, opened.stream_end, opened.gap_samples)

    def _release_waiting(self) -> BeatFeatures:
        """Emit the beat that waited too long for its next R-peak (next RR = previous RR)."""
        return self.extractor.flush()

    def complete(self, pending: Pending, result: Classification | None) -> MonitorOutput:
        """Attach classes to the pending beats and advance the alarm engine."""
        beats: list[DetectedBeat] = []
        n = len(pending.features)
        if n:
            if result is None or len(result.class_index) != n:
                raise ValueError(f"classification for {n} beats expected")
            conf = result.confidence
            for i, (sample, cls) in enumerate(
                zip(pending.features.sample_index.tolist(), result.classes, strict=True)
            ):
                rr = 0.0 if self._last_beat is None else (sample - self._last_beat) / self.fs_hz
                beats.append(DetectedBeat(sample, cls, float(conf[i]), rr))
                self._last_beat = sample
                while self._waiting and self._waiting[0] <= sample:
                    self._waiting.popleft()
        # Alarm time advances to what is decided; a beat still waiting for its next R-peak
        # (its RR features need it) holds it back until the beat is released (max_hold_s).
        watermark = pending.stream_end - self._lag
        if self._waiting:
            watermark = min(watermark, self._waiting[0])
        if self.qrs._learning:
            # the beats of the learning period come out only at its end, up to learning_s
            # late: alarm time must not pass them (the engine would stamp them all with the
            # same sample, RR 0, heart rate inf, which the Alert encoder rejects)
            watermark = min(watermark, self.base)
        watermark = max(watermark, self.engine.watermark)
        alarms = self.engine.update(
            [ClassifiedBeat(b.sample_index, b.beat_class, b.confidence) for b in beats],
            pending.quality,
            now_sample=watermark,
        )
        return MonitorOutput(beats, alarms, pending.quality, pending.fate, pending.gap_samples)

    @property
    def has_own_limits(self) -> bool:
        """Whether a clinician ever set this patient's limits (else it runs on the defaults)."""
        return bool(self._changes)

    @property
    def alarm_limits(self) -> AlarmLimits:
        return AlarmLimits.of(self.engine.config)

    def set_alarm_limits(self, limits: AlarmLimits, reason: str = "",
                         change_id: str = "") -> list[AlarmEvent] | None:
        """This patient's alarm limits from the alarm watermark on (and after any restart of
        detection); returns the end events of active alarms now switched off.

        ``change_id`` names the change: one already applied (the last :data:`CHANGES_KEPT`
        are remembered, and snapshotted) is ignored and None returned, so a replay from a
        checkpoint older than this state applies no change twice, nor an older one over a
        newer."""
        if change_id:
            if change_id in self._changes:
                return None
            self._changes.append(change_id)
        alarms = limits.apply(self.config.alarms)
        self.config = dataclasses.replace(self.config, alarms=alarms)
        return self.engine.reconfigure(limits.apply(self.engine.config), reason)

    def discharge(self, reason: str) -> list[AlarmEvent]:
        """The end of this patient's monitoring: every active alarm ends at the alarm watermark
        with ``reason`` (beats still waiting for their next R-peak are not classified).  The
        monitor is not used after this; returns the end events."""
        self._waiting.clear()
        return self.engine.end_all(reason)

    def _classifier_view(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return select_leads(x[:, self._order], self.classifier_leads)

    def _shift(self, q: QualityEvent) -> QualityEvent:
        end = None if q.end_sample is None else q.end_sample + self.base
        return QualityEvent(q.lead, q.kind, q.start_sample + self.base, end)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> bytes:
        """Complete state as bytes (no pickle); :meth:`from_snapshot` resumes exactly.

        Version 2: the VF detector's signal buffer (4 s of samples) is stored as a float64
        array beside the JSON instead of inside it (JSON float text was 40 % of the cost).
        Version 3: its finite-sample mask too, and neither is ever made a Python list.
        Version 4: the same arrays in :mod:`detector.core.arrays` instead of ``.npz`` (the zip
        archives cost most of a checkpoint); earlier versions still restore.
        """
        engine = self.engine.snapshot(arrays=True)
        vf = dict(engine["vf_detector"])
        vf_buf = np.asarray(vf.pop("buf"), dtype=np.float64)
        vf_ok = np.asarray(vf.pop("ok"), dtype=bool)
        engine = {**engine, "vf_detector": vf}
        meta = {
            "version": 4, "patient_id": self.patient_id, "fs_hz": self.fs_hz,
            "lead_names": list(self.lead_names), "classifier_leads": self.classifier_leads,
            "base": self.base, "next": self.sequencer.next_sample_index,
            "waiting": list(self._waiting), "last_beat": self._last_beat,
            "engine": engine, "changes": list(self._changes),
        }
        return pack_arrays({
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "qrs": np.frombuffer(self.qrs.snapshot(), dtype=np.uint8),
            "extractor": np.frombuffer(self.extractor.snapshot(), dtype=np.uint8),
            "vf_buf": vf_buf,
            "vf_ok": vf_ok,
        })

    @classmethod
    def from_snapshot(cls, blob: bytes, config: MonitorConfig | None = None) -> PatientMonitor:
        z = unpack_arrays(blob)
        meta = json.loads(z["meta"].tobytes().decode())
        qrs_blob, ext_blob = z["qrs"].tobytes(), z["extractor"].tobytes()
        vf_buf = z.get("vf_buf")
        vf_ok = z.get("vf_ok")
        if meta.get("version") not in (1, 2, 3, 4):
            raise ValueError(f"unsupported monitor snapshot version {meta.get('version')!r}")
        if meta["version"] >= 2 and isinstance(meta["engine"].get("vf_detector"), dict):
            meta["engine"]["vf_detector"]["buf"] = np.zeros(0) if vf_buf is None else vf_buf
        if meta["version"] >= 3:
            meta["engine"]["vf_detector"]["ok"] = vf_ok
        mon = cls(meta["patient_id"], float(meta["fs_hz"]), tuple(meta["lead_names"]),
                  int(meta["classifier_leads"]), config)
        mon.base = int(meta["base"])
        mon.sequencer = ChunkSequencer(meta["next"])
        mon._waiting = deque(int(v) for v in meta["waiting"])
        mon._last_beat = meta["last_beat"]
        mon._changes.extend(str(c) for c in meta.get("changes", ()))
        mon.engine = AlarmEngine.from_snapshot(meta["engine"])
        # the patient's own limits (the engine's) outlive a restart of detection
        mon.config = dataclasses.replace(mon.config, alarms=AlarmLimits.of(mon.engine.config).apply(
            mon.config.alarms))
        mon.qrs = QrsDetector.from_snapshot(qrs_blob)
        mon.extractor = BeatFeatureExtractor.from_snapshot(ext_blob)
        return mon


def warm_up(fs_hz: float = 360.0, lead_names: tuple[str, ...] = ("MLII", "V1"), classifier_leads: int = 1,
            seconds: float = 12.0) -> None:
    """Run a throw-away monitor over synthetic beats so that the compiled kernels
    (:mod:`detector.core.kernels`) are loaded from their disk cache, or compiled, before the
    first real chunk: a long-running service pays that once at start-up (and its memory
    shows in its baseline), not in its first batch."""
    n = int(seconds * fs_hz)
    t = np.arange(n) / fs_hz
    beat = np.exp(-0.5 * (((t % 0.8) - 0.4) / 0.012) ** 2)  # a narrow spike every 0.8 s
    x = np.stack([beat * (1.0 + 0.2 * i) for i in range(len(lead_names))], axis=1)
    monitor = PatientMonitor("warm-up", fs_hz, lead_names, classifier_leads)
    step = int(fs_hz)
    for start in range(0, n, step):
        monitor.ingest(start, x[start : start + step])
