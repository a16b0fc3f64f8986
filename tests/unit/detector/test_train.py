"""A tiny real training run (needs the ``train`` extra: torch, onnx); fails loudly without it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

try:
    import torch
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch: pip install -e '.[dev,train]'", pytrace=False)

from detector.core.beats import RR_FEATURES, BeatFeatures
from detector.evaluation import ec57_counting
from detector.onnx_classifier import OnnxClassifier
from detector.training.cv import cross_validate as cv_patients
from detector.training.cv import folds_for
from detector.training.data import CV_FOLDS, DS1, BeatSet, load_beats
from detector.training.export import export_onnx
from detector.training.pipeline import TrainOptions, run_training
from detector.training.rule_study import main as rule_study
from detector.training.selection_study import main as selection_study
from detector.training.train import (
    ASSIST_OFF,
    ASSIST_STUDY,
    IRREGULARITY_FEATURE,
    PAUSE_FEATURE,
    PAUSE_OFF,
    PREMATURITY_FEATURE,
    RULE_V_OFFSET,
    VETO_OFF,
    VETO_STUDY,
    SRule,
    SRuleParams,
    TrainConfig,
    _grid_scores,
    apply_s_rule,
    choose_s_rule,
    confusion,
    predict,
    selection_score,
    selection_score_of,
    train_classifier,
    train_ensemble,
)
from detector.training.ucr import cross_validate


def test_tiny_training_run_exports_loadable_onnx(mitdb_dir: Path, tmp_path: Path) -> None:
    opts = TrainOptions(
        data_dir=mitdb_dir, out_dir=tmp_path, families=["cnn", "autoencoder"], epochs=1,
        records=["119", "209", "220"], folds=3, evaluate_ds2=False, max_train_beats=1500,
        cv_predictions_dir=tmp_path,
    )
    rows = run_training(opts, lambda _: None)
    assert [r["model"] for r in rows] == ["cnn", "autoencoder"]
    clf = OnnxClassifier(tmp_path / "cnn.onnx")
    feats, _ = load_beats(mitdb_dir, ["220"], n_leads=1)
    res = clf.classify(feats.features)
    assert res.probabilities.shape == (len(feats), 5)
    assert float(np.mean(res.class_index == np.maximum(feats.label, 0))) > 0.5
    for name in ("cnn", "autoencoder"):
        assert (tmp_path / f"{name}.json").is_file() and (tmp_path / f"{name}.md").is_file()
    card = json.loads((tmp_path / "cnn.json").read_text())
    assert sorted(r for f in card["cv"]["folds"] for r in f) == ["119", "209", "220"]
    assert card["epochs_trained"] == card["cv"]["best_epoch"] == 1
    assert card["reproduce"]["train"].endswith("--families cnn --epochs 1 --no-noise")
    assert "CPU (" in card["training_machine"] and "model unknown" not in card["training_machine"]
    nested = card["cv"]["nested_rule"]  # the rule chosen without each fold, the folds pooled
    assert nested["epoch"] == 1 and len(nested["rules_without_each_fold"]) == 3
    assert "applied to each fold in turn" in (tmp_path / "cnn.md").read_text()
    whole = card["cv"]["nested_selection"]  # epoch and rule chosen without each fold
    assert whole["epochs_without_each_fold"] == [1, 1, 1] and 0.0 < whole["score"] <= 1.0
    assert "With the epoch chosen that way too" in (tmp_path / "cnn.md").read_text()
    assert "nested_rule" not in json.loads((tmp_path / "autoencoder.json").read_text())["cv"]
    # a card made without the estimates gets them from the saved CV outputs, only if they are its own
    card_path, saved = tmp_path / "cnn.json", tmp_path / "cnn_cv.npz"
    del card["cv"]["nested_rule"], card["cv"]["nested_selection"]
    card_path.write_text(json.dumps(card))
    assert rule_study([str(saved), "--card", str(card_path)]) == 0
    assert selection_study([str(saved), "--card", str(card_path)]) == 0
    back = json.loads(card_path.read_text())["cv"]
    assert back["nested_rule"] == nested and back["nested_selection"] == whole
    card["cv"]["score"] += 0.01
    card_path.write_text(json.dumps(card))
    for study in (rule_study, selection_study):
        with pytest.raises(SystemExit, match="not this model's"):
            study([str(saved), "--card", str(card_path)])


def test_cv_folds_cover_ds1_once() -> None:
    held = [r for f in CV_FOLDS for r in f]
    assert sorted(held) == sorted(DS1) and len(set(held)) == len(held)
    assert folds_for(DS1) == [list(f) for f in CV_FOLDS]
    assert folds_for(["119", "209", "220"], 3) == [["119"], ["209"], ["220"]]


def test_cross_validation_pools_every_held_out_beat(mitdb_dir: Path) -> None:
    beats, _ = load_beats(mitdb_dir, ["119", "209", "220"], n_leads=1)
    cfg = TrainConfig(family="mlp", epochs=2, max_train_beats=600)
    cv = cv_patients(beats, cfg, lambda _: None, folds_for(["119", "209", "220"], 3))
    assert cv.best_epoch in (1, 2) and len(cv.score_per_epoch) == 2 and len(cv.fold_metrics) == 3
    assert cv.score == max(cv.score_per_epoch) and len(cv.bias) == 5
    assert cv.nested is not None and cv.nested.epoch == cv.best_epoch and len(cv.nested.fold_rules) == 3
    assert cv.predictions is not None and len(cv.predictions.label) == len(cv.predictions.fold)
    assert 0.0 < cv.nested.score <= 1.0


def test_noisy_beats_are_drawn_with_their_weight(mitdb_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import detector.training.train as train_mod

    beats, _ = load_beats(mitdb_dir, ["119", "220"], n_leads=1)
    half = BeatSet.concat([beats, replace(beats, noisy=np.ones(len(beats), bool))])  # as if a noisy copy
    assert half.noisy is not None and half.noisy.sum() == len(beats) and not half.noisy[: len(beats)].any()
    assert half.take(half.label >= 0).noisy_mask().sum() == np.count_nonzero(beats.label >= 0)
    draws: list[np.ndarray] = []
    real = train_mod._epoch_indices

    def spy(y: np.ndarray, cfg: TrainConfig, rng: np.random.Generator,
            draw_p: np.ndarray | None) -> np.ndarray:
        assert draw_p is not None
        draws.append(draw_p)
        return real(y, cfg, rng, draw_p)

    monkeypatch.setattr(train_mod, "_epoch_indices", spy)
    cfg = TrainConfig(family="mlp", epochs=1, max_train_beats=300)
    for w in (1.0, 0.5):
        train_classifier(half, replace(cfg, noisy_weight=w), lambda _: None)
    scored = half.take(half.label >= 0).noisy_mask()
    for p, share in zip(draws, (0.5, 1 / 3), strict=True):  # each noisy beat twins a clean one
        assert p[scored].sum() == pytest.approx(share, rel=1e-4)
        assert np.allclose(p[scored] / p[~scored], 1.0 if share == 0.5 else 0.5, rtol=1e-4)
    with pytest.raises(ValueError, match="balance='resample'"):
        train_classifier(half, replace(cfg, noisy_weight=0.5, balance="weights"), lambda _: None)


def test_absent_records_are_named_before_training_starts(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    code = main(["train", "--data-dir", str(tmp_path), "--no-noise", "--no-ds2"])
    err = capsys.readouterr().err
    assert code == 2 and f"records {', '.join(DS1[:12])} and {len(DS1) - 12} more (header .hea" in err
    assert f"not found in {tmp_path}" in err and "Traceback" not in err


def test_an_unknown_family_is_named_before_any_beat_is_read(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    # tmp_path holds no record: a family check after loading the beats would report those
    code = main(["train", "--data-dir", str(tmp_path), "--no-noise", "--families", "cnn,cnnn"])
    err = capsys.readouterr().err
    assert code == 2 and "--families: unknown 'cnnn'; choose from cnn,resnet" in err
    assert "Traceback" not in err


def test_noisy_weight_needs_noisy_beats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    code = main(["train", "--data-dir", str(tmp_path), "--no-noise", "--noisy-weight", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "--noisy-weight with --no-noise" in err and "Traceback" not in err


def test_training_is_reproducible(mitdb_dir: Path) -> None:
    beats, _ = load_beats(mitdb_dir, ["119", "220"], n_leads=1)
    cfg = TrainConfig(family="mlp", epochs=1, max_train_beats=600)
    a = train_classifier(beats, cfg, lambda _: None)
    b = train_classifier(beats, cfg, lambda _: None)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_an_ensemble_averages_its_seeds_in_the_cv_and_in_the_exported_model(
    mitdb_dir: Path, tmp_path: Path
) -> None:
    beats, _ = load_beats(mitdb_dir, ["119", "220"], n_leads=1)
    train, held = beats.take(beats.record == "119"), beats.take(beats.record == "220")
    cfg = TrainConfig(family="mlp", epochs=2, max_train_beats=600, ensemble=2)
    ens = train_ensemble(train, cfg, lambda _: None, heldout=held)
    singles = [train_classifier(train, replace(cfg, seed=s, ensemble=1), lambda _: None, heldout=held)
               for s in (0, 1)]
    assert not np.allclose(singles[0].heldout[-1], singles[1].heldout[-1])  # the seeds differ
    for epoch in range(2):
        want = (singles[0].heldout[epoch] + singles[1].heldout[epoch]) / 2
        np.testing.assert_allclose(ens.heldout[epoch], want, atol=1e-6)
    assert ens.n_params == 2 * singles[0].n_params
    # the exported graph gives the averaged probabilities of the final epoch's members
    export_onnx(ens.model, tmp_path / "ens.onnx", 1, "mlp")
    res = OnnxClassifier(tmp_path / "ens.onnx").classify(held.features)
    np.testing.assert_allclose(res.probabilities, ens.heldout[-1], atol=1e-5)
    np.testing.assert_allclose(
        predict(ens.model, held.features.beats, held.features.rr), ens.heldout[-1], atol=1e-6)


def test_ucr_cross_validation_runs(data_root: Path) -> None:
    result = cross_validate(data_root / "ecg5000" / "ECG5000_TRAIN.txt", folds=2, epochs=1)
    assert len(result["fold_accuracy"]) == 2 and 0.3 < result["mean_accuracy"] <= 1.0


def test_empty_features_concat() -> None:
    assert len(BeatFeatures.concat([], 1)) == 0


def _rule_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, 5)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rr = rng.uniform(0.5, 1.3, (n, len(RR_FEATURES))).astype(np.float32)
    rr[:, RR_FEATURES.index(IRREGULARITY_FEATURE)] = rng.uniform(0.0, 0.3, n)
    return probs.astype(np.float32), rr


def test_s_rule_module_gives_the_classes_of_the_numpy_rule() -> None:
    """The ONNX-exported SRule and the CV's numpy rule must decide alike (CV figures = model)."""
    probs, rr = _rule_inputs(4000)
    params = SRuleParams(prematurity_max=0.85, irregularity_max=0.15, v_offset=0.5,
                         assist_prematurity_max=0.95, assist_s_share_min=0.6, veto_s_share_max=0.1,
                         pause_prematurity_max=0.92, pause_ratio_min=1.2)

    class Fixed(torch.nn.Module):
        def forward(self, beat: torch.Tensor, rr_: torch.Tensor) -> torch.Tensor:
            return torch.log(beat[:, 0, :5])  # the given probabilities as logits

    beat = np.zeros((len(probs), 1, 5), np.float32)
    beat[:, 0, :] = probs
    module = SRule(Fixed(), params, RR_FEATURES).eval()
    with torch.no_grad():
        out = torch.softmax(module(torch.from_numpy(beat), torch.from_numpy(rr)), dim=1).numpy()
    want = apply_s_rule(probs, rr, params, RR_FEATURES)
    assert np.array_equal(out.argmax(axis=1), want)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    prem = rr[:, RR_FEATURES.index(PREMATURITY_FEATURE)]
    irr = rr[:, RR_FEATURES.index(IRREGULARITY_FEATURE)]
    share = probs[:, 1] / (probs[:, 0] + probs[:, 1])
    ratio = rr[:, RR_FEATURES.index(PAUSE_FEATURE)]
    fires = (((prem < 0.85) & (share >= 0.1)) | ((prem < 0.95) & (share > 0.6))
             | ((prem < 0.92) & (ratio >= 1.2))) & (irr < 0.15)
    assert np.all(fires[want == 1])  # S only where premature and regular
    assert not np.any((want == 0) & fires)  # and N never there
    assisted = (want == 1) & (prem >= 0.85)  # mildly premature: S by the network's share or a pause
    paused = (prem < 0.92) & (ratio >= 1.2)  # mildly premature, then a pause: S whatever the network says
    assert assisted.any() and np.all((share[assisted] > 0.6) | paused[assisted])
    assert np.any(assisted & (share <= 0.6)) and np.any(assisted & ~paused)  # each zone fired alone
    vetoed = (want == 0) & (prem < 0.85) & (irr < 0.15) & (share < 0.1)  # the network is sure of N
    assert vetoed.any() and not np.any((want == 1) & (share < 0.1) & ~paused)
    assert 0 < int(np.sum(want == 1)) < len(want)


