"""The console script: every subcommand's help names the env var behind each flag."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

from stream import cli
from stream.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                for child, grand in _subparsers(sub).items():
                    found[f"{name} {child}"] = grand
    return found


def test_foundation_commands_exist() -> None:
    commands = _subparsers(cli.build_parser())
    assert {"up", "replay"} <= set(commands)


def test_each_command_builds_its_own_parser_alone() -> None:
    """`ecgmon X` imports only X's module; a module that registers two commands (detect and
    analyze) must not meet a placeholder of its other one (argparse refuses a name twice)."""
    for name in cli.COMMANDS:
        commands = _subparsers(cli.build_parser(name))
        assert set(cli.COMMANDS) <= set(commands), name
        own = [a for a in commands[name]._actions if a.dest != "help"]  # options, arguments, subcommands
        assert own, f"{name}: a placeholder instead of the command's parser"
    with_two = {m for m, _ in cli.COMMANDS.values() if sum(v[0] == m for v in cli.COMMANDS.values()) > 1}
    assert with_two  # detector.cli: detect and analyze (the case this test is for)


def test_analyze_runs_from_the_console_script(mitdb_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "stream.cli", "analyze", str(mitdb_dir / "100"),
                           "--log-level", "WARNING"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith("100: 1805.6 s at 360 Hz") and "beats: 22" in proc.stdout


def test_every_settings_flag_names_its_env_var() -> None:
    """An option whose dest is a settings field feeds that setting (settings.load reads it), so
    its help must name the env var; options of other meaning must use another dest."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    checked = 0
    for name, sub in _subparsers(cli.build_parser()).items():
        for action in sub._actions:
            if action.option_strings and action.dest in fields:
                assert env_name(action.dest) in (action.help or ""), (name, action.option_strings)
                checked += 1
    assert checked >= 10


def test_console_script_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay", "--help"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    assert "ECGMON_SPEED" in out and "--speed" in out


def test_bad_env_value_is_a_clear_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "replay"],
        capture_output=True, text=True, cwd=ROOT,
        env={"ECGMON_PARTITIONS": "many", "HOME": "/tmp"},
    )
    assert proc.returncode == 2
    assert "ECGMON_PARTITIONS" in proc.stderr and "many" in proc.stderr
