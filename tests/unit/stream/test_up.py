"""`ecgmon up` orchestration: parts run together, one failure or a stop ends all, no orphans."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from stream import settings as settings_mod
from stream import up
from stream.settings import load


async def test_stop_ends_every_part() -> None:
    stopped: list[str] = []

    def part(name: str) -> up.Part:
        async def run(ctx: up.UpContext) -> None:
            await ctx.stop.wait()
            stopped.append(name)

        return up.Part(name, run)

    stop = asyncio.Event()
    runner = asyncio.create_task(up.run_parts(load(environ={}), [part("a"), part("b")], stop))
    await asyncio.sleep(0.05)
    assert not runner.done()
    stop.set()
    await asyncio.wait_for(runner, 2)
    assert sorted(stopped) == ["a", "b"]


async def test_a_failing_part_stops_the_others_and_raises() -> None:
    async def fails(ctx: up.UpContext) -> None:
        raise RuntimeError("boom")

    async def waits(ctx: up.UpContext) -> None:
        await ctx.stop.wait()

    stop = asyncio.Event()
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(
            up.run_parts(load(environ={}), [up.Part("w", waits), up.Part("f", fails)], stop), 2
        )
    assert stop.is_set()


async def test_child_process_part_gets_settings_and_is_terminated(tmp_path: Path) -> None:
    marker = tmp_path / "env"
    script = (
        "import os, pathlib, time; "
        f"pathlib.Path({str(marker)!r}).write_text(os.environ['ECGMON_TOPIC_PREFIX']); "
        "time.sleep(60)"
    )
    part = up.child_process_part("sleeper", [sys.executable, "-c", script])
    stop = asyncio.Event()
    runner = asyncio.create_task(up.run_parts(load(environ={}, topic_prefix="zz"), [part], stop))
    for _ in range(100):
        if marker.exists() and marker.read_text():
            break
        await asyncio.sleep(0.05)
    assert marker.read_text() == "zz"
    stop.set()
    await asyncio.wait_for(runner, 5)


def test_parts_of_missing_modules_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(up, "PART_FACTORIES", (("ghost", "no_such_module_xyz:up_part"),
                                               ("replay", "replay.cli:up_part")))
    assert [p.name for p in up.discover_parts(load(environ={}))] == ["replay"]


def test_to_env_round_trips(tmp_path: Path) -> None:
    s = load(environ={}, loop=True, chunk_s=0.5, data_dir=tmp_path, records="100,203")
    env = settings_mod.to_env(s)
    assert "ECGMON_KAFKA_BOOTSTRAP" not in env
    assert load(environ=env) == s


def test_up_loops_by_default_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.delenv("ECGMON_LOOP", raising=False)
    s = load(environ={})
    assert up._up_defaults(s, argparse.Namespace(loop=None)).loop is True
    assert up._up_defaults(s, argparse.Namespace(loop=False)).loop is False
    monkeypatch.setitem(os.environ, "ECGMON_LOOP", "false")
    assert up._up_defaults(s, argparse.Namespace(loop=None)).loop is False
