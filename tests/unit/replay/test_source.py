"""Reading records locally, and the one clear error when a download is impossible."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb

from replay import source
from stream.errors import DataUnavailable
from stream.settings import load


@pytest.mark.data
def test_reads_int16_adc_values_and_calibration(mitdb_dir: Path) -> None:
    rec = source.load_record("100", load(environ={}, data_dir=mitdb_dir))
    ref = wfdb.rdrecord(str(mitdb_dir / "100"), physical=False)
    assert rec.samples.dtype == np.int16 and rec.samples.shape == (650_000, 2)
    assert np.array_equal(rec.samples, ref.d_signal)
    assert (rec.fs_hz, rec.lead_names, rec.adc_gain, rec.adc_baseline) == (
        360.0, ("MLII", "V5"), (200.0, 200.0), (1024, 1024))
    assert rec.duration_s == pytest.approx(1805.56, abs=0.01)
    assert not rec.samples.flags.writeable


@pytest.mark.data
def test_unknown_record_in_data_dir_lists_what_is_there(mitdb_dir: Path) -> None:
    with pytest.raises(DataUnavailable, match=r"'999' not found .*100, 101"):
        source.load_record("999", load(environ={}, data_dir=mitdb_dir))


@pytest.mark.parametrize("name", ["../etc/passwd", "", "a/b", ".."])
def test_bad_record_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable, match="not a WFDB record name"):
        source.load_record(name, load(environ={}, data_dir=tmp_path))


def test_offline_download_says_to_set_the_data_dir(tmp_path: Path, monkeypatch: Any) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Failed to resolve 'physionet.org'")  # what requests raises offline

    monkeypatch.setattr(source.wfdb, "dl_database", no_network)
    settings = load(environ={}, cache_dir=tmp_path)
    with pytest.raises(DataUnavailable, match=r"ECGMON_DATA_DIR or --data-dir") as err:
        source.load_record("100", settings)
    assert "physionet.org" in str(err.value)
    assert list((tmp_path / "mitdb").iterdir()) == []  # no partial download left behind


def test_download_lands_in_the_cache_and_is_reused(tmp_path: Path, monkeypatch: Any, mitdb_dir: Path) -> None:
    calls: list[str] = []

    def fake_download(db: str, dl_dir: str, records: list[str], **kwargs: Any) -> None:
        calls.append(db)
        for suffix in (".hea", ".dat", ".atr"):
            (Path(dl_dir) / f"{records[0]}{suffix}").write_bytes(
                (mitdb_dir / f"{records[0]}{suffix}").read_bytes())

    monkeypatch.setattr(source.wfdb, "dl_database", fake_download)
    settings = load(environ={}, cache_dir=tmp_path)
    assert source.load_record("101", settings).n_samples == 650_000
    assert source.load_record("101", settings).n_samples == 650_000
    assert calls == ["mitdb"]
    assert sorted(p.name for p in (tmp_path / "mitdb").iterdir()) == ["101.atr", "101.dat", "101.hea"]


def test_download_of_a_record_physionet_lacks(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(source.wfdb, "dl_database", lambda *a, **k: None)
    with pytest.raises(DataUnavailable, match="has no record '777'"):
        source.load_record("777", load(environ={}, cache_dir=tmp_path))


def test_unknown_record_on_physionet(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    def not_found(*args: Any, **kwargs: Any) -> None:
        sys.stdout.write("Generating record list for: 999\n")  # wfdb prints like this
        raise FileNotFoundError("https://physionet.org/files/mitdb/1.0.0/999.hea not found")

    monkeypatch.setattr(source.wfdb, "dl_database", not_found)
    with pytest.raises(DataUnavailable, match="has no record '999'.*ECGMON_PHYSIONET_DB"):
        source.load_record("999", load(environ={}, cache_dir=tmp_path))
    assert capsys.readouterr().out == ""
