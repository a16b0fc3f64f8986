"""Pure helpers of ``ecgmon bench``: Prometheus text parsing, histogram quantiles, trends.

No I/O here, so the figures the benchmark reports are unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

# (metric name, sorted label items) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Buckets = list[tuple[float, float]]  # (upper bound "le", cumulative count), ascending


def parse_metrics(text: str) -> Samples:
    """Every sample of a ``/metrics`` page, keyed by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def merge(pages: Iterable[Samples]) -> Samples:
    """Sum the samples of several processes (counters and histogram buckets add up)."""
    out: Samples = {}
    for page in pages:
        for key, value in page.items():
            out[key] = out.get(key, 0.0) + value
    return out


def total(samples: Samples, name: str) -> float:
    """Sum of every sample called ``name`` (all label values)."""
    return sum(v for (n, _), v in samples.items() if n == name)


def buckets(samples: Samples, histogram: str) -> Buckets:
    """Cumulative buckets of ``histogram`` (without the ``_bucket`` suffix), ascending ``le``."""
    rows = [(float(dict(labels)["le"]), v) for (n, labels), v in samples.items()
            if n == histogram + "_bucket"]
    return sorted(rows)


def bucket_delta(after: Buckets, before: Buckets) -> Buckets:
    """Observations between two scrapes (same bucket bounds)."""
    old = dict(before)
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def histogram_quantile(q: float, cumulative: Buckets) -> float | None:
    """Quantile ``q`` from cumulative buckets, interpolated like PromQL's ``histogram_quantile``.

    Linear interpolation inside the bucket holding the rank, the first bucket
    starting at 0; a rank in the ``+Inf`` bucket returns the largest finite bound.
    None when there are no observations.
    """
    if not cumulative or not 0.0 <= q <= 1.0:
        return None
    count = cumulative[-1][1]
    if count <= 0:
        return None
    rank = q * count
    prev_le, prev_count = 0.0, 0.0
    for le, c in cumulative:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (c - prev_count)
        prev_le, prev_count = le, c
    return prev_le


def quantiles_from_buckets(cumulative: Buckets, qs: Sequence[float] = (0.5, 0.95, 0.99)
                           ) -> dict[str, float | None]:
    out: dict[str, float | None] = {f"p{round(q * 100)}": histogram_quantile(q, cumulative)
                                    for q in qs}
    out["count"] = cumulative[-1][1] if cumulative else 0.0
    return out


def exact_quantiles(values: Sequence[float], qs: Sequence[float] = (0.5, 0.95, 0.99)
                    ) -> dict[str, float | None]:
    """Nearest-rank quantiles of raw values (None when empty), plus count and max."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        key = f"p{round(q * 100)}"
        if not ordered:
            out[key] = None
            continue
        out[key] = ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
    out["count"] = float(len(ordered))
    out["max"] = ordered[-1] if ordered else None
    return out


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(t, y)`` points (0 with fewer than two distinct times)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in points) / var


def split_round_robin(items: Sequence[str], parts: int) -> list[list[str]]:
    """``items[j::parts]`` for each j (empty parts dropped)."""
    return [list(items[j::parts]) for j in range(parts) if items[j::parts]]


def patients_per_shard(n_patients: int, records: Sequence[str], shards: Sequence[Sequence[str]]
                       ) -> list[int]:
    """How many of ``plan_patients``' round-robin patients fall on each shard's records."""
    position = {r: i for i, r in enumerate(records)}
    counts = [0] * len(records)
    for i in range(n_patients):
        counts[i % len(records)] += 1
    return [sum(counts[position[r]] for r in shard) for shard in shards]


def per_process(rows: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Rounded copy for the JSON report."""
    return {name: {k: round(v, 3) for k, v in row.items()} for name, row in rows.items()}
