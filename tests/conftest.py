"""Session fixtures: a real Kafka-protocol broker and a real Redis on free ports.

They are started by the test session itself; if one cannot start the session
fails loudly (never skips).  Real recordings are read from ECGMON_TEST_DATA_DIR
(``make test`` points it at ../shared/data).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.services import LocalService, start_broker, start_redis


@pytest.fixture(scope="session")
def data_root() -> Path:
    raw = os.environ.get("ECGMON_TEST_DATA_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    root = Path(raw)
    if not (root / "mitdb" / "100.hea").is_file():
        pytest.fail(
            f"real recordings not found at {root}: set ECGMON_TEST_DATA_DIR to the folder that "
            "holds mitdb/, nstdb/ and ecg5000/ (../shared/data in this project's layout)",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def mitdb_dir(data_root: Path) -> Path:
    return data_root / "mitdb"


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalService]:
    service = start_broker()  # raises ServiceUnavailable -> the session errors, loudly
    yield service
    service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(broker: LocalService) -> str:
    return f"127.0.0.1:{broker.port}"


@pytest.fixture(scope="session")
def redis_service() -> Iterator[LocalService]:
    service = start_redis()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_url(redis_service: LocalService) -> str:
    return f"redis://127.0.0.1:{redis_service.port}/0"


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix (and so fresh topics and consumer groups) for each test."""
    return f"t{uuid.uuid4().hex[:12]}"
