"""Issue #8: ``ecgmon detect`` as a real child process, SIGKILLed mid-stream and restarted.

The final beats and alert ids must equal those of an uninterrupted (in-process) run over
the same replay, with no alert id stored twice.  The logs of the killed and the restarted
process are also checked for patient sample data (there must be none).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from stream.services import free_port
from stream.settings import Settings, to_env
from tests.integration.test_detect_service import _consume, _outputs, _produce, _settings

pytestmark = [pytest.mark.integration, pytest.mark.data]

REPO = Path(__file__).resolve().parents[2]


def _spawn(settings: Settings, metrics_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGMON_")}
    env.update(to_env(settings))
    env.update({"ECGMON_METRICS_PORT": str(metrics_port), "ECGMON_LOG_FORMAT": "json",
                "ECGMON_LOG_LEVEL": "DEBUG"})
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.cli", "detect"], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def _consumed(port: int) -> float:
    """``ecgmon_chunks_consumed_total`` from the child's /metrics (0 before it serves)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("ecgmon_chunks_consumed_total "):
            return float(line.split()[1])
    return 0.0


async def _checkpointed(settings: Settings) -> list[int]:
    """The checkpointed next offset of every partition that has one."""
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        return [int(await client.hget(key, "offset") or 0)
                for key in await client.keys(f"{settings.redis_prefix}:ckpt:*")]
    finally:
        await client.aclose()


async def _wait_checkpointed(proc: subprocess.Popen[bytes], settings: Settings, total: int,
                             timeout_s: float) -> None:
    """Wait until the checkpointed offsets of all partitions add up to ``total``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"detect exited early with {proc.returncode}"
        if sum(await _checkpointed(settings)) >= total:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"detect did not checkpoint {total} chunks in {timeout_s} s")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _assert_no_samples_in_logs(log: Path) -> None:
    """Every line is a JSON record; none carries a sample array or a raw payload."""
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)  # stable JSON lines only, no stray prints
        for key, value in record.items():
            text = str(value)
            assert key not in ("samples", "payload", "millivolts", "value"), line
            assert "array(" not in text and "b'EG" not in text, line
            assert len(text) < 2000 or key == "exc_info", line


async def test_sigkill_mid_stream_then_restart_equals_uninterrupted_run(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path, tmp_path: Path
) -> None:
    base = _settings(kafka_bootstrap, redis_url, topic_prefix + "a", mitdb_dir)
    n = await _produce(base)
    await _consume(base, n)
    expected = await _outputs(base)
    assert expected[1], "the uninterrupted run raised no alert: nothing to compare"

    # The same replay in two halves: the process checkpoints the first half (so the restart
    # must restore mid-stream snapshots and seek), and is killed while on the second half.
    crashed = _settings(kafka_bootstrap, redis_url, topic_prefix + "b", mitdb_dir)
    half_s = crashed.duration_s / 2
    assert await _produce(replace(crashed, duration_s=half_s)) == n // 2
    log = tmp_path / "detect.log"
    port = free_port()
    first = _spawn(crashed, port, log)
    try:
        await _wait_checkpointed(first, crashed, n // 2, timeout_s=60)
        assert await _produce(replace(crashed, start_s=half_s, duration_s=half_s)) == n // 2
        while (consumed := await asyncio.to_thread(_consumed, port)) < n // 2 + 50:
            assert first.poll() is None, f"detect exited early with {first.returncode}"
            await asyncio.sleep(0.01)
        saved = await _checkpointed(crashed)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    assert consumed < n or sum(saved) < n, "the first process had finished: not a crash"
    partial = await _outputs(crashed)

    port2 = free_port()
    second = _spawn(crashed, port2, log)
    try:
        deadline = time.monotonic() + 60
        got = partial
        while time.monotonic() < deadline and (got[0] != expected[0]
                                               or set(got[1]) != set(expected[1])):
            assert second.poll() is None, f"restarted detect exited with {second.returncode}"
            await asyncio.sleep(0.5)
            got = await _outputs(crashed)
        await asyncio.sleep(2.0)  # a duplicate written late would show now
        got = await _outputs(crashed)
    finally:
        code = _stop(second)
    assert code == 0, log.read_text()[-3000:]

    assert got[0] == expected[0], "beats differ from the uninterrupted run"
    assert sorted(got[1]) == sorted(expected[1]), "alert ids differ from the uninterrupted run"
    assert len(got[1]) == len(set(got[1])), "an alert id was stored twice"
    assert set(got[2]) == set(expected[2])  # Kafka alerts topic: at-least-once, same ids
    assert sum(map(len, partial[0].values())) < sum(map(len, expected[0].values()))
    assert '"partition restored from checkpoint"' in log.read_text()
    _assert_no_samples_in_logs(log)
