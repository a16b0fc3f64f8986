"""``ecgmon eval {qrs,beats,alarms}``: accuracy on real records, the AAMI EC57 way.

Each evaluation lives in its own module exposing ``register(eval_subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib

EVAL_MODULES = ("detector.eval_qrs", "detector.eval_beats", "detector.eval_alarms")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "eval", help="score detection, classification or alarms against reference annotations",
        description="Score ecgmon against the cardiologists' annotations of PhysioNet records.",
    )
    eval_sub = parser.add_subparsers(dest="eval_kind", metavar="KIND", required=True)
    for name in EVAL_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(eval_sub)
