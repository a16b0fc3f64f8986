from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detector.core.sequencer import ChunkFate, ChunkSequencer


def _chunk(first: int, n: int) -> np.ndarray:
    return (np.arange(first, first + n, dtype=np.int64) % 30000).astype(np.int16).reshape(-1, 1)


def test_in_order_duplicate_overlap_gap() -> None:
    seq = ChunkSequencer()
    assert seq.push(0, _chunk(0, 90)).fate is ChunkFate.FIRST
    assert seq.push(90, _chunk(90, 90)).fate is ChunkFate.ACCEPT
    dup = seq.push(0, _chunk(0, 90))
    assert dup.fate is ChunkFate.DUPLICATE and not dup.is_new_data
    trimmed = seq.push(150, _chunk(150, 90))
    assert trimmed.fate is ChunkFate.TRIMMED
    assert trimmed.first_sample_index == 180 and trimmed.samples.shape[0] == 60
    assert np.array_equal(trimmed.samples, _chunk(180, 60))
    gap = seq.push(1000, _chunk(1000, 90))
    assert gap.fate is ChunkFate.GAP and gap.gap_samples == 1000 - 240
    assert seq.next_sample_index == 1090


@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 400)), max_size=40))
def test_output_is_contiguous_without_repeats(chunks: list[tuple[int, int]]) -> None:
    """Whatever arrives, accepted samples never repeat an index and are internally ordered."""
    seq = ChunkSequencer()
    seen: set[int] = set()
    last_end = -1
    for first, n in chunks:
        out = seq.push(first, _chunk(first, n))
        if not out.is_new_data:
            continue
        idx = range(out.first_sample_index, out.first_sample_index + out.samples.shape[0])
        assert out.first_sample_index >= last_end
        assert not seen.intersection(idx)
        assert np.array_equal(out.samples, _chunk(out.first_sample_index, len(idx)))
        seen.update(idx)
        last_end = idx.stop
