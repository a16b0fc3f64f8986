"""Issue #8: ``ecgmon detect`` and ``ecgmon replay`` pointed at a port where no broker runs.

Bounded retries with doubling backoff, one WARNING line per failed attempt, then a final
error that names ECGMON_KAFKA_BOOTSTRAP, and exit code 2 (never a traceback, never a hang).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.services import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ATTEMPTS = 3


@pytest.mark.parametrize("command", ["detect", "replay"])
def test_no_broker_bounded_retries_then_a_clear_error(
    command: str, redis_url: str, mitdb_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECGMON_")}
    env.update({
        "ECGMON_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing listens there
        "ECGMON_REDIS_URL": redis_url, "ECGMON_DATA_DIR": str(mitdb_dir),
        "ECGMON_RECORDS": "100", "ECGMON_DURATION_S": "5", "ECGMON_KAFKA_IDEMPOTENCE": "false",
        "ECGMON_CONNECT_ATTEMPTS": str(ATTEMPTS), "ECGMON_CONNECT_BACKOFF_S": "0.2",
        "ECGMON_LOG_FORMAT": "json",
    })
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stream.cli", command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.monotonic() - started

    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    final = lines[-1]
    assert final.startswith(f"ecgmon {command}: error: cannot reach Kafka at 127.0.0.1:"), final
    assert f"after {ATTEMPTS} attempts" in final and "ECGMON_KAFKA_BOOTSTRAP" in final, final
    retries = [json.loads(ln) for ln in lines[:-1] if ln.startswith("{")]
    retries = [r for r in retries if r["msg"] == "kafka not reachable, retrying"]
    assert [r["attempt"] for r in retries] == list(range(1, ATTEMPTS)), retries
    assert [r["retry_in_s"] for r in retries] == [0.2, 0.4]  # doubling backoff
    assert all(r["level"] == "WARNING" for r in retries)
    assert elapsed < 30, f"gave up only after {elapsed:.1f} s"
