"""The gateway benchmark runs on a real record and prints every figure it promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import wfdb

from detector.gateway import bench


def test_bench_prints_cpu_memory_burst_and_strip(mitdb_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--data-dir", str(mitdb_dir), "--patients", "3", "--seconds", "30"]) == 0
    out = capsys.readouterr().out
    assert "3 patients x 30 s of record 100" in out
    assert re.search(r"samples: 360 chunks, \d+ us CPU each", out)  # 3 x 30 s / 0.25 s
    ann = wfdb.rdann(str(mitdb_dir / "100"), "atr", sampto=30 * 360)
    per_patient = sum(sym in "NLRAaJSVFejE/fQ" for sym in ann.symbol) - 1  # the first has no RR
    beats = re.search(r"beats: (\d+) beats, \d+ us CPU each", out)
    assert beats and int(beats.group(1)) == 3 * per_patient
    memory = re.search(r"memory: ([\d.]+) KiB per patient", out)
    assert memory and 10 < float(memory.group(1)) < 200  # the 20 s float32 trace alone is 9.4 KiB
    assert re.search(r"subscribe burst: 3 history frames of 20 s", out)
    assert re.search(r"alarm strip: cut \+ compress [\d.]+ ms, [\d.]+ KiB stored \(1800 samples\)", out)


def test_bench_names_a_folder_without_the_record(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="100.hea not found"):
        bench.main(["--data-dir", str(tmp_path), "--patients", "1", "--seconds", "30"])
    with pytest.raises(SystemExit):
        bench.main(["--data-dir", str(tmp_path), "--seconds", "5"])
