"""Streaming, causal, multi-lead QRS (R-peak) detector.

The detector follows Pan and Tompkins [1]_ with the decision rules of Hamilton
and Tompkins [2]_, adapted to stream over several leads:

1. per lead: causal Butterworth band-pass (5-15 Hz), first difference, and
   ``|slope| ** 1.5`` (between Hamilton's absolute value and Pan-Tompkins'
   square: small ectopic beats next to tall ones survive, noise is damped);
2. each lead's slope feature is divided by its own running mean (a causal,
   bias-corrected exponential average), which weights every lead by how much
   its QRS complexes stand out from the rest of it, then the leads are summed,
   the first (primary monitoring) lead at full weight and the others at a
   quarter: they fill in when the primary lead loses a beat but do not add
   their own noise peaks (equal weights cost 0.2 % +P on MIT-BIH);
3. a moving-window integrator (150 ms) gives the detection feature;
4. candidates are local maxima of the feature within +/- the refractory period;
5. adaptive signal/noise peak levels set two thresholds; T waves are rejected
   by slope [1]_; a search-back with the lower threshold runs when no beat was
   found for 1.66 times the mean of the last 8 RR intervals [1]_, [2]_;
6. the R-peak is the largest band-passed deflection of the lead that carries
   the most weight, shifted back by the band-pass group delay.

Unreadable stretches are reported, not hidden: per-lead NaN, flat line and
clipping from :mod:`detector.core.quality`, and ``"noise"`` (lead -1) when the
fused feature spends more than 40 % of a 5 s block above its mean.  A lead
that resumes after NaN samples restarts its band-pass at steady state, so a
gap leaves no step artefact.

Tuned on all 48 MIT-BIH records, as is usual for QRS detectors; the only
parameters changed from the papers are the 1.5 exponent and the mean-RR
search-back (median in an earlier version).
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

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.core.arrays import pack as pack_arrays
from detector.core.arrays import unpack as unpack_arrays
from detector.core.filters import FloatArray, HoldNan
from detector.core.kernels import qrs_candidates, qrs_features
from detector.core.qrs_types import (
    Candidate,
    Params,
    QrsConfig,
    QrsResult,
    RPeak,
    config_from_json,
    config_to_json,
)
from detector.core.quality import QualityEvent, QualityMonitor

__all__ = ["QrsConfig", "QrsDetector", "QrsResult", "RPeak", "detect_peaks"]

_NO_CORRECTION = np.zeros(0)
_MWI_SCALE = 2.0**24  # integrator quantum: 2**-24 of the feature's unit
_MWI_MAX = 1e6  # the fused slope is capped here before quantising (no int64 overflow)


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
        p = self.p = Params(self.config, self.fs_hz)
        self._hold = HoldNan(n_leads)
        self._valid = np.zeros(n_leads, dtype=bool)  # band-pass seeded from a finite sample
        self._zi_ss = p.zi_ss  # steady state per unit DC input
        # filter states, advanced in place by the compiled feature kernel
        self._bp_zi = np.zeros((n_leads, p.bp_sos.shape[0], 2))  # band-pass
        self._diff_last = np.zeros(n_leads)  # first difference: previous band-passed sample
        self._ema_zi = np.zeros((n_leads, p.ema_sos.shape[0], 2))  # running mean of the slope
        # moving-window integrator: exact int64 running sums of the quantised fused slope
        # (integer addition is associative, so chunking cannot change them): the last
        # mwi_n running totals and the current one
        self._mwi_tail = np.zeros(p.mwi_n, dtype=np.int64)
        self._mwi_total = np.zeros(1, dtype=np.int64)
        self._quality = QualityMonitor(self.fs_hz, n_leads, self.config.quality)
        self.n_seen = 0  # samples consumed
        self._hist_start = 0
        # recent history, rows: feature, fused slope, band-passed leads (mV), lead weights
        self._hist = np.zeros((2 + 2 * n_leads, 0))
        self._scanned = 0  # next feature index to scan for candidates
        # decision state
        self._learning = True
        self._learn_end = self.p.learn_n
        self._pending: list[Candidate] = []  # scanned, not yet decided
        self._noise: list[Candidate] = []  # below threshold since last beat
        self._spk = 0.0
        self._npk = 0.0
        self._last_qrs = -1
        self._last_slope = 0.0
        self._rr: list[int] = []
        self._deadline: int | None = None
        # noise judge: [block, samples above the feature mean, above half of it, noisy since (-1 = clean)]
        self._nz = [0, 0, 0, -1]
        self._events: list[QualityEvent] = []

    # ------------------------------------------------------------------ signal path
    def _seeded_features(self, x: FloatArray, bad: npt.NDArray[np.bool_]) -> FloatArray:
        """Features of ``x`` (``(n_leads, n)``), restarting a lead's band-pass at steady state
        where it starts or resumes after non-finite samples, so a gap leaves no step transient."""
        if self._valid.all() and not bad.any():
            return self._features(x, self.n_seen)
        prev_bad = np.concatenate([~self._valid[None, :], bad[:-1]], axis=0)
        starts = ~bad & prev_bad
        self._valid = ~bad[-1]
        rows = np.unique(np.nonzero(starts)[0]).tolist()
        cuts = [0, *[r for r in rows if r > 0], x.shape[1]]
        blocks = []
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            if lo in rows:
                leads = np.flatnonzero(starts[lo])
                self._bp_zi[leads] = self._zi_ss[None, :, :] * x[leads, lo][:, None, None]
                self._diff_last[leads] = 0.0
            blocks.append(self._features(x[:, lo:hi], self.n_seen + lo))
        return np.concatenate(blocks, axis=1)

    def _features(self, x: FloatArray, first: int) -> FloatArray:
        """Rows of the history block for ``x`` of shape ``(n_leads, n)``: f, g, bp..., w....

        Per lead: band-pass, first difference (mV/s), ``|slope| ** power``, divided by its
        running mean (bias-corrected over the first minutes) plus a floor; the leads' weights
        summed (the first at full weight, the others at ``secondary_weight``) and integrated
        (:func:`detector.core.kernels.qrs_features`)."""
        n = x.shape[1]
        a = self.p.ema_a
        corr = _NO_CORRECTION
        if a ** (first + 1) > 1e-17:  # bias correction of the running mean, first minutes only
            corr = 1.0 - a ** np.arange(first + 1, first + n + 1, dtype=np.float64)
        block = np.empty((2 + 2 * self.n_leads, n))
        qrs_features(x, self.p.bp_sos, self._bp_zi, self._diff_last, self.fs_hz, float(self.config.power),
                     self.p.ema_sos, self._ema_zi, corr, self.p.eps, float(self.config.secondary_weight),
                     self._mwi_tail, self._mwi_total, _MWI_SCALE, _MWI_MAX, block)
        return block

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
        x, bad = self._hold(x)
        block = self._seeded_features(np.ascontiguousarray(x.T), bad)
        self.n_seen += x.shape[0]
        self._hist = np.concatenate([self._hist, block], axis=1)
        self._scan()
        peaks = self._decide()
        quality += self._events
        self._events = []
        return QrsResult(peaks, quality)

    def flush(self) -> QrsResult:
        """End of stream: close open quality events (beats still undecided are dropped)."""
        events = self._events + self._quality.flush(self.n_seen)
        if self._nz[3] >= 0:
            events.append(QualityEvent(-1, "noise", self._nz[3], self.n_seen))
            self._nz[3] = -1
        self._events = []
        return QrsResult([], events)

    def _scan(self) -> None:
        """Find feature maxima in [scanned, n_seen - w), with w samples known on both sides:
        samples that are the maximum of the feature over +/- w (the first of a plateau) and
        above ``min_feature`` (:func:`detector.core.kernels.qrs_candidates`)."""
        p = self.p
        stop = self.n_seen - p.w_n
        if stop <= self._scanned:
            return
        lo = self._scanned - self._hist_start
        hi = stop - self._hist_start
        self._noise_judge(self._scanned, self._hist[0, lo:hi])
        ints, floats = qrs_candidates(self._hist, lo, hi, p.w_n, self.config.min_feature,
                                      p.mwi_n + p.delay_n, p.delay_n)
        start = self._hist_start
        for (i, loc), (value, slope, amp) in zip(ints.tolist(), floats.tolist(), strict=True):
            self._pending.append(Candidate(start + i, value, slope, max(start + loc, 0), amp))
        self._scanned = stop
        keep_from = max(stop - p.hist_n, self._hist_start)
        if keep_from > self._hist_start:
            self._hist = self._hist[:, keep_from - self._hist_start :]
            self._hist_start = keep_from

    # ------------------------------------------------------------------ decision rules
    def _thresholds(self) -> tuple[float, float]:
        thr1 = self._npk + self.config.threshold_fraction * (self._spk - self._npk)
        return thr1, 0.5 * thr1

    def _decide(self) -> list[RPeak]:
        horizon = self._scanned - 1  # every candidate with idx <= horizon is known
        while self._learning:  # initial levels from the candidates of the first learning_s
            if self._scanned < self._learn_end:
                return []
            first = [c.value for c in self._pending if c.idx < self._learn_end]
            if not first:
                self._learn_end += self.p.learn_n  # nothing yet (flat start): learn over the next period
                continue
            self._spk = max(first)
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

    def _classify(self, c: Candidate) -> RPeak | None:
        thr1, _ = self._thresholds()
        since = c.idx - self._last_qrs if self._last_qrs >= 0 else None
        is_t = since is not None and since < self.p.twave_n and (
            c.slope < self.config.twave_slope_ratio * self._last_slope
        ) and c.value < self.config.twave_value_ratio * self._spk
        if c.value > thr1 and not is_t and (since is None or since > self.p.w_n):
            k = self.config.signal_weight
            self._spk = k * c.value + (1 - k) * self._spk
            # beats of the learning period wait for its end (learn_end + w - 1 is its last sample)
            decided = max(c.idx, self._learn_end - 1) + self.p.w_n
            return self._accept(c, decided, searchback=False)
        k = self.config.signal_weight
        self._npk = k * c.value + (1 - k) * self._npk
        if not is_t:
            self._noise.append(c)
            if len(self._noise) > 64:  # bound memory when no beat is found for minutes
                del self._noise[0]
        return None

    def _noise_judge(self, first: int, seg: FloatArray) -> None:
        """Judge fixed blocks of the feature: noisy when it is above its mean too often,
        or never far below it.

        Each lead's slope is divided by its running mean, so the fused feature
        averages about the sum of the lead weights.  Clean ECG exceeds that mean
        only around QRS complexes (25-30 % of the time) and sits below half of
        it between beats; noise in the QRS band is above the mean more often
        (bursts), or always above half of it (steady noise).  This is the noise
        level of Hamilton and Tompkins [2]_ turned into duty cycles.  Ventricular
        flutter/fibrillation looks the same and is also reported as noise.
        """
        bn = self.p.noise_block_n
        mean = 1.0 + self.config.secondary_weight * (self.n_leads - 1)
        above = seg > mean
        busy = seg > 0.5 * mean
        pos, stop = first, first + seg.shape[0]
        cur, count, count_busy, since = self._nz
        while pos < stop:
            end = min(stop, (cur + 1) * bn)
            count += int(np.count_nonzero(above[pos - first : end - first]))
            count_busy += int(np.count_nonzero(busy[pos - first : end - first]))
            pos = end
            if end == (cur + 1) * bn:
                noisy = count > self.config.noise_fraction * bn or count_busy > 0.8 * bn
                if noisy and since < 0:
                    since = cur * bn
                    self._events.append(QualityEvent(-1, "noise", since, None))
                elif not noisy and since >= 0:
                    self._events.append(QualityEvent(-1, "noise", since, cur * bn))
                    since = -1
                cur, count, count_busy = cur + 1, 0, 0
        self._nz = [cur, count, count_busy, since]

    def _searchback(self, deadline: int) -> RPeak | None:
        _, thr2 = self._thresholds()
        pool = [c for c in self._noise if c.value > thr2 and c.idx - self._last_qrs > self.p.w_n]
        if not pool:
            self._spk *= self.config.searchback_decay
            self._npk *= self.config.searchback_decay
            self._deadline = deadline + self._rr_mean()
            return None
        best = max(pool, key=lambda c: c.value)
        self._spk = 0.25 * best.value + 0.75 * self._spk
        return self._accept(best, deadline, searchback=True)

    def _rr_mean(self) -> int:
        if not self._rr:
            return self.p.default_rr_n
        return sum(self._rr) // len(self._rr)

    def _accept(self, c: Candidate, decided_at: int, *, searchback: bool) -> RPeak:
        rr_prev: float | None = None
        if self._last_qrs >= 0:
            rr = c.idx - self._last_qrs
            rr_prev = rr / self.fs_hz
            self._rr = [*self._rr[-7:], rr]
        self._last_qrs = c.idx
        self._last_slope = c.slope
        self._noise = [n for n in self._noise if n.idx > c.idx]
        self._deadline = c.idx + int(self.config.searchback_rr * self._rr_mean())
        return RPeak(
            sample_index=c.loc,
            rr_prev_s=rr_prev,
            strength=c.value / max(self._spk, 1e-12),
            amplitude_mv=c.amplitude_mv,
            searchback=searchback,
            decided_at_sample=decided_at,
            emitted_at_sample=self.n_seen - 1,  # _decide runs after the chunk is consumed
        )

    # ------------------------------------------------------------------ snapshot
    def snapshot(self) -> bytes:
        """The complete state as bytes (:mod:`detector.core.arrays`); :meth:`from_snapshot`
        resumes exactly (and reads the ``.npz`` snapshots of earlier versions)."""
        cands = [*self._pending, *self._noise]
        arrays: dict[str, Any] = {
            "config": np.frombuffer(json.dumps(config_to_json(self.config)).encode(), dtype=np.uint8),
            "shape": np.array([self.fs_hz, self.n_leads], dtype=np.float64),
            "hold": self._hold.last,
            "valid": self._valid,
            "bp_zi": self._bp_zi,
            "diff": self._diff_last,
            "ema_zi": self._ema_zi,
            "mwi": np.concatenate([self._mwi_total, self._mwi_tail]),
            "hist": self._hist,
            "ints": np.array(
                [self.n_seen, self._hist_start, self._scanned, self._learn_end, self._last_qrs,
                 -1 if self._deadline is None else self._deadline, len(self._pending), *self._nz],
                dtype=np.int64,
            ),
            "levels": np.array([self._spk, self._npk, self._last_slope, self._learning]),
            "rr": np.array(self._rr, dtype=np.int64),
            "cand_i": np.array([[c.idx, c.loc] for c in cands], dtype=np.int64).reshape(-1, 2),
            "cand_f": np.array([[c.value, c.slope, c.amplitude_mv] for c in cands]).reshape(-1, 3),
        }
        for key, value in self._quality.state().items():
            arrays["q_" + key] = value
        return pack_arrays(arrays)

    @classmethod
    def from_snapshot(cls, blob: bytes) -> QrsDetector:
        """Rebuild a detector from :meth:`snapshot` bytes."""
        a = unpack_arrays(blob)
        cfg = config_from_json(json.loads(a["config"].tobytes().decode()))
        det = cls(float(a["shape"][0]), int(a["shape"][1]), cfg)
        det._hold.last = a["hold"]
        det._valid = a["valid"].astype(bool)
        det._bp_zi = np.array(a["bp_zi"], dtype=np.float64, order="C")
        det._diff_last = np.array(a["diff"], dtype=np.float64)
        det._ema_zi = np.array(a["ema_zi"], dtype=np.float64, order="C")
        det._mwi_total = np.array(a["mwi"][:1], dtype=np.int64)
        det._mwi_tail = np.array(a["mwi"][1:], dtype=np.int64)
        det._hist = a["hist"]
        ints = [int(v) for v in a["ints"]]
        det.n_seen, det._hist_start, det._scanned, det._learn_end, det._last_qrs, dl, n_pending = ints[:7]
        det._nz = ints[7:]
        det._learning = bool(a["levels"][3])
        det._deadline = None if dl < 0 else dl
        det._spk, det._npk, det._last_slope = (float(v) for v in a["levels"][:3])
        det._rr = [int(v) for v in a["rr"]]
        cands = [
            Candidate(int(i[0]), float(f[0]), float(f[1]), int(i[1]), float(f[2]))
            for i, f in zip(a["cand_i"], a["cand_f"], strict=True)
        ]
        det._pending, det._noise = cands[:n_pending], cands[n_pending:]
        det._quality.restore({k[2:]: v for k, v in a.items() if k.startswith("q_")})
        return det


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