def test_s_rule_choice_finds_the_thresholds_that_made_the_labels() -> None:
    probs, rr = _rule_inputs(6000, seed=1)
    truth = SRuleParams(prematurity_max=0.84, irregularity_max=0.1, v_offset=0.0)
    label = apply_s_rule(probs, rr, truth, RR_FEATURES)
    chosen, metrics = choose_s_rule(probs, rr, label, RR_FEATURES, assist_grid=ASSIST_STUDY,
                                    veto_grid=VETO_STUDY)
    assert (chosen.prematurity_max, chosen.irregularity_max) == (0.84, 0.1)
    assert (chosen.assist_prematurity_max, chosen.assist_s_share_min) == ASSIST_OFF  # not needed: off
    assert chosen.veto_s_share_max == VETO_OFF
    assert (chosen.pause_prematurity_max, chosen.pause_ratio_min) == PAUSE_OFF  # training's grid: not needed
    assert metrics["S"]["se"] == metrics["S"]["ppv"] == 1.0
    truth = SRuleParams(prematurity_max=0.8, irregularity_max=0.15, v_offset=0.0,
                        assist_prematurity_max=0.92, assist_s_share_min=0.5)
    label = apply_s_rule(probs, rr, truth, RR_FEATURES)
    chosen, metrics = choose_s_rule(probs, rr, label, RR_FEATURES, assist_grid=ASSIST_STUDY)
    assert chosen == truth and metrics["S"]["se"] == metrics["S"]["ppv"] == 1.0
    truth = SRuleParams(prematurity_max=0.82, irregularity_max=0.1, v_offset=0.0, veto_s_share_max=0.2)
    label = apply_s_rule(probs, rr, truth, RR_FEATURES)
    chosen, metrics = choose_s_rule(probs, rr, label, RR_FEATURES, veto_grid=VETO_STUDY)
    assert chosen == truth and metrics["S"]["se"] == metrics["S"]["ppv"] == 1.0
    truth = SRuleParams(prematurity_max=0.8, irregularity_max=0.15, v_offset=0.0,
                        pause_prematurity_max=0.88, pause_ratio_min=1.2)
    label = apply_s_rule(probs, rr, truth, RR_FEATURES)
    chosen, metrics = choose_s_rule(probs, rr, label, RR_FEATURES)  # the pause zone: in training's grid
    assert chosen == truth and metrics["S"]["se"] == metrics["S"]["ppv"] == 1.0
    off, _ = choose_s_rule(probs, rr, label, RR_FEATURES, pause_grid=(PAUSE_OFF,))
    assert (off.pause_prematurity_max, off.pause_ratio_min) == PAUSE_OFF


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)])
def test_the_grid_search_scores_each_point_as_the_selection_score_does(
    weights: tuple[float, float, float],
) -> None:
    rng = np.random.default_rng(3)
    label, base = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    movable = (base == 0) & (rng.uniform(size=500) < 0.5)
    fires = rng.uniform(size=(40, int(movable.sum()))) < rng.uniform(size=(40, 1))
    fires[0], fires[1] = False, True  # no beat to S, every beat to S
    got = _grid_scores(confusion(label[~movable], base[~movable]), fires, label[movable], weights)
    for row, f in zip(got, fires, strict=True):
        pred = base.copy()
        pred[np.flatnonzero(movable)[f]] = 1
        assert row == selection_score_of(label, pred, weights)  # the same floats: ties break alike


