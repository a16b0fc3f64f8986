"""rhythm_measures: the plain-Python nRMSSD is the numpy one, bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.core.rhythm_measures import af_features, integer_nrmssd, mean_rate_bpm


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=0, max_size=64))
def test_integer_nrmssd_is_bit_identical_to_af_features(rr: list[int]) -> None:
    assert integer_nrmssd(rr) == af_features(np.asarray(rr, dtype=np.float64))[0]


def test_integer_nrmssd_on_a_regular_and_an_irregular_series() -> None:
    rng = np.random.default_rng(0)
    regular = [288 + int(v) for v in rng.integers(-3, 4, 32)]
    irregular = [int(v) for v in rng.integers(150, 450, 32)]
    assert integer_nrmssd(regular) < 0.05 < 0.12 < integer_nrmssd(irregular)
    assert mean_rate_bpm(regular, 360.0) > 70.0


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(1, 100_000), min_size=1, max_size=64),
       st.sampled_from([125.0, 250.0, 360.0, 1000.0]))
def test_mean_rate_of_whole_sample_intervals_is_the_numpy_mean_bit_for_bit(rr: list[int], fs: float) -> None:
    want = 60.0 * fs / float(np.mean(np.asarray(rr, dtype=np.float64)))
    assert mean_rate_bpm(rr, fs) == want
    assert mean_rate_bpm(np.asarray(rr, dtype=np.float64), fs) == want  # the numpy path
