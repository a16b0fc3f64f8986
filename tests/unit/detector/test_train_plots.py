"""``ecgmon eval beats --plots`` (matplotlib is in the ``train`` extra)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:
    import matplotlib  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("plot tests need matplotlib: pip install -e '.[dev,train]'", pytrace=False)

from stream import cli


def test_eval_beats_writes_json_and_plots(mitdb_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    rc = cli.main(["eval", "beats", "--data-dir", str(mitdb_dir), "--records", "221",
                   "--json", str(out), "--plots", str(tmp_path / "plots")])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["labels"] == ["N", "S", "V", "F", "Q", "none"]
    for name in ("confusion.png", "roc.png", "examples.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
