"""Static checks of the deployment files: Dockerfile, .dockerignore, docker-compose.yml, Prometheus, Grafana.

No Docker engine runs here, so these files must be right by construction; each test reads them
as data and cross-checks them against each other and against the code (settings, CLI, pyproject).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream import settings as settings_mod

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS = REPO / "dashboards" / "prometheus" / "prometheus.yml"
RULES = REPO / "dashboards" / "prometheus" / "rules.yml"
GRAFANA = REPO / "dashboards" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "ecgmon.yml"
DASHBOARD = GRAFANA / "dashboards" / "ecgmon.json"

INFRA_SERVICES = ("kafka", "redis", "prometheus", "grafana")
OUR_SERVICES = ("replay", "detect", "gateway")
PLANNED_SUBCOMMANDS = frozenset({"up", "replay", "detect", "gateway", "analyze", "eval", "train", "bench"})
# The module of stream.cli.COMMAND_MODULES that registers each subcommand compose runs.
SUBCOMMAND_MODULES = {"replay": "replay.cli", "detect": "detector.cli", "gateway": "detector.gateway_cli"}
# ECGMON_* variables compose sets before stream.settings.Settings has their field.
# Remove a name once its field lands; keep this list short.
FUTURE_ENV: frozenset[str] = frozenset()
# The metric names the Grafana dashboard queries: the services must export exactly these.
DASHBOARD_METRICS = frozenset({
    "ecgmon_chunk_to_consumed_seconds_bucket",
    "ecgmon_chunk_to_beat_seconds_bucket",
    "ecgmon_chunk_to_alert_redis_seconds_bucket",
    "ecgmon_alert_to_websocket_seconds_bucket",
    "ecgmon_chunks_consumed_total",
    "ecgmon_beats_total",
    "ecgmon_replay_messages_total",
    "ecgmon_consumer_lag_messages",
    "ecgmon_alarms_total",
    "ecgmon_dead_letters_total",
    "ecgmon_detect_batch_seconds_bucket",
    "ecgmon_gc_pause_seconds_bucket",
    "ecgmon_ws_clients",
    "ecgmon_ws_dropped_frames_total",
    "ecgmon_ws_lagging_closes_total",
    "ecgmon_gateway_alarm_strips_total",
    "ecgmon_alarm_settings_to_applied_seconds_bucket",
    "ecgmon_discharge_to_applied_seconds_bucket",
    "ecgmon_gateway_no_data_alarms_total",
})
LATENCY_STAGES = ("chunk_to_consumed", "chunk_to_beat", "chunk_to_alert_redis", "alert_to_websocket")
METRIC_RE = re.compile(r"ecgmon_[a-z_]+")
ENV_RE = re.compile(r"\bECGMON_[A-Z0-9_]+")
INTERPOLATION_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}")


# ----------------------------------------------------------------------------- helpers


def _load_yaml(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _interpolate(value: str) -> str:
    """Resolve compose ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` with a stand-in value."""

    def sub(m: re.Match[str]) -> str:
        return m.group(3) if m.group(2) == "-" else f"stand-in-{m.group(1).lower()}"

    return INTERPOLATION_RE.sub(sub, value)


def _image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]  # a registry host may carry a :port
    return last.split(":", 1)[1] if ":" in last else None


def _published_container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/", 1)[0].rsplit(":", 1)[-1]))
    return ports


def _mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of every volume entry; bind sources start with ``.`` or ``/``."""
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            yield str(entry["source"]), str(entry["target"])
        else:
            source, target, *_ = str(entry).split(":")
            yield source, target


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _service_settings(compose: dict[str, Any], name: str) -> settings_mod.Settings:
    env = compose["services"][name].get("environment", {})
    environ = {k: _interpolate(v) for k, v in env.items() if k.startswith("ECGMON_")}
    return settings_mod.load(environ=environ)


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _dockerignored(path: str) -> bool:
    """Whether a context path is excluded (a pattern matching a parent folder excludes it too)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in _dockerignore_patterns():
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
            return True
    return False


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, f"instruction before FROM in Dockerfile: {line}"
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


# ----------------------------------------------------------------------------- compose


def test_compose_defines_every_service(services: dict[str, dict[str, Any]]) -> None:
    missing = set(INFRA_SERVICES + OUR_SERVICES) - set(services)
    assert not missing, f"docker-compose.yml lacks services {sorted(missing)}"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]], project: dict[str, Any]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: neither image nor build"
        if "image" not in service:
            continue
        image = service["image"]
        tag = _image_tag(image)
        assert "@sha256:" in image or (tag and tag != "latest"), f"{name}: image {image!r} is not pinned"
        assert tag is None or re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"
    for name in OUR_SERVICES:
        assert _image_tag(services[name]["image"]) == project["version"], (
            f"{name}: tag our image with the project version {project['version']}"
        )


def test_our_services_build_from_the_one_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    images = set()
    for name in OUR_SERVICES:
        build = services[name].get("build")
        assert isinstance(build, dict), f"{name}: needs build: {{context, dockerfile}}"
        dockerfile = (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).resolve()
        assert dockerfile == DOCKERFILE, f"{name}: builds from {dockerfile}, not {DOCKERFILE}"
        images.add(services[name]["image"])
    for name in INFRA_SERVICES:
        assert "build" not in services[name], f"{name}: use the upstream image, do not build it"
    assert len(images) == 1, f"our services should share one image, got {sorted(images)}"


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        test = check.get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, (
            f"{name}: healthcheck test must be [CMD, ...] or [CMD-SHELL, ...], got {test!r}"
        )
        for key in ("interval", "timeout", "retries"):
            assert key in check, f"{name}: healthcheck lacks {key}"


def test_our_healthchecks_probe_the_port_the_service_listens_on(compose: dict[str, Any]) -> None:
    for name in OUR_SERVICES:
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: probe with python -c (no curl in slim)"
        compile(test[3], f"{name}-healthcheck", "exec")  # a syntax error would mark it unhealthy forever
        url = re.search(r"http://(127\.0\.0\.1|localhost):(\d+)(/\w+)", test[3])
        assert url, f"{name}: healthcheck fetches no http://127.0.0.1:<port>/<path>"
        cfg = _service_settings(compose, name)
        expected = cfg.http_port if name == "gateway" else cfg.metrics_port
        assert int(url.group(2)) == expected, f"{name}: probes port {url.group(2)}, serves {expected}"
        assert url.group(3) in ("/healthz", "/metrics")


def test_dependencies_wait_until_healthy(services: dict[str, dict[str, Any]]) -> None:
    needs = {"replay": {"kafka"}, "detect": {"kafka", "redis"}, "gateway": {"kafka", "redis"},
             "grafana": {"prometheus"}}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must be a mapping with conditions"
        assert needs.get(name, set()) <= set(depends), f"{name}: must depend on {needs[name]}"
        for dep, spec in depends.items():
            assert dep in services, f"{name}: depends on unknown service {dep}"
            assert spec.get("condition") == "service_healthy", f"{name} -> {dep}: not service_healthy"
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"


def test_every_service_restarts(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert service.get("restart") in ("always", "unless-stopped", "on-failure"), f"{name}: restart?"


def test_ports_are_published(services: dict[str, dict[str, Any]]) -> None:
    for name, port in (("gateway", 8080), ("grafana", 3000), ("prometheus", 9090)):
        assert port in _published_container_ports(services[name]), f"{name}: port {port} not published"


def test_kafka_runs_kraft_single_node(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env.get("CLUSTER_ID", "")), "CLUSTER_ID: 22-char base64 uuid"

    by_name = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))  # name -> host:port
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(by_name) <= set(protocols), "every listener needs a security protocol"
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in by_name, f"KAFKA_LISTENERS lacks the controller listener {controller}"
    voter_id, voter_addr = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@", 1)
    assert voter_id == node_id
    assert voter_addr.split(":")[1] == by_name[controller].rsplit(":", 1)[1], "voter port != controller port"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in by_name

    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert controller not in advertised, "the controller listener is not advertised to clients"
    bootstrap = _service_settings(compose, "detect").kafka_bootstrap
    assert bootstrap in advertised.values(), f"containers use {bootstrap}, not an advertised listener"
    assert bootstrap.split(":")[0] in (kafka.get("hostname"), "kafka")
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1", f"{key} must be 1 on a single node"
    assert any(target == env["KAFKA_LOG_DIRS"] for _, target in _mounts(kafka)), "log dir not on a volume"


def test_redis_persists_with_appendonly(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    command = redis["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(not _is_bind(src) and dst == "/data" for src, dst in _mounts(redis)), "/data not on a volume"


def test_volumes_are_declared_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for source, _ in _mounts(service):
            if _is_bind(source):
                assert (REPO / source).exists(), f"{name}: mounts {source}, which is not in the repo"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"


def test_commands_are_planned_ecgmon_subcommands(services: dict[str, dict[str, Any]]) -> None:
    from stream import cli

    for name in OUR_SERVICES:
        command = services[name]["command"]
        assert isinstance(command, list), f"{name}: write command as a list"
        assert command[0] in PLANNED_SUBCOMMANDS, f"{name}: `ecgmon {command[0]}` is not a subcommand"
        module_name = SUBCOMMAND_MODULES[command[0]]
        assert module_name in cli.COMMAND_MODULES, f"stream.cli no longer loads {module_name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # not landed yet; the name check above still holds
            raise
        parser = argparse.ArgumentParser(prog="ecgmon")  # only this module: others may be mid-work
        module.register(parser.add_subparsers(dest="command", required=True))
        try:
            parser.parse_args(command)
        except SystemExit as exc:
            pytest.fail(f"{name}: `ecgmon {' '.join(command)}` does not parse ({exc})")


def test_ecgmon_env_vars_are_settings() -> None:
    known = {settings_mod.env_name(f.name) for f in dataclasses.fields(settings_mod.Settings)}
    for path in (COMPOSE, DOCKERFILE):
        used = set(ENV_RE.findall(path.read_text(encoding="utf-8")))
        assert used, f"{path.name} sets no ECGMON_* variable"
        unknown = used - known - FUTURE_ENV
        assert not unknown, f"{path.name}: {sorted(unknown)} are not fields of stream.settings.Settings"


def test_service_environments_load_as_settings(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str), f"{name}: quote {key}'s value (YAML reads it as {type(value)})"
    replay = _service_settings(compose, "replay")
    assert (replay.loop, replay.speed, replay.cache_dir) == (True, "1", Path("/cache"))
    assert replay.data_dir is None, "replay downloads from PhysioNet into the cache volume"
    assert any(dst == str(replay.cache_dir) for _, dst in _mounts(compose["services"]["replay"]))
    gateway = _service_settings(compose, "gateway")
    assert gateway.http_host == "0.0.0.0"
    assert "${ECGMON_AUTH_TOKEN:?" in compose["services"]["gateway"]["environment"]["ECGMON_AUTH_TOKEN"]
    for name in OUR_SERVICES:
        cfg = _service_settings(compose, name)
        assert cfg.kafka_bootstrap and cfg.redis_url, f"{name}: would start local services, not use ours"
        assert cfg.redis_url.startswith("redis://redis:6379")


# ----------------------------------------------------------------------------- prometheus


def test_prometheus_scrapes_every_service(compose: dict[str, Any]) -> None:
    config = _load_yaml(PROMETHEUS)
    assert config["global"]["scrape_interval"] == "5s"
    timeout = config["global"].get("scrape_timeout", "10s")
    assert int(timeout.rstrip("s")) <= 5, "scrape_timeout must not exceed scrape_interval"
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    for name in OUR_SERVICES:
        cfg = _service_settings(compose, name)
        port = cfg.http_port if name == "gateway" else cfg.metrics_port
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"
    prometheus = compose["services"]["prometheus"]
    assert ("./dashboards/prometheus/prometheus.yml", "/etc/prometheus/prometheus.yml") in set(
        _mounts(prometheus)
    )
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def _exported_metrics() -> set[str]:
    """Every metric name the services define (the string literals that name them)."""
    names: set[str] = set()
    for package in ("stream", "detector", "replay"):
        for path in (REPO / package).rglob("*.py"):
            names |= set(re.findall(r'"(ecgmon_[a-z_]+)"', path.read_text(encoding="utf-8")))
    return names


def test_alert_rules_are_loaded_and_name_only_exported_metrics(compose: dict[str, Any]) -> None:
    assert _load_yaml(PROMETHEUS)["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert ("./dashboards/prometheus/rules.yml", "/etc/prometheus/rules.yml") in set(
        _mounts(compose["services"]["prometheus"]))
    rules = [r for group in _load_yaml(RULES)["groups"] for r in group["rules"]]
    assert len(rules) >= 6 and len({r["alert"] for r in rules}) == len(rules)
    exported = _exported_metrics()
    assert "ecgmon_gateway_no_data_alarms_total" in exported  # the scan finds the services' names
    for rule in rules:
        expr = rule["expr"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        for metric in METRIC_RE.findall(expr):
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert base in exported, f"{rule['alert']}: {metric} is not exported by any service"


# ----------------------------------------------------------------------------- grafana


def test_grafana_datasource_points_at_prometheus(services: dict[str, dict[str, Any]]) -> None:
    config = _load_yaml(DATASOURCES)
    assert config["apiVersion"] == 1
    (source,) = config["datasources"]
    assert source["type"] == "prometheus" and source["uid"]
    assert source["url"] == "http://prometheus:9090"
    assert 9090 in _published_container_ports(services["prometheus"])


def test_grafana_provisioning_is_mounted(services: dict[str, dict[str, Any]]) -> None:
    mounts = {(REPO / src).resolve(): dst for src, dst in _mounts(services["grafana"]) if _is_bind(src)}
    provisioning = GRAFANA / "provisioning"
    assert mounts.get(provisioning / "datasources") == "/etc/grafana/provisioning/datasources"
    assert mounts.get(provisioning / "dashboards") == "/etc/grafana/provisioning/dashboards"
    config = _load_yaml(PROVIDERS)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert mounts.get(DASHBOARD.parent) == provider["options"]["path"], "dashboards not mounted where read"


def test_dashboard_queries_the_contract_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert set(METRIC_RE.findall(DASHBOARD.read_text(encoding="utf-8"))) == DASHBOARD_METRICS
    datasource_uid = _load_yaml(DATASOURCES)["datasources"][0]["uid"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    exprs = []
    for panel in panels:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == datasource_uid, f"{panel['title']}: unknown datasource"
            exprs.append(target["expr"])
    assert len(exprs) >= 12
    for stage in LATENCY_STAGES:
        for q in ("0.5", "0.95", "0.99"):
            expected = f"histogram_quantile({q}, sum by (le) (rate(ecgmon_{stage}_seconds_bucket[1m])))"
            assert expected in exprs, f"missing {expected}"
    for grouped in ("by (class) (rate(ecgmon_beats_total", "by (type) (rate(ecgmon_alarms_total",
                    "by (reason) (rate(ecgmon_dead_letters_total"):
        assert any(grouped in e for e in exprs), f"no query groups {grouped}"


# ----------------------------------------------------------------------------- image


def test_dockerfile_is_pinned_non_root_and_runs_ecgmon(project: dict[str, Any]) -> None:
    stages = _dockerfile_stages()
    python = re.sub(r"[^\d.]", "", project["requires-python"])  # ">=3.11" -> "3.11"
    aliases: set[str] = set()
    for stage in stages:
        base, *rest = stage[0][1].split()
        if base.startswith("python:"):
            tag = base.split(":", 1)[1]
            pinned = re.match(rf"{re.escape(python)}\.\d+-slim", tag)
            assert pinned, f"FROM {base}: pin python:{python}.N-slim"
        elif base not in aliases:
            tag = _image_tag(base)
            assert tag and tag != "latest" and re.search(r"\d", tag), f"FROM {base} is not pinned"
        if len(rest) == 2 and rest[0].upper() == "AS":
            aliases.add(rest[1])
    final = stages[-1]
    assert any(k == "RUN" and "pip install ." in a for s in stages for k, a in s), "no `pip install .`"
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage must run as non-root"
    (entrypoint,) = [a for k, a in final if k == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["ecgmon"], "ENTRYPOINT must be the exec form [\"ecgmon\"]"
    assert "ecgmon" in project["scripts"]


def test_dockerignore_keeps_the_context_small_but_buildable(project: dict[str, Any]) -> None:
    patterns = _dockerignore_patterns()
    assert not any(p.startswith("!") for p in patterns), "negations are not handled by this check"
    for path in (".venv/bin/python", ".git/HEAD", "data/mitdb/100.dat", ".mypy_cache/x",
                 ".pytest_cache/x", ".ruff_cache/x", "stream/__pycache__/x.pyc"):
        assert _dockerignored(path), f".dockerignore lets {path} into the build context"
    needed = ["pyproject.toml", "detector/models/beats.onnx"]
    needed += [f"{pkg.rstrip('*')}/__init__.py" for pkg in ("stream", "replay", "detector")]
    if isinstance(project.get("readme"), str):
        needed.append(project["readme"])
    for path in needed:
        assert not _dockerignored(path), f".dockerignore drops {path}, which `pip install .` needs"
