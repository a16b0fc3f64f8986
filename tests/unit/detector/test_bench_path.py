"""``python -m detector.bench_path`` runs the real service path on real records and says so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detector import bench_path

pytestmark = pytest.mark.data


def test_prints_cpu_per_patient_second_of_a_real_run(
    mitdb_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_path.main(["--data-dir", str(mitdb_dir), "--patients", "3", "--seconds", "12",
                            "--warmup", "4", "--chunk-s", "1", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"3 patients, 1 s chunks, 24 patient-seconds: CPU ([\d.]+) s .* = ([\d.]+) ms", out)
    assert m and float(m.group(1)) > 0 and 0.01 < float(m.group(2)) < 100, out
    assert re.search(r"GC while measured: \d+ full collections \(max [\d.]+ ms\), \d+ young .*"
                     r"policy: freeze, 2 runs", out), out


def test_without_records_it_says_where_to_point_it(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_path.main(["--data-dir", str(tmp_path)])
    assert exc.value.code == 2


def test_rss_every_prints_the_memory_along_the_run(
    mitdb_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench_path.main(["--data-dir", str(mitdb_dir), "--patients", "2", "--seconds", "10",
                            "--warmup", "4", "--chunk-s", "1", "--repeat", "1", "--rss-every", "3"]) == 0
    rss = [float(v) for v in re.findall(r"after (?:7|10) batches: RSS ([\d.]+) MiB", capsys.readouterr().out)]
    assert len(rss) == 2 and all(50 < v < 4096 for v in rss)
