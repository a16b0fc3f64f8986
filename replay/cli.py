"""``ecgmon replay``: stream WFDB records into Kafka as live monitors."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TextIO

from prometheus_client import CollectorRegistry

from replay.producer import Progress, log_progress, replay
from stream import metrics
from stream import settings as settings_mod
from stream.errors import ConfigError
from stream.kafka import Producer, ensure_topics
from stream.settings import Settings, env_name
from stream.shutdown import stop_on_signals
from stream.up import Part, UpContext

logger = logging.getLogger(__name__)

KAFKA_FLAGS = ("kafka_bootstrap", "kafka_idempotence", "topic_prefix", "partitions",
               "replication_factor", "retention_s", "linger_ms", "batch_bytes", "connect_attempts")
REPLAY_FLAGS = ("data_dir", "cache_dir", "physionet_db", "records", "speed", "chunk_s", "start_s",
                "duration_s", "loop", "patients", "stagger_s", "progress_s")
LOG_FLAGS = ("metrics_port", "metrics_host", "log_level", "log_format")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "replay", help="stream PhysioNet records into Kafka as live bedside monitors",
        description="Replay WFDB records (one simulated monitor per patient) into the samples "
        "topic, in real time, N times faster, or as fast as possible.",
    )
    settings_mod.add_flags(parser, KAFKA_FLAGS + REPLAY_FLAGS + LOG_FLAGS)
    parser.set_defaults(run=run)


def progress_printer(stream: TextIO | None = None) -> Callable[[Progress], None]:
    """A one-line tty progress display, or JSON log lines when stderr is not a terminal."""
    out = sys.stderr if stream is None else stream
    if not out.isatty():
        return log_progress

    def show(progress: Progress) -> None:
        out.write("\r\x1b[2K" + progress.line())
        out.flush()

    return show


async def run_replay(
    settings: Settings,
    stop: asyncio.Event | None = None,
    show: Callable[[Progress], None] | None = None,
    registry: CollectorRegistry | None = None,
) -> Progress:
    """Create the topics, then replay with a producer of our own until done or stopped."""
    stop = stop or asyncio.Event()
    await ensure_topics(settings)
    show = show or progress_printer()
    async with Producer(settings) as producer:
        progress = await replay(settings, producer, stop, on_progress=show, registry=registry)
    if show is not log_progress:
        sys.stderr.write("\n")
    return progress


def up_part(settings: Settings) -> Part:
    """The replay as a part of `ecgmon up` (progress as log lines: other parts log too)."""

    async def run_part(ctx: UpContext) -> None:
        await run_replay(ctx.settings, ctx.stop, show=log_progress, registry=ctx.registry)

    return Part("replay", run_part)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.kafka_bootstrap:
        raise ConfigError(
            f"replay needs a Kafka broker: set {env_name('kafka_bootstrap')} or --kafka-bootstrap, "
            "or run `ecgmon up`, which starts a local broker and the replay together"
        )

    registry = CollectorRegistry()
    metrics.serve(settings.metrics_port, registry, settings.metrics_host)

    async def main() -> None:
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await run_replay(settings, stop, registry=registry)

    try:
        asyncio.run(main())
    except asyncio.CancelledError:  # a second Ctrl-C: forced stop
        return 130
    return 0
