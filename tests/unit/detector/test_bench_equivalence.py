"""The performance work of issue #7 changes no output: RR averages, snapshots, resumption."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import wfdb

from detector.core import beats
from detector.core.arrays import unpack as unpack_arrays
from detector.core.classifier import Classification
from detector.core.monitor import PatientMonitor
from detector.core.qrs import detect_peaks
from stream.schemas import BeatClass

pytestmark = pytest.mark.data


def _record(mitdb_dir: Path, name: str, seconds: float) -> tuple[np.ndarray, tuple[str, ...]]:
    rec = wfdb.rdrecord(str(mitdb_dir / name), physical=False, return_res=16, sampto=int(seconds * 360))
    mv = (rec.d_signal - np.asarray(rec.baseline)) / np.asarray(rec.adc_gain)
    return mv, tuple(rec.sig_name)


def _loop_averages(ext: beats.BeatFeatureExtractor, peak: int, prev_rr: float) -> tuple[float, float]:
    """The RR averages as computed before: a Python loop over the intervals, newest first."""
    local: list[float] = []
    total, count = 0.0, 0
    oldest = peak - beats.LONG_TERM_S * ext.fs_hz
    ends, rrs = ext._intervals.arrays()
    for end, rr in reversed(list(zip(ends.tolist(), rrs.tolist(), strict=True))):
        if end > peak:
            continue
        if end < oldest:
            break
        if len(local) < beats.LOCAL_BEATS:
            local.append(rr)
        total += rr
        count += 1
    return (sum(local) / len(local) if local else prev_rr), (total / count if count else prev_rr)


def test_rr_features_equal_the_loop_over_every_interval(mitdb_dir: Path) -> None:
    mv, _ = _record(mitdb_dir, "203", 420.0)  # > LONG_TERM_S, irregular rhythm
    peaks = detect_peaks(mv, 360.0)
    ext = beats.BeatFeatureExtractor(360.0, 1)
    features = ext._features
    checked = 0

    def checking(p: beats._Pending, next_rr: float) -> tuple[int, beats.FloatArray, beats.FloatArray]:
        nonlocal checked
        prev_rr = p.prev_rr_s if p.prev_rr_s is not None else next_rr
        local_s, long_s = _loop_averages(ext, p.peak, prev_rr)
        out = features(p, next_rr)
        want = beats.rr_features(prev_rr, next_rr, local_s, long_s)
        assert np.array_equal(out[2][: len(want)], want)
        checked += 1
        return out

    ext._features = checking  # type: ignore[method-assign]
    step = 90
    for start in range(0, mv.shape[0], step):
        new = peaks[(peaks >= start) & (peaks < start + step)]
        ext.update(mv[start : start + step, :1], new)
    assert checked > 400


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def test_snapshot_v4_resumes_exactly_and_v1_to_v3_still_load(mitdb_dir: Path) -> None:
    mv, leads = _record(mitdb_dir, "207", 40.0)
    mon = PatientMonitor("p", 360.0, leads, 1)
    half = 20 * 360
    for s in range(0, half, 90):
        pending = mon.ingest(s, mv[s : s + 90])
        n = len(pending.features)
        mon.complete(pending, _fake(n))
    blob = mon.snapshot()
    older = []
    z = unpack_arrays(blob)
    meta = json.loads(z["meta"].tobytes().decode())
    vf = meta["engine"]["vf_detector"]
    assert meta["version"] == 4 and "buf" not in vf and "ok" not in vf
    # versions 1-3 were .npz archives, the QRS and extractor states .npz inside them
    nested = {k: np.frombuffer(_npz(unpack_arrays(z[k].tobytes())), np.uint8) for k in ("qrs", "extractor")}
    for version in (1, 2, 3):  # v1: buffer and mask in the JSON; v2: only the mask; v3: neither
        old = json.loads(json.dumps(meta))
        old["version"] = version
        arrays = dict(nested)
        if version < 3:
            old["engine"]["vf_detector"]["ok"] = z["vf_ok"].tolist()
        else:
            arrays["vf_ok"] = z["vf_ok"]
        if version == 1:
            old["engine"]["vf_detector"]["buf"] = z["vf_buf"].tolist()
        else:
            arrays["vf_buf"] = z["vf_buf"]
        older.append(_npz({"meta": np.frombuffer(json.dumps(old).encode(), np.uint8), **arrays}))
    resumed = [PatientMonitor.from_snapshot(b) for b in (blob, *older)]
    for s in range(half, mv.shape[0], 90):
        outs = []
        for m in [mon, *resumed]:
            pending = m.ingest(s, mv[s : s + 90])
            outs.append(m.complete(pending, _fake(len(pending.features))))
        assert all(o == outs[0] for o in outs[1:])
    assert all(r.engine.snapshot() == mon.engine.snapshot() for r in resumed)
    assert resumed[0].snapshot() == mon.snapshot()


def _fake(n: int) -> Classification | None:
    """Every beat N (the classifier is not what this test is about)."""
    labels = (BeatClass.N, BeatClass.S, BeatClass.V, BeatClass.F, BeatClass.Q)
    probs = np.zeros((n, 5), np.float32)
    probs[:, 0] = 1.0
    return Classification(labels, np.zeros(n, np.int64), probs) if n else None
