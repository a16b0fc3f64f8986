"""End-to-end beat classification on real DS2 records with the committed default model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detector.eval_beats import (
    BeatEvaluation,
    average_figures,
    evaluate,
    format_table,
    parse_records,
    patient_intervals,
    prepare_record,
    record_figures,
)
from detector.onnx_classifier import DEFAULT_MODEL, MODELS_DIR, OnnxClassifier
from detector.training.data import DS1, DS2, match_nearest
from detector.training.noise import load_noise
from stream import cli
from stream.errors import ConfigError


def test_parse_records() -> None:
    assert parse_records("ds2") == list(DS2)
    assert parse_records("100, 232") == ["100", "232"]
    assert not set(DS1) & set(DS2)
    with pytest.raises(ConfigError, match="paced"):
        parse_records("100,217")


def test_match_nearest_one_to_one() -> None:
    ref = np.array([100, 200, 300])
    test = np.array([95, 104, 260, 420])
    got = match_nearest(ref, test, 54)
    assert got.tolist() == [-1, 0, 2, -1] or got.tolist() == [0, -1, 2, -1]
    assert match_nearest(ref, np.array([], np.int64), 54).tolist() == []


def test_bxb_counting() -> None:
    ev = BeatEvaluation()
    ev.confusion[2, 2] = 9  # V called V
    ev.confusion[2, 5] = 1  # V missed
    ev.confusion[5, 2] = 3  # extra beat called V
    ev.confusion[0, 0] = 100
    m = ev.class_metrics()
    assert m["V"]["se"] == pytest.approx(0.9) and m["V"]["ppv"] == pytest.approx(0.75)
    assert ev.accuracy() == 1.0


def test_ec57_veb_and_sveb_leave_fusion_and_q_beats_out_of_the_false_positives() -> None:
    # bxb: VFP = Nv + Sv + Ov, SFP = Ns + Vs + Fs + Os; Fv, Qv and Qs count for neither side;
    # sensitivity counts the whole reference row (Vs, the V called S, too)
    ev = BeatEvaluation()
    n, s, v, f, q, none = range(6)
    ev.confusion[v, v], ev.confusion[v, n], ev.confusion[v, none] = 80, 15, 5
    ev.confusion[n, v], ev.confusion[s, v], ev.confusion[none, v] = 4, 3, 3
    ev.confusion[f, v], ev.confusion[q, v] = 30, 2
    ev.confusion[s, s], ev.confusion[s, n] = 60, 40
    ev.confusion[n, s], ev.confusion[v, s], ev.confusion[f, s], ev.confusion[none, s] = 20, 5, 3, 2
    ev.confusion[q, s] = 7
    ev.confusion[n, n] = 1000
    e = ev.ec57()
    assert e["veb"] == {"se": pytest.approx(80 / 105), "ppv": pytest.approx(80 / 90)}
    assert e["sveb"] == {"se": pytest.approx(60 / 103), "ppv": pytest.approx(60 / 90)}
    m = ev.class_metrics()  # the per-class figures count every beat called V (S) against it
    assert m["V"]["ppv"] == pytest.approx(80 / 122) and m["S"]["ppv"] == pytest.approx(60 / 97)
    assert ev.as_json()["ec57"] == e


def _record(v_right: int, v_as_n: int, n_as_v: int, s_right: int, s_as_n: int) -> np.ndarray:
    cm = np.zeros((6, 6), np.int64)
    n, s, v = 0, 1, 2
    cm[n, n], cm[v, v], cm[v, n], cm[n, v] = 1000, v_right, v_as_n, n_as_v
    cm[s, s], cm[s, n] = s_right, s_as_n
    return cm


def test_patient_intervals_resample_the_records_and_sum_their_confusions() -> None:
    alike = {f"r{i}": _record(90, 10, 10, 40, 10) for i in range(10)}
    iv = patient_intervals(alike)
    assert iv is not None and iv["records"] == 10 and iv["level"] == 0.95
    # patients all alike: every resample gives the point figures, so the interval is a point
    assert iv["veb"]["se"] == [0.9, 0.9] and iv["veb"]["ppv"] == [0.9, 0.9]
    assert iv["sveb"]["se"] == [0.8, 0.8]
    # one patient holds most of the S beats and misses them: the S interval spans wide and holds
    # the pooled figure, while V (alike in every patient) stays a point
    mixed = {**alike, "r0": _record(90, 10, 10, 100, 900)}
    ev = BeatEvaluation(confusion=sum(mixed.values()), per_record=mixed)  # type: ignore[arg-type]
    iv = patient_intervals(mixed)
    assert iv is not None
    point = ev.ec57()["sveb"]["se"]
    low, high = iv["sveb"]["se"]
    assert low < point < high and high - low > 0.3 and high == 0.8
    assert iv["veb"]["se"] == [0.9, 0.9]
    assert patient_intervals(mixed) == iv  # fixed seed
    wide, narrow = patient_intervals(mixed, level=0.99), patient_intervals(mixed, level=0.5)
    assert wide is not None and narrow is not None
    assert wide["sveb"]["se"][0] <= low <= narrow["sveb"]["se"][0] <= narrow["sveb"]["se"][1] <= high
    # too few patients for a bootstrap to say anything about patients: no interval
    assert patient_intervals({k: alike[k] for k in list(alike)[:9]}) is None
    assert ev.as_json()["ec57_intervals"] == iv
    assert ("95 % intervals over the 10 patients (records resampled 2000 times): VEB Se 0.900-0.900"
            in format_table(ev))


def test_record_by_record_and_average_statistics_as_sumstats_computes_them() -> None:
    v, f = 2, 3
    big = _record(90, 10, 10, 900, 100)  # most of the S beats, well found
    small = _record(1, 1, 0, 0, 10)  # ten S beats, all missed; one V beat found of two
    no_v = _record(0, 0, 3, 5, 5)  # no V beats, three N beats called V
    no_v[f, v] = 4  # fusion called V: not a false VEB
    quiet = _record(0, 0, 0, 0, 0)  # neither class, nothing called either
    per = {"big": big, "small": small, "no_v": no_v, "quiet": quiet}
    figs = record_figures(per)
    assert figs["big"]["veb"] == {"se": pytest.approx(0.9), "ppv": pytest.approx(0.9)}
    assert figs["small"]["sveb"] == {"se": 0.0, "ppv": None}  # S beats, none called S
    assert figs["no_v"]["veb"] == {"se": None, "ppv": 0.0}  # only false calls; F called V left out
    assert figs["quiet"]["veb"] == figs["quiet"]["sveb"] == {"se": None, "ppv": None}
    avg = average_figures(figs)
    # each record alike over those with a figure: one well-found record does not carry the mean
    assert avg["sveb"]["se"] == pytest.approx((0.9 + 0.0 + 0.5) / 3) and avg["sveb"]["se_records"] == 3
    assert avg["veb"]["ppv"] == pytest.approx((0.9 + 1.0 + 0.0) / 3) and avg["veb"]["ppv_records"] == 3
    assert avg["veb"]["se"] == pytest.approx((0.9 + 0.5) / 2) and avg["veb"]["se_records"] == 2
    assert average_figures({"quiet": figs["quiet"]})["veb"] == {"se": None, "se_records": 0, "ppv": None,
                                                               "ppv_records": 0}
    ev = BeatEvaluation(confusion=sum(per.values()), per_record=per)  # type: ignore[arg-type]
    gross = ev.ec57()["sveb"]["se"]
    assert gross == pytest.approx(905 / 1020) and gross > avg["sveb"]["se"] + 0.3
    out = ev.as_json()
    assert out["ec57_records"] == figs and out["ec57_average"] == avg
    json.dumps(out)  # None as null, floats plain
    table = format_table(ev).splitlines()
    assert "small    1012     10      2   0.500   1.000   0.000       -" in table
    assert "quiet    1000      0      0       -       -       -       -" in table
    assert any(line.startswith("average") and line.rstrip().endswith("records: 2 / 3 / 3 / 2)")
               for line in table)


def test_the_default_cards_intervals_are_those_of_its_per_record_confusions() -> None:
    card = json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.json").read_text())
    iv = card["ds2"]["ec57_intervals"]
    assert iv == patient_intervals(card["ds2"]["records"]) and iv["records"] == len(DS2)
    for name in ("veb", "sveb"):
        for k in ("se", "ppv"):
            assert iv[name][k][0] <= card["ds2"]["ec57"][name][k] <= iv[name][k][1]
    assert "95 % intervals over the 22 patients" in (MODELS_DIR / f"{DEFAULT_MODEL}.md").read_text()
    # and its average statistics those of the same confusions, record by record
    by_record = record_figures(card["ds2"]["records"])
    assert card["ds2"]["ec57_records"] == by_record
    avg = card["ds2"]["ec57_average"]
    assert avg == average_figures(by_record) and avg["sveb"]["se_records"] <= len(DS2)
    sveb_se = f"SVEB Se {100 * avg['sveb']['se']:.1f} ({avg['sveb']['se_records']})"
    assert sveb_se in (MODELS_DIR / f"{DEFAULT_MODEL}.md").read_text()


def test_scoring_from_a_start_time_leaves_earlier_beats_out_but_classifies_them() -> None:
    # reference beats at 1, 2, 3, 4 s (N, V, N, V) at 100 Hz; detections at 1.05 (matched), 2.5
    # (extra), 3.02 (matched), 4.3 (extra); the reference beat at 2 s and the one at 4 s are missed
    from detector.core.beats import BeatFeatures
    from detector.core.classifier import AAMI_CLASSES, Classification
    from detector.eval_beats import PreparedRecord, score_record

    idx = np.array([105, 250, 302, 430])
    feats = BeatFeatures(idx, np.zeros((4, 2, 90), np.float32), np.zeros((4, 12), np.float32))
    prep = PreparedRecord("x", feats, np.array([0, 2, 0, 2]), np.array([0, -1, 2, -1]),
                          np.array([100, 200, 300, 400]), 100.0)
    seen = []

    class Fixed:
        def classify(self, batch: BeatFeatures) -> Classification:
            seen.append(len(batch))
            return Classification(AAMI_CLASSES, np.array([0, 2, 2, 2]), np.zeros((len(batch), 5), np.float32))

    whole, late = BeatEvaluation(), BeatEvaluation()
    score_record(prep, Fixed(), whole)  # type: ignore[arg-type]
    score_record(prep, Fixed(), late, start_s=2.6)  # type: ignore[arg-type]
    assert seen == [4, 4]  # every beat classified either way
    assert whole.confusion[0, 0] == 1 and whole.confusion[0, 2] == 1  # N right, N called V
    assert whole.confusion[5, 2] == 2 and whole.confusion[2, 5] == 2  # 2 extra, 2 V missed
    assert late.confusion.sum() == 3  # from 2.6 s: N called V, the extra at 4.3 s, V at 4 s missed
    assert late.confusion[0, 2] == late.confusion[5, 2] == late.confusion[2, 5] == 1


@pytest.mark.data
def test_default_model_on_ds2_records(mitdb_dir: Path) -> None:
    # Three DS2 patients with many V beats (200, 221, 233); never seen in training or selection.
    clf = OnnxClassifier.load(DEFAULT_MODEL)
    ev = evaluate(mitdb_dir, ["200", "221", "233"], clf)
    m = ev.class_metrics()
    assert m["N"]["se"] > 0.93 and m["N"]["ppv"] > 0.95, m["N"]
    # V +P 0.98 -> 0.88 here with the S rule's models (233: N beats called V), DS2 S +P 18 -> 53 %
    assert m["V"]["se"] > 0.90 and m["V"]["ppv"] > 0.85, m["V"]
    assert ev.accuracy() > 0.93


@pytest.mark.data
def test_cli_reproduces_the_model_card(mitdb_dir: Path, tmp_path: Path) -> None:
    card = json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.json").read_text())
    out = tmp_path / "beats.json"
    assert cli.main(["eval", "beats", "--data-dir", str(mitdb_dir), "--records", "232",
                     "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["confusion"] == card["ds2"]["records"]["232"]


@pytest.mark.data
def test_a_noise_stress_run_scores_the_records_with_held_out_noise(mitdb_dir: Path, data_root: Path) -> None:
    noise = load_noise(data_root / "nstdb")
    clean = prepare_record(mitdb_dir, "100", 1)
    noisy = prepare_record(mitdb_dir, "100", 1, noise)
    assert len(noisy.features) != len(clean.features) or not np.allclose(
        noisy.features.beats, clean.features.beats)
    # the detector still finds nearly every beat through 12 and 6 dB noise
    assert np.count_nonzero(noisy.ref_of_test >= 0) >= 0.97 * len(noisy.ref_labels)


def test_absent_or_unreadable_records_are_one_line_errors(
    mitdb_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["eval", "beats", "--data-dir", str(tmp_path), "--records", "100,232"])
    err = capsys.readouterr().err
    assert code == 2 and "records 100, 232 (header .hea with reference annotations .atr) not found" in err
    assert "wfdb.dl_database('mitdb'" in err and "Traceback" not in err
    for suffix in (".hea", ".atr"):  # the signal file (.dat) left behind
        (tmp_path / f"100{suffix}").write_bytes((mitdb_dir / f"100{suffix}").read_bytes())
    code = cli.main(["eval", "beats", "--data-dir", str(tmp_path), "--records", "100"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read record '100'" in err and "100.dat" in err and "Traceback" not in err


def test_a_noise_stress_run_without_noise_records_says_so(
    mitdb_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["eval", "beats", "--data-dir", str(mitdb_dir), "--records", "100",
                     "--noise-dir", str(tmp_path)])
    assert code == 2
    assert "em, ma not found" in capsys.readouterr().err


@pytest.mark.data
def test_cli_scores_from_the_ec57_learning_period_on(mitdb_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    card = json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.json").read_text())
    out = tmp_path / "beats.json"
    assert cli.main(["eval", "beats", "--data-dir", str(mitdb_dir), "--records", "100", "--score-from", "300",
                     "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    whole = np.array(card["ds2"]["records"]["100"])
    assert got["start_s"] == 300 and 0.75 * whole.sum() < np.array(got["confusion"]).sum() < 0.9 * whole.sum()
    args = ["eval", "beats", "--data-dir", str(mitdb_dir), "--records", "100", "--score-from", "-1"]
    assert cli.main(args) == 2
    assert "--score-from -1.0" in capsys.readouterr().err


@pytest.mark.data
def test_cli_reproduces_the_model_cards_noise_stress_figures(
    mitdb_dir: Path, data_root: Path, tmp_path: Path
) -> None:
    card = json.loads((MODELS_DIR / f"{DEFAULT_MODEL}.json").read_text())
    out = tmp_path / "beats.json"
    assert cli.main(["eval", "beats", "--data-dir", str(mitdb_dir), "--records", "105", "--noise-dir",
                     str(data_root / "nstdb"), "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["confusion"] == card["ds2_noise_stress"]["records"]["105"]
    assert "DS2 under held-out noise" in (MODELS_DIR / f"{DEFAULT_MODEL}.md").read_text()