def test_the_selection_score_weighs_the_class_f1_as_told() -> None:
    m = {"N": {"f1": 0.99}, "S": {"f1": 0.6}, "V": {"f1": 0.9}}
    assert selection_score(m) == (0.99 + 0.6 + 0.9) / 3.0  # equal weights: the plain mean, same float
    assert selection_score(m, (1.0, 1.0, 2.0)) == pytest.approx((0.99 + 0.6 + 1.8) / 4.0)
    assert selection_score(m, (0.0, 0.0, 1.0)) == pytest.approx(0.9)


def test_a_v_only_score_chooses_the_v_offset_with_the_best_v_f1() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    label = rng.choice(5, n, p=[0.7, 0.1, 0.15, 0.03, 0.02])
    logits = rng.normal(0.0, 1.5, (n, 5))
    logits[np.arange(n), label] += 1.2  # an informative but imperfect network
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    rr = rng.uniform(0.5, 1.3, (n, len(RR_FEATURES))).astype(np.float32)
    chosen, _ = choose_s_rule(probs, rr, label, RR_FEATURES, weights=(0.0, 0.0, 1.0))

    def v_f1(offset: float) -> float:
        pred = apply_s_rule(probs, rr, replace(chosen, v_offset=offset), RR_FEATURES)
        return selection_score_of(label, pred, (0.0, 0.0, 1.0))

    assert v_f1(chosen.v_offset) == max(v_f1(v) for v in RULE_V_OFFSET)


