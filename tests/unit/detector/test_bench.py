"""The figures of ``ecgmon bench``: histogram quantiles, merged scrapes, trends, replay shards."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detector import bench_stats as st
from detector.bench_cli import summary
from replay.producer import plan_patients
from stream import metrics
from stream.settings import load


def _page(values: list[float]) -> st.Samples:
    registry = CollectorRegistry()
    h = metrics.latency_histogram("ecgmon_chunk_to_beat_seconds", "test", registry)
    c = metrics.counter("ecgmon_chunks_consumed_total", "test", registry)
    for v in values:
        h.observe(v)
        c.inc()
    return st.parse_metrics(generate_latest(registry).decode())


def test_quantile_interpolates_like_promql() -> None:
    # 100 observations spread evenly in (0.01, 0.025]: PromQL interpolates inside that bucket
    page = _page([0.02] * 100)
    b = st.buckets(page, "ecgmon_chunk_to_beat_seconds")
    assert st.histogram_quantile(0.5, b) == pytest.approx(0.01 + 0.015 * 0.5)
    assert st.histogram_quantile(0.99, b) == pytest.approx(0.01 + 0.015 * 0.99)


def test_quantile_first_bucket_starts_at_zero_and_inf_bucket_returns_last_bound() -> None:
    assert st.histogram_quantile(0.5, [(0.001, 10.0), (math.inf, 10.0)]) == pytest.approx(0.0005)
    assert st.histogram_quantile(0.99, [(10.0, 1.0), (math.inf, 100.0)]) == 10.0
    assert st.histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    assert st.histogram_quantile(0.5, []) is None


def test_window_is_the_difference_of_two_scrapes_and_processes_add_up() -> None:
    before = _page([0.002] * 50)
    after = st.merge([_page([0.002] * 50 + [0.2] * 10), _page([0.2] * 10)])
    assert st.total(after, "ecgmon_chunks_consumed_total") == 70
    delta = st.bucket_delta(st.buckets(after, "ecgmon_chunk_to_beat_seconds"),
                            st.buckets(before, "ecgmon_chunk_to_beat_seconds"))
    q = st.quantiles_from_buckets(delta)
    assert q["count"] == 20
    assert q["p50"] is not None and 0.15 < q["p50"] <= 0.25


def test_exact_quantiles_nearest_rank() -> None:
    q = st.exact_quantiles([float(v) for v in range(1, 101)])
    assert (q["p50"], q["p95"], q["p99"], q["max"], q["count"]) == (50.0, 95.0, 99.0, 100.0, 100.0)
    assert st.exact_quantiles([])["p99"] is None


def test_slope_of_lag() -> None:
    assert st.slope([(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)]) == 0.0
    assert st.slope([(0.0, 0.0), (2.0, 10.0), (4.0, 20.0)]) == pytest.approx(5.0)
    assert st.slope([(1.0, 3.0)]) == 0.0


@pytest.mark.parametrize("n", [1, 47, 48, 100, 1000, 2001])
def test_shards_replay_exactly_the_patients_of_the_unsharded_plan(n: int) -> None:
    records = [str(r) for r in range(100, 148)]
    base = load(environ={}, records=",".join(records), patients=n)
    want = {(p.patient_id, p.record, p.start_s) for p in plan_patients(base)}
    shards = st.split_round_robin(records, 7)
    got: set[tuple[str, str, float]] = set()
    for recs, count in zip(shards, st.patients_per_shard(n, records, shards), strict=True):
        if count:
            cfg = load(environ={}, records=",".join(recs), patients=count)
            got |= {(p.patient_id, p.record, p.start_s) for p in plan_patients(cfg)}
    assert got == want


def test_summary_lines() -> None:
    q = {"p50": 0.01, "p95": 0.02, "p99": 0.05, "count": 10.0}
    text = summary({"patients": 5, "detectors": 1, "duration_s": 10.0, "latency_s": {"chunk_to_beat": q},
                    "beats_per_s": 6.0, "lost": 0, "duplicates": 0,
                    "lag": {"slope_msgs_per_s": 0.0, "max": 3}, "cpu_percent": 20.0,
                    "rss_bytes": 2**27, "rss_per_patient_bytes": 2048, "loadavg": [1.0],
                    "processes": {"detector0": {"cpu_percent": 10.0, "rss_bytes": 2.0**27}},
                    "detect_batch_s": q, "gc_pause_s": {**q, "p99": 0.004}})
    assert "chunk_to_beat" in text and "p99 50.0 ms" in text and "lost 0" in text
    assert re.search(r"detector batch +p50 10.0 .* p99 50.0 ms", text), text
    assert re.search(r"detector GC pause +p50 10.0 .* p99 4.0 ms", text), text
    assert "whole database" in summary({"wall_s": 30.0, "records": 48, "chunks": 8688, "beats": 1,
                                        "detectors": 2, "chunk_s": 10.0, "lost": 0,
                                        "cpu_percent": 180.0, "loadavg": [1.0]})
