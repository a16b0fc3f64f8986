"""``POST /api/analyze``: a WFDB record (.hea + .dat, optional .atr) or a CSV, analysed offline.

The body is counted as it arrives and refused past ``upload_max_bytes`` (413);
a body that takes too long to arrive gets 408; the analysis runs in a worker
thread with a time limit (503 when exceeded or when another analysis is running).
"""

from __future__ import annotations

import asyncio
import math
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from detector.gateway.context import ApiError
from stream.errors import EcgmonError

Analyzer = Callable[[npt.NDArray[np.float64], float, list[str]], dict[str, Any]]
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$")
MAX_FILES = 8


class BodyTooLarge(Exception):
    pass


def onnx_analyzer(model: str) -> Analyzer:
    """The production analyzer: ``detector.analyze.analyze_signal`` with the ONNX classifier,
    loaded on first use (in the worker thread) and kept."""
    lock = threading.Lock()
    loaded: list[Any] = []

    def run(x: npt.NDArray[np.float64], fs_hz: float, leads: list[str]) -> dict[str, Any]:
        from detector.analyze import analyze_signal
        from detector.onnx_classifier import OnnxClassifier

        with lock:
            if not loaded:
                loaded.append(OnnxClassifier.load(model))
        return analyze_signal(x, fs_hz, leads, loaded[0])

    return run


def limited(receive: Receive, max_bytes: int) -> Receive:
    """Wrap an ASGI ``receive`` so a body larger than ``max_bytes`` raises BodyTooLarge."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge
        return message

    return wrapped


class AnalyzeRunner:
    """Runs uploads through the analyzer, one at a time, each within ``timeout_s``."""

    def __init__(self, analyzer: Analyzer, max_bytes: int, timeout_s: float) -> None:
        self.analyzer, self.max_bytes, self.timeout_s = analyzer, max_bytes, timeout_s
        self._busy = False

    async def handle(self, request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise ApiError(413, f"upload larger than {self.max_bytes} bytes")
        limited_request = Request(request.scope, limited(request.receive, self.max_bytes))
        try:
            async with asyncio.timeout(self.timeout_s):
                form = await limited_request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
                files = {}
                for _, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        files[_safe_name(value.filename)] = await value.read()
                fs_raw = form.get("fs_hz")
                await form.close()
        except BodyTooLarge:
            raise ApiError(413, f"upload larger than {self.max_bytes} bytes") from None
        except TimeoutError:
            raise ApiError(408, f"upload not received within {self.timeout_s:g} s") from None
        fs_hz = _fs(fs_raw if isinstance(fs_raw, str) else None)
        return await self._run(lambda: self._analyze(files, fs_hz))

    async def _run(self, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self._busy:
            raise ApiError(503, "another analysis is running; try again shortly")
        self._busy = True
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, fn)

        def done(f: asyncio.Future[dict[str, Any]]) -> None:
            self._busy = False  # only when the thread really finished, so timeouts cannot pile up
            if not f.cancelled():
                f.exception()  # retrieved here; re-raised below to a waiting request

        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            raise ApiError(503, f"analysis took longer than {self.timeout_s:g} s") from None

    def _analyze(self, files: dict[str, bytes], fs_hz: float | None) -> dict[str, Any]:
        from detector.analyze import AnalysisInputError, read_csv, read_wfdb

        try:
            if any(n.lower().endswith(".hea") for n in files):
                with tempfile.TemporaryDirectory(prefix="ecgmon-upload-") as tmp:
                    stem = _write_wfdb(Path(tmp), files)
                    x, fs, leads = read_wfdb(Path(tmp) / stem)
                    reference = _reference(Path(tmp) / stem, files)
                source, name = "wfdb", stem
            else:
                csvs = [n for n in files if n.lower().endswith(".csv")]
                if len(csvs) != 1:
                    raise ApiError(422, "upload a WFDB record (.hea + .dat [+ .atr]) or one .csv file")
                x, fs, leads = read_csv(files[csvs[0]].decode("utf-8", "replace"), fs_hz)
                source, name, reference = "csv", csvs[0], None
            result = self.analyzer(x, fs, leads)
        except AnalysisInputError as exc:
            raise ApiError(422, str(exc)) from None
        except EcgmonError as exc:
            raise ApiError(503, f"analysis unavailable: {exc}") from None
        out = {"source": source, "record": name, **result}
        if reference is not None:
            out["reference"] = reference
        return json_safe(out)  # type: ignore[no-any-return]


def _safe_name(name: str | None) -> str:
    base = Path(name or "").name
    if not SAFE_NAME.match(base):
        raise ApiError(422, "file names may use letters, digits, '_', '.', '-' only")
    return base


def _fs(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        fs = float(raw)
    except ValueError:
        raise ApiError(422, "fs_hz must be a number") from None
    if not math.isfinite(fs) or fs <= 0:
        raise ApiError(422, "fs_hz must be a positive number")
    return fs


def _write_wfdb(folder: Path, files: dict[str, bytes]) -> str:
    """Write the uploaded files; the header may only name uploaded signal files."""
    import wfdb

    heads = [n for n in files if n.lower().endswith(".hea")]
    if len(heads) != 1:
        raise ApiError(422, "upload exactly one .hea header with its .dat file(s)")
    for n, data in files.items():
        (folder / n).write_bytes(data)
    stem = heads[0][: -len(".hea")]
    try:
        header = wfdb.rdheader(str(folder / stem))
    except (OSError, ValueError, IndexError) as exc:
        raise ApiError(422, f"cannot read the WFDB header: {exc}") from None
    for f in set(header.file_name or []):
        if f not in files:
            raise ApiError(422, f"the header names signal file {Path(f).name!r}: upload it too")
    return stem


def _reference(stem: Path, files: dict[str, bytes]) -> dict[str, Any] | None:
    """Beat counts per AAMI class from an uploaded .atr, for comparison with the result."""
    if stem.name + ".atr" not in files:
        return None
    import wfdb

    from detector.core.classifier import AAMI_SYMBOLS

    try:
        ann = wfdb.rdann(str(stem), "atr")
    except (OSError, ValueError, IndexError) as exc:
        raise ApiError(422, f"cannot read the .atr annotations: {exc}") from None
    counts: dict[str, int] = {}
    for symbol in ann.symbol or []:
        cls = AAMI_SYMBOLS.get(symbol)
        if cls is not None:
            counts[cls.value] = counts.get(cls.value, 0) + 1
    return {"n_beats": sum(counts.values()), "counts": counts}


def json_safe(value: Any) -> Any:
    """numpy scalars to Python, non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
