#!/usr/bin/python3
"""affectd's model tool: MAE-Face checkpoints (.pth) → ONNX with affectd metadata.

Commands:
  export             a checkpoint → an ONNX model affectd can serve
  random-checkpoint  a seeded random checkpoint in MAE-Face's exact format
  reference          PyTorch outputs of a checkpoint on given inputs (parity tests)
  inspect            prints an ONNX model's inputs, outputs and affectd metadata

Run with Debian's /usr/bin/python3 (python3-torch 1.13, python3-onnx 1.12).
Errors in the user's input print one line and exit with status 2.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import maeface  # noqa: E402
from maeface import ExportError  # noqa: E402

EXPORTER = "affectd-export/1"


def _torch():
    import torch
    return torch


def _floats3(s, flag):
    try:
        v = [float(x) for x in s.split(",")]
    except ValueError:
        raise ExportError(f"{flag} {s!r}: want three comma-separated numbers")
    if len(v) != 3:
        raise ExportError(f"{flag} {s!r}: want three comma-separated numbers")
    return v


class OutputSelect:
    """Wraps the model so the ONNX graph has exactly the requested outputs."""

    def __new__(cls, model, outputs):
        torch = _torch()

        class _M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = model

            def forward(self, x):
                feats, logits = self.m(x)
                res = {"features": feats, "logits": logits}
                return tuple(res[o] for o in outputs)

        return _M()


def cmd_export(a):
    torch = _torch()
    import onnx

    sd = maeface.read_state_dict(a.checkpoint)
    gp = {"auto": "auto", "on": True, "off": False}[a.global_pool]
    model, notes = maeface.load_backbone(sd, preset=a.preset, global_pool=gp, img_size=a.input_size)
    for k in notes["unexpected"]:
        print(f"export: warning: ignoring unexpected checkpoint key {k}", file=sys.stderr)
    if notes["ignored"]:
        print(f"export: ignoring {len(notes['ignored'])} MAE decoder keys (mask_token, decoder_*)", file=sys.stderr)

    num_logits = model.head.out_features if model.head is not None else 0
    spec = maeface.load_head_spec(a.heads, a.head)
    if spec and num_logits == 0:
        raise ExportError("a head spec was given but the checkpoint has no head.weight/head.bias: "
                          "heads come from a fine-tuned checkpoint")
    if num_logits and not spec:
        raise ExportError(f"the checkpoint has a head with {num_logits} outputs: describe it with --heads or --head")
    heads = maeface.resolve_heads(spec, num_logits) if spec else []

    if a.outputs == "auto":
        outputs = ["features"] + (["logits"] if num_logits else [])
    else:
        outputs = [o.strip() for o in a.outputs.split(",") if o.strip()]
        for o in outputs:
            if o not in ("features", "logits"):
                raise ExportError(f"--outputs: unknown output {o!r} (features, logits)")
        if "logits" in outputs and not num_logits:
            raise ExportError("--outputs logits: the checkpoint has no head")
        if not outputs or len(set(outputs)) != len(outputs):
            raise ExportError("--outputs: want features and/or logits, each once")

    if a.mean or a.std:
        if not (a.mean and a.std):
            raise ExportError("--mean and --std go together")
        mean, std = _floats3(a.mean, "--mean"), _floats3(a.std, "--std")
        norm_name = "custom"
    else:
        mean, std = maeface.NORMALISATION[a.norm]
        norm_name = a.norm
    if any(s <= 0 for s in std):
        raise ExportError("--std: every value must be > 0")

    wrapped = OutputSelect(model, outputs).eval()
    dummy = torch.zeros(2, 3, a.input_size, a.input_size)
    dyn = {"input": {0: "N"}}
    for o in outputs:
        dyn[o] = {0: "N"}
    out_dir = os.path.dirname(os.path.abspath(a.output))
    os.makedirs(out_dir, exist_ok=True)
    tmp = a.output + ".tmp"
    with torch.no_grad():
        torch.onnx.export(wrapped, dummy, tmp, input_names=["input"], output_names=outputs,
                          dynamic_axes=dyn, opset_version=a.opset, do_constant_folding=True)
    m = onnx.load(tmp)
    # Declare the outputs' exact shapes: [N, D] and [N, K].
    widths = {"features": model.dim, "logits": num_logits}
    for o in m.graph.output:
        dims = o.type.tensor_type.shape.dim
        dims[0].dim_param = "N"
        dims[1].dim_value = widths[o.name]
    if a.fp16 and a.int8:
        raise ExportError("--fp16 and --int8 exclude each other (fp16 is for GPUs, int8 for CPUs)")

    preset = model.preset
    meta = {
        "affectd.input": {"size": a.input_size, "mean": mean, "std": std, "crop": a.crop,
                          "layout": "NCHW", "color": "RGB", "normalisation": norm_name},
        "affectd.heads": heads,
        "affectd.model": {
            "name": a.name or f"MAE-Face ViT-{preset}/16",
            "backbone": f"vit_{preset}_patch16_{a.input_size}",
            "global_pool": model.global_pool,
            "feature_dim": model.dim,
            "num_logits": num_logits,
            "checkpoint": os.path.basename(a.checkpoint),
            "checkpoint_sha256": maeface.file_sha256(a.checkpoint),
            "precision": "fp32",
            "demo": bool(a.demo),
            "exporter": EXPORTER,
        },
    }
    m.producer_name = "affectd-export"
    ref = None
    if a.int8:
        # The float32 graph is the gate's reference.
        _set_meta(m, meta)
        ref = a.output + ".fp32.tmp"
        onnx.save(m, ref)
        import int8
        layers = int8.convert(m, heads=a.int8_heads, weight_scale_error=a.int8_scale_error)
        meta["affectd.model"]["precision"] = "int8"
        meta["affectd.model"]["quantization"] = {
            "layers": layers, "weights": "int8 symmetric per output channel",
            "activations": "uint8 dynamic per tensor", "heads": bool(a.int8_heads)}
    elif a.fp16:
        import fp16
        fp16.convert(m)
        meta["affectd.model"]["precision"] = "fp16"
    _set_meta(m, meta)
    onnx.checker.check_model(m)
    onnx.save(m, tmp)
    if ref:
        try:
            figures = _gate(ref, tmp, a)
        finally:
            os.remove(ref)
        meta["affectd.model"]["quantization"]["gate"] = figures
        _set_meta(m, meta)
        onnx.save(m, tmp)
    os.replace(tmp, a.output)
    heads_txt = ", ".join(f"{h['name']}({len(h['labels'])},{h['activation']})" for h in heads) or "none"
    print(f"export: wrote {a.output}: ViT-{preset}/16 global_pool={model.global_pool} outputs={','.join(outputs)} "
          f"heads={heads_txt} norm={norm_name} precision={meta['affectd.model']['precision']}")


def _set_meta(m, meta):
    del m.metadata_props[:]
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key = k
        p.value = json.dumps(v, separators=(",", ":"))


def _gate(ref, cand, a):
    """Runs tools/quantgate (the float32 and int8 models through affectd's
    engine on real faces); refuses the export when it fails. Returns the
    figures line."""
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cmd = os.environ.get("AFFECTD_QUANTGATE", "").split() or ["go", "run", "./tools/quantgate"]
    cmd = cmd + ["-ref", ref, "-model", cand]
    if a.calib:
        cmd += ["-calib", os.path.abspath(a.calib)]
    if a.ort:
        cmd += ["-ort", os.path.abspath(a.ort)]
    env = dict(os.environ)
    if os.path.isdir("/usr/local/go/bin"):
        env["PATH"] = env.get("PATH", "") + os.pathsep + "/usr/local/go/bin"
    print(f"export: accuracy gate: {' '.join(cmd)}", file=sys.stderr)
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    except OSError as e:
        os.remove(cand)
        raise ExportError(f"the accuracy gate could not run ({e}): it needs Go and `make setup`")
    sys.stderr.write(p.stderr)
    out = p.stdout.strip().splitlines()
    line = out[-1] if out else ""
    if line:
        print(f"export: {line}")
    if p.returncode != 0:
        os.remove(cand)
        if p.returncode == 1:
            raise ExportError("the int8 model is too far from the float32 model on the calibration faces; "
                              "refused (see the figures above)")
        raise ExportError(f"the accuracy gate failed to run (exit {p.returncode}); see its message above")
    return line.removeprefix("gate: ")


def cmd_random(a):
    torch = _torch()
    if a.global_pool == "auto":
        a.global_pool = "off" if a.full_mae else "on"
    if a.full_mae and a.global_pool == "on":
        raise ExportError("--full-mae writes a pre-training checkpoint, whose encoder ends in norm.*, not fc_norm.*: "
                          "use --global-pool off")
    spec = maeface.load_head_spec(a.heads, a.head)
    n = maeface.spec_size(spec) if spec else 0
    if spec:
        maeface.resolve_heads(spec, n)  # validate now, not at export time
    sd = maeface.random_state_dict(a.preset, a.seed, global_pool=(a.global_pool == "on"),
                                   num_logits=n, full_mae=a.full_mae, img_size=a.input_size)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    tmp = a.output + ".tmp"
    torch.save({"model": sd}, tmp)
    os.replace(tmp, a.output)
    print(f"random-checkpoint: wrote {a.output}: ViT-{a.preset} seed={a.seed} global_pool={a.global_pool} "
          f"head={n} full_mae={a.full_mae} keys={len(sd)}")


def cmd_reference(a):
    """Runs the checkpoint in PyTorch on raw float32 inputs [N,3,S,S]."""
    torch = _torch()
    import numpy as np

    sd = maeface.read_state_dict(a.checkpoint)
    gp = {"auto": "auto", "on": True, "off": False}[a.global_pool]
    model, _ = maeface.load_backbone(sd, preset=a.preset, global_pool=gp, img_size=a.input_size)
    num_logits = model.head.out_features if model.head is not None else 0
    spec = maeface.load_head_spec(a.heads, a.head)
    heads = maeface.resolve_heads(spec, num_logits) if spec else []
    x = np.fromfile(a.inputs, dtype="<f4")
    per = 3 * a.input_size * a.input_size
    if x.size % per:
        raise ExportError(f"{a.inputs}: {x.size} floats is not a multiple of 3x{a.input_size}x{a.input_size}")
    x = torch.from_numpy(x.reshape(-1, 3, a.input_size, a.input_size).copy())
    with torch.no_grad():
        feats, logits = model(x)
    os.makedirs(a.out, exist_ok=True)
    feats.numpy().astype("<f4").tofile(os.path.join(a.out, "features.f32"))
    info = {"n": int(x.shape[0]), "feature_dim": int(feats.shape[1]), "num_logits": num_logits}
    if logits is not None:
        logits.numpy().astype("<f4").tofile(os.path.join(a.out, "logits.f32"))
        maeface.apply_activations(logits, heads).numpy().astype("<f4").tofile(os.path.join(a.out, "decoded.f32"))
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump(info, f)
    print(f"reference: {info['n']} inputs → {a.out}")


def cmd_inspect(a):
    import onnx
    try:
        m = onnx.load(a.model)
    except Exception as e:
        raise ExportError(f"{a.model}: not an ONNX model: {e}")

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    for i in m.graph.input:
        print(f"input  {i.name} {shape(i)}")
    for o in m.graph.output:
        print(f"output {o.name} {shape(o)}")
    for p in m.metadata_props:
        print(f"{p.key} = {p.value}")


def add_model_args(p):
    p.add_argument("--preset", default="auto", choices=["auto"] + list(maeface.PRESETS),
                   help="ViT size; auto reads it from the checkpoint")
    p.add_argument("--global-pool", default="auto", choices=["auto", "on", "off"],
                   help="mean-pool patch tokens + fc_norm (on) or CLS token + norm (off); auto: on when fc_norm.* exists")
    p.add_argument("--input-size", type=int, default=224, help="input side in pixels (pos_embed is interpolated)")
    add_head_args(p)


def add_head_args(p):
    p.add_argument("--heads", help=f"head spec: a preset ({', '.join(maeface.HEAD_PRESETS)}) or a JSON file")
    p.add_argument("--head", action="append", metavar="NAME:ACT[:THR]=LABELS",
                   help="one head, e.g. au:sigmoid:0.5=@abaw-au or va:tanh=valence,arousal (repeatable; "
                        "label sets: " + ", ".join("@" + k for k in maeface.LABEL_SETS) + ")")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="maeface_export.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("export", help="checkpoint → ONNX with affectd.* metadata")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True)
    add_model_args(p)
    p.add_argument("--outputs", default="auto", help="features,logits (default: features, plus logits when there is a head)")
    p.add_argument("--norm", default="maeface", choices=list(maeface.NORMALISATION),
                   help="input normalisation preset (default: MAE-Face face statistics)")
    p.add_argument("--mean", help="custom mean r,g,b (with --std)")
    p.add_argument("--std", help="custom std r,g,b (with --mean)")
    p.add_argument("--crop", default="align5/v1", help="the face crop the model was trained on (affectd.input.crop)")
    p.add_argument("--fp16", action="store_true", help="fp16 weights and compute, fp32 input/outputs (for GPUs)")
    p.add_argument("--int8", action="store_true",
                   help="int8 linear layers with dynamically quantized activations (for CPUs); checked by the "
                        "accuracy gate (tools/quantgate) on faces before the file is written")
    p.add_argument("--int8-heads", action="store_true", help="with --int8: quantize the heads too (default: float32)")
    p.add_argument("--calib", help="with --int8: a folder of pictures/videos with faces for the gate "
                                   "(default: affectd's test media)")
    p.add_argument("--ort", help="with --int8: the ONNX Runtime library the gate uses (default: make setup's)")
    p.add_argument("--int8-scale-error", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17: fused LayerNormalization)")
    p.add_argument("--name", help="model name shown to clients")
    p.add_argument("--demo", action="store_true", help="mark as a demo model whose outputs are not affect estimates")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("random-checkpoint", help="a seeded random checkpoint in MAE-Face's exact format")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--preset", default="tiny", choices=list(maeface.PRESETS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--global-pool", default="auto", choices=["auto", "on", "off"],
                   help="fc_norm (on) or norm (off); auto: off with --full-mae, else on")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--full-mae", action="store_true", help="add mask_token and decoder_* keys (pre-training checkpoint)")
    add_head_args(p)
    p.set_defaults(fn=cmd_random)

    p = sub.add_parser("reference", help="PyTorch outputs on raw float32 inputs (for parity tests)")
    p.add_argument("checkpoint")
    p.add_argument("--inputs", required=True, help="little-endian float32 [N,3,S,S]")
    p.add_argument("--out", required=True, help="folder for features.f32, logits.f32, decoded.f32, reference.json")
    add_model_args(p)
    p.set_defaults(fn=cmd_reference)

    p = sub.add_parser("inspect", help="print an ONNX model's I/O and affectd metadata")
    p.add_argument("model")
    p.set_defaults(fn=cmd_inspect)

    a = ap.parse_args(argv)
    try:
        a.fn(a)
    except ExportError as e:
        print(f"{a.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
