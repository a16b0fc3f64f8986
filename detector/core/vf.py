"""Ventricular fibrillation / flutter detection on the raw ECG: the VF-filter leakage method.

Each window is centred on its mean; pi * sum|x| / sum|dx| is half its mean period (of a
sinusoid), in samples; the leakage is sum|x[n] + x[n - half]| over sum|x[n]| +
sum|x[n - half]|.  A sinusoid-like rhythm (VF, flutter) passes this notch with little
leakage; QRS complexes leak a lot (:func:`detector.core.kernels.vf_leakage`).

No I/O, no clock: a state machine over fixed windows aligned to absolute sample indices,
so decisions do not depend on how the signal was cut into chunks.

References
----------
Kuo S, Dillman R. Computer detection of ventricular fibrillation. Computers in
Cardiology 1978:347-349 (the "VF filter" / leakage measure).
Amann A, Tratnig R, Unterkofler K. Reliability of old and new ventricular
fibrillation detection algorithms for automated external defibrillators.
Biomed Eng Online 2005;4:60 (preprocessing, threshold 0.625, comparison).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from detector.core.kernels import vf_step


@dataclass(frozen=True, slots=True)
class VfConfig:
    """Parameters in physical units."""

    window_s: float = 4.0
    step_s: float = 1.0
    leakage_threshold: float = 0.625
    min_amplitude_mv: float = 0.1  # below this peak-to-peak the window is flat, not VF
    band_hz: tuple[float, float] = (1.0, 30.0)


@dataclass(frozen=True, slots=True)
class VfDecision:
    """One window's verdict; ``sample_index`` is one past the window's last sample."""

    sample_index: int
    is_vf: bool
    leakage: float


@functools.lru_cache(maxsize=16)
def _band_pass(band_hz: tuple[float, float], fs_hz: float) -> npt.NDArray[np.float64]:
    """The VF band-pass sections, designed once per rate (read-only, shared by every detector
    of that rate: the kernel only reads them)."""
    sos = np.asarray(sps.butter(2, band_hz, btype="bandpass", fs=fs_hz, output="sos"), dtype=np.float64)
    sos.flags.writeable = False
    return sos


class VfDetector:
    """Streaming VF detector: one :class:`VfDecision` per ``step_s`` over the last ``window_s``.

    The signal is band-passed causally (``band_hz``, filter state carried between chunks)
    and windows end at multiples of the step in absolute sample indices, so the verdicts do
    not depend on chunking.  A gap (first index beyond the buffered end) restarts the
    buffer and the filter; a non-finite sample yields no VF verdict for windows holding it.
    """

    def __init__(self, fs_hz: float, config: VfConfig = VfConfig()) -> None:
        if fs_hz <= 0:
            raise ValueError(f"fs_hz={fs_hz}: must be > 0")
        self.fs_hz = fs_hz
        self.config = config
        self._win = max(int(round(config.window_s * fs_hz)), 2)
        self._step = max(int(round(config.step_s * fs_hz)), 1)
        self._sos = _band_pass(tuple(config.band_hz), float(fs_hz))  # shared, read-only
        self._zi = np.zeros((1, self._sos.shape[0], 2))  # the band-pass state, carried
        self._buf: npt.NDArray[np.float64] = np.zeros(0)  # filtered samples
        self._buf_end: int | None = None  # absolute index one past the buffer's last sample
        self._ok: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)  # input finite, per sample

    def update(self, samples_mv: npt.ArrayLike, first_sample_index: int) -> list[VfDecision]:
        x = np.asarray(samples_mv, dtype=np.float64).reshape(-1)
        if self._buf_end is not None and first_sample_index < self._buf_end:
            skip = self._buf_end - first_sample_index  # overlap: drop what we already have
            x, first_sample_index = x[skip:], first_sample_index + skip
        if self._buf_end is None or first_sample_index != self._buf_end:
            self._buf, self._zi[:] = np.zeros(0), 0.0
            self._ok = np.zeros(0, dtype=bool)
        # non-finite samples enter the filter as 0 (its state stays finite); windows that
        # hold one get no verdict
        start = first_sample_index - self._buf.size
        end = first_sample_index + x.size
        first_end = ((start + self._win + self._step - 1) // self._step) * self._step
        self._buf, self._ok, leaks = vf_step(
            np.ascontiguousarray(x, dtype=np.float64), self._sos, self._zi, self._buf,
            self._ok, first_end - start, self._win, self._step, self.config.min_amplitude_mv)
        self._buf_end = end
        threshold = self.config.leakage_threshold
        return [VfDecision(first_end + k * self._step, leak < threshold, leak)
                for k, leak in enumerate(leaks.tolist())]

    def snapshot(self, arrays: bool = False) -> dict[str, Any]:
        """JSON-serialisable state; with ``arrays`` the 4 s buffers stay numpy arrays (copies),
        for a caller that stores them as binary (building 1,440 Python floats cost ~1.5 ms)."""
        if arrays:
            buf: Any = self._buf.copy()
            ok: Any = self._ok.copy()
        else:
            buf, ok = [float(v) for v in self._buf], [bool(v) for v in self._ok]
        return {"buf": buf, "buf_end": self._buf_end, "zi": self._zi[0].tolist(), "ok": ok}

    @classmethod
    def from_snapshot(
        cls, snap: dict[str, Any], fs_hz: float, config: VfConfig = VfConfig()
    ) -> VfDetector:
        det = cls(fs_hz, config)
        det._buf = np.asarray(snap["buf"], dtype=np.float64)
        det._buf_end = None if snap["buf_end"] is None else int(snap["buf_end"])
        det._zi[0] = np.asarray(snap["zi"], dtype=np.float64).reshape(det._zi[0].shape)
        det._ok = np.asarray(snap["ok"], dtype=bool)
        return det
