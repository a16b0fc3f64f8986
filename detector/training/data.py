"""MIT-BIH beats for training and evaluation: records, R-peaks, features, AAMI labels.

R-peaks come from :func:`find_peaks`: our own detector (``detector.core.qrs``)
when it is available, else the reference annotation positions with +-20 ms
uniform jitter (a stand-in with a detector's typical timing error).  Each peak
gets the AAMI label of the reference beat matched to it within 150 ms; peaks
without a reference beat (false detections) keep label -1 and are excluded from
training, but they still shape the RR features of their neighbours, as live.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.core.beats import BeatFeatures, extract_beats
from detector.core.classifier import AAMI_CLASSES, AAMI_SYMBOLS, lead_order, select_leads
from detector.evaluation import match_beats
from stream.errors import DataUnavailable

logger = logging.getLogger(__name__)

DS1 = tuple(
    "101 106 108 109 112 114 115 116 118 119 122 124 201 203 205 207 208 209 215 220 223 230".split()
)
DS2 = tuple(
    "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234".split()
)
PACED = ("102", "104", "107", "217")
# Lead 0 (MLII) only by default: the second lead differs between patients (V1, V2, V4, V5),
# and with it the models learnt patient-specific shapes (validation N F1 0.90 -> 0.97 without).
# Leave-patients-out folds over DS1 (model selection, epoch count, logit offsets: detector.training.cv).
# Balanced by hand on the reference labels: S-rich patients (209, 207, 118, 220, 201, 223) and
# V-rich ones (208, 106, 223, 119, 203) spread over the folds, about 12-14 k beats each.
# DS2 is never looked at in training or selection.
CV_FOLDS = (
    ("209", "106", "112", "115", "122", "230"),
    ("207", "118", "124", "119", "101", "205"),
    ("220", "201", "208", "109", "114"),
    ("223", "203", "215", "116", "108"),
)
MATCH_WINDOW_S = 0.150
JITTER_S = 0.020


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    fs_hz: float
    signal_mv: npt.NDArray[np.float64]  # (n, leads), MLII first
    lead_names: tuple[str, ...]
    ref_samples: npt.NDArray[np.int64]
    ref_labels: npt.NDArray[np.int64]  # index into AAMI_CLASSES


def require_records(data_dir: Path, names: Iterable[str]) -> None:
    """:class:`DataUnavailable` naming the records of ``names`` whose header (.hea) or reference
    annotations (.atr) are not in ``data_dir``, with what to do: said before the work starts
    rather than as a traceback at the first absent record."""
    missing = [n for n in names
               if not ((data_dir / f"{n}.hea").is_file() and (data_dir / f"{n}.atr").is_file())]
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        raise DataUnavailable(
            f"record{'s' if len(missing) > 1 else ''} {shown} (header .hea with reference annotations .atr) "
            f"not found in {data_dir}: point --data-dir (ECGMON_DATA_DIR) at a copy of the MIT-BIH "
            "Arrhythmia Database (e.g. ../shared/data/mitdb), or fetch it from PhysioNet with "
            f"python -c \"import wfdb; wfdb.dl_database('mitdb', '{data_dir}')\""
        )


def load_record(data_dir: Path, name: str) -> Record:
    """Read a WFDB record and its beat annotations (non-beat annotations dropped);
    :class:`DataUnavailable` when it is absent or unreadable."""
    import wfdb

    require_records(data_dir, [name])
    try:
        rec = wfdb.rdrecord(str(data_dir / name))
        ann = wfdb.rdann(str(data_dir / name), "atr")
    except (OSError, ValueError) as exc:  # a signal file missing or cut short
        raise DataUnavailable(f"cannot read record {name!r} from {data_dir}: {exc}") from exc
    order = lead_order(list(rec.sig_name))
    signal = np.nan_to_num(np.asarray(rec.p_signal, dtype=np.float64)[:, order])
    keep = [i for i, s in enumerate(ann.symbol) if s in AAMI_SYMBOLS]
    labels = [AAMI_CLASSES.index(AAMI_SYMBOLS[ann.symbol[i]]) for i in keep]
    return Record(
        name, float(rec.fs), signal, tuple(rec.sig_name[i] for i in order),
        np.asarray(ann.sample, dtype=np.int64)[keep], np.asarray(labels, dtype=np.int64),
    )


def match_nearest(
    ref_samples: npt.NDArray[np.int64], test_samples: npt.NDArray[np.int64], window_samples: int
) -> npt.NDArray[np.int64]:
    """For each (sorted) test beat the index of its bxb-matched (sorted) reference beat, or -1."""
    out = np.full(len(test_samples), -1, dtype=np.int64)
    pairs, _, _ = match_beats(ref_samples, test_samples, window_samples)
    for i_ref, j_test in pairs:
        out[j_test] = i_ref
    return out


def record_sha256(data_dir: Path, names: tuple[str, ...] | list[str]) -> dict[str, dict[str, str]]:
    """sha256 of each record's .dat, .hea and .atr file (for the model cards)."""
    return {
        n: {ext: file_sha256(data_dir / f"{n}.{ext}") for ext in ("dat", "hea", "atr")} for n in names
    }


