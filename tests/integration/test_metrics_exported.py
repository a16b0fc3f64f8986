"""Every metric the Grafana dashboard queries is exported by a running `ecgmon up` stack.

Scrapes `ecgmon up`'s own /metrics (the replay runs in it), the detector child's
(`--metrics-port` + 1) and the gateway's.  A labelled metric with no sample yet still
counts when its `# TYPE` line is there (e.g. dead letters before the first one).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import EcgmonStack, running_stack

pytestmark = [pytest.mark.integration, pytest.mark.data, pytest.mark.timeout(120)]

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana" / "dashboards" / "ecgmon.json"
SUFFIXES = re.compile(r"_(bucket|sum|count)$")


def _exprs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def dashboard_metrics() -> set[str]:
    exprs = list(_exprs(json.loads(DASHBOARD.read_text())))
    return {SUFFIXES.sub("", name) for e in exprs for name in re.findall(r"ecgmon_[a-z0-9_]+", e)}


def exported(text: str) -> set[str]:
    """Metric family names in Prometheus text: from `# TYPE` lines and from samples."""
    names = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
    for sample in re.findall(r"^([a-zA-Z_:][\w:]*)[{ ]", text, re.MULTILINE):
        names.add(sample)
        names.add(SUFFIXES.sub("", sample))
    # prometheus_client's TYPE line names a counter without _total; its samples carry it.
    names |= {f"{n}_total" for n in re.findall(r"^# TYPE (\w+) counter$", text, re.MULTILINE)}
    return names


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as res:
        return str(res.read().decode())


@pytest.fixture(scope="module")
def stack(mitdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EcgmonStack]:
    with running_stack(mitdb_dir, tmp_path_factory.mktemp("ecgmon-up-metrics")) as s:
        yield s


def test_the_dashboard_queries_the_expected_metrics() -> None:
    names = dashboard_metrics()
    assert len(names) >= 10, names
    assert {"ecgmon_replay_messages_total", "ecgmon_dead_letters_total",
            "ecgmon_alert_to_websocket_seconds"} <= names


def test_every_dashboard_metric_is_exported_by_a_running_service(stack: EcgmonStack) -> None:
    wanted = dashboard_metrics()
    deadline = time.monotonic() + 40  # the detector registers its metrics once its model is loaded
    by_service: dict[str, set[str]] = {}
    errors: dict[str, str] = {}
    while True:
        for service, url in stack.metrics_urls.items():
            try:
                by_service[service] = exported(_scrape(url))
                errors.pop(service, None)
            except OSError as exc:
                errors[service] = repr(exc)
        missing = wanted - set().union(*by_service.values())
        if (not missing and not errors) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not errors, f"/metrics not reachable: {errors}\n{stack.log_tail()}"
    ours = {s: sorted(n for n in v if n.startswith("ecgmon_")) for s, v in by_service.items()}
    assert not missing, (f"the Grafana dashboard queries metrics no service exports: {sorted(missing)}; "
                         f"exported: {ours}")
    # Each is where Prometheus scrapes it (dashboards/prometheus/prometheus.yml: replay, detect, gateway).
    assert "ecgmon_replay_messages_total" in by_service["up (replay)"]
    assert "ecgmon_chunks_consumed_total" in by_service["detector"]
    assert "ecgmon_alert_to_websocket_seconds" in by_service["gateway"]