def test_the_selection_score_counts_false_positives_as_ec57_does() -> None:
    # 10 N, 10 S, 10 V right; then F beats called V and Q beats called S or V: no false positive
    # for bxb, so no loss of score; N beats called V: a loss
    right = np.repeat([0, 1, 2], 10)
    y = np.concatenate([right, [3, 3, 4, 4]])
    assert selection_score_of(y, np.concatenate([right, [2, 2, 1, 2]])) == pytest.approx(1.0)
    assert selection_score_of(np.concatenate([right, [0, 0]]), np.concatenate([right, [2, 2]])) < 1.0
    cm = ec57_counting(confusion(y, np.concatenate([right, [2, 2, 1, 2]])))
    assert cm[3, 2] == cm[4, 1] == cm[4, 2] == 0 and cm.sum() == 30


def test_a_rescore_records_its_look_at_ds2_in_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import detector.training.pipeline as pipeline

    figures = {"classes": {"V": {"se": 0.9, "ppv": 0.7, "f1": 0.79}}, "accuracy": 0.93, "confusion": [[9, 1]]}
    card = {"name": "cnn", "family": "cnn", "n_params": 1, "onnx_bytes": 1024, "cv": {"score": 0.8},
            "us_per_beat_batch64_1thread": 1.0, "training_seconds": 1.0, "ds2": figures,
            "ds2_looks": "once."}
    (tmp_path / "cnn.json").write_text(json.dumps(card))
    # the first rescore adds a statistic derived from the same confusion: the same figures
    results = iter([{**figures, "ec57": {"veb": {"se": 0.9, "ppv": 0.8}}},
                    {**figures, "accuracy": 0.5, "confusion": [[5, 5]]}])

    class _Eval:
        def __init__(self) -> None:
            self.figures = next(results)

        def as_json(self) -> dict[str, object]:
            return self.figures

    monkeypatch.setattr(pipeline, "OnnxClassifier", lambda path: None)
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: _Eval())
    monkeypatch.setattr(pipeline, "write_card", lambda path, c: path.write_text(json.dumps(c)))  # JSON only
    for _ in range(2):
        pipeline.rescore(tmp_path, tmp_path, ["cnn"], lambda _: None)
    looks = json.loads((tmp_path / "cnn.json").read_text())["ds2_looks"]
    assert looks.startswith("once. Rescored on ")
    assert "the same figures." in looks and looks.endswith("new figures (detector change).")


def test_timing_dropout_shows_some_beats_as_on_time_and_is_off_by_default() -> None:
    from detector.training.train import _drop_timing

    rng = np.random.default_rng(0)
    rr = torch.from_numpy(rng.uniform(0.5, 1.5, (4000, len(RR_FEATURES))).astype(np.float32))
    gen = torch.Generator().manual_seed(0)
    assert _drop_timing(rr, TrainConfig(), gen) is rr
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())  # no draw when off
    out = _drop_timing(rr, TrainConfig(rr_dropout=0.3), gen)
    col = RR_FEATURES.index
    dropped = (out[:, col("next_over_prev")] == 1.0) & (out[:, col("prev_over_local")] == 1.0)
    assert 0.27 < float(dropped.float().mean()) < 0.33
    torch.testing.assert_close(out[dropped, col("prev_over_long")], rr[dropped, col("local_over_long")])
    torch.testing.assert_close(out[dropped, col("next_over_long")], rr[dropped, col("local_over_long")])
    torch.testing.assert_close(out[dropped, col("prev_s")], rr[dropped, col("local_s")])
    torch.testing.assert_close(out[~dropped], rr[~dropped])  # the other beats as they were
    kept = [i for i, n in enumerate(RR_FEATURES) if n not in (
        "prev_over_long", "next_over_long", "prev_s", "prev_over_local", "next_over_prev")]
    torch.testing.assert_close(out[:, kept], rr[:, kept])  # rhythm context and shape untouched


