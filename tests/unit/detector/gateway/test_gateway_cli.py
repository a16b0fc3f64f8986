"""``ecgmon gateway`` refuses to run without a token unless explicitly in development mode."""

from __future__ import annotations

import argparse
import logging

import pytest

from detector.gateway.uploads import json_safe
from detector.gateway_cli import check_auth, register
from stream.errors import ConfigError
from stream.settings import load


def test_no_token_is_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="ECGMON_AUTH_TOKEN"):
        check_auth(load(environ={}))


def test_dev_no_auth_runs_open_with_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_auth(load(environ={"ECGMON_DEV_NO_AUTH": "true"}))
    assert any(r.levelno == logging.WARNING and "WITHOUT AUTHENTICATION" in r.getMessage()
               for r in caplog.records)


def test_token_from_env_or_flag() -> None:
    check_auth(load(environ={"ECGMON_AUTH_TOKEN": "t"}))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["gateway", "--auth-token", "t2", "--ws-queue-size", "9"])
    s = load(args, environ={})
    assert s.auth_token == "t2" and s.ws_queue_size == 9 and args.run is not None
    assert s.web_dir.name == "web" and s.web_dir.parent.name == "dashboards"


def test_settings_reject_bad_gateway_values() -> None:
    for env in ({"ECGMON_WS_QUEUE_SIZE": "0"}, {"ECGMON_UPLOAD_MAX_BYTES": "0"},
                {"ECGMON_ANALYZE_TIMEOUT_S": "nan"}):
        with pytest.raises(ConfigError):
            load(environ=env)


def test_json_safe_turns_numpy_and_non_finite_into_json() -> None:
    import numpy as np

    out = json_safe({"a": np.float32(1.5), "b": [np.int64(2), float("nan")], "c": np.arange(2)})
    assert out == {"a": 1.5, "b": [2, None], "c": [0, 1]}


def test_the_app_factory_refuses_to_build_an_open_app_by_accident() -> None:
    from prometheus_client import CollectorRegistry

    from detector.gateway.app import create_app
    from detector.gateway.clients import ClientHub
    from detector.gateway.feeds import Feeds
    from stream.redis import AlertStore

    for env, ok in (({}, False), ({"ECGMON_DEV_NO_AUTH": "1"}, True), ({"ECGMON_AUTH_TOKEN": "t"}, True)):
        settings = load(environ={"ECGMON_REDIS_URL": "redis://127.0.0.1:1/0", **env})
        registry = CollectorRegistry()
        store = AlertStore.from_settings(settings, registry)
        feeds = Feeds(settings, store, ClientHub(registry, 4), registry)
        if ok:
            assert create_app(settings, registry, store, feeds).title == "ecgmon gateway"
        else:
            with pytest.raises(ConfigError, match="ECGMON_AUTH_TOKEN"):
                create_app(settings, registry, store, feeds)
