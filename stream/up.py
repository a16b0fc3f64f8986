"""``ecgmon up``: local services (when none are configured), topics, and every pipeline part.

A *part* is a named coroutine ``run(ctx)`` that runs until ``ctx.stop`` is set:
an in-process task, or a child process (:func:`child_process_part`).  Each
package offers its part through a factory listed in :data:`PART_FACTORIES`;
parts whose module has not landed yet are skipped, like subcommands in
:mod:`stream.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from stream import metrics
from stream import settings as settings_mod
from stream.kafka import ensure_topics
from stream.services import LocalService, die_with_parent, start_broker, start_redis
from stream.settings import Settings, env_name
from stream.shutdown import stop_on_signals

logger = logging.getLogger(__name__)

# (part name, "module:factory"); factory(settings) -> Part | None.  In start order.
PART_FACTORIES = (
    ("detector", "detector.service:up_part"),
    ("gateway", "detector.gateway:up_part"),
    ("replay", "replay.cli:up_part"),
)
STOP_GRACE_S = 10.0

UP_FLAGS = (
    "kafka_bootstrap", "redis_url", "kafka_idempotence", "topic_prefix", "partitions", "retention_s",
    "data_dir", "cache_dir", "records", "speed", "chunk_s", "loop", "patients", "stagger_s",
    "progress_s", "metrics_port", "http_host", "http_port", "log_level", "log_format",
    *settings_mod.ALARM_FLAGS,
)


@dataclass(frozen=True, slots=True)
class UpContext:
    """What every part gets: the final settings, the stop signal, the shared metrics registry."""

    settings: Settings
    stop: asyncio.Event
    registry: CollectorRegistry


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    run: Callable[[UpContext], Coroutine[Any, Any, None]]


def child_process_part(name: str, argv: Sequence[str]) -> Part:
    """A part that runs ``argv`` as a child process with the settings as ``ECGMON_*`` variables.

    Stopped with SIGTERM (then SIGKILL after STOP_GRACE_S); it also gets SIGTERM if
    ``ecgmon up`` dies, so no orphan survives.
    """

    async def run(ctx: UpContext) -> None:
        env = {**os.environ, **settings_mod.to_env(ctx.settings)}
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, preexec_fn=die_with_parent, start_new_session=True
        )
        logger.info("part started", extra={"part": name, "pid": proc.pid})
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(ctx.stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), STOP_GRACE_S)
                except TimeoutError:
                    proc.kill()
                    await waiter
        if not ctx.stop.is_set() and proc.returncode:
            raise RuntimeError(f"part {name} exited with code {proc.returncode}")

    return Part(name, run)


def discover_parts(settings: Settings) -> list[Part]:
    parts = []
    for name, target in PART_FACTORIES:
        module_name, func = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # its issue has not landed yet
            raise
        factory = getattr(module, func, None)
        if factory is None:
            logger.info("part not wired into `ecgmon up` yet", extra={"part": name})
            continue
        part = factory(settings)
        if part is not None:
            parts.append(part)
    return parts


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "up", help="start everything locally: broker, Redis, replay, detector, dashboard",
        description="Run the whole monitor on this machine.  Without ECGMON_KAFKA_BOOTSTRAP / "
        "ECGMON_REDIS_URL a local broker and Redis are started (and stopped on Ctrl-C).  "
        "Replays the default records in real time, looping.",
    )
    settings_mod.add_flags(parser, UP_FLAGS)
    parser.set_defaults(run=run)


def _up_defaults(settings: Settings, args: argparse.Namespace) -> Settings:
    """`up` is a live demo: loop the records unless the user said otherwise."""
    if getattr(args, "loop", None) is None and not os.environ.get(env_name("loop")):
        settings = dataclasses.replace(settings, loop=True)
    return settings


def start_missing_services(settings: Settings, started: list[LocalService]) -> Settings:
    """Start what is not configured (from the main thread); append to ``started`` at once."""
    if not settings.kafka_bootstrap:
        broker = start_broker()
        started.append(broker)
        # The bundled broker (Tansu) rejects InitProducerId: no idempotent producer against it.
        settings = dataclasses.replace(settings, kafka_bootstrap=f"127.0.0.1:{broker.port}",
                                       kafka_idempotence=False)
    if not settings.redis_url:
        redis = start_redis()
        started.append(redis)
        settings = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{redis.port}/0")
    return settings


def _where(settings: Settings, parts: Sequence[Part], started: Sequence[LocalService]) -> str:
    local = {s.name for s in started}
    lines = [
        f"kafka:     {settings.kafka_bootstrap}{'  (local broker)' if 'kafka' in local else ''}"
        f"  topics {settings.topic('*')}",
        f"redis:     {settings.redis_url}{'  (local)' if 'redis' in local else ''}",
        f"parts:     {', '.join(p.name for p in parts) or 'none'}",
    ]
    if any(p.name == "gateway" for p in parts):
        lines.append(f"dashboard: http://{settings.http_host}:{settings.http_port}/")
    if settings.metrics_port:
        lines.append(f"metrics:   http://127.0.0.1:{settings.metrics_port}/metrics")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines) + "\n"


async def run_parts(settings: Settings, parts: Sequence[Part], stop: asyncio.Event) -> None:
    """Run every part until ``stop`` is set or one fails; then stop all and wait for them."""
    ctx = UpContext(settings, stop, CollectorRegistry())
    metrics.serve(settings.metrics_port, ctx.registry, settings.metrics_host)
    tasks = {asyncio.create_task(p.run(ctx), name=p.name): p for p in parts}
    stopper = asyncio.create_task(stop.wait())
    failed: BaseException | None = None
    pending: set[asyncio.Task[Any]] = set(tasks)
    try:
        while pending and not stop.is_set():
            done, pending = await asyncio.wait(pending | {stopper},
                                               return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            for task in done - {stopper}:
                if task.exception() is not None:
                    failed = task.exception()
                    logger.error("part failed, stopping everything",
                                 extra={"part": task.get_name(), "error": repr(failed)})
                    stop.set()
                else:
                    logger.info("part finished", extra={"part": task.get_name()})
        if not stop.is_set():
            await stop.wait()  # every part ended on its own: keep the services up until Ctrl-C
    finally:
        stop.set()
        stopper.cancel()
        if pending:
            _, late = await asyncio.wait(pending, timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
    if failed is not None:
        raise failed


def run(settings: Settings, args: argparse.Namespace) -> int:
    settings = _up_defaults(settings, args)
    started: list[LocalService] = []
    try:
        settings = start_missing_services(settings, started)
        parts = discover_parts(settings)

        async def main() -> None:
            stop = asyncio.Event()
            with stop_on_signals(stop):
                await ensure_topics(settings)
                sys.stdout.write(_where(settings, parts, started))
                sys.stdout.flush()
                await run_parts(settings, parts, stop)

        asyncio.run(main())
    except asyncio.CancelledError:  # a second Ctrl-C: forced stop
        return 130
    finally:
        for service in reversed(started):
            with contextlib.suppress(OSError):
                service.stop()
    return 0
