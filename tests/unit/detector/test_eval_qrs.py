"""``ecgmon eval qrs``: JSON shape, annotation files, SNR table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import wfdb

from detector import eval_qrs
from stream import settings


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    eval_qrs.register(parser.add_subparsers(dest="kind"))
    args = parser.parse_args(["qrs", *argv])
    return int(args.run(settings.load(args, environ={}), args))


def test_json_shape_and_annotations(mitdb_dir: Path, tmp_path: Path, capsys: object) -> None:
    out = tmp_path / "qrs.json"
    rc = _run(["--data-dir", str(mitdb_dir), "--records", "100", "--json", str(out),
               "--annotations-out", str(tmp_path / "ann")])
    assert rc == 0
    doc = json.loads(out.read_text())
    keys = {"se", "ppv", "der", "tp", "fn", "fp"}
    assert set(doc["gross"]) == keys and set(doc["records"]) == {"100"}
    assert set(doc["records"]["100"]) == keys
    assert set(doc["delay_s"]) == {"p50", "p99", "max"} and doc["samples_per_s"] > 0
    assert doc["delay_s"]["p99"] < 0.5 <= doc["delay_with_chunking_s"]["max"]
    assert doc["gross"]["se"] > 0.999 and doc["gross"]["ppv"] > 0.999
    assert doc["gross"]["tp"] + doc["gross"]["fn"] == 2273
    assert doc["reference"]["gross"]["se"] > 0.99
    ann = wfdb.rdann(str(tmp_path / "ann" / "100"), "qrs")
    assert abs(len(ann.sample) - 2273) <= 3 and set(ann.symbol) == {"N"}
    table = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "gross" in table and "delay s" in table


def test_nstdb_table_by_snr(data_root: Path, tmp_path: Path, capsys: object) -> None:
    out = tmp_path / "n.json"
    rc = _run(["--data-dir", str(data_root / "nstdb"), "--records", "118e24,118e_6", "--no-reference",
               "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert list(doc["by_snr_db"]) == ["24", "-6"]
    assert doc["by_snr_db"]["24"]["se"] > 0.99
    assert "SNR dB" in capsys.readouterr().out  # type: ignore[attr-defined]


def test_snr_names() -> None:
    assert eval_qrs.snr_db("118e_6") == -6 and eval_qrs.snr_db("119e24") == 24
    assert eval_qrs.snr_db("100") is None


def test_default_records_skip_folders_without_annotations(data_root: Path) -> None:
    names = eval_qrs._record_names(data_root / "nstdb", None)
    assert "bw" not in names and "118e24" in names and len(names) == 12


def test_named_records_that_are_absent_are_named(mitdb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    code = main(["eval", "qrs", "--data-dir", str(mitdb_dir), "--records", "100,999"])
    err = capsys.readouterr().err
    assert code == 2 and "record 999 (header .hea with reference annotations .atr)" in err
    assert f"not found in {mitdb_dir}" in err
    assert "Traceback" not in err
