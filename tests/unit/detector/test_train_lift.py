"""The ONNX rewrite of 1-D convolutions and pools as 2-D ones: same outputs, no 1-D op left."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

try:
    import onnx
    import torch
except ModuleNotFoundError:  # pragma: no cover - CI must install the train extra
    pytest.fail("training tests need PyTorch and onnx: pip install -e '.[dev,train]'", pytrace=False)

import onnxruntime as ort
from torch import nn

from detector.core import beats as feat
from detector.training.card import write_card
from detector.training.export import export_onnx
from detector.training.lift import lift_1d_to_2d
from detector.training.lift import main as lift_main
from detector.training.models import FAMILIES, Ensemble, build
from detector.training.train import SRule, SRuleParams

N_LEADS = 1  # the beat and its template: 2 channels


def _random_model(family: str, members: int = 2) -> nn.Module:
    torch.manual_seed(3)
    model = Ensemble([build(family, 2 * N_LEADS, feat.N_RR, feat.WINDOW_LEN) for _ in range(members)])
    for mod in model.modules():  # running statistics away from 0 / 1, so folding them matters
        if isinstance(mod, nn.BatchNorm1d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    params = SRuleParams(prematurity_max=0.85, irregularity_max=0.15, v_offset=0.5)
    return SRule(model, params, feat.RR_FEATURES).eval()


def _inputs(n: int = 300) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"beat": rng.standard_normal((n, 2 * N_LEADS, feat.WINDOW_LEN)).astype(np.float32),
            "rr": rng.uniform(0.6, 1.4, (n, feat.N_RR)).astype(np.float32)}


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, feed)[0])


def _plain_export(model: nn.Module, path: Path) -> None:
    """torch's own export, 1-D ops as they are (what ``export_onnx`` wrote before the rewrite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice (export_onnx does this too)
        torch.onnx.export(model, (torch.zeros(2, 2, feat.WINDOW_LEN), torch.ones(2, feat.N_RR)), str(path),
                          input_names=["beat", "rr"], output_names=["probabilities"], opset_version=17,
                          dynamo=False,
                          dynamic_axes={"beat": {0: "b"}, "rr": {0: "b"}, "probabilities": {0: "b"}})


def _one_d_ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node if n.op_type in ("Conv", "MaxPool", "AveragePool")
            and any(a.name == "kernel_shape" and len(a.ints) == 1 for a in n.attribute)]


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_models_have_no_1d_op_and_give_the_torch_probabilities(family: str, tmp_path: Path) -> None:
    model = _random_model(family)
    path = tmp_path / f"{family}.onnx"
    export_onnx(model, path, N_LEADS, family)
    assert not any(m.training for m in model.modules())  # the export left it in eval mode
    proto = onnx.load(str(path))
    assert _one_d_ops(proto) == []
    feed = _inputs()
    with torch.no_grad():
        logits = model(torch.from_numpy(feed["beat"]), torch.from_numpy(feed["rr"]))
        want = torch.softmax(logits, dim=1).numpy()
    got = _run(proto, feed)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


@pytest.mark.parametrize("family", ["cnn", "resnet", "inception", "lstm"])
def test_the_rewrite_keeps_a_1d_graphs_outputs(family: str, tmp_path: Path) -> None:
    """Against the graph torch exports (1-D ops): the rewrite alone changes nothing but rounding."""
    model = _random_model(family)
    path = tmp_path / "plain.onnx"
    _plain_export(model, path)
    plain = onnx.load(str(path))
    n_one_d = len(_one_d_ops(plain))
    assert n_one_d > 0
    lifted = lift_1d_to_2d(onnx.load(str(path)))
    assert _one_d_ops(lifted) == []
    feed = _inputs()
    np.testing.assert_allclose(_run(lifted, feed), _run(plain, feed), atol=2e-6)
    again = lift_1d_to_2d(onnx.load_from_string(lifted.SerializeToString()))
    assert again.SerializeToString() == lifted.SerializeToString()  # idempotent


def test_the_command_rewrites_a_model_and_its_card_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _random_model("cnn", members=1)
    path = tmp_path / "m.onnx"
    _plain_export(model, path)
    card = json.loads((Path(__file__).parents[3] / "detector" / "models" / "mlp.json").read_text())
    card.update(name="m", onnx_sha256="before", onnx_bytes=1)
    write_card(tmp_path / "m.json", card)
    assert lift_main(["--models-dir", str(tmp_path)]) == 0
    assert "rewritten" in capsys.readouterr().out
    card = json.loads((tmp_path / "m.json").read_text())
    data = path.read_bytes()
    assert card["onnx_sha256"] == hashlib.sha256(data).hexdigest() and card["onnx_bytes"] == len(data)
    assert card["onnx_lift"]["sha256_before"] == "before"
    assert "rewritten after training" in (tmp_path / "m.md").read_text()
    assert lift_main(["--models-dir", str(tmp_path)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert path.read_bytes() == data
