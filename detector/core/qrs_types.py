"""Types of the QRS detector: its configuration, its outputs, and the config in samples."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import signal

from detector.core.filters import FloatArray, bandpass_sos, group_delay_samples
from detector.core.quality import QualityConfig, QualityEvent


@dataclass(frozen=True, slots=True)
class QrsConfig:
    """Detector parameters, all in physical units (converted to samples once, in ``Params``).

    ``band_hz`` QRS band; ``mwi_s`` integrator window; ``refractory_s`` minimum
    beat spacing (also the candidate look-ahead, so the decision delay);
    ``twave_s`` / ``twave_slope_ratio`` T-wave rule of Pan and Tompkins (1985),
    applied only to candidates below ``twave_value_ratio`` of the signal level
    (wide early PVCs are not T waves); ``searchback_rr`` search-back after this
    many mean RR, ``searchback_decay`` level decay when it finds nothing;
    ``noise_*`` the noise judge; ``learning_s`` initial period; ``norm_tau_s``
    time constant of each lead's running mean; ``min_slope_mv_s`` floor of that
    mean; ``power`` slope exponent; ``min_feature`` smallest candidate;
    ``signal_weight`` / ``threshold_fraction`` the level update and threshold of
    Pan and Tompkins; ``default_rr_s`` RR before two beats; ``secondary_weight``
    weight of the leads after the first (primary) one.  See :mod:`detector.core.qrs`.
    """

    band_hz: tuple[float, float] = (5.0, 15.0)
    mwi_s: float = 0.15
    refractory_s: float = 0.2
    twave_s: float = 0.36
    twave_slope_ratio: float = 0.5
    twave_value_ratio: float = 0.5
    searchback_rr: float = 1.66
    searchback_decay: float = 0.7
    noise_block_s: float = 5.0
    noise_fraction: float = 0.4
    learning_s: float = 2.0
    norm_tau_s: float = 3.0
    min_slope_mv_s: float = 1.0
    power: float = 1.5
    min_feature: float = 0.05
    signal_weight: float = 0.125
    threshold_fraction: float = 0.25
    default_rr_s: float = 1.0
    secondary_weight: float = 0.25
    quality: QualityConfig = field(default_factory=QualityConfig)


@dataclass(frozen=True, slots=True)
class RPeak:
    """One detected beat.

    ``sample_index`` is the R-peak position in the stream; ``decided_at_sample``
    is the last sample the decision needed (independent of chunking);
    ``emitted_at_sample`` is the stream index at which ``update`` returned it
    (the last sample of that chunk), for delay measurement.
    """

    sample_index: int
    rr_prev_s: float | None
    strength: float
    amplitude_mv: float
    searchback: bool
    decided_at_sample: int
    emitted_at_sample: int


@dataclass(frozen=True, slots=True)
class QrsResult:
    """What one ``update`` call produced: beats and signal-quality events."""

    peaks: list[RPeak]
    quality: list[QualityEvent]


@dataclass(slots=True)
class Candidate:
    """A feature peak waiting for (or past) its decision."""

    idx: int  # feature peak index
    value: float
    slope: float
    loc: int  # R-peak estimate
    amplitude_mv: float


class Params:
    """Config converted to samples, once."""

    def __init__(self, cfg: QrsConfig, fs_hz: float) -> None:
        self.ema_a = float(np.exp(-1.0 / (cfg.norm_tau_s * fs_hz)))
        bp_sos, zi_ss, delay, ema_sos = _filter_designs(tuple(cfg.band_hz), float(fs_hz), self.ema_a)
        self.bp_sos, self.zi_ss, self.ema_sos = bp_sos.copy(), zi_ss.copy(), ema_sos.copy()
        self.delay_n = int(round(delay))
        self.mwi_n = max(1, int(round(cfg.mwi_s * fs_hz)))
        self.w_n = max(1, int(round(cfg.refractory_s * fs_hz)))
        self.twave_n = int(round(cfg.twave_s * fs_hz))
        self.learn_n = int(round(cfg.learning_s * fs_hz))
        self.default_rr_n = int(round(cfg.default_rr_s * fs_hz))
        self.noise_block_n = max(1, int(round(cfg.noise_block_s * fs_hz)))
        self.eps = cfg.min_slope_mv_s**cfg.power
        # history kept: candidate window both sides + integrator + locating slack
        self.hist_n = 2 * self.w_n + self.mwi_n + self.delay_n + 2



@functools.lru_cache(maxsize=32)
def _filter_designs(
    band_hz: tuple[float, float], fs_hz: float, ema_a: float
) -> tuple[FloatArray, FloatArray, float, FloatArray]:
    """Band-pass sections, their steady state per unit input, their group delay (samples) at
    the band centre, and the slope-mean (EMA) section, once per rate: designing them took
    ~1.6 ms of scipy per detector, and a restore or rebalance builds hundreds at once.
    The arrays are shared and read-only; :class:`Params` copies them."""
    sos = bandpass_sos(band_hz[0], band_hz[1], fs_hz)
    centre = float(np.sqrt(band_hz[0] * min(band_hz[1], 0.45 * fs_hz)))
    delay = group_delay_samples(sos, centre, fs_hz)
    zi = np.asarray(signal.sosfilt_zi(sos), dtype=np.float64)
    ema = np.asarray(signal.tf2sos([1.0 - ema_a, 0.0], [1.0, -ema_a]), dtype=np.float64)
    for a in (sos, zi, ema):
        a.flags.writeable = False
    return sos, zi, delay, ema


def config_to_json(cfg: QrsConfig) -> dict[str, Any]:
    return asdict(cfg)


def config_from_json(raw: dict[str, Any]) -> QrsConfig:
    raw = dict(raw)
    raw["band_hz"] = tuple(raw["band_hz"])
    raw["quality"] = QualityConfig(**raw["quality"])
    return QrsConfig(**raw)
