"""A real local stack for end-to-end tests: `ecgmon up` as a child process on free ports.

`ecgmon up` starts its own broker and Redis, the detector and gateway child processes
and the replay.  It runs in a process group of its own; the fixture stops it with
SIGTERM (SIGKILL after a grace period) and fails if any process of the stack survives.
If the stack cannot start the test fails; it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream.services import free_port

# Early ventricular (203, 207, 208, 233, 119, 105) and AF (203, 210) alarms; 100 is a normal rhythm.
E2E_RECORDS = "100,105,119,203,207,208,210,233"
STARTUP_TIMEOUT_S = 45.0
STOP_GRACE_S = 15.0


@dataclass
class EcgmonStack:
    """A running `ecgmon up`: where its gateway and /metrics endpoints are."""

    proc: subprocess.Popen[bytes]
    token: str
    http_port: int
    metrics_port: int  # `ecgmon up` itself (replay); the detector child serves metrics_port + 1
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_urls(self) -> dict[str, str]:
        return {
            "up (replay)": f"http://127.0.0.1:{self.metrics_port}/metrics",
            "detector": f"http://127.0.0.1:{self.metrics_port + 1}/metrics",
            "gateway": f"{self.url}/metrics",
        }

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
        """GET a gateway path (with the bearer token); returns status and body."""
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def post_json(self, path: str, body: Any, timeout_s: float = 15.0) -> tuple[int, Any]:
        """POST JSON to a gateway path (with the bearer token); returns status and JSON body."""
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as res:
                return res.status, json.loads(res.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"GET {path}: {status} {body[:300]!r}"
        return json.loads(body)


def _two_free_ports() -> int:
    """A port P with P + 1 free too (the detector child of `ecgmon up` takes P + 1)."""
    for _ in range(50):
        port = free_port()
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports on 127.0.0.1")


def _descendants(pid: int) -> set[int]:
    """Every process whose parent chain leads to ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_healthy(stack: EcgmonStack, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if stack.proc.poll() is not None:
            pytest.fail(f"`ecgmon up` exited with code {stack.proc.returncode} at start:\n"
                        f"{stack.log_tail()}", pytrace=False)
        try:
            status, body = stack.get("/healthz", timeout_s=2.0)
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.5)
    pytest.fail(f"gateway /healthz not ok within {timeout_s:.0f} s (last: {last}):\n{stack.log_tail()}",
                pytrace=False)


def _stop(stack: EcgmonStack, tracked: set[int]) -> list[int]:
    """SIGTERM the process group of `ecgmon up`, SIGKILL after the grace; return survivors."""
    tracked |= _descendants(stack.proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stack.proc.pid, signal.SIGTERM)
    try:
        stack.proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stack.proc.pid, signal.SIGKILL)
        stack.proc.wait(5)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_alive(p) for p in tracked):
        time.sleep(0.1)
    survivors = [p for p in tracked if _alive(p)]
    for pid in survivors:  # the broker, Redis and the children run in sessions of their own
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return survivors


@contextlib.contextmanager
def running_stack(mitdb_dir: Path, log_dir: Path, *, speed: str = "5") -> Iterator[EcgmonStack]:
    """`ecgmon up` with the e2e records, a fixed token and free ports, until the block ends."""
    token = secrets.token_urlsafe(24)
    metrics_port = _two_free_ports()
    http_port = free_port()
    while http_port in (metrics_port, metrics_port + 1):
        http_port = free_port()
    log_path = log_dir / "ecgmon-up.log"
    # No ECGMON_* from the caller: a configured broker or Redis would replace the local ones.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGMON_")}
    env |= {"ECGMON_AUTH_TOKEN": token, "ECGMON_DATA_DIR": str(mitdb_dir), "ECGMON_LOG_FORMAT": "text"}
    cmd = [sys.executable, "-m", "stream.cli", "up", "--http-port", str(http_port),
           "--metrics-port", str(metrics_port), "--records", E2E_RECORDS, "--speed", speed, "--loop",
           "--progress-s", "0"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    stack = EcgmonStack(proc, token, http_port, metrics_port, log_path)
    tracked: set[int] = set()
    try:
        _wait_healthy(stack, STARTUP_TIMEOUT_S)
        tracked |= _descendants(proc.pid)
        yield stack
    finally:
        survivors = _stop(stack, tracked)
    assert not survivors, f"processes of the stack survived its stop: {survivors}\n{stack.log_tail()}"


@pytest.fixture(scope="module")
def ecgmon_stack(mitdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EcgmonStack]:
    with running_stack(mitdb_dir, tmp_path_factory.mktemp("ecgmon-up")) as stack:
        yield stack