def test_time_warp_stretches_beat_and_template_together_about_the_peak_and_is_off_by_default() -> None:
    from detector.core import beats as feat
    from detector.core.beats import normalise_window
    from detector.training.train import _time_warp

    t = np.arange(feat.WINDOW_LEN, dtype=np.float64) - feat.WINDOW_PRE
    qrs = np.exp(-0.5 * (t / 2.0) ** 2) + 0.3 * np.exp(-0.5 * ((t - 30) / 6.0) ** 2)  # R, then T
    window = np.stack([qrs, 0.5 * qrs + 0.1])
    beats = torch.from_numpy(np.stack([normalise_window(window)] * 256))
    gen = torch.Generator().manual_seed(0)
    assert _time_warp(beats, TrainConfig(), gen) is beats
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())  # no draw when off
    out = _time_warp(beats, TrainConfig(time_warp=0.2), gen)
    assert out.shape == beats.shape and bool(torch.isfinite(out).all())
    assert bool((out.argmax(dim=2) == feat.WINDOW_PRE).all())  # the R-peak stays where it was
    torch.testing.assert_close(out[:, 0], out[:, 1], atol=1e-3, rtol=0)  # beat and template alike
    torch.testing.assert_close(out.median(dim=2).values, torch.zeros(256, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=2, unbiased=False), torch.ones(256, 2), atol=1e-2, rtol=0)
    # the T wave moves with the stretch: later for factors above 1, earlier below
    t_peak = feat.WINDOW_PRE + 15 + out[:, 0, feat.WINDOW_PRE + 15:].argmax(dim=1)
    assert int(t_peak.min()) < feat.WINDOW_PRE + 30 < int(t_peak.max())
    assert int(t_peak.max()) - int(t_peak.min()) >= 8  # 30 samples * 0.4 of spread, give or take


def test_card_command_names_the_seed_and_study_options_that_trained_the_model(tmp_path: Path) -> None:
    from detector.training.pipeline import train_command

    opts = TrainOptions(data_dir=tmp_path, out_dir=tmp_path, families=["cnn"], noise_dir=tmp_path)
    plain = train_command(opts, TrainConfig(family="cnn", ensemble=5))
    assert plain == "ecgmon train --data-dir ../shared/data/mitdb --families cnn --ensemble 5"
    studied = train_command(opts, TrainConfig(family="cnn", ensemble=5, seed=5, time_warp=0.15,
                                              rr_dropout=0.3))
    assert studied == plain + " --seed 5 --rr-dropout 0.3 --time-warp 0.15"
    subsampled = train_command(opts, TrainConfig(family="cnn", ensemble=5, patient_subsample=0.8))
    assert subsampled == plain + " --patient-subsample 0.8"
    adversarial = train_command(opts, TrainConfig(family="cnn", ensemble=5, patient_adversary=0.3))
    assert adversarial == plain + " --patient-adversary 0.3"
    regularised = train_command(opts, TrainConfig(family="cnn", ensemble=5, label_smoothing=0.1, mixup=0.2))
    assert regularised == plain + " --label-smoothing 0.1 --mixup 0.2"
    focal = train_command(opts, TrainConfig(family="cnn", ensemble=5, focal_gamma=2.0))
    assert focal == plain + " --focal-gamma 2.0"
    copies = replace(opts, noise_copies=2)
    assert train_command(copies, TrainConfig(family="cnn", ensemble=5)) == plain + " --noise-copies 2"
    assert "--noise-copies" not in train_command(copies, TrainConfig(family="autoencoder"))
    lighter = train_command(opts, TrainConfig(family="cnn", ensemble=5, noisy_weight=0.5))
    assert lighter == plain + " --noisy-weight 0.5"
    rebalanced = train_command(opts, TrainConfig(family="cnn", ensemble=5, class_weight_power=0.5))
    assert rebalanced == plain + " --class-weight-power 0.5"
    blended = train_command(opts, TrainConfig(family="cnn", ensemble=5, class_weight_power=0.5,
                                              blend_family="mlp", blend_members=3))
    assert blended == plain + " --class-weight-power 0.5 --blend mlp:3"


def test_a_blend_averages_the_members_of_both_families_as_each_trains_alone(mitdb_dir: Path) -> None:
    from detector.training.models import Ensemble

    beats, _ = load_beats(mitdb_dir, ["119", "220"], n_leads=1)
    held, _ = load_beats(mitdb_dir, ["209"], n_leads=1)
    cfg = TrainConfig(family="cnn", epochs=1, max_train_beats=600, ensemble=2)
    blend_cfg = replace(cfg, blend_family="mlp", blend_members=1)
    assert blend_cfg.name == "cnn+mlp" and cfg.name == "cnn"
    logs: list[str] = []
    blend = train_ensemble(beats, blend_cfg, logs.append, heldout=held)
    cnns = train_ensemble(beats, cfg, lambda _: None, heldout=held)
    mlp = train_classifier(beats, TrainConfig(family="mlp", epochs=1, max_train_beats=600), lambda _: None,
                           heldout=held)
    assert isinstance(blend.model, Ensemble) and len(blend.model.members) == 3
    assert [type(m).__name__ for m in blend.model.members] == (
        [type(m).__name__ for m in cnns.model.members] + [type(mlp.model).__name__])
    assert "cnn+mlp ensemble member 3/3 (mlp, seed 0)" in logs
    # the same members as trained alone, so the blend's held-out outputs are their member-weighted mean
    np.testing.assert_allclose(blend.heldout[0], (2 * cnns.heldout[0] + mlp.heldout[0]) / 3, rtol=1e-5,
                               atol=1e-6)
    assert blend.n_params == cnns.n_params + mlp.n_params


