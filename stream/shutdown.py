"""Graceful stop on Ctrl-C / SIGTERM: the first signal asks to stop, the second forces it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM set ``stop``; a second one cancels the current task."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received = 0

    def handle(sig: signal.Signals) -> None:
        nonlocal received
        received += 1
        if received == 1:
            logger.warning("stopping: finishing and flushing what was sent (again to force)",
                           extra={"signal": sig.name})
            stop.set()
        elif task is not None:
            logger.warning("forced stop", extra={"signal": sig.name})
            task.cancel()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, handle, sig)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
