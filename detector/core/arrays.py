"""A plain binary container for named numpy arrays: the encoding of the state snapshots.

``np.savez`` writes a zip archive (a local header, a central directory entry and a
CRC per array): at 1,000 patients the patient checkpoints spent most of their time
in ``zipfile``.  This container is a header and the arrays' bytes, nothing else::

    MAGIC (8 bytes) | header length (uint32, little-endian) | header (JSON) | data

The header lists ``[name, dtype, shape]`` in data order; every array is stored
C-contiguous.  No pickle: object dtypes are refused on both sides.  :func:`unpack`
also reads ``.npz`` bytes (``allow_pickle=False``), so snapshots written by earlier
versions still restore.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = b"ECGMARR1"
_LEN = struct.Struct("<I")
_ZIP = b"PK\x03\x04"


def pack(arrays: Mapping[str, npt.ArrayLike]) -> bytes:
    """``arrays`` (name -> array) as bytes; :func:`unpack` gives them back."""
    header: list[list[Any]] = []
    parts: list[bytes] = []
    for name, value in arrays.items():
        a = np.asarray(value)  # (not ascontiguousarray: it makes a 0-d array 1-d)
        if a.dtype.hasobject:
            raise ValueError(f"array {name!r}: object dtype cannot be stored")
        header.append([name, a.dtype.str, list(a.shape)])
        parts.append(a.tobytes(order="C"))
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, _LEN.pack(len(head)), head, *parts])


def unpack(blob: bytes | bytearray | memoryview) -> dict[str, npt.NDArray[Any]]:
    """The arrays of :func:`pack` (or of ``np.savez``), writable, in stored order."""
    raw = bytes(blob[:8])
    if raw[:4] == _ZIP:
        with np.load(io.BytesIO(bytes(blob)), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if raw != MAGIC or len(blob) < len(MAGIC) + _LEN.size:
        raise ValueError("not an ecgmon array container (bad magic)")
    (n_head,) = _LEN.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    try:
        header = json.loads(bytes(blob[start : start + n_head]).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"array container header unreadable: {exc}") from None
    data = bytearray(blob[start + n_head :])  # one copy: every array below is a writable view
    out: dict[str, npt.NDArray[Any]] = {}
    pos = 0
    if not isinstance(header, list):
        raise ValueError("array container header is not a list")
    for entry in header:
        try:
            name, dtype_str, shape = entry
            dtype = np.dtype(dtype_str)
            shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"array container header entry {entry!r} unreadable: {exc}") from None
        if any(n < 0 for n in shape):
            raise ValueError(f"array {name!r}: negative shape {shape}")
        if dtype.hasobject:
            raise ValueError(f"array {name!r}: object dtype refused")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = count * dtype.itemsize
        if pos + nbytes > len(data):
            raise ValueError(f"array container truncated in {name!r}")
        out[name] = np.frombuffer(data, dtype=dtype, count=count, offset=pos).reshape(shape)
        pos += nbytes
    if pos != len(data):
        raise ValueError(f"array container has {len(data) - pos} bytes after its arrays")
    return out
