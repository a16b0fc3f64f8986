"""Prometheus metric helpers.  Metrics are built on a registry passed in, never module-global."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Pipeline latencies we expect: a few ms on a quiet machine, up to seconds under overload.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


def latency_histogram(name: str, doc: str, registry: CollectorRegistry) -> Histogram:
    """A latency histogram in seconds with the pipeline's buckets; ``name`` ends in _seconds."""
    if not name.endswith("_seconds"):
        raise ValueError(f"latency metric {name!r} must end in _seconds")
    return Histogram(name, doc, registry=registry, buckets=LATENCY_BUCKETS_S)


def counter(
    name: str, doc: str, registry: CollectorRegistry, labels: tuple[str, ...] = ()
) -> Counter:
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end in _total")
    # prometheus_client appends _total itself; give it the bare name.
    return Counter(name[: -len("_total")], doc, labelnames=labels, registry=registry)


def gauge(name: str, doc: str, registry: CollectorRegistry, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, labelnames=labels, registry=registry)


def serve(port: int, registry: CollectorRegistry, addr: str = "127.0.0.1") -> None:
    """Expose ``/metrics`` on ``port`` (0 = do nothing)."""
    if port:
        start_http_server(port, addr=addr, registry=registry)