def test_members_train_on_their_own_share_of_the_patients() -> None:
    from detector.training.data import BeatSet
    from detector.training.train import member_patients

    records = np.repeat([f"{100 + i}" for i in range(16)], 5)
    records = np.concatenate([records, records])  # a noisy copy keeps its patient's name
    n = len(records)
    beats = BeatSet(BeatFeatures(np.arange(n), np.zeros((n, 2, 90), np.float32),
                                 np.zeros((n, len(RR_FEATURES)), np.float32)), np.zeros(n, np.int64), records)
    assert member_patients(beats, TrainConfig(seed=3)) is beats  # off: every patient
    kept = [member_patients(beats, TrainConfig(seed=s, patient_subsample=0.8)) for s in range(5)]
    patients = [tuple(np.unique(k.record)) for k in kept]
    assert all(len(p) == 13 for p in patients)  # 0.8 of 16, rounded up
    assert all(len(k) == 13 * 10 for k in kept)  # every beat of a kept patient, clean and noisy
    assert len(set(patients)) > 1  # members differ by patients
    again = member_patients(beats, TrainConfig(seed=2, patient_subsample=0.8))
    assert tuple(np.unique(again.record)) == patients[2]  # and the draw is the seed's


def test_the_patient_adversary_reverses_its_gradient_into_the_network_on_a_ramp() -> None:
    from detector.training.models import build
    from detector.training.train import PatientAdversary, adversary_scale

    assert adversary_scale(0.0, 0.3) == 0.0 and adversary_scale(1.0, 0.3) == pytest.approx(0.3, abs=1e-4)
    assert 0.0 < adversary_scale(0.1, 0.3) < adversary_scale(0.5, 0.3) < 0.3
    torch.manual_seed(0)
    model = build("cnn", 2, len(RR_FEATURES), 90)
    adversary = PatientAdversary(model, 48, n_patients=4)
    beats, rr = torch.randn(16, 2, 90), torch.randn(16, len(RR_FEATURES))
    label, patient = torch.randint(0, 5, (16,)), torch.randint(0, 4, (16,))

    def grads(scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad()
        adversary.zero_grad()
        model(beats, rr)  # the hook keeps the head's morphology embedding
        adversary.loss(label, patient, scale).backward()
        assert model.head.out[0].weight.grad is None  # the classifier's head is not pushed
        return model.body[0][0].weight.grad.clone(), adversary.net[0].weight.grad.clone()

    body_1, adv_1 = grads(1.0)
    body_2, adv_2 = grads(2.0)
    torch.testing.assert_close(adv_2, adv_1)  # the adversary itself learns to guess the patient
    torch.testing.assert_close(body_2, 2.0 * body_1)  # the network gets the scaled reversed gradient
    body_0, _ = grads(0.0)
    assert not body_0.any()
    # reversed: a descent step on the network's gradient raises the adversary's loss
    model.eval()  # batch-norm statistics fixed for the comparison
    grads(1.0)
    before = float(_adversary_loss(model, adversary, beats, rr, label, patient))
    with torch.no_grad():
        for p in model.body.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    assert float(_adversary_loss(model, adversary, beats, rr, label, patient)) > before
    adversary.detach()
    model(beats, rr)
    assert adversary.embed is None  # exported without it


def _adversary_loss(model: torch.nn.Module, adversary: torch.nn.Module, beats: torch.Tensor, rr: torch.Tensor,
                    label: torch.Tensor, patient: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        model(beats, rr)
        return adversary.loss(label, patient, 1.0)


def test_training_with_a_patient_adversary_moves_the_network_and_leaves_the_default_alone(
        mitdb_dir: Path) -> None:
    beats, _ = load_beats(mitdb_dir, ["119", "220"], n_leads=1)
    cfg = TrainConfig(family="cnn", epochs=1, max_train_beats=600)
    logs: list[str] = []
    plain = train_classifier(beats, cfg, lambda _: None)
    off = train_classifier(beats, replace(cfg, patient_adversary=0.0), lambda _: None)
    on = train_classifier(beats, replace(cfg, patient_adversary=1.0), logs.append)
    state = plain.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in off.model.state_dict().items())
    assert any(not torch.equal(v, state[k]) for k, v in on.model.state_dict().items())
    assert set(on.model.state_dict()) == set(state)  # nothing of the adversary stays in the model
    assert not on.model.head._forward_pre_hooks
    assert "patient adversary loss" in logs[-1] and "(chance 0.693)" in logs[-1]  # two patients


def test_class_weights_follow_the_inverse_frequency_to_a_power_with_a_cap() -> None:
    from detector.training.train import class_weights

    y = np.repeat(np.arange(5), [900, 9, 100, 30, 1])  # N, S, V, F, Q counts
    torch.testing.assert_close(class_weights(y, 1.0, 30.0, 1.0), torch.tensor([1.0, 30.0, 9.0, 1.0, 1.0]))
    torch.testing.assert_close(class_weights(y, 0.5, 30.0, 1.0), torch.tensor([1.0, 10.0, 3.0, 1.0, 1.0]))
    torch.testing.assert_close(class_weights(y, 0.0, 30.0, 2.0), torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0]))


