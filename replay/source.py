"""WFDB records as int16 ADC arrays: from a local folder or the PhysioNet download cache."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import wfdb

from stream.errors import DataUnavailable
from stream.settings import Settings, env_name

logger = logging.getLogger(__name__)

_RECORD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, slots=True, eq=False)
class Recording:
    """One record's raw samples, shape ``(n_samples, n_leads)`` int16, and its calibration."""

    name: str
    fs_hz: float
    lead_names: tuple[str, ...]
    adc_gain: tuple[float, ...]
    adc_baseline: tuple[int, ...]
    samples: npt.NDArray[np.int16]

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs_hz


def read_record(folder: Path, name: str) -> Recording:
    """Read ``folder/name`` with wfdb as digital (ADC) values; DataUnavailable if absent."""
    _check_name(name)
    if not (folder / f"{name}.hea").is_file():
        known = sorted(p.stem for p in folder.glob("*.hea"))[:60]
        raise DataUnavailable(
            f"record {name!r} not found in {folder} (records there: {', '.join(known) or 'none'})"
        )
    try:
        rec = wfdb.rdrecord(str(folder / name), physical=False, return_res=16)
    except (OSError, ValueError) as exc:
        raise DataUnavailable(f"cannot read record {name!r} from {folder}: {exc}") from exc
    samples = np.ascontiguousarray(rec.d_signal, dtype=np.int16)
    samples.flags.writeable = False
    return Recording(
        name=name,
        fs_hz=float(rec.fs),
        lead_names=tuple(str(s) for s in rec.sig_name),
        adc_gain=tuple(float(g) for g in rec.adc_gain),
        adc_baseline=tuple(int(b) for b in rec.baseline),
        samples=samples,
    )


def load_record(name: str, settings: Settings) -> Recording:
    """From ``settings.data_dir`` if set, else from (a download into) the PhysioNet cache."""
    if settings.data_dir is not None:
        return read_record(settings.data_dir, name)
    folder = settings.cache_dir / settings.physionet_db
    if not (folder / f"{name}.hea").is_file():
        download(name, settings)
    return read_record(folder, name)


def download(name: str, settings: Settings) -> Path:
    """Fetch one record (and its annotations) from PhysioNet into the cache, atomically."""
    _check_name(name)
    db = settings.physionet_db
    folder = settings.cache_dir / db
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("downloading record from PhysioNet", extra={"db": db, "record": name,
                                                            "into": str(folder)})
    partial = Path(tempfile.mkdtemp(prefix=f".partial-{name}-", dir=folder))
    chatter = io.StringIO()  # wfdb prints its progress; keep stdout for our own output
    try:
        with contextlib.redirect_stdout(chatter):
            wfdb.dl_database(db, str(partial), records=[name], annotators="all",
                             keep_subdirs=False)
        files = sorted(partial.iterdir(), key=lambda p: p.suffix == ".hea")  # header last
        if not any(p.name == f"{name}.hea" for p in files):
            raise DataUnavailable(f"PhysioNet database {db!r} has no record {name!r}")
        for path in files:
            path.replace(folder / path.name)
    except FileNotFoundError as exc:  # wfdb's NetFileNotFoundError: online, but no such file
        raise DataUnavailable(
            f"PhysioNet database {db!r} has no record {name!r} ({exc}); check the record name "
            f"and {env_name('physionet_db')}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise DataUnavailable(
            f"cannot download record {name!r} of PhysioNet database {db!r} ({type(exc).__name__}: "
            f"{str(exc)[:200]}). Without internet access, set {env_name('data_dir')} or "
            "--data-dir to a local copy of the records (e.g. ../shared/data/mitdb)"
        ) from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        if chatter.getvalue():
            logger.debug("wfdb download output", extra={"output": chatter.getvalue()[-2000:]})
    return folder


def _check_name(name: str) -> None:
    if not _RECORD_NAME.match(name) or ".." in name:
        raise DataUnavailable(f"{name!r} is not a WFDB record name (e.g. 100 or 203)")
