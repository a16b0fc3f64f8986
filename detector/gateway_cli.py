"""``ecgmon gateway``: the dashboard, REST and WebSocket server in front of Kafka and Redis."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from prometheus_client import CollectorRegistry

from stream.errors import ConfigError
from stream.settings import ALARM_FLAGS, Settings, add_flags, env_name

logger = logging.getLogger(__name__)

FLAGS = ("kafka_bootstrap", "redis_url", "redis_prefix", "topic_prefix", "http_host", "http_port",
         "auth_token", "dev_no_auth", "web_dir", "upload_max_bytes", "analyze_timeout_s",
         "ws_queue_size", "waveform_history_s", "cors_origins", "no_data_alarm_s", "model",
         "fetch_max_wait_ms", "connect_attempts", "log_level", "log_format", *ALARM_FLAGS)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gateway", help="serve the web dashboard, REST API and live WebSocket feed",
        description="Serve the dashboard (/), REST (/api, OpenAPI at /openapi.json), the live "
        "WebSocket (/ws), /healthz and /metrics. Needs a bearer token (ECGMON_AUTH_TOKEN) "
        "unless --dev-no-auth.")
    add_flags(parser, FLAGS)
    parser.set_defaults(run=run)


def check_auth(settings: Settings) -> None:
    """A token is required; running open needs the explicit development flag (and says so)."""
    if settings.auth_token:
        return
    if not settings.dev_no_auth:
        raise ConfigError(
            f"the gateway needs a token: set {env_name('auth_token')} (or --auth-token), e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; for local "
            "development only, --dev-no-auth runs it without one")
    logger.warning("GATEWAY RUNNING WITHOUT AUTHENTICATION (--dev-no-auth): anyone who can reach "
                   "this port can read patient data and acknowledge alarms; never do this outside "
                   "local development")


def run(settings: Settings, args: argparse.Namespace) -> int:
    check_auth(settings)
    if not settings.redis_url:
        raise ConfigError(f"the gateway needs Redis: set {env_name('redis_url')} or --redis-url")
    if not settings.kafka_bootstrap:
        raise ConfigError(
            f"the gateway needs Kafka: set {env_name('kafka_bootstrap')} or --kafka-bootstrap")
    asyncio.run(serve(settings))
    return 0


async def serve(settings: Settings) -> None:
    import uvicorn

    from detector.gateway.app import create_app
    from detector.gateway.auth import RedactTokens
    from detector.gateway.clients import ClientHub
    from detector.gateway.feeds import Feeds
    from stream.redis import AlertStore

    registry = CollectorRegistry()
    store = AlertStore.from_settings(settings, registry)
    await store.start()  # fails early, with a message naming ECGMON_REDIS_URL
    try:
        hub = ClientHub(registry, settings.ws_queue_size)
        app = create_app(settings, registry, store, Feeds(settings, store, hub, registry))
        for name in ("uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).addFilter(RedactTokens())
        config = uvicorn.Config(
            app, host=settings.http_host, port=settings.http_port, log_config=None,
            ws="websockets-sansio", ws_max_size=64 * 1024, timeout_graceful_shutdown=5,
            proxy_headers=False, server_header=False)
        logger.info("gateway listening",
                    extra={"host": settings.http_host, "port": settings.http_port})
        await uvicorn.Server(config).serve()
    finally:
        await store.stop()
