"""Streaming, causal, multi-lead QRS (R-peak) detector.

The detector follows Pan and Tompkins [1]_ with the decision rules of Hamilton
and Tompkins [2]_, adapted to stream over several leads:

1. per lead: causal Butterworth band-pass (QRS band), first difference, square;
2. each lead's squared slope is divided by its own running mean (a causal,
   bias-corrected exponential average), which weights every lead by how much
   its QRS complexes stand out from the rest of it, then the leads are summed;
3. a moving-window integrator (150 ms) gives the detection feature;
4. candidates are local maxima of the feature within +/- the refractory period;
5. adaptive signal/noise peak levels set two thresholds; T waves are rejected
   by slope [1]_; a search-back with the lower threshold runs when no beat was
   found for 1.66 median RR intervals [1]_, [2]_.

Every stage is causal and carries its state between calls, so the output does
not depend on how the stream is cut into chunks, and ``snapshot`` /
``from_snapshot`` resume a stream exactly.

References
----------
.. [1] J. Pan and W. J. Tompkins, "A real-time QRS detection algorithm",
   IEEE Trans. Biomed. Eng. 32(3):230-236, 1985.
.. [2] P. S. Hamilton and W. J. Tompkins, "Quantitative investigation of QRS
   detection rules using the MIT/BIH arrhythmia database", IEEE Trans. Biomed.
   Eng. 33(12):1157-1165, 1986.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage, signal

from detector.core.filters import (
    Difference,
    FloatArray,
    HoldNan,
    MovingSum,
    SosFilter,
    bandpass_sos,
    group_delay_samples,
)
from detector.core.quality import QualityConfig, QualityEvent, QualityMonitor

__all__ = ["QrsConfig", "QrsDetector", "QrsResult", "RPeak", "detect_peaks"]

_NEG = -np.inf


@dataclass(frozen=True, slots=True)
class QrsConfig:
    """Detector parameters, all in physical units (converted to samples once)."""

    band_hz: tuple[float, float] = (5.0, 15.0)
    mwi_s: float = 0.15
    refractory_s: float = 0.2
    twave_s: float = 0.36
    twave_slope_ratio: float = 0.5
    searchback_rr: float = 1.66
    learning_s: float = 2.0
    norm_tau_s: float = 3.0
    min_slope_mv_s: float = 1.0
    min_feature: float = 0.05
    signal_weight: float = 0.125
    threshold_fraction: float = 0.25
    default_rr_s: float = 1.0
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
class _Candidate:
    idx: int  # feature peak index
    value: float
    slope: float
    loc: int  # R-peak estimate
    amplitude_mv: float


class _Params:
    """Config converted to samples, once."""

    def __init__(self, cfg: QrsConfig, fs_hz: float) -> None:
        self.bp_sos = bandpass_sos(cfg.band_hz[0], cfg.band_hz[1], fs_hz)
        centre = float(np.sqrt(cfg.band_hz[0] * min(cfg.band_hz[1], 0.45 * fs_hz)))
        self.delay_n = int(round(group_delay_samples(self.bp_sos, centre, fs_hz)))
        self.mwi_n = max(1, int(round(cfg.mwi_s * fs_hz)))
        self.w_n = max(1, int(round(cfg.refractory_s * fs_hz)))
        self.twave_n = int(round(cfg.twave_s * fs_hz))
        self.learn_n = int(round(cfg.learning_s * fs_hz))
        self.default_rr_n = int(round(cfg.default_rr_s * fs_hz))
        self.ema_a = float(np.exp(-1.0 / (cfg.norm_tau_s * fs_hz)))
        self.eps = cfg.min_slope_mv_s**2
        # history kept: candidate window both sides + integrator + locating slack
        self.hist_n = 2 * self.w_n + self.mwi_n + self.delay_n + 2


class QrsDetector:
    """Causal, stateful, multi-lead QRS detector (see module docstring).

    Parameters
    ----------
    fs_hz : float
        Sampling rate, 125-1000 Hz.
    n_leads : int
        Number of leads (columns of the input).
    config : QrsConfig, optional
        Physical parameters.
    """

    def __init__(self, fs_hz: float, n_leads: int, config: QrsConfig | None = None) -> None:
        if not 100.0 <= fs_hz <= 2000.0:
            raise ValueError(f"fs_hz={fs_hz}: supported sampling rates are 125-1000 Hz")
        if n_leads < 1:
            raise ValueError(f"n_leads={n_leads}: need at least one lead")
        self.fs_hz = float(fs_hz)
        self.n_leads = int(n_leads)
        self.config = config or QrsConfig()
        p = self.p = _Params(self.config, self.fs_hz)
        self._hold = HoldNan(n_leads)
        self._bp = SosFilter(p.bp_sos, n_leads)
        self._diff = Difference(n_leads, self.fs_hz)
        ema_sos = signal.tf2sos([1.0 - p.ema_a, 0.0], [1.0, -p.ema_a])
        self._ema = SosFilter(np.asarray(ema_sos, dtype=np.float64), n_leads)
        self._mwi = MovingSum(p.mwi_n, scale=2.0**24, max_value=1e6)
        self._quality = QualityMonitor(self.fs_hz, n_leads, self.config.quality)
        self.n_seen = 0  # samples consumed
        self._hist_start = 0
        self._hist_f = np.zeros(0)  # feature
        self._hist_g = np.zeros(0)  # fused squared slope
        self._hist_a = np.zeros((0, n_leads))  # band-passed signal, mV
        self._hist_w = np.zeros((0, n_leads))  # per-lead normalised slope weight
        self._scanned = 0  # next feature index to scan for candidates
        # decision state
        self._learning = True
        self._pending: list[_Candidate] = []  # scanned, not yet decided
        self._noise: list[_Candidate] = []  # below threshold since last beat
        self._spk = 0.0
        self._npk = 0.0
        self._last_qrs = -1
        self._last_slope = 0.0
        self._rr: list[int] = []
        self._deadline: int | None = None

    # ------------------------------------------------------------------ signal path
    def _features(self, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        bp = self._bp(x)
        d = self._diff(bp)
        g = d * d
        mean = self._ema(g)
        n0 = self.n_seen
        idx = np.arange(n0, n0 + x.shape[0], dtype=np.float64)
        corr = 1.0 - self.p.ema_a ** (idx + 1.0)
        w = g / (mean / corr[:, None] + self.p.eps)
        fused = w.sum(axis=1)
        return self._mwi(fused), fused, bp, w

    def update(self, samples_mv: npt.ArrayLike) -> QrsResult:
        """Consume ``(n, n_leads)`` samples in mV; return beats and quality events found."""
        x = np.asarray(samples_mv, dtype=np.float64)
        if x.ndim == 1 and self.n_leads == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_leads:
            raise ValueError(f"expected shape (n, {self.n_leads}), got {x.shape}")
        if x.shape[0] == 0:
            return QrsResult([], [])
        quality = self._quality.update(x, self.n_seen)
        x, _ = self._hold(x)
        f, g, bp, w = self._features(x)
        self.n_seen += x.shape[0]
        self._append(f, g, bp, w)
        self._scan()
        peaks = self._decide()
        emitted = self.n_seen - 1
        out = [_with_emitted(pk, emitted) for pk in peaks]
        return QrsResult(out, quality)

    def flush(self) -> QrsResult:
        """End of stream: report open quality events (beats still undecided are dropped)."""
        return QrsResult([], self._quality.flush(self.n_seen))

    def _append(self, f: FloatArray, g: FloatArray, bp: FloatArray, w: FloatArray) -> None:
        self._hist_f = np.concatenate([self._hist_f, f])
        self._hist_g = np.concatenate([self._hist_g, g])
        self._hist_a = np.concatenate([self._hist_a, bp])
        self._hist_w = np.concatenate([self._hist_w, w])

    def _trim(self) -> None:
        keep_from = max(self._scanned - self.p.hist_n, self._hist_start)
        cut = keep_from - self._hist_start
        if cut > 0:
            self._hist_f = self._hist_f[cut:]
            self._hist_g = self._hist_g[cut:]
            self._hist_a = self._hist_a[cut:]
            self._hist_w = self._hist_w[cut:]
            self._hist_start = keep_from

    def _scan(self) -> None:
        """Find feature maxima in [scanned, n_seen - w) with +/- w samples on both sides known."""
        w = self.p.w_n
        stop = self.n_seen - w
        if stop <= self._scanned:
            return
        f = self._hist_f
        full = ndimage.maximum_filter1d(f, size=2 * w + 1, mode="constant", cval=_NEG)
        lo = self._scanned - self._hist_start
        hi = stop - self._hist_start
        seg = f[lo:hi]
        cand = np.flatnonzero((seg >= full[lo:hi]) & (seg > self.config.min_feature)) + lo
        for i in cand:
            left = f[max(0, i - w) : i]
            if left.size and left.max() >= f[i]:
                continue  # plateau: keep its first sample only
            self._pending.append(self._candidate(int(i)))
        self._scanned = stop
        self._trim()

    def _candidate(self, i: int) -> _Candidate:
        p = self.p
        lo = max(0, i - p.mwi_n - p.delay_n)
        g = self._hist_g[lo : i + 1]
        slope = float(g.max())
        w = self._hist_w[lo : i + 1]
        lead = int(np.argmax(w.max(axis=0)))
        a = np.abs(self._hist_a[lo : i + 1, lead])
        j = int(np.argmax(a))
        loc = self._hist_start + lo + j - p.delay_n
        return _Candidate(
            idx=self._hist_start + i,
            value=float(self._hist_f[i]),
            slope=slope,
            loc=max(loc, 0),
            amplitude_mv=float(self._hist_a[lo + j, lead]),
        )

    # ------------------------------------------------------------------ decision rules
    def _thresholds(self) -> tuple[float, float]:
        thr1 = self._npk + self.config.threshold_fraction * (self._spk - self._npk)
        return thr1, 0.5 * thr1

    def _decide(self) -> list[RPeak]:
        horizon = self._scanned - 1  # every candidate with idx <= horizon is known
        if self._learning:
            if self._scanned < self.p.learn_n or not self._pending:
                return []
            self._spk = max(c.value for c in self._pending)
            self._npk = 0.125 * self._spk
            self._learning = False
        out: list[RPeak] = []
        while True:
            nxt = self._pending[0] if self._pending else None
            dl = self._deadline
            if dl is not None and (nxt is None or dl < nxt.idx) and dl <= horizon:
                pk = self._searchback(dl)
                if pk is not None:
                    out.append(pk)
                continue
            if nxt is None:
                break
            self._pending.pop(0)
            pk = self._classify(nxt)
            if pk is not None:
                out.append(pk)
        return out

    def _classify(self, c: _Candidate) -> RPeak | None:
        thr1, _ = self._thresholds()
        since = c.idx - self._last_qrs if self._last_qrs >= 0 else None
        is_t = since is not None and since < self.p.twave_n and (
            c.slope < self.config.twave_slope_ratio * self._last_slope
        )
        if c.value > thr1 and not is_t and (since is None or since > self.p.w_n):
            k = self.config.signal_weight
            self._spk = k * c.value + (1 - k) * self._spk
            return self._accept(c, c.idx + self.p.w_n, searchback=False)
        k = self.config.signal_weight
        self._npk = k * c.value + (1 - k) * self._npk
        if not is_t:
            self._noise.append(c)
        return None

    def _searchback(self, deadline: int) -> RPeak | None:
        _, thr2 = self._thresholds()
        pool = [c for c in self._noise if c.value > thr2 and c.idx - self._last_qrs > self.p.w_n]
        if not pool:
            self._spk *= 0.7
            self._npk *= 0.7
            self._deadline = deadline + self._rr_median()
            return None
        best = max(pool, key=lambda c: c.value)
        self._spk = 0.25 * best.value + 0.75 * self._spk
        return self._accept(best, deadline, searchback=True)

    def _rr_median(self) -> int:
        return int(np.median(self._rr)) if self._rr else self.p.default_rr_n

    def _accept(self, c: _Candidate, decided_at: int, *, searchback: bool) -> RPeak:
        rr_prev: float | None = None
        if self._last_qrs >= 0:
            rr = c.idx - self._last_qrs
            rr_prev = rr / self.fs_hz
            self._rr = [*self._rr[-7:], rr]
        self._last_qrs = c.idx
        self._last_slope = c.slope
        self._noise = [n for n in self._noise if n.idx > c.idx]
        self._deadline = c.idx + int(self.config.searchback_rr * self._rr_median())
        return RPeak(
            sample_index=c.loc,
            rr_prev_s=rr_prev,
            strength=c.value / max(self._spk, 1e-12),
            amplitude_mv=c.amplitude_mv,
            searchback=searchback,
            decided_at_sample=decided_at,
            emitted_at_sample=decided_at,
        )

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> bytes:
        """Serialise the complete state (``np.savez``); see :meth:`from_snapshot`."""
        raise NotImplementedError

    @classmethod
    def from_snapshot(cls, blob: bytes) -> QrsDetector:
        raise NotImplementedError


def _with_emitted(pk: RPeak, emitted: int) -> RPeak:
    return RPeak(
        sample_index=pk.sample_index,
        rr_prev_s=pk.rr_prev_s,
        strength=pk.strength,
        amplitude_mv=pk.amplitude_mv,
        searchback=pk.searchback,
        decided_at_sample=pk.decided_at_sample,
        emitted_at_sample=emitted,
    )


def detect_peaks(signal_mv: npt.ArrayLike, fs_hz: float, chunk_s: float = 1.0) -> npt.NDArray[np.int64]:
    """Stream a whole record through :class:`QrsDetector` and return R-peak sample indices.

    Parameters
    ----------
    signal_mv : array_like, shape (n,) or (n, n_leads)
        The record in mV; all leads are used.
    fs_hz : float
        Sampling rate in Hz.
    chunk_s : float
        Seconds of signal per ``update`` call (the result does not depend on it).

    Returns
    -------
    ndarray of int64
        Sorted R-peak sample indices.
    """
    x = np.asarray(signal_mv, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    det = QrsDetector(fs_hz, x.shape[1])
    step = max(1, int(round(chunk_s * fs_hz)))
    out: list[int] = []
    for start in range(0, x.shape[0], step):
        out.extend(pk.sample_index for pk in det.update(x[start : start + step]).peaks)
    return np.array(sorted(out), dtype=np.int64)


_ = (asdict, io, json, Any)
