#!/usr/bin/python3
"""Small ONNX models that break the model contract one way each, for the
infer package's error tests. Usage: fixtures.py OUTDIR

  no_metadata.onnx   a valid [N,3,32,32] → features model without affectd.*
  bad_rank.onnx      input of rank 3 ([N,3,32]) with valid metadata
  bad_heads.onnx     heads that run past the logits width
  no_outputs.onnx    outputs named neither features nor logits
  ok.onnx            a valid tiny model (features + logits, two heads)
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

S = 32


def model(inputs_shape, outputs, meta, extra_nodes=None):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, inputs_shape)
    nodes, inits, outs = [], [], []
    # features = mean over the spatial axes (and the third axis when present) → [N,3], then MatMul [3,D]
    axes = list(range(2, len(inputs_shape)))
    nodes.append(helper.make_node("ReduceMean", ["input"], ["pooled"], axes=axes, keepdims=0))
    for name, width in outputs:
        w = np.arange(3 * width, dtype=np.float32).reshape(3, width) / 10.0
        inits.append(numpy_helper.from_array(w, name + "_w"))
        nodes.append(helper.make_node("MatMul", ["pooled", name + "_w"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", width]))
    g = helper.make_graph(nodes, "fixture", [x], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, json.dumps(v)
    onnx.checker.check_model(m)
    return m


def main(out):
    os.makedirs(out, exist_ok=True)
    inp = {"size": S, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "crop": "align5/v1"}
    heads = [
        {"name": "au", "offset": 0, "labels": ["AU1", "AU2", "AU4"], "activation": "sigmoid", "threshold": 0.5},
        {"name": "va", "offset": 3, "labels": ["valence", "arousal"], "activation": "tanh"},
    ]
    good = {"affectd.input": inp, "affectd.heads": heads, "affectd.model": {"name": "fixture", "demo": True}}
    onnx.save(model(["N", 3, S, S], [("features", 4), ("logits", 5)], good), os.path.join(out, "ok.onnx"))
    onnx.save(model(["N", 3, S, S], [("features", 4)], {}), os.path.join(out, "no_metadata.onnx"))
    onnx.save(model(["N", 3, S], [("features", 4)], {"affectd.input": inp}), os.path.join(out, "bad_rank.onnx"))
    onnx.save(model(["N", 3, S, S], [("features", 4), ("logits", 4)], good), os.path.join(out, "bad_heads.onnx"))
    onnx.save(model(["N", 3, S, S], [("embedding", 4)], {"affectd.input": inp}), os.path.join(out, "no_outputs.onnx"))


if __name__ == "__main__":
    main(sys.argv[1])
