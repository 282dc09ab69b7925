#!/usr/bin/python3
"""TensorFlow.js graph model (model.json + weights) → ONNX.

    /usr/bin/python3 tools/tfjs2onnx/tfjs2onnx.py MODEL.json -o MODEL.onnx

Runs with Debian's python3-onnx (1.12) and numpy. The model keeps its
TF.js interface: NHWC inputs and outputs with the same names, shapes and
order (the signature's). Inside, 4-D activations are NCHW (ONNX's Conv
and MaxPool layout): one Transpose after each input, weights transposed
when written, constants that broadcast over channels reshaped, axes of
Concat/Mean/Sum/Squeeze/Pad remapped, and a Transpose back before any
Reshape of a 4-D tensor and before each 4-D output. TF's SAME padding is
written as explicit (possibly asymmetric) pads from the static shapes.
Fused ops (_FusedConv2D, FusedDepthwiseConv2dNative with BiasAdd and
Relu/Prelu) are expanded; PReLU and zero channel padding are written in
exact forms that ONNX Runtime can run in its NCHWc layout (see prelu);
float16 weights are widened to float32. An op or attribute the converter
does not know stops it with its name.
"""

import argparse
import base64
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13


class ConvertError(Exception):
    pass


DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "uint8": np.uint8,
          "uint16": np.uint16, "bool": np.bool_}


