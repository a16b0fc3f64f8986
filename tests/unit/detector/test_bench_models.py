"""``python -m detector.bench_models``: the per-beat inference cost of the shipped models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detector import bench_models


def test_measures_the_named_model_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cost.json"
    assert bench_models.main(["--models", "mlp", "--runs", "2", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert list(figures) == ["mlp"]
    mlp = figures["mlp"]
    assert 0 < mlp["min"] <= mlp["median"] <= mlp["max"] < 10_000
    line = capsys.readouterr().out
    assert line.startswith("mlp") and "us/beat" in line and "50 us budget" in line


def test_every_shipped_model_takes_its_own_input_channels() -> None:
    for path in sorted(bench_models.MODELS_DIR.glob("*.onnx")):
        assert bench_models.model_channels(path) in (2, 4), path.name


def test_an_unknown_model_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        bench_models.main(["--models", "nosuch", "--runs", "1"])
    assert err.value.code == 2
    assert "no model nosuch" in capsys.readouterr().err


def test_record_writes_the_measurement_into_the_card(tmp_path: Path) -> None:
    shutil.copy(bench_models.MODELS_DIR / "mlp.onnx", tmp_path / "mlp.onnx")
    card = json.loads((bench_models.MODELS_DIR / "mlp.json").read_text())
    card.pop("inference_check", None)  # a card never measured: this is its only recording
    (tmp_path / "mlp.json").write_text(json.dumps(card))
    assert bench_models.main(["--models", "mlp", "--runs", "1", "--models-dir", str(tmp_path),
                              "--record"]) == 0
    card = json.loads((tmp_path / "mlp.json").read_text())
    check = card["inference_check"]
    assert check["runs"] == 1 and check["budget_us"] == 50 and len(check["recordings"]) == 1
    assert 0 < check["min"] <= check["us_per_beat"] <= check["max"]
    assert check["command"] == "python -m detector.bench_models --models mlp --runs 1 --record"
    assert f"idle: {check['us_per_beat']:.1f}" in (tmp_path / "mlp.md").read_text()


def test_the_card_keeps_three_spaced_recordings_and_reads_the_slowest(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from detector.training.card import write_card

    card = json.loads((bench_models.MODELS_DIR / "mlp.json").read_text())
    card.pop("inference_check", None)
    write_card(tmp_path / "m.json", card)
    t0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def record(median: float, minutes: float) -> dict[str, object]:
        figures = {"median": median, "min": median - 1, "max": median + 5}
        bench_models.record_in_card(tmp_path / "m.json", figures, 30, "cmd", t0 + timedelta(minutes=minutes))
        check: dict[str, object] = json.loads((tmp_path / "m.json").read_text())["inference_check"]
        return check

    assert record(40.0, 0)["us_per_beat"] == 40.0
    assert record(55.0, 5)["us_per_beat"] == 55.0  # 5 minutes later: replaces the first
    assert len(record(45.0, 20)["recordings"]) == 2  # type: ignore[arg-type]
    check = record(48.0, 40)
    assert check["us_per_beat"] == 55.0 and len(check["recordings"]) == 3  # type: ignore[arg-type]
    check = record(47.0, 60)  # the oldest (55.0) leaves: the slowest kept is 48.0
    assert check["us_per_beat"] == 48.0
    assert [r["median"] for r in check["recordings"]] == [45.0, 48.0, 47.0]  # type: ignore[union-attr]
    md = (tmp_path / "m.md").read_text()
    assert "the slowest median of 3 recordings at least 10 minutes apart" in md and "idle: 48.0" in md
    assert check["min_spacing_s"] == bench_models.MIN_SPACING_S