def test_mixup_blends_beats_rr_features_and_partners_with_one_weight() -> None:
    from detector.training.train import mixup

    beats, rr = torch.randn(32, 2, 90), torch.randn(32, len(RR_FEATURES))
    mixed, mixed_rr, partner, lam = mixup(beats, rr, 0.2, np.random.default_rng(4))
    assert 0.0 <= lam <= 1.0 and sorted(partner.tolist()) == list(range(32))  # a shuffle of the batch
    assert not torch.equal(partner, torch.arange(32))
    torch.testing.assert_close(mixed, lam * beats + (1 - lam) * beats[partner])
    torch.testing.assert_close(mixed_rr, lam * rr + (1 - lam) * rr[partner])
    again = mixup(beats, rr, 0.2, np.random.default_rng(4))
    assert again[3] == lam and torch.equal(again[2], partner)  # the draw is the stream's
    weights = [mixup(beats, rr, 0.2, np.random.default_rng(s))[3] for s in range(200)]
    assert np.mean([min(w, 1 - w) < 0.1 for w in weights]) > 0.5  # Beta(0.2, 0.2): mostly near one beat
    weights = [mixup(beats, rr, 4.0, np.random.default_rng(s))[3] for s in range(200)]
    assert np.mean([min(w, 1 - w) < 0.1 for w in weights]) < 0.1  # Beta(4, 4): mostly true blends


def test_label_smoothing_and_mixup_move_the_network_and_leave_the_default_alone(mitdb_dir: Path) -> None:
    beats, _ = load_beats(mitdb_dir, ["119", "220"], n_leads=1)
    cfg = TrainConfig(family="cnn", epochs=1, max_train_beats=600)
    state = train_classifier(beats, cfg, lambda _: None).model.state_dict()
    off = train_classifier(beats, replace(cfg, label_smoothing=0.0, mixup=0.0), lambda _: None)
    assert all(torch.equal(v, state[k]) for k, v in off.model.state_dict().items())
    for option in ({"label_smoothing": 0.1}, {"mixup": 0.2}):
        on = train_classifier(beats, replace(cfg, **option), lambda _: None)  # type: ignore[arg-type]
        assert any(not torch.equal(v, state[k]) for k, v in on.model.state_dict().items()), option
    with pytest.raises(ValueError, match="mixup and the patient adversary"):
        train_classifier(beats, replace(cfg, mixup=0.2, patient_adversary=0.3), lambda _: None)


def test_focal_loss_is_the_cross_entropy_at_gamma_0_and_weighs_sure_beats_less() -> None:
    from detector.training.train import FocalLoss

    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0, 0.0],  # sure and right
                           [0.5, 0.4, 0.0, 0.0, 0.0],  # unsure
                           [0.0, 3.0, 0.0, 0.0, 0.0]])  # sure and wrong
    target = torch.tensor([0, 0, 0])
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert torch.allclose(FocalLoss(0.0)(logits, target), ce.mean())
    weight = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0])
    assert torch.allclose(FocalLoss(0.0, weight)(logits, target),
                          torch.nn.functional.cross_entropy(logits, target, weight=weight))
    p = torch.softmax(logits, dim=1)[:, 0]
    expected = ((1 - p) ** 2 * ce).mean()  # each beat's cross-entropy scaled by (1 - p) ** 2
    assert torch.allclose(FocalLoss(2.0)(logits, target), expected)
    share = (1 - p) ** 2  # the sure, right beat keeps almost none of its loss; the wrong one most
    assert share[0] < 0.01 and share[2] > 0.8
    mixed = torch.tensor([0, 1, 1])  # weights average like the cross-entropy's
    w = weight[mixed]
    pt = torch.softmax(logits, dim=1).gather(1, mixed[:, None])[:, 0]
    focal = -((1 - pt) ** 2) * torch.log(pt)
    assert torch.allclose(FocalLoss(2.0, weight)(logits, mixed), (focal * w).sum() / w.sum())


def test_focal_loss_moves_the_network_and_refuses_label_smoothing(mitdb_dir: Path) -> None:
    beats, _ = load_beats(mitdb_dir, ["119", "220"], n_leads=1)
    cfg = TrainConfig(family="cnn", epochs=1, max_train_beats=600)
    state = train_classifier(beats, cfg, lambda _: None).model.state_dict()
    on = train_classifier(beats, replace(cfg, focal_gamma=2.0), lambda _: None)
    assert any(not torch.equal(v, state[k]) for k, v in on.model.state_dict().items())
    with pytest.raises(ValueError, match="focal loss and label smoothing"):
        train_classifier(beats, replace(cfg, focal_gamma=2.0, label_smoothing=0.1), lambda _: None)


def test_smoothed_targets_are_the_loss_the_networks_train_against() -> None:
    from detector.training.data import BeatSet
    from detector.training.models import build
    from detector.training.train import set_seeds

    torch.manual_seed(0)
    n = 64
    features = BeatFeatures(np.arange(n), torch.randn(n, 2, 90).numpy(),
                            torch.randn(n, len(RR_FEATURES)).numpy())
    labels = np.arange(n, dtype=np.int64) % 5
    beats = BeatSet(features, labels, np.array(["100"] * n))
    # one batch, no augmentation, every class weighing 1: the first (only) step's loss at the
    # starting weights is what the progress line reports
    cfg = TrainConfig(family="cnn", epochs=1, batch_size=n, label_smoothing=0.4, balance="weights",
                      class_weight_power=0.0, noise_std=0.0, max_shift=0)
    logs: list[str] = []
    train_classifier(beats, cfg, logs.append)
    set_seeds(cfg.seed, cfg.threads)
    model = build("cnn", 2, len(RR_FEATURES), 90).train()  # train_classifier's starting network
    with torch.no_grad():
        logits = model(torch.from_numpy(features.beats), torch.from_numpy(features.rr))
    target = torch.full((n, 5), 0.4 / 5) + 0.6 * torch.nn.functional.one_hot(torch.from_numpy(labels), 5)
    expected = float(-(target * logits.log_softmax(1)).sum(1).mean())
    reported = float(logs[-1].split(" loss ")[1].split()[0])
    assert reported == pytest.approx(expected, abs=2e-4)  # printed to 4 decimals
    plain = float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels)))
    assert abs(plain - expected) > 1e-3  # near-uniform starting logits, yet the check tells the two apart


