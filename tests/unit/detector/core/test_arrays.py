"""The snapshots' array container: exact round trips, .npz still read, bad bytes refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from detector.core.arrays import MAGIC, pack, unpack

_DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int16, np.uint8, np.bool_])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(
    st.text(min_size=1, max_size=8),
    _DTYPES.flatmap(
        lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))),
    max_size=5,
))
def test_round_trip_is_exact(arrays: dict[str, np.ndarray]) -> None:
    back = unpack(pack(arrays))
    assert list(back) == list(arrays)
    for name, a in arrays.items():
        b = back[name]
        assert b.dtype == a.dtype and b.shape == a.shape
        assert a.tobytes() == b.tobytes()  # NaN payloads included
        assert b.flags.writeable  # restored filter states are updated in place


def test_non_contiguous_and_zero_dimensional_arrays_keep_their_shape() -> None:
    back = unpack(pack({"t": np.arange(6.0).reshape(2, 3).T, "s": np.float64(2.5), "i": np.int64(-1)}))
    np.testing.assert_array_equal(back["t"], np.arange(6.0).reshape(2, 3).T)
    assert back["s"].shape == () and float(back["s"]) == 2.5 and int(back["i"]) == -1


def test_npz_bytes_of_earlier_versions_are_read() -> None:
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3), b=np.float64(1.5))
    back = unpack(buf.getvalue())
    np.testing.assert_array_equal(back["a"], np.arange(3))
    assert float(back["b"]) == 1.5


@pytest.mark.parametrize("blob", [
    b"", b"junk", MAGIC, MAGIC + b"\x04\x00\x00\x00[[]]", MAGIC + b"\x02\x00\x00\x00{}",
    MAGIC + b"\x10\x00\x00\x00[[\"a\",\"?x\",[1]]]",
])
def test_garbage_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(blob)


def test_truncated_or_padded_data_is_refused() -> None:
    blob = pack({"a": np.arange(10, dtype=np.int64)})
    with pytest.raises(ValueError, match="truncated"):
        unpack(blob[:-1])
    with pytest.raises(ValueError, match="after its arrays"):
        unpack(blob + b"\x00")


def test_object_arrays_are_refused_both_ways() -> None:
    with pytest.raises(ValueError, match="object"):
        pack({"o": np.array([1, "x"], dtype=object)})
    forged = MAGIC + len(b'[["o","|O",[1]]]').to_bytes(4, "little") + b'[["o","|O",[1]]]' + bytes(8)
    with pytest.raises(ValueError, match="object"):
        unpack(forged)
