"""Noise-stressed copies of training records: real electrode-motion and muscle noise (nstdb).

A bedside monitor classifies beats through movement and muscle noise; AAMI EC57
stress-tests with the same noise records (MIT-BIH Noise Stress Test Database,
``em`` electrode motion, ``ma`` muscle artefact).  A record's noisy copy adds
noise to both leads in one-minute segments, each clean or noisy at a signal-to-noise
ratio drawn from :data:`SEGMENT_CHOICES`, the SNR defined as nstdb's ``nst`` does
(signal power from the QRS peak-to-peak amplitude, ``S = p2p**2 / 8``; noise power
the mean square of the scaled noise).  The detector and the beat features then run
on the noisy signal as they would live, and the beats keep the reference labels.

Copies for training draw their noise from the first half of each noise record,
copies for the held-out (noise-stress) scoring from the second half, so a model
is never scored on noise it was trained on.  Copies are reproducible: the segment
plan and noise offsets come from a seed made of the record name and copy number.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.training.data import BeatSet, Record, load_beats
from stream.errors import DataUnavailable

NOISE_RECORDS = ("em", "ma")
# One-minute segments: clean, or electrode motion / muscle artefact at 12 or 6 dB SNR
# (nstdb's 118e12 / 118e06 levels: noisy, but a clinician still reads the beats).
SEGMENT_CHOICES: tuple[tuple[str, float] | None, ...] = (None, ("em", 12.0), ("em", 6.0), ("ma", 12.0),
                                                        ("ma", 6.0))
SEGMENT_S = 60.0
QRS_HALF_S = 0.05  # peak-to-peak amplitude measured within +-50 ms of each reference R-peak
AMPLITUDE_BEATS = 50  # per segment and lead: the median over the segment's first beats


class NoiseUnavailable(DataUnavailable):
    """The nstdb noise records cannot be read; the message says what to do."""


@dataclass(frozen=True, slots=True)
class NoiseSource:
    """The nstdb noise records (physical units, 360 Hz, two leads each) and their sha256."""

    signals: dict[str, npt.NDArray[np.float64]]
    fs_hz: float
    sha256: dict[str, dict[str, str]]


def load_noise(noise_dir: Path) -> NoiseSource:
    """Read ``em`` and ``ma`` from ``noise_dir`` (a copy of PhysioNet's nstdb)."""
    import wfdb

    missing = missing_noise_records(noise_dir)
    if missing:
        raise NoiseUnavailable(
            f"nstdb noise records {', '.join(missing)} not found in {noise_dir}: pass --noise-dir with a "
            "copy of the MIT-BIH Noise Stress Test Database (e.g. ../shared/data/nstdb; PhysioNet: "
            "`python -c \"import wfdb; wfdb.dl_database('nstdb', 'nstdb', records=['em', 'ma'])\"`)"
        )
    signals, fs, hashes = {}, 0.0, {}
    for name in NOISE_RECORDS:
        rec = wfdb.rdrecord(str(noise_dir / name))
        signals[name] = np.nan_to_num(np.asarray(rec.p_signal, dtype=np.float64))
        fs = float(rec.fs)
        hashes[name] = {ext: hashlib.sha256((noise_dir / f"{name}.{ext}").read_bytes()).hexdigest()
                        for ext in ("dat", "hea")}
    return NoiseSource(signals, fs, hashes)


def missing_noise_records(noise_dir: Path) -> list[str]:
    """The names of :data:`NOISE_RECORDS` that ``noise_dir`` lacks."""
    return [n for n in NOISE_RECORDS if not (noise_dir / f"{n}.hea").is_file()]


def noisy_copy(record: Record, noise: NoiseSource, copy: int, held_out: bool) -> Record:
    """``record`` with nstdb noise added in one-minute segments (see the module docstring).

    ``held_out`` picks the second half of each noise record (noise-stress scoring), else the
    first half (training).  The same ``(record.name, copy, held_out)`` gives the same copy.
    """
    if abs(noise.fs_hz - record.fs_hz) > 1e-6:
        raise ValueError(f"noise at {noise.fs_hz} Hz, record {record.name} at {record.fs_hz} Hz")
    tag = f"{record.name}-{copy}-{'test' if held_out else 'train'}"
    rng = np.random.default_rng(int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16))
    x = record.signal_mv.copy()
    fs = record.fs_hz
    seg, half = int(round(SEGMENT_S * fs)), int(round(QRS_HALF_S * fs))
    peaks = record.ref_samples[(record.ref_samples >= half) & (record.ref_samples < len(x) - half)]
    for start in range(0, len(x), seg):
        choice = SEGMENT_CHOICES[int(rng.integers(len(SEGMENT_CHOICES)))]
        if choice is None:
            continue
        kind, snr_db = choice
        stop = min(len(x), start + seg)
        source = noise.signals[kind]
        n_half = len(source) // 2
        lo = n_half if held_out else 0
        offset = int(rng.integers(lo, lo + n_half - (stop - start) + 1))
        seg_peaks = peaks[(peaks >= start) & (peaks < stop)][:AMPLITUDE_BEATS]
        if not len(seg_peaks):
            continue
        for lead in range(x.shape[1]):
            p2p = float(np.median([np.ptp(x[p - half : p + half, lead]) for p in seg_peaks]))
            part = source[offset : offset + stop - start, lead % source.shape[1]]
            x[start:stop, lead] += scaled_noise(part, p2p, snr_db)
    return replace(record, signal_mv=x)


def scaled_noise(noise: npt.NDArray[np.float64], qrs_p2p_mv: float, snr_db: float) -> npt.NDArray[np.float64]:
    """``noise`` (mean removed) scaled to ``snr_db`` against a QRS of ``qrs_p2p_mv`` peak to peak."""
    centred: npt.NDArray[np.float64] = noise - noise.mean()
    power = float(np.mean(centred**2))
    if power <= 0.0:
        return centred
    signal_power = qrs_p2p_mv**2 / 8.0
    scale = float(np.sqrt(signal_power / (power * 10.0 ** (snr_db / 10.0))))
    out: npt.NDArray[np.float64] = centred * scale
    return out


def snr_db(qrs_p2p_mv: float, added: npt.NDArray[np.float64]) -> float:
    """The SNR (nstdb definition) of ``added`` noise against a QRS of ``qrs_p2p_mv`` peak to peak."""
    return float(10.0 * np.log10((qrs_p2p_mv**2 / 8.0) / np.mean(added**2)))


def load_noisy_beats(
    data_dir: Path, noise: NoiseSource, records: tuple[str, ...] | list[str], *, copy: int = 0,
    held_out: bool = False, source: str = "auto", cache_dir: Path | None = None, n_leads: int = 1,
) -> BeatSet:
    """Beats of the noisy copies of ``records`` (:func:`load_beats` on :func:`noisy_copy`), cached
    per record like the clean beats; the beats keep their record's name (patient folds)."""
    key = hashlib.sha256(json.dumps(noise.sha256, sort_keys=True).encode()
                         + Path(__file__).read_bytes()).hexdigest()[:8]
    tag = f"noisy{copy}-{'test' if held_out else 'train'}-{key}"
    beats, _ = load_beats(data_dir, records, source, cache_dir, n_leads,
                          transform=lambda record: noisy_copy(record, noise, copy, held_out), cache_tag=tag)
    return replace(beats, noisy=np.ones(len(beats), bool))
