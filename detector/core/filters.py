"""Causal filters that carry their state between chunks.

Every filter here gives bit-identical output whatever the chunking of its
input, so the detectors built on them are chunk-invariant: IIR sections run
sample by sample in ``scipy.signal.sosfilt`` with carried ``zi``, FIR parts keep
their input tail, and the moving-window integrator sums quantised int64 values,
whose arithmetic is exact and associative.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


try:  # the compiled kernel behind scipy.signal.sosfilt, minus ~80 us of argument checks per call
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - a future scipy may move it; fall back to the public API
    _sosfilt_kernel = None


class SosFilter:
    """A causal IIR filter in second-order sections, one state per channel.

    Channels are rows: input and output have shape ``(n_channels, n)``.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6)
        Second-order sections, e.g. from ``scipy.signal.butter(..., output="sos")``.
    n_channels : int
        Number of parallel channels filtered independently.
    """

    def __init__(self, sos: FloatArray, n_channels: int) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.zi = np.zeros((n_channels, self.sos.shape[0], 2), dtype=np.float64)

    def __call__(self, x: FloatArray) -> FloatArray:
        """Filter ``x`` of shape ``(n_channels, n)`` and advance the state."""
        y = np.array(x, dtype=np.float64, order="C")  # the kernel works in place
        if y.shape[1] == 0:
            return y
        if _sosfilt_kernel is not None:
            _sosfilt_kernel(self.sos, y, self.zi)
            return y
        out, zi = signal.sosfilt(self.sos, y, axis=1, zi=np.moveaxis(self.zi, 0, -1))
        self.zi = np.ascontiguousarray(np.moveaxis(zi, -1, 0))
        return np.asarray(out, dtype=np.float64)


def bandpass_sos(low_hz: float, high_hz: float, fs_hz: float, order: int = 2) -> FloatArray:
    """Butterworth band-pass sections; the upper edge is capped below Nyquist."""
    high = min(high_hz, 0.45 * fs_hz)
    sos = signal.butter(order, [low_hz, high], btype="bandpass", fs=fs_hz, output="sos")
    return np.asarray(sos, dtype=np.float64)


def group_delay_samples(sos: FloatArray, freq_hz: float, fs_hz: float) -> float:
    """Group delay of ``sos`` at ``freq_hz``, in samples (for locating peaks)."""
    b, a = signal.sos2tf(sos)
    _, gd = signal.group_delay((b, a), w=[freq_hz], fs=fs_hz)
    return float(gd[0])


class Difference:
    """First difference ``y[n] = (x[n] - x[n-1]) * fs`` (units per second), with carried tail."""

    def __init__(self, n_channels: int, fs_hz: float) -> None:
        self.fs_hz = fs_hz
        self.last = np.zeros(n_channels, dtype=np.float64)

    def __call__(self, x: FloatArray) -> FloatArray:
        """``x`` has shape ``(n_channels, n)``."""
        if x.shape[1] == 0:
            return x.copy()
        out: FloatArray = np.empty_like(x)
        out[:, 0] = x[:, 0] - self.last
        np.subtract(x[:, 1:], x[:, :-1], out=out[:, 1:])
        out *= self.fs_hz
        self.last = x[:, -1].copy()
        return out


class MovingSum:
    """Exact causal moving sum over ``width`` samples of a quantised signal.

    Values are quantised to int64 with ``scale`` and summed with a carried
    running total; int64 addition is exact (and wraps harmlessly, as only
    differences of the running total are used), so the output does not depend
    on chunk boundaries.  This is the moving-window integrator of Pan and
    Tompkins (1985).
    """

    def __init__(self, width: int, scale: float, max_value: float) -> None:
        self.width = max(1, int(width))
        self.scale = float(scale)
        self.max_value = float(max_value)
        self.total = np.int64(0)
        self.tail = np.zeros(self.width, dtype=np.int64)  # last `width` running totals

    def __call__(self, x: FloatArray) -> FloatArray:
        """Return the moving mean of non-negative ``x`` (1-D) over the last ``width`` samples."""
        n, w = x.shape[0], self.width
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        buf = np.empty(w + n, dtype=np.int64)
        buf[:w] = self.tail
        q = (np.minimum(x, self.max_value) * self.scale).astype(np.int64)
        np.add.accumulate(q, out=buf[w:])  # np.cumsum without its wrapper
        buf[w:] += self.total  # int64 wraps harmlessly: only differences are used
        self.total = buf[-1]
        self.tail = buf[-w:].copy()
        out: FloatArray = (buf[w:] - buf[:n]) * (1.0 / (self.scale * w))
        return out


class HoldNan:
    """Replace non-finite samples by the last finite value of the channel (carried)."""

    def __init__(self, n_channels: int) -> None:
        self.last = np.zeros(n_channels, dtype=np.float64)

    def __call__(self, x: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        bad = ~np.isfinite(x)
        if x.shape[0] == 0 or not bad.any():
            if x.shape[0]:
                self.last = x[-1].copy()
            return x, bad
        n = x.shape[0]
        idx = np.where(bad, -1, np.arange(n)[:, None])
        idx = np.maximum.accumulate(idx, axis=0)
        padded = np.concatenate([self.last[None, :], x], axis=0)
        filled = np.take_along_axis(padded, idx + 1, axis=0)
        self.last = filled[-1].copy()
        return filled, bad
