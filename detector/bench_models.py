"""Inference cost of the shipped beat classifiers: microseconds per beat at batch 64 on one
onnxruntime thread, the figure the model cards report; the default model must stay within 50 us.

``python -m detector.bench_models [--runs 3] [--models cnn,inception] [--record]`` measures every
model in ``detector/models`` (or the named ones) with the runtime alone (no torch) and prints
one line per model: median and range over the runs, taken round robin (one run of every model
per round, so a change in the machine's speed touches all of them alike).  Run it on an idle
machine: the cards' training-time figure is often taken beside a second training process.
``--record`` writes the measurement into each model's card (``inference_check``), where the
default-model rule reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from detector.core import beats as feat
from detector.onnx_classifier import MODELS_DIR

BATCH = 64
BUDGET_US = 50.0  # issue #4: default model, batch 64, one thread


def bench_onnx(path: Path, n_channels: int, batch: int = BATCH, repeats: int = 200) -> float:
    """Median microseconds per beat at ``batch`` on one onnxruntime thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {
        "beat": rng.standard_normal((batch, n_channels, feat.WINDOW_LEN)).astype(np.float32),
        "rr": np.ones((batch, feat.N_RR), np.float32),
    }
    for _ in range(10):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return float(np.median(times) / batch * 1e6)


def model_channels(path: Path) -> int:
    """Input channels of a model (2 per lead: the beat and the patient's template)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return int(sess.get_modelmeta().custom_metadata_map.get("n_leads", "1")) * 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detector.bench_models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR,
                        help=f"folder of <name>.onnx and cards (default {MODELS_DIR})")
    parser.add_argument("--runs", type=int, default=3, help="measurements per model (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--record", action="store_true",
                        help="write each figure into the model's card (<name>.json and .md)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or sorted(
        p.stem for p in args.models_dir.glob("*.onnx"))
    missing = [n for n in names if not (args.models_dir / f"{n}.onnx").is_file()]
    if missing:
        parser.error(f"no model {', '.join(missing)} in {args.models_dir}")
    out: dict[str, dict[str, float]] = {}
    paths = {name: args.models_dir / f"{name}.onnx" for name in names}
    channels = {name: model_channels(path) for name, path in paths.items()}
    # round robin: the machine's speed drifts from minute to minute, so every model gets a
    # measurement in each round, and the models are compared under the same conditions
    runs: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(max(1, args.runs)):
        for name in names:
            runs[name].append(bench_onnx(paths[name], channels[name]))
    for name in names:
        got = runs[name]
        out[name] = {"median": float(np.median(got)), "min": min(got), "max": max(got)}
        verdict = "within" if out[name]["median"] <= BUDGET_US else "OVER"
        sys.stdout.write(f"{name:12s} {out[name]['median']:6.1f} us/beat (runs {min(got):.1f}-"
                         f"{max(got):.1f}; batch {BATCH}, 1 thread; {verdict} the "
                         f"{BUDGET_US:.0f} us budget)\n")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.record:
        # the command that measured them: the models named (or all) side by side, round robin
        command = ("python -m detector.bench_models" + (f" --models {args.models}" if args.models else "")
                   + f" --runs {max(1, args.runs)} --record")
        for name, figures in out.items():
            record_in_card(args.models_dir / f"{name}.json", figures, max(1, args.runs), command)
    return 0


KEPT_RECORDINGS = 3  # the card's figure: the slowest median of the last three recordings
MIN_SPACING_S = 600  # a recording within 10 minutes of the last one replaces it


def record_in_card(path: Path, figures: dict[str, float], runs: int, command: str,
                   now: datetime | None = None) -> None:
    """Store an idle-machine measurement in a model card (``inference_check``) and re-render it.

    The machine's speed drifts by the minute, and a model that meets the budget only in a quiet
    one would not keep it for a user: the card keeps the last :data:`KEPT_RECORDINGS`
    recordings, at least :data:`MIN_SPACING_S` apart (a closer one replaces the last), and its
    figure, the one the default-model rule reads, is the slowest of their medians."""
    from detector.training.card import write_card

    if not path.is_file():
        sys.stderr.write(f"{path.stem}: no card at {path}, figure not recorded\n")
        return
    now = now or datetime.now(UTC)
    card = json.loads(path.read_text())
    previous = card.get("inference_check") or {}
    kept: list[dict[str, Any]] = list(previous.get("recordings", []))
    if previous and not kept:  # a card recorded before recordings were kept: its one figure
        kept = [{"utc": previous["date"], "median": previous["us_per_beat"], "min": previous["min"],
                 "max": previous["max"], "runs": previous["runs"], "command": previous["command"]}]
    this = {"utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "median": round(figures["median"], 1),
            "min": round(figures["min"], 1), "max": round(figures["max"], 1), "runs": runs,
            "command": command}
    if kept and _seconds_between(kept[-1]["utc"], now) < MIN_SPACING_S:
        kept[-1] = this
    else:
        kept.append(this)
    kept = kept[-KEPT_RECORDINGS:]
    worst = max(kept, key=lambda r: float(r["median"]))
    card["inference_check"] = {
        "us_per_beat": worst["median"], "min": worst["min"], "max": worst["max"], "runs": worst["runs"],
        "budget_us": BUDGET_US, "date": now.strftime("%Y-%m-%d"), "command": command,
        "recordings": kept, "min_spacing_s": MIN_SPACING_S,
    }
    write_card(path, card)


def _seconds_between(utc: str, now: datetime) -> float:
    """Seconds from a recording's time to ``now`` (a date alone: its start, so far enough)."""
    fmt = "%Y-%m-%dT%H:%M:%SZ" if "T" in utc else "%Y-%m-%d"
    return (now - datetime.strptime(utc, fmt).replace(tzinfo=UTC)).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
