"""Per-lead signal quality: NaN, flat line / lead off, clipping and gross artefact.

The signal is judged in fixed blocks aligned on absolute sample indices, so
the events do not depend on chunking.  A bad stretch is reported twice: when it
starts (``end_sample`` is ``None``) and when it ends.  Checks follow the
simple "signal quality index" rules of Clifford et al. [1]_ (flat line,
saturation, out-of-range amplitude).

References
----------
.. [1] G. D. Clifford, J. Behar, Q. Li and I. Rezek, "Signal quality indices and
   data fusion for determining clinical acceptability of electrocardiograms",
   Physiol. Meas. 33(9):1419-1433, 2012.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.core.kernels import quality_kinds

FloatArray = npt.NDArray[np.float64]

KINDS = ("nan", "flat", "clipped", "artefact")  # indexed by the codes of quality_kinds


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Quality rules in physical units."""

    block_s: float = 1.0
    flat_mv: float = 0.02  # peak-to-peak below this in a block: flat line / lead off
    clip_s: float = 0.03  # this long at the block's max or min value: clipped
    artefact_mv: float = 8.0  # peak-to-peak above this in a block: gross artefact


@dataclass(frozen=True, slots=True)
class QualityEvent:
    """An unreadable stretch of one lead (``lead`` -1: all leads, judged by the detector).

    ``end_sample`` is ``None`` while it lasts; ``kind`` is one of :data:`KINDS` or ``"noise"``.
    """

    lead: int
    kind: str
    start_sample: int
    end_sample: int | None


class QualityMonitor:
    """Block-wise quality judge for ``n_leads`` leads (see module docstring)."""

    def __init__(self, fs_hz: float, n_leads: int, config: QualityConfig) -> None:
        self.config = config
        self.block_n = max(1, int(round(config.block_s * fs_hz)))
        self.clip_n = max(2, int(round(config.clip_s * fs_hz)))
        self.n_leads = n_leads
        self.buf = np.zeros((0, n_leads))
        self.buf_start = 0
        self.kind: list[str | None] = [None] * n_leads
        self.since = [0] * n_leads

    def update(self, x: FloatArray, first_index: int) -> list[QualityEvent]:
        """Add raw samples (NaN allowed) starting at ``first_index``; return events."""
        if self.buf.shape[0] == 0:
            self.buf_start = first_index
        self.buf = np.concatenate([self.buf, x])
        events: list[QualityEvent] = []
        while self.buf.shape[0] >= self.block_n:
            block, self.buf = self.buf[: self.block_n], self.buf[self.block_n :]
            events.extend(self._judge(block, self.buf_start))
            self.buf_start += self.block_n
        return events

    def flush(self, end_index: int) -> list[QualityEvent]:
        """Close open events at the end of the stream."""
        out = [
            QualityEvent(lead, k, self.since[lead], end_index)
            for lead, k in enumerate(self.kind)
            if k is not None
        ]
        self.kind = [None] * self.n_leads
        return out

    def _classify(self, block: FloatArray) -> list[str | None]:
        """Kind of trouble of each lead (column) in one block, or None."""
        cfg = self.config
        codes = quality_kinds(block, cfg.flat_mv, self.clip_n, cfg.artefact_mv)
        return [None if c < 0 else KINDS[c] for c in codes.tolist()]

    def _judge(self, block: FloatArray, start: int) -> list[QualityEvent]:
        events: list[QualityEvent] = []
        for lead, kind in enumerate(self._classify(block)):
            cur = self.kind[lead]
            if kind == cur:
                continue
            if cur is not None:
                events.append(QualityEvent(lead, cur, self.since[lead], start))
            if kind is not None:
                events.append(QualityEvent(lead, kind, start, None))
                self.since[lead] = start
            self.kind[lead] = kind
        return events

    def state(self) -> dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]]:
        """Arrays describing the full state (for snapshots)."""
        kinds = np.array([-1 if k is None else KINDS.index(k) for k in self.kind], dtype=np.int64)
        return {
            "buf": self.buf.copy(),
            "ints": np.array([self.buf_start, *self.since], dtype=np.int64),
            "kinds": kinds,
        }

    def restore(self, state: dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]]) -> None:
        """Inverse of :meth:`state`."""
        self.buf = np.asarray(state["buf"], dtype=np.float64).reshape(-1, self.n_leads)
        ints = [int(v) for v in state["ints"]]
        self.buf_start, self.since = ints[0], ints[1:]
        self.kind = [None if k < 0 else KINDS[int(k)] for k in state["kinds"]]
