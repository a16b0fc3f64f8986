"""Rewrite an exported model's 1-D convolutions and pools as 2-D ones of height 1 (exact).

ONNX Runtime's CPU provider runs 2-D convolutions in its blocked-channel (NCHWc) layout
with fused kernels, but has no such path for 1-D ones (``python -m detector.bench_models``
measures the difference; BENCHMARKS.md, session 15).  The rewrite changes no weight value:
every 1-D ``Conv``, ``MaxPool`` and ``AveragePool`` becomes its 2-D form over a tensor with an
inserted axis of length 1, the ops between them that do not care about the extra axis
(``BatchNormalization``, ``Relu``, ``Add``, channel ``Concat``) work on the 4-D tensors, and
a ``Squeeze`` gives the 3-D tensor back wherever anything else reads it.  The outputs agree
with the original graph's to float rounding (tests: ``tests/unit/detector/test_train_lift.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

_SPATIAL = ("Conv", "MaxPool", "AveragePool")
_PASS_THROUGH = ("BatchNormalization", "Relu")  # one activation input, the rest per-channel
_JOINING = ("Add", "Concat")  # lifted only when every input is
_AXIS = "lift_axis_2"  # the initializer holding [2], the inserted axis


def lift_1d_to_2d(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its 1-D convolutions and pools as 2-D ones (changed in place, returned).

    Node and tensor names are derived from the existing ones, so the result is deterministic."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    lifted: set[str] = set()  # tensors (original names) whose 4-D form "<name>_4d" exists
    squeezed: set[str] = set()  # lifted tensors whose 3-D form has been re-made by a Squeeze
    out: list[onnx.NodeProto] = []
    changed = False

    def four_d(name: str) -> str:
        if name not in lifted:  # a 3-D tensor from elsewhere (the input): one Unsqueeze for all
            out.append(helper.make_node("Unsqueeze", [name, _AXIS], [f"{name}_4d"], name=f"{name}_unsqueeze"))
            lifted.add(name)
            squeezed.add(name)  # its 3-D form is the original tensor
        return f"{name}_4d"

    def three_d(name: str) -> None:
        if name in lifted and name not in squeezed:
            out.append(helper.make_node("Squeeze", [f"{name}_4d", _AXIS], [name], name=f"{name}_squeeze"))
            squeezed.add(name)

    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        one_d = node.op_type in _SPATIAL and len(attrs.get("kernel_shape", ())) == 1
        if node.op_type == "Conv" and one_d and node.input[1] not in inits:
            one_d = False  # weights computed at run time: leave the node as it is
        if node.op_type == "Conv" and one_d and consumers.get(node.input[1], 0) > 1:
            one_d = False  # a shared weight tensor: leave it (does not occur in our exports)
        joining = node.op_type in _JOINING and all(i in lifted for i in node.input) and (
            node.op_type != "Concat" or attrs.get("axis") == 1)
        passing = node.op_type in _PASS_THROUGH and node.input[0] in lifted
        if not (one_d or joining or passing):
            for name in node.input:
                three_d(name)
            out.append(node)
            continue
        changed = True
        new = onnx.NodeProto()
        new.CopyFrom(node)
        if one_d:
            new.input[0] = four_d(node.input[0])
            del new.attribute[:]
            for key, value in attrs.items():
                if key in ("kernel_shape", "strides", "dilations"):
                    value = [1, *value]
                elif key == "pads":
                    value = [0, value[0], 0, value[1]]
                new.attribute.append(helper.make_attribute(key, value))
            if node.op_type == "Conv":
                weight = numpy_helper.to_array(inits[node.input[1]])
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(weight[:, :, None, :], node.input[1]))
        else:
            n_lifted = len(node.input) if joining else 1
            for i in range(n_lifted):
                new.input[i] = f"{node.input[i]}_4d"
        new.output[0] = f"{node.output[0]}_4d"
        lifted.add(node.output[0])
        out.append(new)
    if not changed:
        return model
    for value in graph.output:
        three_d(value.name)
    graph.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), _AXIS))
    del graph.node[:]
    graph.node.extend(out)
    del graph.value_info[:]  # shapes of renamed tensors: ONNX Runtime infers them again
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    """Rewrite shipped models exported before the rewrite existed, and their cards."""
    import argparse
    import hashlib
    import json
    import sys
    from datetime import UTC, datetime
    from pathlib import Path

    import onnx

    from detector.onnx_classifier import MODELS_DIR
    from detector.training.card import write_card

    parser = argparse.ArgumentParser(
        prog="python -m detector.training.lift", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR,
                        help=f"folder of <name>.onnx and cards (default {MODELS_DIR})")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or sorted(p.stem for p in args.models_dir.glob("*.onnx"))
    for name in names:
        path = args.models_dir / f"{name}.onnx"
        if not path.is_file():
            parser.error(f"no model {name} in {args.models_dir}")
        before = path.read_bytes()
        data = lift_1d_to_2d(onnx.load_from_string(before)).SerializeToString()
        if data == before:
            sys.stdout.write(f"{name:12s} unchanged (no 1-D convolution or pool)\n")
            continue
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        card_path = path.with_suffix(".json")
        if card_path.is_file():
            card = json.loads(card_path.read_text())
            card["onnx_lift"] = {
                "date": datetime.now(UTC).strftime("%Y-%m-%d"), "sha256_before": card.get("onnx_sha256", "?"),
                "command": f"python -m detector.training.lift --models {name}",
            }
            card["onnx_sha256"], card["onnx_bytes"] = sha, len(data)
            write_card(card_path, card)
        sys.stdout.write(f"{name:12s} rewritten: sha256 {sha[:12]} ({len(before)} -> {len(data)} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
