"""Per-patient ordering of sample chunks: duplicates dropped, overlaps trimmed, gaps reported.

Kafka keeps one patient's messages in order, but a monitor (or a replay
restarted mid-stream) can resend, skip or restart.  The detector core must see
one contiguous stream, so every chunk passes through a :class:`ChunkSequencer`
first; what it decides is explicit, never silent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class ChunkFate(enum.Enum):
    ACCEPT = "accept"          # contiguous with what came before
    TRIMMED = "trimmed"        # overlapped: the already-seen head was cut off
    DUPLICATE = "duplicate"    # nothing new: ignored
    GAP = "gap"                # samples missing before it: a technical event, then resync
    FIRST = "first"            # first chunk of this patient


@dataclass(frozen=True, slots=True)
class SequencedChunk:
    """What to feed the detector: ``samples`` start at ``first_sample_index``."""

    fate: ChunkFate
    first_sample_index: int
    samples: npt.NDArray[np.int16]
    gap_samples: int = 0

    @property
    def is_new_data(self) -> bool:
        return self.fate is not ChunkFate.DUPLICATE and self.samples.shape[0] > 0


@dataclass(slots=True)
class ChunkSequencer:
    """Tracks ``next_sample_index`` of one patient's stream.

    A chunk that starts after the expected index is a gap (the caller raises a
    technical alarm and restarts detection at the new index); one that ends at
    or before it is a duplicate; one that straddles it is trimmed.
    """

    next_sample_index: int | None = None

    def push(self, first_sample_index: int, samples: npt.NDArray[np.int16]) -> SequencedChunk:
        n = int(samples.shape[0])
        expected = self.next_sample_index
        end = first_sample_index + n
        if expected is None:
            self.next_sample_index = end
            return SequencedChunk(ChunkFate.FIRST, first_sample_index, samples)
        if end <= expected:
            return SequencedChunk(ChunkFate.DUPLICATE, first_sample_index, samples[:0])
        if first_sample_index == expected:
            self.next_sample_index = end
            return SequencedChunk(ChunkFate.ACCEPT, first_sample_index, samples)
        if first_sample_index < expected:
            self.next_sample_index = end
            return SequencedChunk(ChunkFate.TRIMMED, expected, samples[expected - first_sample_index :])
        self.next_sample_index = end
        return SequencedChunk(
            ChunkFate.GAP, first_sample_index, samples, gap_samples=first_sample_index - expected
        )
