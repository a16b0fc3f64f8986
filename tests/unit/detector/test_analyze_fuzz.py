"""Fuzzed uploads (issue #8): CSV text and fake WFDB headers may only fail with the module's
own errors (``AnalysisInputError``; ``ApiError`` at the gateway), never anything else.

Findings of this fuzzing, fixed in ``detector/analyze.py`` and kept as regression tests:
``csv.Error`` escaping ``read_csv``; ``IndexError``/``KeyError``/``TypeError`` from damaged
WFDB headers escaping ``read_wfdb`` (a 500 at the gateway); a header declaring 10^11
samples making wfdb allocate 279 GiB.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.analyze import AnalysisInputError, read_csv
from detector.gateway.context import ApiError
from detector.gateway.uploads import AnalyzeRunner

TOKENS = ("1", "-0.5", "2e3", "1e400", "nan", "inf", "-inf", "", " ", "x", "0x1", "1_0", "time",
          "t_s", "MLII", '"', '"1,2"', "\x00", "\u00e9", "1.5.2", "+", "-", "1e", "٣")


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    """CSV-shaped text: rows of tokens and separators, sometimes a time header."""
    rows = draw(st.lists(st.lists(st.sampled_from(TOKENS), max_size=5), max_size=8))
    sep = draw(st.sampled_from((",", ";", "\t", ",,")))
    end = draw(st.sampled_from(("\n", "\r\n", "\r", "")))
    lines = [sep.join(r) for r in rows]
    if draw(st.booleans()):
        lines.insert(0, sep.join(["time", "MLII", "V1"][: draw(st.integers(1, 3))]))
    return end.join(lines) + draw(st.sampled_from(("", "\n")))


fs_values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


def _check_csv_result(out: tuple[npt.NDArray[np.float64], float, list[str]]) -> None:
    data, fs_hz, header = out
    assert data.ndim == 2 and data.shape[1] == len(header) >= 1
    assert isinstance(fs_hz, float)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=csv_texts(), fs_hz=fs_values)
def test_read_csv_shaped_text_raises_only_analysis_input_error(
    text: str, fs_hz: float | None
) -> None:
    try:
        out = read_csv(text, fs_hz)
    except AnalysisInputError:
        return
    _check_csv_result(out)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), fs_hz=fs_values)
def test_read_csv_any_text_raises_only_analysis_input_error(text: str, fs_hz: float | None) -> None:
    try:
        out = read_csv(text, fs_hz)
    except AnalysisInputError:
        return
    _check_csv_result(out)


@pytest.mark.parametrize("text", ["MLII\n" + "1" * 200_000 + "\n", "\r1"])
def test_read_csv_csv_module_errors_are_input_errors(text: str) -> None:
    with pytest.raises(AnalysisInputError):
        read_csv(text, 360.0)


@pytest.mark.parametrize("text", ["time\n1e400\n1e400", "time\n1e400\n1\n1e400",
                                  "time,MLII\nnan,1\n0.1,2", "MLII\n1\n-1e400"])
def test_read_csv_infinite_or_missing_times_are_input_errors(text: str) -> None:
    """Found by the fuzzer (hypothesis, 2026-11-22): "1e400" is inf, and its difference a
    RuntimeWarning instead of a 422."""
    with pytest.raises(AnalysisInputError):
        read_csv(text, None)


def test_read_csv_accepts_cr_line_endings() -> None:
    x, fs, leads = read_csv("MLII\r1\r2", 360.0)
    assert leads == ["MLII"] and fs == 360.0 and x[:, 0].tolist() == [1.0, 2.0]


def _runner() -> AnalyzeRunner:
    def analyzer(x: npt.NDArray[np.float64], fs_hz: float, leads: list[str]) -> dict[str, Any]:
        if not 125.0 <= fs_hz <= 1000.0:  # what analyze_signal checks first
            raise AnalysisInputError(f"fs_hz={fs_hz}")
        return {"samples": int(x.shape[0]), "leads": leads}

    return AnalyzeRunner(analyzer, max_bytes=10**7, timeout_s=10.0)


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(csv_texts().map(str.encode), st.binary(max_size=400)),
       fs_hz=st.one_of(st.none(), st.floats(1.0, 5000.0)))
def test_csv_upload_raises_only_api_error(body: bytes, fs_hz: float | None) -> None:
    try:
        out = _runner()._analyze({"x.csv": body}, fs_hz)
    except ApiError as exc:
        assert exc.status == 422
        return
    assert out["source"] == "csv" and math.isfinite(float(out["samples"]))


def _mutated_headers(mitdb: Path, n: int, seed: int) -> list[bytes]:
    base = (mitdb / "100.hea").read_bytes().replace(b"650000", b"3600")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        h = bytearray(base)
        for _step in range(rng.randint(1, 4)):
            op, p = rng.randrange(4), rng.randrange(max(1, len(h)))
            if op == 0 and h:
                h[p] = rng.choice(b"0123456789 -.+x/()#\n:eE")
            elif op == 1:
                del h[p : p + rng.randint(1, 6)]
            elif op == 2:
                h[p:p] = rng.randbytes(rng.randint(1, 4))
            else:
                h = h[:p]
        out.append(bytes(h))
    return out


def _upload_errors(mitdb: Path, headers: list[bytes]) -> list[str]:
    dat = (mitdb / "100.dat").read_bytes()[: 3 * 360 * 10]
    runner, bad = _runner(), []
    for h in headers:
        try:
            runner._analyze({"100.hea": h, "100.dat": dat}, None)
        except ApiError as exc:
            assert exc.status in (422, 503), exc.status
        except Exception as exc:  # noqa: BLE001 - collect what escapes, to report all of it
            bad.append(f"{type(exc).__name__}: {exc} <- {h[:60]!r}")
    return bad


def test_wfdb_headers_the_gateway_rejects_with_422(mitdb_dir: Path) -> None:
    """Empty, garbage, traversal and missing-file headers: 422, never a crash."""
    base = (mitdb_dir / "100.hea").read_bytes()
    headers = [b"", b"100", b"\xff\xfe\x00", base.replace(b"100.dat", b"other.dat"),
               base.replace(b"100.dat", b"../../etc/passwd"), base.replace(b" 360 ", b" -5 ")]
    assert _upload_errors(mitdb_dir, headers) == []


def test_wfdb_header_declaring_a_huge_length_is_a_422(mitdb_dir: Path) -> None:
    huge = (mitdb_dir / "100.hea").read_bytes().replace(b"650000", b"99999999999")
    assert _upload_errors(mitdb_dir, [huge]) == []


def test_fuzzed_wfdb_headers_raise_only_api_error(mitdb_dir: Path) -> None:
    bad = _upload_errors(mitdb_dir, _mutated_headers(mitdb_dir, 200, seed=0))
    assert bad == [], f"{len(bad)} of 200 escaped, e.g. {bad[:3]}"
