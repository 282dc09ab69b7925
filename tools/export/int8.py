"""Int8 linear layers with dynamically quantized activations, written into an
exported ViT graph (ONNX Runtime's Python quantizer is not available here).

Every MatMul whose second input is a 2-D float32 initializer W[K,N] (the
ViT's qkv, proj, fc1 and fc2; heads are Gemm nodes and stay float32 unless
heads=True, when they are rewritten too) becomes

    DynamicQuantizeLinear(A)            -> A_q uint8, A_scale, A_zp (per tensor, per run)
    MatMulInteger(A_q, W_q, A_zp, 0)    -> int32     (W_q int8, symmetric, per output column)
    Cast(float) * (A_scale * W_scale)   -> float32   (W_scale float32 [N])
    (+ bias, when the MatMul fed an Add with a constant)

which is the pattern ONNX Runtime's DynamicQuantizeMatMulFusion folds into
one com.microsoft DynamicQuantizeMatMul kernel (u8×s8 on VNNI). LayerNorm,
softmax, GELU, the attention products (activation × activation) and the
patch embedding (a Conv) stay float32.

weight_scale_error multiplies every weight scale after quantization: a
deliberately wrong scale, for tests that check the accuracy gate refuses it.
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

F32 = TensorProto.FLOAT


def quantize_weight(w):
    """Per-column symmetric int8: w ≈ q * scale[None, :]."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=0)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[None, :]), -127, 127).astype(np.int8)
    return q, scale


def convert(model, heads=False, weight_scale_error=1.0):
    """Rewrites model in place; returns the number of layers quantized."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    new_inits, out_nodes, dql = [], [], {}
    count = 0

    def dynamic_quant(name):
        if name not in dql:
            base = name.replace("/", "_").strip("_") + "_dq"
            outs = [base + "_q", base + "_scale", base + "_zp"]
            out_nodes.append(helper.make_node("DynamicQuantizeLinear", [name], outs, name=base))
            dql[name] = outs
        return dql[name]

    def int8_matmul(node, a, w, y):
        nonlocal count
        q, scale = quantize_weight(w)
        scale = scale * np.float32(weight_scale_error)
        base = (node.name or y).replace("/", "_").strip("_") + "_int8"
        new_inits.extend([
            numpy_helper.from_array(q, base + "_W"),
            numpy_helper.from_array(scale.astype(np.float32), base + "_Wscale"),
            numpy_helper.from_array(np.zeros(q.shape[1], dtype=np.int8), base + "_Wzp"),
        ])
        a_q, a_s, a_zp = dynamic_quant(a)
        out_nodes.extend([
            helper.make_node("MatMulInteger", [a_q, base + "_W", a_zp, base + "_Wzp"], [base + "_i32"], name=base + "_mm"),
            helper.make_node("Mul", [a_s, base + "_Wscale"], [base + "_scale"], name=base + "_scale"),
            helper.make_node("Cast", [base + "_i32"], [base + "_f32"], name=base + "_cast", to=F32),
            helper.make_node("Mul", [base + "_f32", base + "_scale"], [y], name=base + "_out"),
        ])
        count += 1

    for n in g.node:
        if n.op_type == "MatMul" and n.input[1] in inits:
            w = numpy_helper.to_array(inits[n.input[1]])
            if w.ndim == 2 and w.dtype == np.float32:
                int8_matmul(n, n.input[0], w, n.output[0])
                continue
        if heads and n.op_type == "Gemm" and n.input[1] in inits:
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if attrs.get("transA", 0) == 0 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0:
                w = numpy_helper.to_array(inits[n.input[1]])
                if attrs.get("transB", 0):
                    w = w.T
                if len(n.input) > 2 and n.input[2]:
                    mm = n.output[0] + "_nobias"
                    int8_matmul(n, n.input[0], w, mm)
                    out_nodes.append(helper.make_node("Add", [mm, n.input[2]], [n.output[0]], name=n.name + "_bias"))
                else:
                    int8_matmul(n, n.input[0], w, n.output[0])
                continue
        out_nodes.append(n)

    # Put each DynamicQuantizeLinear right after its input is produced: the
    # node list was built in order and each quantizer was appended at its
    # first consumer, which comes after the producer, so order holds.
    used = set()
    for n in out_nodes:
        used.update(n.input)
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep + new_inits)
    del g.node[:]
    g.node.extend(out_nodes)
    del g.value_info[:]
    if not any(o.domain in ("", "ai.onnx") and o.version >= 10 for o in model.opset_import):
        raise ValueError("int8: the model's opset is below 10 (MatMulInteger)")
    return count
