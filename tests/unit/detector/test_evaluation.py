"""bxb-style beat matching and EC57 counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector.evaluation import Counts, drop_excluded, load_reference, match_beats, score


def test_match_pairs_nearest_first_within_window() -> None:
    ref = [100, 200, 300, 400]
    test = [105, 190, 260, 500]  # 260 is 40 from 300: outside a 30-sample window
    pairs, fn, fp = match_beats(ref, test, 30)
    assert pairs == [(0, 0), (1, 1)]
    assert fn.tolist() == [2, 3] and fp.tolist() == [2, 3]


def test_one_test_beat_matches_one_reference_beat_the_nearest() -> None:
    pairs, fn, fp = match_beats([100, 130], [125], 54)
    assert pairs == [(1, 0)] and fn.tolist() == [0] and fp.size == 0
    pairs, fn, fp = match_beats([100], [90, 104, 120], 54)
    assert pairs == [(0, 1)] and fp.tolist() == [0, 2]


def test_greedy_nearest_takes_the_closest_pair_first() -> None:
    # |118 - 110| = 8 is the closest pair; 100 and 130 are then 30 apart: one FN, one FP
    pairs, fn, fp = match_beats([100, 118], [110, 130], 15)
    assert pairs == [(1, 0)] and fn.tolist() == [0] and fp.tolist() == [1]


def test_empty_inputs() -> None:
    pairs, fn, fp = match_beats([], [], 54)
    assert pairs == [] and fn.size == 0 and fp.size == 0
    pairs, fn, fp = match_beats([1, 2], [], 54)
    assert fn.tolist() == [0, 1]
    pairs, fn, fp = match_beats([], [7], 54)
    assert fp.tolist() == [0]


def test_unsorted_input_is_sorted_first() -> None:
    pairs, _, _ = match_beats([300, 100], [101, 299], 5)
    assert pairs == [(0, 0), (1, 1)]


def test_counts_ratios_and_gross_sum() -> None:
    c = Counts(tp=98, fn=2, fp=1)
    assert c.se == 0.98 and abs(c.ppv - 98 / 99) < 1e-12 and abs(c.der - 0.03) < 1e-12
    total = Counts.total([c, Counts(tp=2, fn=0, fp=0)])
    assert total == Counts(100, 2, 1)
    assert set(c.as_dict()) == {"se", "ppv", "der", "tp", "fn", "fp"}
    assert Counts().se == 1.0 and Counts().der == 0.0
    assert score([10, 20], [11], 3) == Counts(1, 1, 0)


def test_reference_has_beats_only_and_vf_episodes(mitdb_dir: Path) -> None:
    ref = load_reference(mitdb_dir / "207")
    assert ref.excluded, "207 has ventricular flutter episodes"
    a, b = ref.excluded[0]
    assert not np.any((ref.beats > a) & (ref.beats < b - 1))
    kept = drop_excluded(np.array([a - 1, a, b - 1, b]), ref.excluded)
    assert kept.tolist() == [a - 1, b]
    assert load_reference(mitdb_dir / "100").beats.size == 2273
