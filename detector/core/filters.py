"""Filter design helpers and the causal hold of non-finite samples.

The filters themselves run in :mod:`detector.core.kernels` (``scipy.signal.sosfilt``'s
arithmetic, sample by sample with carried ``zi``), so their output does not depend on
how the stream is chunked.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]


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
