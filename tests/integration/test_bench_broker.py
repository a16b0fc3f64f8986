"""``python -m stream.bench_broker``: the broker CPU readings that BENCHMARKS.md quotes."""

from __future__ import annotations

import math

import pytest

from stream import bench_broker

pytestmark = pytest.mark.integration


async def test_it_reads_the_brokers_cpu_while_records_flow() -> None:
    lines: list[str] = []
    samples = await bench_broker.run(seconds=3.5, rate=400, size=1500, burst=5, partitions=2,
                                     linger_ms=5, fetch_max_wait_ms=50, consume=True,
                                     every_s=1.0, say=lines.append)
    assert len(samples) >= 2 and len(lines) == len(samples)
    assert all(math.isfinite(pct) and 0 < pct < 400 for _, pct in samples)  # a live broker works
    sent = int(lines[-1].split("records sent ")[1].split()[0].replace(",", ""))
    read = int(lines[-1].split("read ")[1].replace(",", ""))
    assert sent >= 400 * 2 and read > 0
