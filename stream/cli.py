"""The ``ecgmon`` console script: parse, build settings, configure logging, run.

Each subcommand lives with the package that owns it, in a module exposing
``register(subparsers)``; that function adds its parser and sets
``run=callable(settings, args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from stream import logs, settings
from stream.errors import EcgmonError

logger = logging.getLogger(__name__)

# (module, planned subcommands it registers), in the order help lists them.
COMMAND_MODULES = (
    "stream.up",          # up
    "replay.cli",         # replay
    "detector.cli",       # detect, analyze
    "detector.eval_cli",  # eval qrs|beats|alarms
    "detector.train_cli", # train
    "detector.gateway_cli",  # gateway
    "detector.bench_cli", # bench
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecgmon",
        description="Real-time ECG bedside monitor: replay, detect, classify, alarm.",
        epilog="Every flag can also be set with the ECGMON_* environment variable named in "
        "its help.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command whose issue has not landed yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = settings.load(args)
    except EcgmonError as exc:
        parser.exit(2, f"ecgmon: error: {exc}\n")
    logs.configure(cfg.log_level, cfg.log_format)
    try:
        return int(args.run(cfg, args) or 0)
    except KeyboardInterrupt:
        return 130
    except EcgmonError as exc:
        logger.debug("command failed", exc_info=True)
        sys.stderr.write(f"ecgmon {args.command}: error: {exc}\n")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
