"""Offline analysis of one recording with the live core: beats, classes and alarms.

Used by ``ecgmon analyze`` and the gateway's ``/api/analyze`` upload.  The
signal is streamed through :class:`~detector.core.monitor.PatientMonitor` in
chunks exactly as the live service does, so results match the live path.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.core.classifier import Classifier
from detector.core.monitor import DetectedBeat, MonitorConfig, PatientMonitor
from detector.core.rhythm import AlarmEvent
from stream.errors import EcgmonError

CHUNK_S = 1.0
PREVIEW_S = 20.0
PREVIEW_FS_HZ = 120.0


class AnalysisInputError(EcgmonError):
    """An uploaded or given recording cannot be read; the message says why."""


def analyze_signal(
    signal_mv: npt.ArrayLike, fs_hz: float, lead_names: tuple[str, ...] | list[str],
    classifier: Classifier, patient_id: str = "upload", config: MonitorConfig | None = None,
) -> dict[str, Any]:
    """Run detection, classification and alarms over a whole signal ``(n, leads)`` in mV."""
    x = np.asarray(signal_mv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise AnalysisInputError(f"signal must be (samples, leads) with samples > 0, got {x.shape}")
    if not 125.0 <= fs_hz <= 1000.0:
        raise AnalysisInputError(f"fs_hz={fs_hz}: supported sampling rates are 125-1000 Hz")
    if len(lead_names) != x.shape[1]:
        raise AnalysisInputError(f"{len(lead_names)} lead names for {x.shape[1]} leads")
    monitor = PatientMonitor(patient_id, fs_hz, tuple(lead_names), classifier.n_leads, config)
    beats: list[DetectedBeat] = []
    alarms: list[AlarmEvent] = []
    step = max(1, int(round(CHUNK_S * fs_hz)))
    for start in range(0, x.shape[0], step):
        pending = monitor.ingest(start, x[start : start + step])
        result = classifier.classify(pending.features) if len(pending.features) else None
        out = monitor.complete(pending, result)
        beats.extend(out.beats)
        alarms.extend(out.alarms)
    return _report(x, fs_hz, list(lead_names), beats, alarms)


def _report(
    x: npt.NDArray[np.float64], fs_hz: float, lead_names: list[str],
    beats: list[DetectedBeat], alarms: list[AlarmEvent],
) -> dict[str, Any]:
    rr = np.diff([b.sample_index for b in beats]) / fs_hz if len(beats) > 1 else np.zeros(0)
    hr = float(60.0 / np.median(rr)) if rr.size else None
    n_prev = int(min(x.shape[0], PREVIEW_S * fs_hz))
    step = max(1, int(round(fs_hz / PREVIEW_FS_HZ)))
    preview = np.nan_to_num(x[:n_prev:step, 0]).round(4)
    return {
        "fs_hz": fs_hz,
        "n_samples": int(x.shape[0]),
        "duration_s": x.shape[0] / fs_hz,
        "lead_names": lead_names,
        "beats": [
            {"sample_index": b.sample_index, "t_s": round(b.sample_index / fs_hz, 4),
             "class": b.beat_class.value, "confidence": round(b.confidence, 4)}
            for b in beats
        ],
        "alarms": [
            {"alarm_id": a.alarm_id, "alarm_type": a.alarm_type.value,
             "priority": a.priority.value, "phase": a.phase.value, "technical": a.technical,
             "onset_sample_index": a.onset_sample_index, "sample_index": a.sample_index,
             "onset_t_s": round(a.onset_sample_index / fs_hz, 3),
             "t_s": round(a.sample_index / fs_hz, 3),
             "heart_rate_bpm": round(a.heart_rate_bpm, 1), "message": a.message}
            for a in alarms
        ],
        "summary": {
            "heart_rate_bpm": None if hr is None else round(hr, 1),
            "counts": dict(Counter(b.beat_class.value for b in beats)),
            "n_beats": len(beats),
            "n_alarm_onsets": sum(1 for a in alarms if a.phase.value == "onset"),
        },
        "signal_preview": {"fs_hz": fs_hz / step, "mv": [preview.tolist()]},
    }


MAX_RECORD_SAMPLES = 24 * 3600 * 1000  # a day at 1 kHz, per signal


def read_wfdb(path: Path) -> tuple[npt.NDArray[np.float64], float, list[str]]:
    """Read a WFDB record (path without extension, or to its .hea) as mV.

    The header's declared length is checked against the signal files first, so a damaged or
    hostile header cannot make wfdb allocate memory for samples that do not exist.
    """
    import wfdb

    stem = path.with_suffix("") if path.suffix in (".hea", ".dat") else path
    try:
        header = wfdb.rdheader(str(stem))
        _check_declared_length(header, stem.parent)
        rec = wfdb.rdrecord(str(stem))
    except AnalysisInputError:
        raise
    except (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError,
            ZeroDivisionError, OverflowError, MemoryError) as exc:
        # wfdb reports damaged headers and files with any of these
        raise AnalysisInputError(
            f"cannot read WFDB record {stem.name}: {type(exc).__name__}: {exc}") from None
    if rec.p_signal is None:
        raise AnalysisInputError(f"WFDB record {stem} has no signal")
    return np.asarray(rec.p_signal, dtype=np.float64), float(rec.fs), list(rec.sig_name)


def _check_declared_length(header: Any, folder: Path) -> None:
    """Reject a header whose sample count the signal files cannot hold (>= 1 byte a sample)."""
    n_sig = int(header.n_sig or 0)
    sig_len = int(header.sig_len or 0)
    if n_sig < 1 or sig_len < 1:
        raise AnalysisInputError("the WFDB header declares no signals or no samples")
    if sig_len > MAX_RECORD_SAMPLES:
        raise AnalysisInputError(f"the WFDB header declares {sig_len} samples, over the "
                                 f"{MAX_RECORD_SAMPLES} this service reads")
    files = {str(f) for f in (header.file_name or [])}
    on_disk = sum((folder / f).stat().st_size for f in files if (folder / f).is_file())
    if sig_len * n_sig > 4 * on_disk:  # 4x leaves room for compressed formats
        raise AnalysisInputError(f"the WFDB header declares {sig_len} samples x {n_sig} "
                                 f"signals, more than its {on_disk}-byte signal files hold")


def read_csv(text: str, fs_hz: float | None) -> tuple[npt.NDArray[np.float64], float, list[str]]:
    """CSV with a header row of lead names (an optional first ``time``/``t_s`` column is used
    for the rate when ``fs_hz`` is not given) and one row of mV values per sample."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise AnalysisInputError(f"unreadable CSV: {exc}") from None
    if len(rows) < 2:
        raise AnalysisInputError("CSV needs a header row of lead names and at least one sample row")
    header = [h.strip() for h in rows[0]]
    try:
        data = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as exc:
        raise AnalysisInputError(f"CSV values must be numbers: {exc}") from None
    if data.ndim != 2 or data.shape[1] != len(header):
        raise AnalysisInputError(f"every CSV row needs {len(header)} values, like the header")
    if np.isinf(data).any():  # "1e400" parses as inf
        raise AnalysisInputError("CSV values must be finite numbers (found an infinite one)")
    if header[0].lower() in ("time", "t", "t_s", "time_s", "seconds"):
        if not np.isfinite(data[:, 0]).all():
            raise AnalysisInputError("the CSV time column must hold finite numbers")
        if fs_hz is None and data.shape[0] > 1:
            dt = float(np.median(np.diff(data[:, 0])))
            if dt <= 0:
                raise AnalysisInputError("the CSV time column must increase")
            fs_hz = 1.0 / dt
        header, data = header[1:], data[:, 1:]
    if fs_hz is None:
        raise AnalysisInputError("give the sampling rate (fs_hz) or a time column in the CSV")
    if not header:
        raise AnalysisInputError("the CSV has no lead columns")
    return data, float(fs_hz), header