def load_weights(model, base_dir):
    """Decodes the weights manifest into {name: np.ndarray} (float16 widened)."""
    out = {}
    for group in model.get("weightsManifest", []):
        buf = b"".join(open(os.path.join(base_dir, p), "rb").read() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if q:
                qt = DTYPES.get(q["dtype"])
                if qt is None:
                    raise ConvertError(f"weight {w['name']}: quantization dtype {q['dtype']} not supported")
                raw = np.frombuffer(buf, dtype=np.dtype(qt).newbyteorder("<"), count=n, offset=off)
                off += n * np.dtype(qt).itemsize
                if q["dtype"] == "float16":
                    arr = raw.astype(np.float32)
                else:  # affine uint8/uint16, as tfjs dequantises
                    arr = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
                    if w["dtype"] == "int32":
                        arr = np.round(arr).astype(np.int32)
            else:
                dt = DTYPES.get(w["dtype"])
                if dt is None:
                    raise ConvertError(f"weight {w['name']}: dtype {w['dtype']} not supported")
                arr = np.frombuffer(buf, dtype=np.dtype(dt).newbyteorder("<"), count=n, offset=off).copy()
                off += n * np.dtype(dt).itemsize
            out[w["name"]] = arr.reshape(shape)
        if off != len(buf):
            raise ConvertError(f"weights: manifest covers {off} bytes of {len(buf)}")
    return out


def attr(node, name, default=None):
    a = node.get("attr", {}).get(name)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "list" in a:
        lst = a["list"]
        if "s" in lst:
            return [base64.b64decode(x).decode() for x in lst["s"]]
        if "i" in lst:
            return [int(x) for x in lst["i"]]
        if "f" in lst:
            return [float(x) for x in lst["f"]]
        return []
    if "type" in a:
        return a["type"]
    if "shape" in a:
        return [int(d.get("size", -1)) for d in a["shape"].get("dim", [])]
    return default


def same_pads(size, k, s):
    """TF SAME: (before, after) for one spatial axis."""
    out = -(-size // s)
    pad = max(0, (out - 1) * s + k - size)
    return pad // 2, pad - pad // 2, out


class Converter:
    def __init__(self, model, weights):
        self.model = model
        self.w = weights
        self.nodes, self.inits = [], []
        self.shape = {}   # tensor → NHWC shape (list, -1 for batch)
        self.nchw = {}    # tensor → True when stored NCHW (4-D activations)
        self.const = {}   # tensor → np.ndarray (graph constants, not yet written)
        self.written = set()
        self.count = 0
        self.aliases = {}  # TF node name → ONNX tensor name

    def uniq(self, base):
        self.count += 1
        return f"{base}__{self.count}"

    def init(self, name, arr):
        if name not in self.written:
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            self.written.add(name)
        return name

    def node(self, op, ins, outs, **kw):
        self.nodes.append(helper.make_node(op, ins, outs, name=self.uniq(op), **kw))

    def value(self, name):
        """The ONNX tensor name of an input, writing a constant when needed."""
        if name in self.const:
            arr = self.const[name]
            if arr.dtype == np.int32:
                arr = arr.astype(np.int64)
            return self.init(name, arr)
        return name

    @staticmethod
    def ref(inp):
        inp = inp.split(":")[0]
        if inp.startswith("^"):
            raise ConvertError(f"control input {inp} not supported")
        return inp

    def to_nhwc(self, name):
        if not self.nchw.get(name):
            return name
        out = self.uniq(name + "_nhwc")
        self.node("Transpose", [name], [out], perm=[0, 2, 3, 1])
        return out

    def broadcast_const(self, arr, other4d):
        """A constant that broadcasts against an NHWC 4-D tensor, laid out NCHW."""
        if not other4d or arr.ndim == 0:
            return arr
        a = arr.reshape((1,) * (4 - arr.ndim) + arr.shape) if arr.ndim < 4 else arr
        return a.transpose(0, 3, 1, 2)

    def convert(self):
        topo = self.model["modelTopology"]
        nodes = topo["node"]
        sig = self.model.get("signature") or self.model.get("userDefinedMetadata", {}).get("signature") or {}
        for n in nodes:
            if n["op"] == "Const":
                if n["name"] not in self.w:
                    raise ConvertError(f"Const {n['name']} has no weights")
                self.const[n["name"]] = self.w[n["name"]]
        inputs = []
        for n in nodes:
            if n["op"] != "Placeholder":
                continue
            shape = attr(n, "shape", [])
            if len(shape) != 4 or any(d <= 0 for d in shape[1:]):
                raise ConvertError(f"input {n['name']}: want a static NHWC shape, got {shape}")
            dt = attr(n, "dtype", "DT_FLOAT")
            if dt != "DT_FLOAT":
                raise ConvertError(f"input {n['name']}: dtype {dt} not supported")
            inputs.append(helper.make_tensor_value_info(n["name"], TensorProto.FLOAT, ["N"] + shape[1:]))
            internal = n["name"] + "_nchw"
            self.node("Transpose", [n["name"]], [internal], perm=[0, 3, 1, 2])
            self.alias(n["name"], internal, [-1] + shape[1:], True)
        nodes = self.fold_prelu(nodes)
        done = {n["name"] for n in nodes if n["op"] in ("Const", "Placeholder")}
        pending = [n for n in nodes if n["name"] not in done]
        # Topological order (the JSON is usually ordered already).
        while pending:
            rest = []
            for n in pending:
                if all(self.ref(i) in done for i in n.get("input", [])):
                    self.op(n)
                    done.add(n["name"])
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                raise ConvertError(f"cycle or missing input at {rest[0]['name']}")
            pending = rest
        # Outputs: the signature's order, else the sinks.
        outs = []
        if sig.get("outputs"):
            for key, o in sig["outputs"].items():
                outs.append((key, self.ref(o["name"])))
        else:
            used = {self.ref(i) for n in nodes for i in n.get("input", [])}
            outs = [(n["name"], n["name"]) for n in nodes if n["name"] not in used and n["op"] not in ("Const",)]
        outputs = []
        for key, t in outs:
            src = self.resolve(t)
            if self.nchw.get(src):
                src = self.to_nhwc(src)
            if src != key:
                self.node("Identity", [src], [key])
            outputs.append(helper.make_tensor_value_info(key, TensorProto.FLOAT, ["N"] + self.shape[self.resolve(t)][1:]))
        graph = helper.make_graph(self.nodes, "tfjs", inputs, outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="affectd-tfjs2onnx")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m

    def fold_prelu(self, nodes):
        """TF-slim's PReLU reaches TF.js decomposed, as Add(Relu(z),
        Mul(Sub(z, Abs(z)), c)) (mobilefacenet: 33 of them, MODELS.md §4):
        for z < 0 that is 0 + c·2z, for z ≥ 0 z + 0, i.e. PReLU with slope
        2c (c·(2z) and (2c)·z are the same product, rounded once). Written
        literally, the Abs, Sub and per-channel Mul and Add keep ONNX
        Runtime out of its blocked layout around every block; as Prelu
        they take prelu's form (bit-identical results, 2x faster on the
        iris model). Where z is a convolution whose fused Relu ran already
        (16 of mobilefacenet's, the §4 quirk), z − |z| is 0 and the whole
        pattern is z: it becomes an Identity. The pattern's other nodes,
        used by nothing else, go."""
        by = {n["name"]: n for n in nodes}
        ref = self.ref
        replaced, dead, consts = {}, set(), []
        for n in nodes:
            ins = [ref(i) for i in n.get("input", [])]
            if n["op"] not in ("Add", "AddV2") or len(ins) != 2:
                continue
            for r, m in (ins, ins[::-1]):
                mn = by.get(m)
                if not mn or mn["op"] != "Mul" or len(mn.get("input", [])) != 2:
                    continue
                mi = [ref(i) for i in mn["input"]]
                sub, c = (mi[0], mi[1]) if mi[1] in self.const else (mi[1], mi[0])
                sn = by.get(sub)
                if c not in self.const or not sn or sn["op"] != "Sub":
                    continue
                z, a = (ref(i) for i in sn["input"])
                an, rn, zn = by.get(a), by.get(r), by.get(z)
                if not an or an["op"] != "Abs" or ref(an["input"][0]) != z:
                    continue
                if rn and rn["op"] == "Relu" and ref(rn["input"][0]) == z:
                    alpha = self.uniq(c + "/doubled")
                    self.const[alpha] = (2 * self.const[c]).astype(np.float32)
                    replaced[n["name"]] = {"name": n["name"], "op": "Prelu", "input": [z, alpha]}
                    consts.append({"name": alpha, "op": "Const"})
                    dead.update((r, m, sub, a))
                elif r == z and zn and "relu" in [f.lower() for f in attr(zn, "fused_ops", [])]:
                    replaced[n["name"]] = {"name": n["name"], "op": "Identity", "input": [z]}
                    dead.update((m, sub, a))
                break
        out = consts + [replaced.get(n["name"], n) for n in nodes]
        while True:  # drop the pattern's nodes nothing reads any more
            used = {ref(i) for n in out for i in n.get("input", [])}
            gone = {n["name"] for n in out if n["name"] in dead and n["name"] not in used}
            if not gone:
                return out
            out = [n for n in out if n["name"] not in gone]

    # Tensor names: a TF node's output may be renamed (aliases).
    def alias(self, tf_name, onnx_name, shape, nchw):
        self.aliases[tf_name] = onnx_name
        self.shape[onnx_name] = shape
        self.nchw[onnx_name] = nchw

    def resolve(self, tf_name):
        return self.aliases.get(tf_name, tf_name)

    def act(self, name):
        t = self.resolve(self.ref(name))
        if t in self.const:
            raise ConvertError(f"{name}: a constant where an activation was expected")
        return t

    def op(self, n):
        op, name = n["op"], n["name"]
        ins = [self.ref(i) for i in n.get("input", [])]
        fn = getattr(self, "op_" + op.lstrip("_"), None)
        if fn is None:
            raise ConvertError(f"op {op} (node {name}) is not supported")
        fn(n, name, ins)

    def conv(self, n, name, ins, depthwise):
        x = self.act(ins[0])
        if attr(n, "data_format", "NHWC") != "NHWC":
            raise ConvertError(f"{name}: data_format {attr(n, 'data_format')}")
        if any(d != 1 for d in attr(n, "dilations", [1, 1, 1, 1])):
            raise ConvertError(f"{name}: dilations not supported")
        strides = attr(n, "strides", [1, 1, 1, 1])
        pad = attr(n, "padding")
        wt = self.const.get(ins[1])
        if wt is None:
            raise ConvertError(f"{name}: the filter must be a constant")
        kh, kw = wt.shape[0], wt.shape[1]
        nh, h, w_, c = self.shape[x]
        sh, sw = strides[1], strides[2]
        if pad == "SAME":
            t, b, oh = same_pads(h, kh, sh)
            l, r, ow = same_pads(w_, kw, sw)
        elif pad == "VALID":
            t = b = l = r = 0
            oh, ow = (h - kh) // sh + 1, (w_ - kw) // sw + 1
        else:
            raise ConvertError(f"{name}: padding {pad} not supported")
        if depthwise:
            cin, mult = wt.shape[2], wt.shape[3]
            W = wt.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
            cout, group = cin * mult, cin
        else:
            W = wt.transpose(3, 2, 0, 1)
            cout, group = wt.shape[3], 1
        wname = self.init(ins[1] + "_oihw", W.astype(np.float32))
        conv_in = [x, wname]
        fused = [f.lower() for f in attr(n, "fused_ops", [])] if n["op"].startswith("_") or n["op"].startswith("Fused") else []
        extra, activation = (fused + [None, None])[:2]
        if extra not in (None, "biasadd"):
            raise ConvertError(f"{name}: fused op {extra} not supported")
        if extra == "biasadd":
            bias = self.const.get(ins[2])
            if bias is None:
                raise ConvertError(f"{name}: the bias must be a constant")
            conv_in.append(self.init(ins[2], bias.astype(np.float32)))
        out = name if activation is None else self.uniq(name + "_conv")
        self.node("Conv", conv_in, [out], kernel_shape=[kh, kw], strides=[sh, sw], pads=[t, l, b, r], group=group)
        if activation == "relu":
            self.node("Relu", [out], [name])
        elif activation == "prelu":
            alpha = self.const.get(ins[3])
            if alpha is None:
                raise ConvertError(f"{name}: the PReLU alpha must be a constant")
            arr = self.broadcast_const(alpha, True)[0].astype(np.float32)
            self.prelu(out, arr, ins[3] + "_nchw", name, cout)
        elif activation is not None:
            raise ConvertError(f"{name}: fused activation {activation} not supported")
        self.alias(name, name, [nh, oh, ow, cout], True)

    def op_FusedConv2D(self, n, name, ins):
        if attr(n, "num_args", 1) not in (1, 2):
            raise ConvertError(f"{name}: num_args {attr(n, 'num_args')}")
        self.conv(n, name, ins, False)

    def op_Conv2D(self, n, name, ins):
        self.conv(n, name, ins, False)

    def op_DepthwiseConv2dNative(self, n, name, ins):
        self.conv(n, name, ins, True)

    def op_FusedDepthwiseConv2dNative(self, n, name, ins):
        self.conv(n, name, ins, True)

    def unary(self, n, name, ins, onnx_op):
        x = self.act(ins[0])
        self.node(onnx_op, [x], [name])
        self.alias(name, name, self.shape[x], self.nchw.get(x, False))

    def op_Relu(self, n, name, ins):
        self.unary(n, name, ins, "Relu")

    def op_Sigmoid(self, n, name, ins):
        self.unary(n, name, ins, "Sigmoid")

    def op_Abs(self, n, name, ins):
        self.unary(n, name, ins, "Abs")

    def op_Identity(self, n, name, ins):
        self.unary(n, name, ins, "Identity")

    def binary(self, n, name, ins, onnx_op):
        a, b = ins
        ca, cb = self.const.get(self.resolve(a)), self.const.get(self.resolve(b))
        if ca is not None and cb is not None:
            raise ConvertError(f"{name}: both operands constant")
        x = self.act(a if ca is None else b)
        four = self.nchw.get(x, False)
        names = []
        for t, c in ((a, ca), (b, cb)):
            if c is None:
                names.append(self.act(t))
            else:
                arr = self.broadcast_const(c, four)
                names.append(self.init(self.uniq(t), arr.astype(np.float32) if arr.dtype != np.float32 else arr))
        if ca is None and cb is None:
            xa, xb = names
            if self.nchw.get(xa, False) != self.nchw.get(xb, False):
                raise ConvertError(f"{name}: operands of different layouts")
        self.node(onnx_op, names, [name])
        shape = self.shape[x]
        if ca is None and cb is None:
            sa, sb = self.shape[names[0]], self.shape[names[1]]
            shape = sa if len(sa) >= len(sb) else sb
        self.alias(name, name, shape, four)

    def op_AddV2(self, n, name, ins):
        self.binary(n, name, ins, "Add")

    def op_Add(self, n, name, ins):
        self.binary(n, name, ins, "Add")

    def op_Sub(self, n, name, ins):
        self.binary(n, name, ins, "Sub")

    def op_Mul(self, n, name, ins):
        self.binary(n, name, ins, "Mul")

    def op_Maximum(self, n, name, ins):
        self.binary(n, name, ins, "Max")

    def op_Prelu(self, n, name, ins):
        x = self.act(ins[0])
        alpha = self.const.get(ins[1])
        if alpha is None:
            raise ConvertError(f"{name}: the PReLU alpha must be a constant")
        arr = self.broadcast_const(alpha, self.nchw.get(x, False))
        if self.nchw.get(x, False):
            arr = arr[0]
        arr = arr.astype(np.float32)
        self.prelu(x, arr, ins[1] + "_nchw", name, self.shape[x][3] if self.nchw.get(x) else None)
        self.alias(name, name, self.shape[x], self.nchw.get(x, False))

    def channel_const(self, kind, arr):
        """A [C] float32 constant, written once per kind and length."""
        return self.init(f"tfjs2onnx/{kind}_{arr.shape[0]}", arr.astype(np.float32))

    def scale_channels(self, x, scale, c, out):
        """out = scale · x per channel (scale: the name of a [c] constant), as
        a BatchNormalization with mean 0, variance 1 and epsilon 0: (x − 0) /
        sqrt(1 + 0) · s + 0 is x · s, rounded once, as by Mul. ONNX Runtime's
        NCHWc layout transformer (ORT_ENABLE_ALL, the default) runs it as a
        1×1 depthwise convolution in its blocked layout; a Mul by a
        per-channel constant has no blocked kernel."""
        zero, one = self.channel_const("zeros", np.zeros(c)), self.channel_const("ones", np.ones(c))
        self.node("BatchNormalization", [x, scale, zero, zero, one], [out], epsilon=0.0)

    def prelu(self, x, arr, alpha_name, out, channels):
        """PReLU (x > 0 ? x : alpha · x) without ONNX's PRelu, whose ONNX
        Runtime kernel branches per element (it took 2.7 of the iris model's
        4.95 ms on real eye crops). arr: the slopes as they broadcast against
        x; alpha_name: the name to write them under; channels: x's channel
        count when it is a 4-D NCHW activation, else None.

        4-D with per-channel slopes a: Relu(x) + (−a)·Relu(−x), the two
        products as channel scalings (scale_channels). x > 0 gives x +
        (−a)·0 = x, x < 0 gives 0 + (−a)·(−x), which is a·x rounded once as
        PRelu rounds it, and x = 0 gives 0: exact for every slope. Each op has
        a kernel in ONNX Runtime's NCHWc (blocked) layout, so the network
        stays in that layout from its first convolution to its heads: the Relu
        runs on the blocked tensor, the −1 scaling and its Relu become one 1×1
        depthwise NCHWc convolution with a fused activation, the −a scaling
        and the Add another with a fused sum. The earlier forms, Max(x, a·x)
        (every slope ≤ 1) and Relu(x) + a·Min(x, 0), were exact too, but Mul
        by a per-channel constant, Max and Min have no NCHWc kernel, so each
        PReLU cost a reorder out of the blocked layout and one back in (a
        quarter of the iris model's kernel time), and Mul, Max and Min ran
        on the plain layout (another third). Measured with ONNX Runtime 1.30
        on one thread, side by side: iris.Fitter.Fit (both eyes) 2.45 → 1.7
        ms, facemesh 1.28 → 0.85 ms.

        The graph is exactly the old one (bit-identical outputs with the
        NCHWc transformer off), but in the blocked layout ONNX Runtime also
        fuses each residual Add into the convolution before it (the
        residual joins the convolution's own sum): the same additions in
        another order, so another rounding (the iris model's points move
        by up to 1e-5 pixels of its 64-pixel crop). Against
        TensorFlow.js on 128 eye crops both forms differ by the same 5.7e-5
        at most, 8.1e-6 RMS.

        Other ranks: Max(x, alpha · x) when every slope is at most 1 (for x >
        0, alpha · x <= x; for x < 0, alpha · x >= x; rounding keeps both, x
        being exact), else Relu(x) + alpha · Min(x, 0) (x + 0, 0 + alpha ·
        x)."""
        if channels and arr.ndim == 3 and arr.shape[1:] == (1, 1) and arr.shape[0] in (1, channels):
            c = channels
            a = np.broadcast_to(arr.reshape(-1), (c,)).astype(np.float32)
            pos, negx, rneg, scaled = (self.uniq(out + s) for s in ("_pos", "_negx", "_rneg", "_scaled"))
            self.node("Relu", [x], [pos])
            self.scale_channels(x, self.channel_const("minus_ones", -np.ones(c)), c, negx)
            self.node("Relu", [negx], [rneg])
            self.scale_channels(rneg, self.init(alpha_name + "_negated", -a), c, scaled)
            self.node("Add", [pos, scaled], [out])
            return
        alpha = self.init(alpha_name, arr)
        if np.all(arr <= 1):
            scaled = self.uniq(out + "_scaled")
            self.node("Mul", [x, alpha], [scaled])
            self.node("Max", [x, scaled], [out])
            return
        zero = self.init("tfjs2onnx/zero", np.zeros((), np.float32))
        pos, neg, scaled = self.uniq(out + "_pos"), self.uniq(out + "_neg"), self.uniq(out + "_scaled")
        self.node("Relu", [x], [pos])
        self.node("Min", [x, zero], [neg])
        self.node("Mul", [neg, alpha], [scaled])
        self.node("Add", [pos, scaled], [out])

    def op_Square(self, n, name, ins):
        x = self.act(ins[0])
        self.node("Mul", [x, x], [name])
        self.alias(name, name, self.shape[x], self.nchw.get(x, False))

    def op_Rsqrt(self, n, name, ins):
        x = self.act(ins[0])
        s = self.uniq(name + "_sqrt")
        self.node("Sqrt", [x], [s])
        self.node("Reciprocal", [s], [name])
        self.alias(name, name, self.shape[x], self.nchw.get(x, False))

    def op_Softmax(self, n, name, ins):
        x = self.act(ins[0])
        if self.nchw.get(x):
            raise ConvertError(f"{name}: Softmax over a 4-D tensor not supported")
        self.node("Softmax", [x], [name], axis=-1)
        self.alias(name, name, self.shape[x], False)

    def op_MaxPool(self, n, name, ins):
        x = self.act(ins[0])
        k, s = attr(n, "ksize"), attr(n, "strides")
        if attr(n, "data_format", "NHWC") != "NHWC" or k[0] != 1 or k[3] != 1 or s[0] != 1 or s[3] != 1:
            raise ConvertError(f"{name}: MaxPool over batch or channels not supported")
        nh, h, w_, c = self.shape[x]
        pad = attr(n, "padding")
        if pad == "SAME":
            t, b, oh = same_pads(h, k[1], s[1])
            l, r, ow = same_pads(w_, k[2], s[2])
        elif pad == "VALID":
            t = b = l = r = 0
            oh, ow = (h - k[1]) // s[1] + 1, (w_ - k[2]) // s[2] + 1
        else:
            raise ConvertError(f"{name}: padding {pad}")
        self.node("MaxPool", [x], [name], kernel_shape=[k[1], k[2]], strides=[s[1], s[2]], pads=[t, l, b, r])
        self.alias(name, name, [nh, oh, ow, c], True)

    def axes4(self, axes, rank):
        """NHWC axes → NCHW axes for a 4-D tensor."""
        m = {0: 0, 1: 2, 2: 3, 3: 1}
        return [m[a % rank] for a in axes]

    def op_Pad(self, n, name, ins):
        x = self.act(ins[0])
        p = self.const.get(ins[1])
        if p is None or p.shape != (len(self.shape[x]), 2):
            raise ConvertError(f"{name}: paddings must be a constant [rank, 2]")
        p = p.astype(np.int64)
        if self.nchw.get(x):
            p = p[[0, 3, 1, 2]]
        q = self.const[ins[1]]
        self.alias(name, name, [d if d < 0 else d + int(q[i, 0] + q[i, 1]) for i, d in enumerate(self.shape[x])], self.nchw.get(x, False))
        c = self.shape[x][3] if self.nchw.get(x) else 0
        if c and not p[[0, 2, 3]].any() and p[1].any() and not (p[1] % c).any():
            # Whole copies of x's channel count of zero channels added to a
            # 4-D activation (the iris model's downsampling block: its skip
            # path, before a residual Add), as a Concat with x scaled by 0
            # (scale_channels: 0 · x is ±0, and ±0 + y = y in the Add). Pad
            # has no kernel in ONNX Runtime's NCHWc layout, Concat along
            # channels and the scaling do (see prelu), so the residual
            # stream stays in that layout. Assumes a finite x (0 · ∞ is NaN).
            zeros = self.uniq(name + "_zeros")
            self.scale_channels(x, self.channel_const("zeros", np.zeros(c)), c, zeros)
            parts = [zeros] * int(p[1, 0] // c) + [x] + [zeros] * int(p[1, 1] // c)
            self.node("Concat", parts, [name], axis=1)
            return
        pads = np.concatenate([p[:, 0], p[:, 1]])
        self.node("Pad", [x, self.init(self.uniq(name + "_pads"), pads)], [name], mode="constant")

    def op_Reshape(self, n, name, ins):
        x = self.to_nhwc(self.act(ins[0]))
        shp = self.const.get(ins[1])
        if shp is None:
            raise ConvertError(f"{name}: the shape must be a constant")
        self.node("Reshape", [x, self.init(self.uniq(name + "_shape"), shp.astype(np.int64))], [name])
        src = self.shape[self.act(ins[0])]
        total = int(np.prod([d for d in src[1:]]))
        out = [int(d) for d in shp]
        if out and out[0] == -1:
            rest = int(np.prod(out[1:])) if len(out) > 1 else 1
            if rest != total:
                raise ConvertError(f"{name}: reshape {src} → {out} changes the per-item size")
        self.alias(name, name, [-1] + out[1:], False)

    def op_ConcatV2(self, n, name, ins):
        axis = int(self.const[ins[-1]])
        xs = [self.act(i) for i in ins[:-1]]
        four = self.nchw.get(xs[0], False)
        rank = len(self.shape[xs[0]])
        a = self.axes4([axis], 4)[0] if four else axis % rank
        self.node("Concat", xs, [name], axis=a)
        shape = list(self.shape[xs[0]])
        shape[axis % rank] = sum(self.shape[x][axis % rank] for x in xs)
        self.alias(name, name, shape, four)

    def reduce(self, n, name, ins, onnx_op):
        x = self.act(ins[0])
        axes = [int(a) for a in np.atleast_1d(self.const[ins[1]])]
        keep = attr(n, "keep_dims", False)
        rank = len(self.shape[x])
        four = self.nchw.get(x, False)
        oaxes = self.axes4(axes, 4) if four else [a % rank for a in axes]
        if onnx_op == "ReduceSum":  # axes an input from opset 13
            self.node(onnx_op, [x, self.init(self.uniq(name + "_axes"), np.array(oaxes, np.int64))], [name], keepdims=int(keep))
        else:
            self.node(onnx_op, [x], [name], axes=oaxes, keepdims=int(keep))
        shape = [1 if i in [a % rank for a in axes] else d for i, d in enumerate(self.shape[x])]
        if not keep:
            shape = [d for i, d in enumerate(self.shape[x]) if i not in [a % rank for a in axes]]
        self.alias(name, name, shape, four and keep)
        if four and not keep and len(shape) != 2:
            raise ConvertError(f"{name}: reducing a 4-D tensor to rank {len(shape)} not supported")

    def op_Mean(self, n, name, ins):
        self.reduce(n, name, ins, "ReduceMean")

    def op_Sum(self, n, name, ins):
        self.reduce(n, name, ins, "ReduceSum")

    def op_Squeeze(self, n, name, ins):
        x = self.act(ins[0])
        dims = attr(n, "squeeze_dims", [])
        rank = len(self.shape[x])
        if not dims:
            raise ConvertError(f"{name}: Squeeze without squeeze_dims not supported")
        four = self.nchw.get(x, False)
        oaxes = self.axes4(dims, 4) if four else [d % rank for d in dims]
        self.node("Squeeze", [x, self.init(self.uniq(name + "_axes"), np.array(oaxes, np.int64))], [name])
        shape = [d for i, d in enumerate(self.shape[x]) if i not in [a % rank for a in dims]]
        if four and len(shape) != 2:
            raise ConvertError(f"{name}: squeezing a 4-D tensor to rank {len(shape)} not supported")
        self.alias(name, name, shape, False)


def convert(json_path):
    with open(json_path) as f:
        model = json.load(f)
    if model.get("format") not in (None, "graph-model"):
        raise ConvertError(f"{json_path}: format {model.get('format')!r}: want a TF.js graph model")
    weights = load_weights(model, os.path.dirname(os.path.abspath(json_path)))
    return Converter(model, weights).convert()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="tfjs2onnx.py", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="the TF.js model.json (its weight files beside it)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    try:
        m = convert(a.model)
    except (ConvertError, OSError, ValueError, KeyError) as e:
        print(f"tfjs2onnx: error: {e}", file=sys.stderr)
        return 2
    tmp = a.output + ".tmp"
    onnx.save(m, tmp)
    os.replace(tmp, a.output)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"tfjs2onnx: wrote {a.output}: {len(m.graph.node)} nodes ({', '.join(ops)}); "
          f"inputs {[i.name for i in m.graph.input]}, outputs {[o.name for o in m.graph.output]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
