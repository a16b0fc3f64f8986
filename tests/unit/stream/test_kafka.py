"""Kafka adapter logic that needs no broker: bounded connect retries and their errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, UnknownError

from stream import kafka
from stream.errors import ServiceUnavailable
from stream.settings import load


class FakeClient:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.closed = False

    async def start(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    async def close(self) -> None:
        self.closed = True


def _settings(**kw: Any) -> Any:
    return load(environ={}, kafka_bootstrap="127.0.0.1:1", connect_backoff_s=0.001, **kw)


async def _connect(failures: list[BaseException], made: list[FakeClient], **kw: Any) -> FakeClient:
    def make() -> FakeClient:
        made.append(FakeClient(failures))
        return made[-1]

    async def start(c: FakeClient) -> None:
        await c.start()

    async def close(c: FakeClient) -> None:
        await c.close()

    return await kafka.connect(make, start, close, _settings(**kw), "producer", hint="try X")


async def test_retries_connection_errors_then_succeeds() -> None:
    made: list[FakeClient] = []
    client = await _connect([KafkaConnectionError(), OSError("refused")], made, connect_attempts=3)
    assert len(made) == 3 and client is made[-1]
    assert made[0].closed and made[1].closed and not client.closed


async def test_gives_up_after_the_attempts_naming_the_env_var() -> None:
    made: list[FakeClient] = []
    with pytest.raises(ServiceUnavailable, match="after 2 attempts.*ECGMON_KAFKA_BOOTSTRAP"):
        await _connect([KafkaConnectionError()] * 5, made, connect_attempts=2)
    assert len(made) == 2 and all(c.closed for c in made)


async def test_a_refusal_is_not_retried_and_carries_the_hint() -> None:
    made: list[FakeClient] = []
    with pytest.raises(ServiceUnavailable, match="refused the producer.*try X"):
        await _connect([UnknownError()], made, connect_attempts=5)
    assert len(made) == 1


async def test_a_time_limit_during_start_closes_the_half_started_client() -> None:
    made: list[FakeClient] = []

    def make() -> FakeClient:
        made.append(FakeClient([]))
        return made[-1]

    async def hang(_: FakeClient) -> None:
        await asyncio.sleep(60)

    async def close(c: FakeClient) -> None:
        await c.close()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):  # the gateway's limit on sending a change
            await kafka.connect(make, hang, close, _settings(), "producer")
    assert len(made) == 1 and made[0].closed


async def test_no_bootstrap_is_a_clear_error() -> None:
    with pytest.raises(ServiceUnavailable, match="ECGMON_KAFKA_BOOTSTRAP"):
        await kafka.Producer(load(environ={})).start()


def test_topic_names() -> None:
    assert kafka.topic_names(load(environ={}, topic_prefix="t1")) == [
        "t1.samples", "t1.beats", "t1.alerts", "t1.deadletter"]


def test_broker_watch_says_once_that_the_broker_is_gone_and_once_that_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from stream.kafka import BrokerWatch

    watch = BrokerWatch()
    caplog.set_level(logging.WARNING, logger="stream.kafka")
    for _ in range(3):
        watch.handle(logging.makeLogRecord({
            "name": "aiokafka.conn", "levelno": logging.ERROR, "levelname": "ERROR",
            "msg": "Unable connect to node with id %s: %s", "args": (1, "refused")}))
    watch.reachable()
    watch.reachable()
    lines = [(r.getMessage(), getattr(r, "down_s", None)) for r in caplog.records
             if r.name == "stream.kafka"]
    assert [m for m, _ in lines] == ["kafka broker unreachable: clients retry with backoff",
                                     "kafka broker reachable again"]
    assert lines[1][1] is not None and lines[1][1] >= 0