def test_only_the_cnn_width_can_be_set() -> None:
    from detector.training.models import CNN_WIDTH, build

    def channels(model: torch.nn.Module) -> int:
        return int(next(m for m in model.modules() if isinstance(m, torch.nn.Conv1d)).out_channels)

    assert channels(build("cnn", 2, 12, 90)) == CNN_WIDTH // 2
    assert channels(build("cnn", 2, 12, 90, width=16)) == 8
    with pytest.raises(ValueError, match="only the cnn"):
        build("resnet", 2, 12, 90, width=16)
    with pytest.raises(ValueError, match="at least 2 channels"):
        build("cnn", 2, 12, 90, width=1)


def test_adapted_batch_norm_takes_one_recordings_statistics_and_leaves_the_model_alone() -> None:
    from detector.training.models import build
    from detector.training.train import adapt_batch_norm, recordings

    torch.manual_seed(0)
    model = build("cnn", 2, len(RR_FEATURES), 90).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    beats = (3.0 + 2.0 * torch.randn(300, 2, 90)).numpy()
    rr = torch.randn(300, len(RR_FEATURES)).numpy()
    adapted = adapt_batch_norm(model, beats, rr)
    conv, norm = adapted.body[0][0], adapted.body[0][1]
    with torch.no_grad():
        out = conv(torch.from_numpy(beats))
    torch.testing.assert_close(norm.running_mean, out.mean(dim=(0, 2)), rtol=1e-4, atol=1e-4)
    assert not adapted.training and not norm.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is unchanged
    assert not torch.allclose(norm.running_mean, model.body[0][1].running_mean)
    same = {k: v for k, v in adapted.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert all(torch.equal(v, before[k]) for k, v in same.items())  # only the statistics moved
    runs = recordings(np.array(["207", "207", "118", "118", "118", "207", "207"]))
    assert runs == [slice(0, 2), slice(2, 5), slice(5, 7)]  # a patient clean, another, the first in noise


@pytest.mark.parametrize("args", [
    ["--ucr", "ECG5000_TRAIN.txt", "--mixup", "0.2", "--width", "16"],
    ["--rescore", "--label-smoothing", "0.1"],
    ["--rescore", "--focal-gamma", "2"],
    ["--rescore", "--noise-copies", "2"],
    ["--rescore", "--noisy-weight", "0.5"],
    ["--rescore", "--blend", "mlp:3"],
    ["--ucr", "ECG5000_TRAIN.txt", "--leads", "2"],
])
def test_study_options_are_refused_where_no_ds1_training_runs(args: list[str], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    code = main(["train", "--data-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    flags = [a for a in args if a.startswith("--")]
    named = err.split("error: ")[1].split(":")[0].split()  # the refused options, before the reason
    assert code == 2 and sorted(named) == sorted(flags[1:])
    assert "of the DS1 training, which " + flags[0] in err
    assert "Traceback" not in err


def test_adapted_batch_norm_is_a_cv_only_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    code = main(["train", "--data-dir", str(tmp_path), "--adapt-bn"])
    err = capsys.readouterr().err
    assert code == 2 and "--adapt-bn is a CV-only study" in err and "Traceback" not in err


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--width", "-3", "a number of channels"),
    ("--width", "1", "a number of channels, at least 2"),
    ("--time-warp", "0.7", "the largest relative stretch"),
    ("--rr-dropout", "1.5", "a share of the training beats"),
    ("--patient-subsample", "1.5", "a share of the training patients"),
    ("--patient-adversary", "-1.0", "the reversed gradient's weight"),
    ("--label-smoothing", "0.5", "the target mass spread over the classes"),
    ("--mixup", "-0.2", "the Beta(A, A) blend's parameter"),
    ("--focal-gamma", "6.0", "the focal loss's exponent"),
    ("--noise-copies", "0", "noise-stressed training copies of each record, 1 to 4"),
    ("--noisy-weight", "0.0", "the noise-stressed beats' draw weight against the clean beats', 0 < W <= 1"),
    ("--noisy-weight", "1.5", "the noise-stressed beats' draw weight"),
    ("--class-weight-power", "3.0", "the inverse class frequency's exponent"),
    ("--blend", "mlp", "a classifier family (cnn, resnet, inception, lstm, mlp) and its number of members"),
    ("--blend", "autoencoder:1", "a classifier family"),
    ("--blend", "mlp:0", "a classifier family"),
    ("--blend", "mlp:3", "mlp is also in --families; more members of one family come from --ensemble"),
])
def test_bad_study_option_is_a_one_line_error(flag: str, value: str, says: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    code = main(["train", "--data-dir", str(tmp_path), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and f"{flag} {value}: {says}" in err and "Traceback" not in err
