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

# subcommand -> (module that registers it, one-line help for `ecgmon --help`).  Only the
# module of the command being run is imported: `ecgmon --help` and light commands stay fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("stream.up", "start everything locally: broker, Redis, replay, detector, dashboard"),
    "replay": ("replay.cli", "stream WFDB records into Kafka as live bedside monitors"),
    "detect": ("detector.cli", "consume sample chunks, detect and classify beats, raise alarms"),
    "analyze": ("detector.cli", "analyse one WFDB record or CSV file offline"),
    "gateway": ("detector.gateway_cli", "serve the dashboard, REST API and WebSocket feed"),
    "eval": ("detector.eval_cli", "score detection, classification or alarms on real records"),
    "train": ("detector.train_cli", "train the beat classifiers (needs the train extra)"),
    "bench": ("detector.bench_cli", "measure latency, throughput and memory of the pipeline"),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's module is imported (others get a
    placeholder that still lists them in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="ecgmon",
        description="Real-time ECG bedside monitor: replay, detect, classify, alarm.",
        epilog="Every flag can also be set with the ECGMON_* environment variable named in "
        "its help. `ecgmon COMMAND --help` lists a command's flags.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    loaded: set[str] = set()
    wanted = COMMANDS[command][0] if command else None  # the module of the command being run
    for name, (module_name, help_text) in COMMANDS.items():
        if name in sub.choices:
            continue  # registered along with another command of its module
        # a placeholder only for other modules' commands: the wanted module registers all of its
        # own (detect and analyze), and argparse refuses a name added twice
        if command is not None and module_name != wanted:
            sub.add_parser(name, help=help_text)
            continue
        if module_name not in loaded:
            importlib.import_module(module_name).register(sub)
            loaded.add(module_name)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The subcommand named in ``argv`` ('' for none, e.g. ``ecgmon --help``)."""
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in COMMANDS else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
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
