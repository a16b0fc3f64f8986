"""Alarm evaluation: episode matching rules and one real record."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from detector import eval_alarms
from detector.eval_alarms import Episode, evaluate, format_table, rhythm_episodes, score_type


def test_rhythm_episodes_run_to_next_rhythm_annotation() -> None:
    eps = rhythm_episodes([10, 50, 60, 90], ["+", "N", "+", "+"], ["(N\x00", "", "(VT", "(N"], 200)
    assert eps == [Episode("(N", 10, 60), Episode("(VT", 60, 90), Episode("(N", 90, 200)]


def test_score_type_matches_onsets_within_tolerance() -> None:
    eps = [Episode("(VT", 1000, 1500), Episode("(VT", 10_000, 20_000)]
    # fs 100 Hz, tolerance 5 s = 500 samples
    s = score_type(eps, [600, 1900, 2100, 30_000], tol=500, fs_hz=100.0)
    assert (s.episodes, s.detected, s.alarms, s.matched_alarms) == (2, 1, 4, 2)
    assert s.delays_s == [-4.0]
    assert (s.long_episodes, s.long_detected) == (1, 0)  # only the 100 s episode is >= 10 s
    summary = s.summary()
    assert summary["se"] == 0.5 and summary["ppv"] == 0.5 and summary["median_delay_s"] == -4.0


def test_no_episodes_no_alarms_gives_no_ratio() -> None:
    s = score_type([], [], tol=1, fs_hz=1.0).summary()
    assert s["se"] is None and s["ppv"] is None and s["median_delay_s"] is None


@pytest.mark.data
def test_record_119_bigeminy_and_trigeminy(mitdb_dir: Path) -> None:
    result = evaluate([mitdb_dir / "119"])
    big, tri = result["totals"]["bigeminy"], result["totals"]["trigeminy"]
    assert big["episodes"] > 0 and big["se_long"] == 1.0 and big["ppv"] >= 0.9
    assert tri["episodes"] > 0 and tri["se_long"] == 1.0
    assert result["totals"]["ventricular_fibrillation"]["alarms"] == 0
    table = format_table(result)
    assert "REFERENCE" in table and "| bigeminy | (B |" in table


def test_register_exposes_alarms_with_data_dir_flag() -> None:
    parser = argparse.ArgumentParser()
    eval_alarms.register(parser.add_subparsers())
    args = parser.parse_args(["alarms", "--data-dir", "/x", "--only", "100"])
    assert parser.parse_args(["alarms", "--beats", "detected", "--model", "cnn"]).model == "cnn"
    assert args.data_dir == "/x" and args.run is eval_alarms.run and args.beats == "reference"
