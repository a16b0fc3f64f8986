"""Beat features for the classifier: resampled windows around R-peaks plus RR-interval features.

Pure numpy and streaming-friendly: :class:`BeatFeatureExtractor` takes chunks of
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

RR features follow de Chazal et al., "Automatic classification of heartbeats
using ECG morphology and heartbeat interval features", IEEE TBME 51(7), 2004
(pre-, post-, local and average RR), normalised per patient as in Llamedo &
Martinez, IEEE TBME 58(3), 2011: ratios to the patient's own running averages,
so the model sees "premature for this patient" rather than an absolute interval.
"""

from __future__ import annotations

import bisect
import functools
import io
import itertools
import operator
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
)
N_RR = len(RR_FEATURES)
TEMPLATE_ALPHA = 0.05  # running template: exponential average over about 20 regular beats
TEMPLATE_RR_TOLERANCE = 0.15  # a beat is regular when its RR is within 15 % of the local average
_RATIO_MAX = 5.0
_SNAPSHOT_VERSION = 1
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


def normalise_window(window: npt.NDArray[np.float64]) -> FloatArray:
    """Centre each lead (rows) on its median and divide by its standard deviation."""
    centred = window - np.median(window, axis=-1, keepdims=True)
    scale = centred.std(axis=-1, keepdims=True) + 1e-3
    out: FloatArray = (centred / scale).astype(np.float32)
    return out


def resample_window(
    signal: npt.NDArray[np.float64], first_index: int, peak: int, fs_hz: float
) -> FloatArray:
    """Window around absolute sample ``peak`` at MODEL_FS_HZ, shape (leads, WINDOW_LEN), normalised.

    ``signal`` (n, leads) holds samples ``first_index ...``; positions outside it
    take the nearest edge value.
    """
    offsets = np.arange(-WINDOW_PRE, WINDOW_POST, dtype=np.float64) * (fs_hz / MODEL_FS_HZ)
    pos = np.clip(peak - first_index + offsets, 0.0, signal.shape[0] - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, signal.shape[0] - 1)
    frac = (pos - lo)[:, None]
    window = signal[lo] * (1.0 - frac) + signal[hi] * frac
    return normalise_window(np.nan_to_num(window.T))


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


def _interval_end(interval: tuple[int, float]) -> int:
    return interval[0]


@dataclass(slots=True)
class _Pending:
    peak: int
    prev_rr_s: float | None
    window: FloatArray | None = None


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
        self._intervals: deque[tuple[int, float]] = deque()  # (peak ending it, rr in s)
        self._template: FloatArray | None = None
        self._n_template = 0

    def update(
        self, samples_mv: npt.NDArray[np.floating], peaks: npt.ArrayLike = ()
    ) -> BeatFeatures:
        samples = np.asarray(samples_mv, dtype=np.float64).reshape(-1, self.n_leads)
        self._buf = np.concatenate([self._buf, samples])
        self._n_seen += samples.shape[0]
        out: list[tuple[int, FloatArray, FloatArray]] = []
        for peak in np.asarray(peaks, dtype=np.int64).ravel():
            self._add_peak(int(peak))
        self._cut_windows(final=False)
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
            self._intervals.append((peak, rr_s))
        self._pending.append(_Pending(peak, rr_s))
        self._last_peak = peak

    def _features(self, p: _Pending, next_rr: float) -> tuple[int, FloatArray, FloatArray]:
        prev_rr = p.prev_rr_s if p.prev_rr_s is not None else next_rr
        # intervals ending in [peak - LONG_TERM_S, peak], newest first (their ends increase)
        oldest = p.peak - LONG_TERM_S * self.fs_hz
        lo = bisect.bisect_left(self._intervals, oldest, key=_interval_end)
        hi = bisect.bisect_right(self._intervals, p.peak, key=_interval_end)
        newest_first = [rr for _, rr in itertools.islice(self._intervals, lo, hi)][::-1]
        local = newest_first[:LOCAL_BEATS]
        # summed one by one, newest first (not pairwise, not compensated): the same floats
        # as ever, so features and classes do not move
        total = functools.reduce(operator.add, newest_first, 0.0)
        count = len(newest_first)
        local_s = sum(local) / len(local) if local else prev_rr
        long_s = total / count if count else prev_rr
        assert p.window is not None
        template = p.window if self._template is None else self._template
        if abs(prev_rr / local_s - 1.0) <= TEMPLATE_RR_TOLERANCE:
            self._update_template(p.window)
        stacked = np.concatenate([p.window, template])
        return p.peak, stacked, rr_features(prev_rr, next_rr, local_s, long_s)

    def _update_template(self, window: FloatArray) -> None:
        self._n_template += 1
        alpha = max(1.0 / self._n_template, TEMPLATE_ALPHA)
        if self._template is None:
            self._template = window.copy()
        else:
            self._template = ((1.0 - alpha) * self._template + alpha * window).astype(np.float32)

    def snapshot(self) -> bytes:
        """Complete state as ``.npz`` bytes (no pickle); :meth:`from_snapshot` resumes exactly."""
        n_pend = len(self._pending)
        windows = np.zeros((n_pend, self.n_leads, WINDOW_LEN), np.float32)
        has_window = np.zeros(n_pend, bool)
        for i, p in enumerate(self._pending):
            if p.window is not None:
                windows[i], has_window[i] = p.window, True
        template = self._template if self._template is not None else np.zeros((0,), np.float32)
        out = io.BytesIO()
        np.savez(
            out,
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
            int_end=np.array([e for e, _ in self._intervals], np.int64),
            int_rr=np.array([r for _, r in self._intervals], np.float64),
            template=template,
        )
        return out.getvalue()

    @classmethod
    def from_snapshot(cls, blob: bytes) -> BeatFeatureExtractor:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            if int(z["version"]) != _SNAPSHOT_VERSION:
                raise ValueError(f"unsupported beat extractor snapshot version {int(z['version'])}")
            fs_hz, n_leads, lag_s = (float(v) for v in z["header"])
            ext = cls(fs_hz, int(n_leads), lag_s)
            buf_first, n_seen, last_peak, n_template = (int(v) for v in z["counters"])
            ext._buf, ext._buf_first, ext._n_seen = z["buf"].copy(), buf_first, n_seen
            ext._last_peak = None if last_peak < 0 else last_peak
            ext._n_template = n_template
            ext._template = z["template"].copy() if z["template"].size else None
            for peak, prev, window, has in zip(
                z["pend_peak"], z["pend_prev"], z["pend_window"], z["pend_has_window"], strict=True
            ):
                prev_rr = None if np.isnan(prev) else float(prev)
                ext._pending.append(_Pending(int(peak), prev_rr, window.copy() if has else None))
            ext._intervals.extend(
                (int(e), float(r)) for e, r in zip(z["int_end"], z["int_rr"], strict=True)
            )
        return ext

    def _cut_windows(self, final: bool) -> None:
        for p in self._pending:
            if p.window is None and (final or p.peak + self._post < self._n_seen):
                p.window = resample_window(self._buf, self._buf_first, p.peak, self.fs_hz)

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
            while self._intervals and self._intervals[0][0] < oldest_interval:
                self._intervals.popleft()

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
