"""The session-25 study of a causal beat-family vote (detector.training.family_study)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES, WINDOW_LEN, BeatFeatures
from detector.training.cv import CVPredictions, folds_for
from detector.training.data import BeatSet
from detector.training.family_study import assign_families, cv_families, family_vote, main, nested_estimate
from detector.training.variant_study import nested_variant_estimate
from tests.unit.detector.test_train_selection_study import _predictions

T = np.arange(WINDOW_LEN, dtype=np.float64)


def _shape(kind: int, jitter: int = 0) -> np.ndarray:
    """Three beat shapes unlike each other: a narrow peak, a wide negative one, a biphasic wave."""
    t = T - 36 - jitter
    if kind == 0:
        return np.exp(-(t / 3.0) ** 2)
    if kind == 1:
        return -np.exp(-(t / 10.0) ** 2)
    return np.sin(t / 6.0) * np.exp(-(t / 12.0) ** 2)


def test_beats_of_one_shape_share_a_family_despite_jitter_and_noise() -> None:
    rng = np.random.default_rng(0)
    kinds = rng.integers(0, 2, 300)
    windows = np.stack([_shape(k, int(rng.integers(-2, 3))) + rng.normal(0, 0.02, WINDOW_LEN) for k in kinds])
    fams = assign_families(windows, 0.9)
    assert fams[0] == 0 and set(np.unique(fams)) == {0, 1}
    assert all(len(np.unique(fams[kinds == k])) == 1 for k in (0, 1))
    # a threshold the noise cannot reach splits them into many families
    assert len(np.unique(assign_families(windows, 0.99999))) > 10


def test_a_full_set_of_families_gives_up_the_one_seen_least_recently() -> None:
    windows = np.stack([_shape(k) for k in (0, 1, 0, 2, 1, 0)])
    # two slots: shape 2 replaces shape 1's family (seen before shape 0's last beat); shape 1 then
    # replaces shape 0's (seen before shape 2's), and shape 0 comes back as a new family again
    assert assign_families(windows, 0.95, max_families=2).tolist() == [0, 1, 0, 2, 3, 4]
    assert assign_families(windows, 0.95).tolist() == [0, 1, 0, 2, 1, 0]
    with pytest.raises(ValueError, match="too short"):
        assign_families(np.zeros((3, 5)), 0.9, shift=2)


def test_the_vote_blends_each_beat_with_its_familys_earlier_beats_only() -> None:
    probs = np.array([[1, 0], [0, 1], [1, 0], [0.5, 0.5], [1, 0], [0, 1], [0, 1]], np.float32)
    fams = np.array([7, 3, 7, 7, 3, 7, 3])
    out = family_vote(probs, fams, 0.5, min_members=3)
    # family 7: rows 0, 2, 3, 5; row 5 is the first with three earlier members (mean 2.5/3, 0.5/3)
    np.testing.assert_allclose(out[5], 0.5 * probs[5] + 0.5 * np.array([2.5 / 3, 0.5 / 3]), rtol=1e-6)
    unchanged = [0, 1, 2, 3, 4, 6]  # family 3 has at most two earlier members
    np.testing.assert_array_equal(out[unchanged], probs[unchanged])
    np.testing.assert_allclose(family_vote(probs, fams, 1.0, min_members=1)[3], [1.0, 0.0])
    np.testing.assert_array_equal(family_vote(probs, fams, 0.0, min_members=1), probs)


def test_the_v_only_vote_moves_v_and_keeps_the_other_classes_ratios() -> None:
    probs = np.array([[0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]], np.float32)
    out = family_vote(probs, np.zeros(4, np.int64), 0.5, min_members=3, only=2)
    np.testing.assert_array_equal(out[:3], probs[:3])
    np.testing.assert_allclose(out[3], [0.6 * 0.5 / 0.8, 0.2 * 0.5 / 0.8, 0.5], rtol=1e-6)  # V 0.2 -> 0.5
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


def _beats(records: list[str], n: int, rng: np.random.Generator) -> BeatSet:
    """``n`` beats per record, two shapes, labels 0 and 2 by shape, a few detections unmatched (-1)."""
    kinds = rng.integers(0, 2, n * len(records))
    windows = np.stack([_shape(k) + rng.normal(0, 0.02, WINDOW_LEN) for k in kinds]).astype(np.float32)
    label = np.where(rng.uniform(size=len(kinds)) < 0.1, -1, 2 * kinds)
    feats = BeatFeatures(np.arange(len(kinds)), np.stack([windows, windows], axis=1),
                         rng.uniform(0.5, 1.5, (len(kinds), len(RR_FEATURES))).astype(np.float32))
    return BeatSet(feats, label, np.repeat(records, n))


def test_the_cv_rows_are_found_in_the_run_s_order_and_a_different_run_is_refused() -> None:
    rng = np.random.default_rng(1)
    recs = ["a", "b", "c", "d", "e"]
    clean, noisy = _beats(recs, 40, rng), _beats(recs, 40, rng)
    rows, fold_of, is_noisy = [], [], []
    for i, fold in enumerate(folds_for(recs, 4)):  # cross_validate's order: clean, then noisy, per fold
        for j, beats in enumerate((clean, noisy)):
            take = np.isin(beats.record, fold) & (beats.label >= 0)
            rows.append(beats.take(take))
            fold_of.append(np.full(int(take.sum()), i))
            is_noisy.append(np.full(int(take.sum()), j == 1))
    held = BeatSet.concat(rows)
    probs = np.eye(5, dtype=np.float32)[held.label]
    cv = CVPredictions([probs], held.label, held.features.rr, held.record, np.concatenate(fold_of),
                       np.concatenate(is_noisy))
    fams = cv_families(cv, clean, noisy, (0.9,))[0.9]
    assert len(fams) == len(cv.label)
    for copy in (False, True):  # two families per patient and copy, each holding one shape (label)
        for r in recs:
            sel = (cv.record == r) & (cv.noisy == copy)
            assert len(np.unique(fams[sel])) == 2
            assert all(len(np.unique(cv.label[sel][fams[sel] == f])) == 1 for f in np.unique(fams[sel]))
    assert len(np.unique(fams)) == 2 * 2 * len(recs)  # unique across patients and copies
    with pytest.raises(ValueError, match="not the ones the CV held out"):
        cv_families(cv, clean, None, (0.9,))


def test_the_nested_choice_takes_a_vote_that_restores_corrupted_outputs() -> None:
    cv = _predictions(1600)
    rng = np.random.default_rng(2)
    patients = np.arange(len(cv.label)) % 8
    families = cv.label * 8 + patients  # a family per class and patient, as clean shapes would give
    bad = rng.uniform(size=len(cv.label)) < 0.3  # a third of the outputs replaced by noise
    epochs = [p.copy() for p in cv.per_epoch]
    noise = rng.dirichlet(np.ones(5), int(bad.sum())).astype(np.float32)
    for p in epochs:
        p[bad] = noise
    corrupted = CVPredictions(epochs, cv.label, cv.rr, cv.record, cv.fold, cv.noisy)
    chosen = nested_estimate(corrupted, {0.95: families})
    plain = nested_variant_estimate([((0.0, 0.0), corrupted)])
    assert all(k != (0.0, 0.0) for k in chosen.keys)
    assert chosen.score > plain.score + 0.05


def test_the_command_needs_the_data_the_run_was_trained_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ECGMON_DATA_DIR", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["missing_cv.npz"])
    assert exc.value.code == 2 and "--data-dir" in capsys.readouterr().err


def test_missing_data_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECGMON_CACHE_DIR", str(tmp_path / "cache"))
    cv = _predictions(40)
    cv.save(tmp_path / "cv.npz")
    for data_dir, says in ((tmp_path / "nowhere", "is not a folder"), (tmp_path, "")):
        with pytest.raises(SystemExit) as exc:
            main(["--data-dir", str(data_dir), str(tmp_path / "cv.npz")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and says in err and "Traceback" not in err
