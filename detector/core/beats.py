"""Beat features for the classifier: resampled windows around R-peaks plus RR-interval features.

Pure and streaming-friendly: :class:`BeatFeatureExtractor` takes chunks of
samples and the R-peaks found in them and emits one feature row per beat as soon
as the beat's window and its *next* RR interval are known (so a beat is
classified when the following beat has been detected: about one RR interval of
delay).  :func:`extract_beats` runs the same extractor over a whole record, so
training, evaluation and the live path compute identical features.

Template: beside each window the extractor passes the patient's running
template, an exponential average of the windows of preceding *regular* beats
(RR within 15 % of the local average, so premature V and S beats are left out),
so a model can compare a beat with this patient's usual beat: morphology
normalised per patient, as RR features are.

Window: ``WINDOW_PRE_S`` before and ``WINDOW_POST_S`` after the peak, linearly
interpolated at ``MODEL_FS_HZ`` whatever the input rate (125-1000 Hz), each lead
centred on its median and scaled by its standard deviation (per-window amplitude
normalisation).

Shape features (appended to the RR features, the same patient-relative idea for
morphology): correlation of the window with the template, the RMS difference of
the two in the P-wave region (0.25-0.08 s before the peak; ectopic atrial beats
change the P wave, de Chazal et al. 2004 use P-wave features for S), the beat's
amplitude over the template's (the per-window normalisation hides it), and the
irregularity of the ten RR intervals before the beat (mean absolute successive
difference over their mean: high in atrial fibrillation, where an early beat is
not an ectopic one).  Last, a robust irregularity of the 30 intervals before the
beat's own (median absolute successive difference over their median): isolated
ectopic beats inflate the mean-based one and hide frequent APCs in a regular
rhythm; the median ignores them but stays high in atrial fibrillation.  The beat
models' S-versus-N rule uses it (:mod:`detector.training.train`, ``SRule``).
Features are only ever appended, so a model trained on fewer sees a prefix.
:func:`rr_features`, :func:`shape_features` and :func:`irregularity_median` define them
in numpy; the extractor computes the same floats in one compiled call per beat
(:func:`detector.core.kernels.beat_features`, tested against these functions).

RR features follow de Chazal et al., "Automatic classification of heartbeats
using ECG morphology and heartbeat interval features", IEEE TBME 51(7), 2004
(pre-, post-, local and average RR), normalised per patient as in Llamedo &
Martinez, IEEE TBME 58(3), 2011: ratios to the patient's own running averages,
so the model sees "premature for this patient" rather than an absolute interval.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.core.arrays import pack as pack_arrays
from detector.core.arrays import unpack as unpack_arrays
from detector.core.kernels import beat_features

MODEL_FS_HZ = 128.0
WINDOW_PRE = 36  # samples at MODEL_FS_HZ before the peak (0.281 s)
WINDOW_POST = 54  # samples at MODEL_FS_HZ from the peak on (0.422 s)
WINDOW_LEN = WINDOW_PRE + WINDOW_POST
WINDOW_PRE_S = WINDOW_PRE / MODEL_FS_HZ
WINDOW_POST_S = WINDOW_POST / MODEL_FS_HZ
LOCAL_BEATS = 10  # local average RR: the last 10 intervals
LONG_TERM_S = 300.0  # long-term average RR: intervals in the last 5 minutes
RR_FEATURES = (
    "prev_over_long",
    "next_over_long",
    "local_over_long",
    "prev_over_local",
    "next_over_prev",
    "prev_s",
    "local_s",
    "rr_irregularity",
    "template_corr",
    "p_wave_diff",
    "amplitude_over_template",
    "rr_irregularity_median",
)
N_RR = len(RR_FEATURES)
IRREGULARITY_BEATS = 30  # robust irregularity: the 30 intervals before the beat's own
_NEWEST_USED = max(LOCAL_BEATS, IRREGULARITY_BEATS + 1) + 1  # newest intervals read one by one
TEMPLATE_ALPHA = 0.05  # running template: exponential average over about 20 regular beats
TEMPLATE_RR_TOLERANCE = 0.15  # a beat is regular when its RR is within 15 % of the local average
_RATIO_MAX = 5.0
_P_WAVE = slice(WINDOW_PRE - 32, WINDOW_PRE - 10)  # 0.25 to 0.08 s before the peak
_SNAPSHOT_VERSION = 2
_SECONDS_MAX = 3.0

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BeatFeatures:
    """Features of ``n`` beats: ``beats`` (n, 2 * leads, WINDOW_LEN) and ``rr`` (n, N_RR), float32.

    ``beats[:, :leads]`` is the beat's own window, ``beats[:, leads:]`` the
    patient's running template (average window of the preceding regular beats).
    """

    sample_index: IndexArray
    beats: FloatArray
    rr: FloatArray

    def __len__(self) -> int:
        return int(self.sample_index.shape[0])

    @staticmethod
    def empty(n_leads: int) -> BeatFeatures:
        return BeatFeatures(
            np.zeros(0, np.int64),
            np.zeros((0, 2 * n_leads, WINDOW_LEN), np.float32),
            np.zeros((0, N_RR), np.float32),
        )

    @staticmethod
    def concat(parts: list[BeatFeatures], n_leads: int) -> BeatFeatures:
        if not parts:
            return BeatFeatures.empty(n_leads)
        return BeatFeatures(
            np.concatenate([p.sample_index for p in parts]),
            np.concatenate([p.beats for p in parts]),
            np.concatenate([p.rr for p in parts]),
        )


# np.median / np.std / np.mean spelled out with the same ufuncs and reduction order as
# numpy's own (bit-identical results, property-tested) without their Python-level dispatch:
# they run a few times per beat, ~10-20 us each.


def _median(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``np.median(x, axis=-1, keepdims=True)`` for finite ``x``."""
    n = x.shape[-1]
    if n == 0 or not np.logical_and.reduce(np.isfinite(x), axis=None):
        return np.asarray(np.median(x, axis=-1, keepdims=True), dtype=np.float64)
    h = n // 2
    part = x.copy()  # np.partition(x, ...) is this copy and the in-place method
    if n % 2:
        part.partition(h, axis=-1)
        return part[..., h : h + 1]
    part.partition((h - 1, h), axis=-1)
    out: npt.NDArray[np.float64] = (part[..., h - 1 : h] + part[..., h : h + 1]) / 2.0
    return out


