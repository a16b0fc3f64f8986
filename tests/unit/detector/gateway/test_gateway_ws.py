"""A WebSocket session's teardown: its tasks are cancelled and awaited, but never for ever."""

from __future__ import annotations

import asyncio
import logging

import pytest

from detector.gateway import ws


async def test_stop_ends_cancelled_tasks_and_gives_up_on_one_that_ignores_cancellation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ws, "STOP_TIMEOUT_S", 0.2)
    release = asyncio.Event()

    async def stubborn() -> None:  # what redis-py 8.0-8.2 did to a reader cancelled mid XREAD
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    polite = asyncio.create_task(asyncio.sleep(60), name="polite")
    stuck = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger=ws.__name__):
        async with asyncio.timeout(5):
            await ws._stop([polite, stuck])
    assert polite.cancelled()
    assert not stuck.done()
    assert [r.tasks for r in caplog.records] == [["stubborn"]]  # type: ignore[attr-defined]
    release.set()
    await stuck