def detector_available() -> bool:
    try:
        module = importlib.import_module("detector.core.qrs")
    except ModuleNotFoundError:
        return False
    return hasattr(module, "detect_peaks")


def find_peaks(record: Record, source: str = "auto") -> tuple[npt.NDArray[np.int64], str]:
    """R-peaks of ``record`` and the source used: "detected" (our detector) or "reference"."""
    if source == "auto":
        source = "detected" if detector_available() else "reference"
    if source == "detected":
        qrs = importlib.import_module("detector.core.qrs")
        peaks = np.asarray(qrs.detect_peaks(record.signal_mv, record.fs_hz), dtype=np.int64)
        return np.unique(peaks), source
    if source == "reference":
        seed = int(hashlib.sha256(record.name.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        jitter = np.round(rng.uniform(-JITTER_S, JITTER_S, len(record.ref_samples)) * record.fs_hz)
        peaks = np.clip(record.ref_samples + jitter.astype(np.int64), 0, len(record.signal_mv) - 1)
        return np.unique(peaks), source
    raise ValueError(f"peak source {source!r}: choose auto, detected or reference")


@dataclass(frozen=True, slots=True)
class BeatSet:
    """Features and labels of many beats; ``label`` -1 = detection without a reference beat.
    ``noisy`` marks the beats of noise-stressed copies (None: none are)."""

    features: BeatFeatures
    label: npt.NDArray[np.int64]
    record: npt.NDArray[np.str_]
    noisy: npt.NDArray[np.bool_] | None = None

    def take(self, mask: npt.NDArray[np.bool_]) -> BeatSet:
        f = self.features
        return BeatSet(
            BeatFeatures(f.sample_index[mask], f.beats[mask], f.rr[mask]), self.label[mask],
            self.record[mask], None if self.noisy is None else self.noisy[mask],
        )

    def noisy_mask(self) -> npt.NDArray[np.bool_]:
        """``noisy`` as a mask of every beat (all False when None)."""
        return np.zeros(len(self.label), bool) if self.noisy is None else self.noisy

    def __len__(self) -> int:
        return len(self.label)

    @staticmethod
    def concat(parts: list[BeatSet]) -> BeatSet:
        feats = BeatFeatures.concat([p.features for p in parts], parts[0].features.beats.shape[1])
        label, record = np.concatenate([p.label for p in parts]), np.concatenate([p.record for p in parts])
        flagged = any(p.noisy is not None for p in parts)
        noisy = np.concatenate([p.noisy_mask() for p in parts]) if flagged else None
        return BeatSet(feats, label, record, noisy)


def record_beats(record: Record, source: str = "auto", n_leads: int = 1) -> tuple[BeatSet, int, str]:
    """Beat features of one record with matched labels; also the number of missed reference beats."""
    peaks, used = find_peaks(record, source)
    feats = extract_beats(select_leads(record.signal_mv, n_leads), record.fs_hz, peaks)
    ref_of_test = match_nearest(record.ref_samples, feats.sample_index, round(MATCH_WINDOW_S * record.fs_hz))
    label = np.where(ref_of_test >= 0, record.ref_labels[np.maximum(ref_of_test, 0)], -1)
    missed = int(len(record.ref_samples) - np.count_nonzero(ref_of_test >= 0))
    names = np.full(len(label), record.name)
    return BeatSet(feats, label.astype(np.int64), names), missed, used


def load_beats(
    data_dir: Path, records: tuple[str, ...] | list[str], source: str = "auto",
    cache_dir: Path | None = None, n_leads: int = 1,
    transform: Callable[[Record], Record] | None = None, cache_tag: str = "",
) -> tuple[BeatSet, str]:
    """Beats of many records (cached as .npz per record and peak source when ``cache_dir`` is set).

    ``transform`` changes each record before detection (e.g. adds noise); ``cache_tag`` names
    that change in the cache file names."""
    parts: list[BeatSet] = []
    used = source
    for i, name in enumerate(records):
        cache = None
        if cache_dir is not None:
            src = "detected" if source == "auto" and detector_available() else source
            tag = f"{cache_tag}-" if cache_tag else ""
            cache = cache_dir / f"{name}-{src}-{n_leads}-{tag}{feature_code_version()}.npz"
        if cache is not None and cache.is_file():
            z = np.load(cache)
            parts.append(BeatSet(BeatFeatures(z["idx"], z["beats"], z["rr"]), z["label"], z["record"]))
            used = str(z["source"])
        else:
            record = load_record(data_dir, name)
            bs, _, used = record_beats(transform(record) if transform else record, source, n_leads)
            parts.append(bs)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                f = bs.features
                # Written aside and renamed: two `ecgmon train` processes may share the cache.
                part = cache.with_name(f"{cache.name}.{os.getpid()}.part")
                with open(part, "wb") as fh:
                    np.savez(fh, idx=f.sample_index, beats=f.beats, rr=f.rr, label=bs.label,
                             record=bs.record, source=used)
                os.replace(part, cache)
        logger.info("beats of record %s (%d/%d): %d", name, i + 1, len(records), len(parts[-1]))
    return BeatSet.concat(parts), used


def feature_code_version() -> str:
    """Hash of the feature and detector code, so a change invalidates the cache."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1] / "core"
    for name in ("beats.py", "qrs.py"):
        p = root / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:10]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