def _std(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``np.std(x, axis=-1, keepdims=True)``."""
    n = x.shape[-1]
    d = x - np.add.reduce(x, axis=-1, keepdims=True) / n
    out: npt.NDArray[np.float64] = np.sqrt(
        np.add.reduce(np.multiply(d, d, out=d), axis=-1, keepdims=True) / n)
    return out


def _mean(x: npt.NDArray[np.float64]) -> float:
    """``float(np.mean(x))`` of a 1-D float64 array."""
    return float(np.add.reduce(x) / x.shape[0])


def normalise_window(window: npt.NDArray[np.float64]) -> FloatArray:
    """Centre each lead (rows) on its median and divide by its standard deviation."""
    centred = window - _median(window)
    scale = _std(centred) + 1e-3
    out: FloatArray = (centred / scale).astype(np.float32)
    return out


def resample_window(
    signal: npt.NDArray[np.float64], first_index: int, peak: int, fs_hz: float
) -> FloatArray:
    """Window around absolute sample ``peak`` at MODEL_FS_HZ, shape (leads, WINDOW_LEN), normalised.

    ``signal`` (n, leads) holds samples ``first_index ...``; positions outside it
    take the nearest edge value.
    """
    offsets = _offsets(fs_hz)
    pos = peak - first_index + offsets
    if pos[0] < 0.0 or pos[-1] > signal.shape[0] - 1.0:
        pos = np.clip(pos, 0.0, signal.shape[0] - 1.0)
    lo = pos.astype(np.int64)  # pos >= 0: truncation is floor
    hi = np.minimum(lo + 1, signal.shape[0] - 1)
    frac = (pos - lo)[:, None]
    window = signal[lo] * (1.0 - frac) + signal[hi] * frac
    if not np.logical_and.reduce(np.isfinite(window), axis=None):
        window = np.nan_to_num(window)
    return normalise_window(window.T)


@functools.lru_cache(maxsize=16)
def _offsets(fs_hz: float) -> npt.NDArray[np.float64]:
    """Window sample positions relative to the peak, in input samples (shared, read-only)."""
    out = np.arange(-WINDOW_PRE, WINDOW_POST, dtype=np.float64) * (fs_hz / MODEL_FS_HZ)
    out.flags.writeable = False
    return out


def window_amplitude(signal: npt.NDArray[np.float64], first_index: int, start: int, stop: int) -> float:
    """Standard deviation (mV) of the first lead over absolute samples ``start:stop`` (clipped)."""
    seg = signal[max(start - first_index, 0) : max(stop - first_index, 1), 0]
    return float(_std(seg - _median(seg))[0]) + 1e-3 if len(seg) else 1e-3


@dataclass(slots=True)
class CutRequest:
    """A beat whose window is to be cut from ``signal`` (``(n, 1)``, samples ``first ...``)."""

    pending: _Pending
    signal: npt.NDArray[np.float64]
    first: int
    fs_hz: float
    pre: int
    post: int


def cut_windows(requests: list[CutRequest]) -> None:
    """Fill in the window and amplitude of every request, those of one rate in one array
    operation (the beats of all patients of a consumed batch): the same elementwise
    arithmetic and the same per-row reductions as :func:`resample_window` and
    :func:`window_amplitude` beat by beat, so the floats are identical (tested).  A window
    that reaches past either end of its buffer, or of a several-lead classifier, is cut
    alone, as before."""
    groups: dict[tuple[float, int, int], list[CutRequest]] = {}
    for r in requests:
        k = r.pending.peak - r.first
        # inside the buffer with the extractor's margins (pre, post each exceed the window by
        # more than a sample), so resample_window would not clip either
        if r.signal.shape[1] == 1 and k - r.pre >= 0 and k + r.post <= r.signal.shape[0]:
            groups.setdefault((r.fs_hz, r.pre, r.post), []).append(r)
        else:
            _cut_one(r)
    for (fs_hz, pre, post), group in groups.items():
        if len(group) == 1:
            _cut_one(group[0])
            continue
        # every window's samples lie in the stretch window_amplitude reads: peak - pre ... + post
        segs = np.stack([r.signal[r.pending.peak - r.first - pre : r.pending.peak - r.first + post, 0]
                         for r in group])
        at = np.array([r.pending.peak - r.first for r in group], dtype=np.int64)
        pos = at[:, None] + _offsets(fs_hz)[None, :]  # as resample_window: (peak - first) + offsets
        lo = pos.astype(np.int64)
        frac = pos - lo
        rel = lo - (at - pre)[:, None]  # into segs
        window = (np.take_along_axis(segs, rel, axis=1) * (1.0 - frac)
                  + np.take_along_axis(segs, rel + 1, axis=1) * frac)
        if not np.logical_and.reduce(np.isfinite(window), axis=None):
            window = np.nan_to_num(window)
        windows = normalise_window(window[:, None, :])
        scales = _std(segs - _median(segs))[:, 0] + 1e-3
        for r, w, sc in zip(group, windows, scales.tolist(), strict=True):
            r.pending.window, r.pending.scale = w, float(sc)


def _cut_one(r: CutRequest) -> None:
    r.pending.window = resample_window(r.signal, r.first, r.pending.peak, r.fs_hz)
    r.pending.scale = window_amplitude(r.signal, r.first, r.pending.peak - r.pre,
                                       r.pending.peak + r.post)


def rr_features(prev_s: float, next_s: float, local_s: float, long_s: float) -> FloatArray:
    """The N_RR features of one beat from its intervals and the patient's running averages."""

    def ratio(a: float, b: float) -> float:
        return min(a / b, _RATIO_MAX) if b > 0 else 1.0

    return np.array(
        [
            ratio(prev_s, long_s),
            ratio(next_s, long_s),
            ratio(local_s, long_s),
            ratio(prev_s, local_s),
            ratio(next_s, prev_s),
            min(prev_s, _SECONDS_MAX),
            min(local_s, _SECONDS_MAX),
        ],
        dtype=np.float32,
    )


def shape_features(
    window: FloatArray, template: FloatArray, amplitude_ratio: float, prior_rr_s: list[float]
) -> FloatArray:
    """The shape and irregularity features appended to :func:`rr_features` (see the module doc)."""
    w, t = window[0].astype(np.float64), template[0].astype(np.float64)
    wc, tc = w - _mean(w), t - _mean(t)
    denom = float(np.sqrt((wc @ wc) * (tc @ tc)))
    corr = float(wc @ tc) / denom if denom > 1e-9 else 1.0
    p_diff = float(np.sqrt(_mean((w[_P_WAVE] - t[_P_WAVE]) ** 2)))
    irregularity = 0.0
    if len(prior_rr_s) >= 2:
        rr = np.asarray(prior_rr_s, dtype=np.float64)
        irregularity = float(_mean(np.abs(rr[1:] - rr[:-1])) / _mean(rr))
    return np.array(
        [min(irregularity, _RATIO_MAX), corr, min(p_diff, _RATIO_MAX), min(amplitude_ratio, _RATIO_MAX)],
        dtype=np.float32,
    )


def irregularity_median(prior_rr_s: list[float]) -> float:
    """Median absolute successive difference of ``prior_rr_s`` (newest first, up to
    ``IRREGULARITY_BEATS + 1`` intervals) over their median: near 0 for a regular rhythm
    with isolated ectopic beats (they move the mean, not the median), high in atrial
    fibrillation.  0 with fewer than 2 intervals."""
    if len(prior_rr_s) < 2:
        return 0.0
    rr = np.asarray(prior_rr_s, dtype=np.float64)
    centre = float(_median(rr[:IRREGULARITY_BEATS])[0])
    spread = float(_median(np.abs(rr[1:] - rr[:-1]))[0])
    return min(spread / centre, _RATIO_MAX) if centre > 0 else 0.0


class _Intervals:
    """RR intervals in order of the peak that ends each: ``end`` (sample) and ``rr`` (s) in two
    growable arrays, appended at the right and dropped at the left (a deque of tuples before:
    copying up to 5 minutes of it into a list for every beat cost ~25 us)."""

    def __init__(self) -> None:
        self.end = np.zeros(256, np.int64)
        self.rr = np.zeros(256, np.float64)
        self.lo = self.hi = 0  # the live intervals are [lo, hi)

    def __len__(self) -> int:
        return self.hi - self.lo

    def append(self, end: int, rr_s: float) -> None:
        if self.hi == self.end.shape[0]:
            live = self.hi - self.lo
            size = self.end.shape[0] * (2 if live > self.end.shape[0] // 2 else 1)
            end_arr, rr_arr = np.zeros(size, np.int64), np.zeros(size, np.float64)
            end_arr[:live], rr_arr[:live] = self.end[self.lo : self.hi], self.rr[self.lo : self.hi]
            self.end, self.rr, self.lo, self.hi = end_arr, rr_arr, 0, live
        self.end[self.hi], self.rr[self.hi] = end, rr_s
        self.hi += 1

    def extend(self, ends: npt.NDArray[np.int64], rrs: npt.NDArray[np.float64]) -> None:
        for e, r in zip(ends.tolist(), rrs.tolist(), strict=True):
            self.append(int(e), float(r))

    def between(self, oldest: float, newest: int) -> tuple[int, int]:
        """``[lo, hi)`` of the intervals whose end is in ``[oldest, newest]``."""
        ends = self.end[self.lo : self.hi]
        a = int(np.searchsorted(ends, oldest, side="left"))
        b = int(np.searchsorted(ends, newest, side="right"))
        return self.lo + a, self.lo + b

    def drop_before(self, sample: float) -> None:
        self.lo += int(np.searchsorted(self.end[self.lo : self.hi], sample, side="left"))

    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        return self.end[self.lo : self.hi].copy(), self.rr[self.lo : self.hi].copy()


@dataclass(slots=True)
class _Pending:
    peak: int
    prev_rr_s: float | None
    window: FloatArray | None = None
    scale: float = 1.0  # lead-0 amplitude (standard deviation, mV) of the window


class BeatFeatureExtractor:
    """Streaming beat features: ``update(samples, peaks) -> BeatFeatures``.

    ``samples`` (n, leads) in mV continue the stream; ``peaks`` are absolute
    sample indices of R-peaks detected so far that were not given before, in
    increasing order (they may lag the samples by up to ``max_peak_lag_s``).  A beat is emitted once its
    window is complete and the next peak is known; :meth:`flush` emits the
    pending ones at the end of a stream (next RR taken equal to the previous).
    The first beat of a stream uses its next RR as its previous one.  The
    output does not depend on how the stream is cut into chunks.
    """

    def __init__(self, fs_hz: float, n_leads: int, max_peak_lag_s: float = 3.0) -> None:
        if not 50.0 <= fs_hz <= 5000.0:
            raise ValueError(f"fs_hz={fs_hz}: expected a sampling rate between 50 and 5000 Hz")
        self.fs_hz = fs_hz
        self.n_leads = n_leads
        self._pre = int(np.ceil(WINDOW_PRE_S * fs_hz)) + 1
        self._post = int(np.ceil(WINDOW_POST_S * fs_hz)) + 1
        self._lag = int(np.ceil(max_peak_lag_s * fs_hz))
        self._buf = np.zeros((0, n_leads), np.float64)
        self._buf_first = 0
        self._n_seen = 0
        self._pending: deque[_Pending] = deque()
        self._last_peak: int | None = None
        self._intervals = _Intervals()
        self._template: FloatArray | None = None
        self._template_scale = 0.0  # running average of the regular beats' amplitudes
        self._n_template = 0

    def update(
        self, samples_mv: npt.NDArray[np.floating], peaks: npt.ArrayLike = ()
    ) -> BeatFeatures:
        requests = self.begin(samples_mv, peaks)
        for r in requests:
            _cut_one(r)
        return self.finish()

    def begin(self, samples_mv: npt.NDArray[np.floating], peaks: npt.ArrayLike = ()) -> list[CutRequest]:
        """First half of :meth:`update`: take the samples and peaks; return the beats whose
        windows can now be cut.  The caller cuts them (:func:`cut_windows`, batched across
        patients) and then calls :meth:`finish`; nothing else may touch the extractor between."""
        samples = np.asarray(samples_mv, dtype=np.float64).reshape(-1, self.n_leads)
        self._buf = np.concatenate([self._buf, samples])
        self._n_seen += samples.shape[0]
        for peak in np.asarray(peaks, dtype=np.int64).ravel():
            self._add_peak(int(peak))
        return [CutRequest(p, self._buf, self._buf_first, self.fs_hz, self._pre, self._post)
                for p in self._pending if p.window is None and p.peak + self._post < self._n_seen]

    def finish(self) -> BeatFeatures:
        """Second half of :meth:`update`: the beats that are complete, with their features."""
        out: list[tuple[int, FloatArray, FloatArray]] = []
        while len(self._pending) >= 2 and self._pending[0].window is not None:
            p = self._pending.popleft()
            out.append(self._features(p, (self._pending[0].peak - p.peak) / self.fs_hz))
        self._trim()
        return self._pack(out)

    def flush(self) -> BeatFeatures:
        """Emit every pending beat (end of stream), next RR = previous RR."""
        self._cut_windows(final=True)
        out: list[tuple[int, FloatArray, FloatArray]] = []
        while self._pending:
            p = self._pending.popleft()
            out.append(self._features(p, p.prev_rr_s if p.prev_rr_s is not None else 1.0))
        return self._pack(out)

    def _add_peak(self, peak: int) -> None:
        if self._last_peak is not None and peak <= self._last_peak:
            return  # duplicate or out-of-order peak: ignore
        rr_s = None if self._last_peak is None else (peak - self._last_peak) / self.fs_hz
        if rr_s is not None:
            self._intervals.append(peak, rr_s)
        self._pending.append(_Pending(peak, rr_s))
        self._last_peak = peak

    def _features(self, p: _Pending, next_rr: float) -> tuple[int, FloatArray, FloatArray]:
        """The beat's window over the template, and its RR, shape and irregularity features
        (:func:`detector.core.kernels.beat_features`); a regular beat joins the template."""
        prev_rr = p.prev_rr_s if p.prev_rr_s is not None else next_rr
        # intervals ending in [peak - LONG_TERM_S, peak] (their ends increase)
        lo, hi = self._intervals.between(p.peak - LONG_TERM_S * self.fs_hz, p.peak)
        assert p.window is not None
        fresh = self._template is None
        template = p.window.copy() if self._template is None else self._template
        # amplitudes unknown (0): no template yet, or a pending beat from a version 1 snapshot
        ratio = p.scale / self._template_scale if p.scale > 0 and self._template_scale > 0 else 1.0
        alpha = max(1.0 / (self._n_template + 1), TEMPLATE_ALPHA)
        stacked = np.empty((2 * self.n_leads, WINDOW_LEN), np.float32)
        rr = np.empty(N_RR, np.float32)
        regular = beat_features(
            p.window, template, fresh, alpha, ratio, prev_rr, next_rr,
            1 if p.prev_rr_s is not None else 0,  # 1: skip the beat's own interval for the prior ones
            self._intervals.rr, lo, hi, _P_WAVE.start, _P_WAVE.stop, stacked, rr)
        if regular:  # the template itself moved in the kernel (or is this first window)
            self._template = template
            self._n_template += 1
            if self._template_scale <= 0 or p.scale <= 0:
                self._template_scale = max(p.scale, self._template_scale)
            else:
                self._template_scale = (1.0 - alpha) * self._template_scale + alpha * p.scale
        return p.peak, stacked, rr

    def snapshot(self) -> bytes:
        """Complete state as bytes (:mod:`detector.core.arrays`, no pickle); :meth:`from_snapshot`
        resumes exactly (and reads the ``.npz`` snapshots of earlier versions)."""
        n_pend = len(self._pending)
        windows = np.zeros((n_pend, self.n_leads, WINDOW_LEN), np.float32)
        has_window = np.zeros(n_pend, bool)
        for i, p in enumerate(self._pending):
            if p.window is not None:
                windows[i], has_window[i] = p.window, True
        template = self._template if self._template is not None else np.zeros((0,), np.float32)
        int_end, int_rr = self._intervals.arrays()
        return pack_arrays(dict(
            version=np.int64(_SNAPSHOT_VERSION),
            header=np.array([self.fs_hz, self.n_leads, self._lag / self.fs_hz], np.float64),
            counters=np.array(
                [self._buf_first, self._n_seen, -1 if self._last_peak is None else self._last_peak,
                 self._n_template], np.int64,
            ),
            buf=self._buf,
            pend_peak=np.array([p.peak for p in self._pending], np.int64),
            pend_prev=np.array([np.nan if p.prev_rr_s is None else p.prev_rr_s for p in self._pending]),
            pend_window=windows,
            pend_has_window=has_window,
            pend_scale=np.array([p.scale for p in self._pending], np.float64),
            template_scale=np.float64(self._template_scale),
            int_end=int_end,
            int_rr=int_rr,
            template=template,
        ))

    @classmethod
    def from_snapshot(cls, blob: bytes) -> BeatFeatureExtractor:
        z = unpack_arrays(blob)
        if int(z["version"]) not in (1, _SNAPSHOT_VERSION):  # v1: no amplitudes (taken as 1)
            raise ValueError(f"unsupported beat extractor snapshot version {int(z['version'])}")
        fs_hz, n_leads, lag_s = (float(v) for v in z["header"])
        ext = cls(fs_hz, int(n_leads), lag_s)
        buf_first, n_seen, last_peak, n_template = (int(v) for v in z["counters"])
        ext._buf, ext._buf_first, ext._n_seen = z["buf"].copy(), buf_first, n_seen
        ext._last_peak = None if last_peak < 0 else last_peak
        ext._n_template = n_template
        ext._template = z["template"].copy() if z["template"].size else None
        scales = z["pend_scale"] if "pend_scale" in z else np.zeros(len(z["pend_peak"]))
        ext._template_scale = float(z["template_scale"]) if "template_scale" in z else 0.0
        for peak, prev, window, has, scale in zip(
            z["pend_peak"], z["pend_prev"], z["pend_window"], z["pend_has_window"], scales, strict=True
        ):
            prev_rr = None if np.isnan(prev) else float(prev)
            window_or_none = window.copy() if has else None
            ext._pending.append(_Pending(int(peak), prev_rr, window_or_none, float(scale)))
        ext._intervals.extend(np.asarray(z["int_end"], np.int64), np.asarray(z["int_rr"], np.float64))
        return ext

    def _cut_windows(self, final: bool) -> None:
        for p in self._pending:
            if p.window is None and (final or p.peak + self._post < self._n_seen):
                _cut_one(CutRequest(p, self._buf, self._buf_first, self.fs_hz, self._pre, self._post))

    def _trim(self) -> None:
        oldest_needed = self._n_seen - self._post - self._lag - 1
        for p in self._pending:
            if p.window is None:
                oldest_needed = min(oldest_needed, p.peak)
        keep_from = max(self._buf_first, oldest_needed - self._pre - 1)
        if keep_from > self._buf_first:
            self._buf = self._buf[keep_from - self._buf_first :]
            self._buf_first = keep_from
        if self._pending:
            oldest_interval = self._pending[0].peak - LONG_TERM_S * self.fs_hz - 1
            self._intervals.drop_before(oldest_interval)

    def _pack(self, out: list[tuple[int, FloatArray, FloatArray]]) -> BeatFeatures:
        if not out:
            return BeatFeatures.empty(self.n_leads)
        return BeatFeatures(
            np.array([o[0] for o in out], dtype=np.int64),
            np.stack([o[1] for o in out]),
            np.stack([o[2] for o in out]),
        )


def extract_beats(
    signal_mv: npt.NDArray[np.floating], fs_hz: float, peaks: npt.ArrayLike, chunk_s: float = 0.0
) -> BeatFeatures:
    """Features of every peak of a whole record (the streaming extractor, then flush)."""
    signal = np.asarray(signal_mv, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[:, None]
    ext = BeatFeatureExtractor(fs_hz, signal.shape[1])
    peak_arr = np.sort(np.asarray(peaks, dtype=np.int64).ravel())
    if chunk_s <= 0:
        return BeatFeatures.concat([ext.update(signal, peak_arr), ext.flush()], signal.shape[1])
    step = max(1, int(round(chunk_s * fs_hz)))
    parts = []
    for start in range(0, signal.shape[0], step):
        end = min(start + step, signal.shape[0])
        new = peak_arr[(peak_arr >= start) & (peak_arr < end)]
        parts.append(ext.update(signal[start:end], new))
    parts.append(ext.flush())
    return BeatFeatures.concat(parts, signal.shape[1])
