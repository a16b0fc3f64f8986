"""stream.logs: JSON lines, and the rate limit on aiokafka's outage flood."""

from __future__ import annotations

import json
import logging

from stream.logs import JsonFormatter, RateLimit


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.makeLogRecord({"name": name, "msg": msg, "args": args, "levelno": 30,
                                  "levelname": "WARNING"})


def test_a_flood_of_one_aiokafka_line_passes_once_per_interval_with_a_count() -> None:
    now = [0.0]
    limit = RateLimit(every_s=10.0, clock=lambda: now[0])
    passed = []
    for i in range(1000):  # 1,000 lines in 10 s, as in a broker outage
        now[0] = i * 0.01
        rec = _record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
        if limit.filter(rec):
            passed.append(rec)
    assert len(passed) == 1
    now[0] = 10.5
    later = _record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
    assert limit.filter(later) and later.suppressed == 999
    assert json.loads(JsonFormatter().format(later))["suppressed"] == 999


def test_other_templates_and_our_own_loggers_are_not_limited() -> None:
    limit = RateLimit(clock=lambda: 0.0)
    assert limit.filter(_record("aiokafka.conn", "a %s", 1))
    assert limit.filter(_record("aiokafka.consumer.fetcher", "b %s", 1))
    assert not limit.filter(_record("aiokafka.conn", "a %s", 2))
    assert all(limit.filter(_record("detector.service", "kafka delivery failed")) for _ in range(5))
