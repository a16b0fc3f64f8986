"""ONNX export of trained models (their cards: :mod:`detector.training.card`)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch import nn

from detector.core import beats as feat
from detector.training.lift import lift_1d_to_2d

OPSET = 17


class _WithSoftmax(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(beat, rr), dim=1)


def export_onnx(model: nn.Module, path: Path, n_leads: int, family: str, *, scores: bool = False) -> str:
    """Write ``model`` as ONNX (inputs ``beat``, ``rr``; output ``probabilities`` or ``score``).

    Returns the file's sha256.  Metadata records labels and feature layout.  The 1-D
    convolutions and pools are written as 2-D ones (:mod:`detector.training.lift`: the same
    outputs, faster in ONNX Runtime).
    """
    import onnx

    # eval mode on the wrapper too: the exporter puts the wrapper back in the mode it found it
    # in, and a fresh wrapper is in training mode, which would leave ``model``'s batch norms
    # training on batch statistics after the export
    wrapped = (model if scores else _WithSoftmax(model)).eval()
    beat = torch.zeros(2, 2 * n_leads, feat.WINDOW_LEN)
    rr = torch.ones(2, feat.N_RR)
    out_name = "score" if scores else "probabilities"
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (beat, rr), str(path), input_names=["beat", "rr"], output_names=[out_name],
            dynamic_axes={"beat": {0: "batch"}, "rr": {0: "batch"}, out_name: {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )
    proto = onnx.load(str(path))
    meta = {
        "family": family,
        "labels": "N,S,V,F,Q",
        "n_leads": str(n_leads),
        "model_fs_hz": str(feat.MODEL_FS_HZ),
        "window_pre": str(feat.WINDOW_PRE),
        "window_post": str(feat.WINDOW_POST),
        "rr_features": ",".join(feat.RR_FEATURES),
        "output": out_name,
    }
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "ecgmon train"
    proto.doc_string = f"ecgmon beat model ({family})"
    onnx.save(lift_1d_to_2d(proto), str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()
