"""Tests of the export tool: checkpoint formats, key checks, head specs, CLI.

Run: /usr/bin/python3 -m unittest discover -s tools/export -p 'test_*.py'
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
import warnings
from contextlib import redirect_stderr, redirect_stdout

import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import maeface  # noqa: E402
import maeface_export  # noqa: E402
from maeface import ExportError  # noqa: E402

warnings.filterwarnings("ignore")
TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "maeface_export.py")


def tiny(**kw):
    return maeface.random_state_dict("tiny", seed=3, **kw)


class CheckpointTest(unittest.TestCase):
    def test_exact_maeface_names(self):
        sd = tiny(global_pool=True, num_logits=5)
        want = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
        for i in range(12):
            for k in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                      "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                      "mlp.fc2.weight", "mlp.fc2.bias"):
                want.add(f"blocks.{i}.{k}")
        self.assertEqual(set(sd), want)
        self.assertEqual(tuple(sd["pos_embed"].shape), (1, 197, 192))
        self.assertEqual(tuple(sd["blocks.0.attn.qkv.weight"].shape), (576, 192))
        self.assertEqual(tuple(sd["patch_embed.proj.weight"].shape), (192, 3, 16, 16))

    def test_cls_pooling_has_norm(self):
        sd = tiny(global_pool=False)
        self.assertIn("norm.weight", sd)
        self.assertNotIn("fc_norm.weight", sd)
        model, _ = maeface.load_backbone(sd)
        self.assertFalse(model.global_pool)

    def test_seeded(self):
        a, b = tiny(), tiny()
        self.assertTrue(all(torch.equal(a[k], b[k]) for k in a))
        c = maeface.random_state_dict("tiny", seed=4)
        self.assertFalse(torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"]))

    def test_wrapped_bare_and_ddp(self):
        sd = tiny()
        with tempfile.TemporaryDirectory() as d:
            for name, obj in [("wrapped", {"model": sd}), ("bare", sd), ("ddp", {"model": {"module." + k: v for k, v in sd.items()}})]:
                p = os.path.join(d, name + ".pth")
                torch.save(obj, p)
                got = maeface.read_state_dict(p)
                self.assertEqual(set(got), set(sd), name)

    def test_full_mae_checkpoint_decoder_ignored(self):
        sd = tiny(global_pool=False, full_mae=True)
        self.assertIn("mask_token", sd)
        self.assertTrue(any(k.startswith("decoder_blocks.") for k in sd))
        model, notes = maeface.load_backbone(sd)
        self.assertIn("mask_token", notes["ignored"])
        self.assertIn("decoder_pred.weight", notes["ignored"])
        self.assertEqual(notes["unexpected"], [])

    def test_missing_key(self):
        sd = tiny()
        del sd["blocks.3.mlp.fc1.weight"]
        with self.assertRaisesRegex(ExportError, r"missing backbone keys.*blocks\.3\.mlp\.fc1\.weight"):
            maeface.load_backbone(sd)

    def test_misshaped_key(self):
        sd = tiny()
        sd["blocks.0.attn.proj.weight"] = torch.zeros(192, 100)
        with self.assertRaisesRegex(ExportError, r"mis-shaped.*blocks\.0\.attn\.proj\.weight \(192, 100\) \(want \(192, 192\)\)"):
            maeface.load_backbone(sd)

    def test_preset_mismatch(self):
        with self.assertRaisesRegex(ExportError, "mis-shaped backbone keys for ViT-small"):
            maeface.load_backbone(tiny(), preset="small")

    def test_pooling_hint(self):
        with self.assertRaisesRegex(ExportError, "global-pool off"):
            maeface.load_backbone(tiny(global_pool=False), global_pool=True)

    def test_not_a_vit(self):
        with self.assertRaisesRegex(ExportError, "cls_token"):
            maeface.load_backbone({"conv1.weight": torch.zeros(3)})

    def test_not_a_checkpoint(self):
        with tempfile.NamedTemporaryFile(suffix=".pth") as f:
            f.write(b"garbage")
            f.flush()
            with self.assertRaisesRegex(ExportError, "cannot be read as a PyTorch checkpoint"):
                maeface.read_state_dict(f.name)

    def test_pos_embed_interpolation(self):
        sd = tiny()
        model, _ = maeface.load_backbone(sd, img_size=112)
        self.assertEqual(tuple(model.pos_embed.shape), (1, 50, 192))
        feats, _ = model(torch.zeros(1, 3, 112, 112))
        self.assertEqual(tuple(feats.shape), (1, 192))

    def test_forward_matches_mae_definition(self):
        # Global pooling: mean of patch tokens, then fc_norm; CLS: norm, then token 0.
        sd = tiny(global_pool=True)
        model, _ = maeface.load_backbone(sd)
        x = torch.randn(2, 3, 224, 224)
        with torch.no_grad():
            feats, logits = model(x)
            t = model.patch_embed(x)
            t = torch.cat((model.cls_token.expand(2, -1, -1), t), dim=1) + model.pos_embed
            for b in model.blocks:
                t = b(t)
            want = torch.nn.functional.layer_norm(t[:, 1:].mean(1), (192,), sd["fc_norm.weight"], sd["fc_norm.bias"], 1e-6)
        self.assertIsNone(logits)
        self.assertTrue(torch.allclose(feats, want, atol=1e-6))


class HeadSpecTest(unittest.TestCase):
    def test_presets_and_offsets(self):
        spec = maeface.load_head_spec("abaw", None)
        heads = maeface.resolve_heads(spec, 22)
        self.assertEqual([(h["name"], h["offset"], len(h["labels"])) for h in heads], [("au", 0, 12), ("va", 12, 2), ("expr", 14, 8)])
        self.assertEqual(heads[0]["threshold"], 0.5)
        self.assertEqual(heads[2]["labels"][4], "happiness")

    def test_cli_heads(self):
        spec = maeface.load_head_spec(None, ["au:sigmoid:0.4=@disfa-au", "va:tanh=valence,arousal"])
        heads = maeface.resolve_heads(spec, 10)
        self.assertEqual(heads[0]["threshold"], 0.4)
        self.assertEqual(heads[1]["offset"], 8)

    def test_json_file(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"heads": [{"name": "va", "offset": 0, "labels": ["valence", "arousal"], "activation": "tanh"}]}, f)
        try:
            heads = maeface.resolve_heads(maeface.load_head_spec(f.name, None), 2)
            self.assertEqual(heads[0]["name"], "va")
        finally:
            os.unlink(f.name)

    def test_errors(self):
        cases = [
            ([{"name": "a", "labels": ["x"], "activation": "relu"}], 1, "activation 'relu'"),
            ([{"name": "a", "labels": ["x"], "activation": "tanh", "threshold": 0.5}], 1, "threshold needs the sigmoid"),
            ([{"name": "a", "labels": ["x"], "activation": "sigmoid", "threshold": 1.5}], 1, r"must be in \(0, 1\)"),
            ([{"name": "a", "labels": "@nope"}], 1, "unknown label set"),
            ([{"name": "a", "labels": ["x", "y"]}, {"name": "b", "offset": 1, "labels": ["z"]}], 2, "overlap at logit 1"),
            ([{"name": "a", "labels": ["x"]}], 3, r"logits \[1, 2\].*not covered"),
            ([{"name": "a", "labels": ["x", "y"]}], 1, "exceed"),
            ([{"name": "a", "labels": ["x"]}, {"name": "a", "labels": ["y"]}], 2, "duplicate head name"),
            ([{"name": "Bad", "labels": ["x"]}], 1, "must match"),
            ([{"name": "a", "labels": ["x"], "color": "red"}], 1, "unknown field"),
        ]
        for spec, k, msg in cases:
            with self.subTest(msg=msg):
                with self.assertRaisesRegex(ExportError, msg):
                    maeface.resolve_heads(spec, k)
        with self.assertRaisesRegex(ExportError, "want NAME:ACTIVATION"):
            maeface.parse_head_arg("au")


class CLITest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()

    def run_tool(self, *args):
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = maeface_export.main(list(args))
        return code, out.getvalue(), err.getvalue()

    def test_encoder_only_export(self):
        ckpt = os.path.join(self.dir, "mae.pth")
        onnx_path = os.path.join(self.dir, "mae.onnx")
        code, _, err = self.run_tool("random-checkpoint", "-o", ckpt, "--preset", "tiny", "--global-pool", "off", "--full-mae")
        self.assertEqual(code, 0, err)
        code, out, err = self.run_tool("export", ckpt, "-o", onnx_path, "--norm", "imagenet")
        self.assertEqual(code, 0, err)
        self.assertIn("ignoring", err)
        m = onnx.load(onnx_path)
        self.assertEqual([o.name for o in m.graph.output], ["features"])
        meta = {p.key: json.loads(p.value) for p in m.metadata_props}
        self.assertEqual(meta["affectd.heads"], [])
        self.assertEqual(meta["affectd.input"]["mean"], [0.485, 0.456, 0.406])
        self.assertFalse(meta["affectd.model"]["global_pool"])
        self.assertEqual(meta["affectd.model"]["checkpoint_sha256"], maeface.file_sha256(ckpt))
        dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        self.assertEqual(dims, ["N", 3, 224, 224])

    def test_head_needs_spec(self):
        ckpt = os.path.join(self.dir, "head.pth")
        code, _, err = self.run_tool("random-checkpoint", "-o", ckpt, "--heads", "disfa")
        self.assertEqual(code, 0, err)
        code, _, err = self.run_tool("export", ckpt, "-o", os.path.join(self.dir, "x.onnx"))
        self.assertEqual(code, 2)
        self.assertIn("describe it with --heads", err)
        code, _, err = self.run_tool("export", ckpt, "-o", os.path.join(self.dir, "x.onnx"), "--heads", "abaw")
        self.assertEqual(code, 2)
        self.assertIn("exceed the checkpoint head's 8 outputs", err)

    def test_error_is_one_line_exit_2(self):
        p = subprocess.run([sys.executable, TOOL, "export", "/nonexistent.pth", "-o", "/tmp/x.onnx"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr.strip().count("\n"), 0, p.stderr)
        self.assertIn("no such file", p.stderr)

    def test_fp16_and_int8_exclusive(self):
        ckpt = os.path.join(self.dir, "excl.pth")
        code, _, err = self.run_tool("random-checkpoint", "-o", ckpt, "--preset", "tiny")
        self.assertEqual(code, 0, err)
        code, _, err = self.run_tool("export", ckpt, "-o", os.path.join(self.dir, "x.onnx"), "--fp16", "--int8")
        self.assertEqual(code, 2)
        self.assertIn("exclude each other", err)


class Int8Test(unittest.TestCase):
    """The graph rewrite alone (the accuracy gate, which needs ONNX Runtime,
    is tested from Go: tools/quantgate/gate)."""

    def test_weight_round_trip(self):
        import numpy as np
        import int8
        w = np.random.default_rng(1).normal(size=(64, 32)).astype(np.float32)
        w[:, 3] = 0  # a dead column keeps a usable scale
        q, scale = int8.quantize_weight(w)
        self.assertEqual(q.dtype, np.int8)
        self.assertEqual(scale.shape, (32,))
        self.assertLessEqual(int(np.abs(q).max()), 127)
        err = np.abs(q.astype(np.float32) * scale[None, :] - w)
        self.assertTrue(np.all(err <= scale[None, :] / 2 + 1e-7))
        self.assertEqual(scale[3], 1.0)

    def test_rewrites_every_linear_layer(self):
        import int8
        d = tempfile.mkdtemp()
        ckpt, path = os.path.join(d, "t.pth"), os.path.join(d, "t.onnx")
        code = maeface_export.main(["random-checkpoint", "-o", ckpt, "--preset", "tiny", "--heads", "abaw"])
        self.assertEqual(code, 0)
        code = maeface_export.main(["export", ckpt, "-o", path, "--heads", "abaw"])
        self.assertEqual(code, 0)
        m = onnx.load(path)
        n = int8.convert(m)
        ops = [node.op_type for node in m.graph.node]
        self.assertEqual(n, 48)  # 12 blocks × qkv, proj, fc1, fc2
        self.assertEqual(ops.count("MatMulInteger"), 48)
        self.assertEqual(ops.count("Gemm"), 1)  # the head stays float32
        self.assertLessEqual(ops.count("DynamicQuantizeLinear"), 48)
        onnx.checker.check_model(m)
        m = onnx.load(path)
        self.assertEqual(int8.convert(m, heads=True), 49)
        self.assertEqual([node.op_type for node in m.graph.node].count("Gemm"), 0)


if __name__ == "__main__":
    unittest.main()
