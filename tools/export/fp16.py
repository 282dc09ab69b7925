"""Float16 conversion of an exported ONNX graph, keeping float32 inputs and outputs.

Weights, constants and every float tensor inside the graph become float16;
one Cast after the input and one before each output keep the model contract
(float32 [N,3,S,S] in, float32 features/logits out) unchanged, so the daemon
serves fp32 and fp16 models alike. LayerNormalization (opset 17) and Softmax
accumulate in float32 inside ONNX Runtime's CUDA kernels, which is what keeps
a ViT numerically sane in half precision. On CPU, ONNX Runtime casts nodes that
lack a float16 kernel back to float32 (slower, same results within fp16
rounding): fp16 exports are meant for GPUs.
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
_F16_MAX = float(np.finfo(np.float16).max)


def _to_f16(t):
    arr = numpy_helper.to_array(t).astype(np.float32)
    arr = np.clip(arr, -_F16_MAX, _F16_MAX).astype(np.float16)
    out = numpy_helper.from_array(arr, t.name)
    t.CopyFrom(out)


def convert(model):
    g = model.graph
    for init in g.initializer:
        if init.data_type == F32:
            _to_f16(init)
    for n in g.node:
        for attr in n.attribute:
            if attr.type == attr.TENSOR and attr.t.data_type == F32:
                _to_f16(attr.t)
            if n.op_type == "Cast" and attr.name == "to" and attr.i == F32:
                attr.i = F16
    # Keep float32 at the boundary.
    new_nodes = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type != F32:
            continue
        half = inp.name + "_fp16"
        for n in g.node:
            for i, name in enumerate(n.input):
                if name == inp.name:
                    n.input[i] = half
        new_nodes.append(helper.make_node("Cast", [inp.name], [half], to=F16, name=inp.name + "_to_fp16"))
    tail = []
    for out in g.output:
        if out.type.tensor_type.elem_type != F32:
            continue
        half = out.name + "_fp16"
        for n in g.node:
            for i, name in enumerate(n.output):
                if name == out.name:
                    n.output[i] = half
            for i, name in enumerate(n.input):
                if name == out.name:
                    n.input[i] = half
        tail.append(helper.make_node("Cast", [half], [out.name], to=F32, name=out.name + "_to_fp32"))
    nodes = new_nodes + list(g.node) + tail
    del g.node[:]
    g.node.extend(nodes)
    # Intermediate type annotations are stale now; ONNX Runtime re-infers them.
    del g.value_info[:]
    return model
