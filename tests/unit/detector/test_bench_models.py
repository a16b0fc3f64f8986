"""``python -m detector.bench_models``: the per-beat inference cost of the shipped models."""

from __future__ import annotations

import json
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
