"""MAE-Face's ViT encoder, its checkpoint format, and affectd head specs.

The module names below reproduce, parameter for parameter, the state-dict
names of the ViT that MAE (facebookresearch/mae, models_vit.py, on timm 0.3.2)
and MAE-Face train and release:

    cls_token                    [1, 1, D]
    pos_embed                    [1, 1 + (S/16)^2, D]
    patch_embed.proj.{weight,bias}
    blocks.{i}.norm1.{weight,bias}
    blocks.{i}.attn.qkv.{weight,bias}      (qkv_bias=True)
    blocks.{i}.attn.proj.{weight,bias}
    blocks.{i}.norm2.{weight,bias}
    blocks.{i}.mlp.fc1.{weight,bias}
    blocks.{i}.mlp.fc2.{weight,bias}
    norm.{weight,bias}           when global pooling is off (CLS token)
    fc_norm.{weight,bias}        when global pooling is on (mean of patch tokens)
    head.{weight,bias}           a fine-tune's linear head (optional)

A full MAE pre-training checkpoint also holds mask_token and decoder_* keys;
they belong to the reconstruction decoder and are ignored here.

No timm: PyTorch (Debian's python3-torch 1.13) only.
"""

import hashlib
import json
import math
import re

import torch
from torch import nn

# --------------------------------------------------------------------------
# Presets and normalisation

PRESETS = {
    # name: (embed_dim, depth, num_heads)
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}

# MAE's reconstruction decoder, as models_mae.py builds it for ViT-B/L; the
# smaller presets get a smaller decoder (these keys are ignored on export).
DECODER = {
    "tiny": (128, 2, 4),
    "small": (256, 4, 8),
    "base": (512, 8, 16),
    "large": (512, 8, 16),
}

NORMALISATION = {
    # MAE-Face's face statistics (its own lineage).
    "maeface": ([0.49895147, 0.41043906, 0.36561476], [0.29708471, 0.26990031, 0.26525996]),
    # ImageNet statistics (the MAE default).
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}

PATCH = 16
LN_EPS = 1e-6

# Label sets named in DESIGN.md.
LABEL_SETS = {
    "bp4d-au": ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"],
    "disfa-au": ["AU1", "AU2", "AU4", "AU6", "AU9", "AU12", "AU25", "AU26"],
    "abaw-au": ["AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26"],
    "abaw-expr": ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other"],
    "va": ["valence", "arousal"],
}

# Head presets: complete head specs for common fine-tunes.
HEAD_PRESETS = {
    "abaw": [
        {"name": "au", "labels": "@abaw-au", "activation": "sigmoid", "threshold": 0.5},
        {"name": "va", "labels": "@va", "activation": "tanh"},
        {"name": "expr", "labels": "@abaw-expr", "activation": "softmax"},
    ],
    "bp4d": [{"name": "au", "labels": "@bp4d-au", "activation": "sigmoid", "threshold": 0.5}],
    "disfa": [{"name": "au", "labels": "@disfa-au", "activation": "sigmoid", "threshold": 0.5}],
}

ACTIVATIONS = ("sigmoid", "tanh", "softmax", "none")


class ExportError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


# --------------------------------------------------------------------------
# The model


class PatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, c = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape(-1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(-1, n, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MAEFaceViT(nn.Module):
    """MAE-Face's ViT encoder (models_vit.VisionTransformer) plus an optional head.

    forward(x) returns (features, logits); logits is None without a head.
    """

    def __init__(self, preset, img_size=224, global_pool=True, num_logits=0):
        super().__init__()
        if preset not in PRESETS:
            raise ExportError(f"unknown preset {preset!r} (want one of {', '.join(PRESETS)})")
        dim, depth, heads = PRESETS[preset]
        if img_size % PATCH:
            raise ExportError(f"input size {img_size} is not a multiple of the patch size {PATCH}")
        self.preset = preset
        self.dim = dim
        self.img_size = img_size
        self.global_pool = global_pool
        npatch = (img_size // PATCH) ** 2
        self.patch_embed = PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, npatch + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        if global_pool:
            self.fc_norm = nn.LayerNorm(dim, eps=LN_EPS)
        else:
            self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head = nn.Linear(dim, num_logits) if num_logits > 0 else None

    def forward(self, x):
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        if self.global_pool:
            feats = self.fc_norm(x[:, 1:, :].mean(dim=1))
        else:
            feats = self.norm(x)[:, 0]
        logits = self.head(feats) if self.head is not None else None
        return feats, logits


# --------------------------------------------------------------------------
# Checkpoints

IGNORED_PREFIXES = ("decoder_", "mask_token")


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path):
    """Returns the state dict of a checkpoint: {'model': sd} or a bare sd."""
    try:
        ckpt = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise ExportError(f"checkpoint {path}: no such file")
    except Exception as e:  # pickle, zip and torch errors all mean "not a checkpoint"
        raise ExportError(f"checkpoint {path}: cannot be read as a PyTorch checkpoint: {e}")
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        sd = ckpt["model"]
    elif isinstance(ckpt, dict) and all(torch.is_tensor(v) for v in ckpt.values()) and ckpt:
        sd = ckpt
    else:
        keys = ", ".join(sorted(map(str, ckpt.keys()))[:8]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ExportError(f"checkpoint {path}: neither {{'model': state_dict}} nor a bare state dict (top level: {keys})")
    # DistributedDataParallel saves names with a "module." prefix.
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def detect_preset(sd):
    if "cls_token" not in sd:
        raise ExportError("missing backbone key cls_token: this is not a ViT checkpoint in MAE-Face's format")
    dim = sd["cls_token"].shape[-1]
    depth = len({int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    for name, (d, dep, _) in PRESETS.items():
        if d == dim and dep == depth:
            return name
    raise ExportError(f"no preset has embed_dim={dim} and depth={depth} (known: "
                      + ", ".join(f"{n}={d}x{dep}" for n, (d, dep, _) in PRESETS.items()) + ")")


def interpolate_pos_embed(pos, npatch_new):
    """Resizes a [1, 1+n, D] position embedding to 1+npatch_new tokens (bicubic)."""
    n_old = pos.shape[1] - 1
    if n_old == npatch_new:
        return pos
    old, new = int(math.isqrt(n_old)), int(math.isqrt(npatch_new))
    if old * old != n_old or new * new != npatch_new:
        raise ExportError(f"pos_embed has {n_old} patch tokens, which is not a square grid")
    cls, grid = pos[:, :1], pos[:, 1:]
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)
    return torch.cat((cls, grid), dim=1)


def load_backbone(sd, preset="auto", global_pool="auto", img_size=224):
    """Builds MAEFaceViT from a state dict and loads it, strictly.

    Returns (model, notes) where notes lists the ignored keys.
    """
    if preset == "auto":
        preset = detect_preset(sd)
    if global_pool == "auto":
        global_pool = "fc_norm.weight" in sd
    head_rows = sd["head.weight"].shape[0] if "head.weight" in sd else 0
    model = MAEFaceViT(preset, img_size=img_size, global_pool=global_pool, num_logits=head_rows)
    want = model.state_dict()

    sd = dict(sd)
    if "pos_embed" in sd and sd["pos_embed"].ndim == 3 and sd["pos_embed"].shape[-1] == want["pos_embed"].shape[-1]:
        sd["pos_embed"] = interpolate_pos_embed(sd["pos_embed"], want["pos_embed"].shape[1] - 1)

    ignored = sorted(k for k in sd if k.startswith(IGNORED_PREFIXES))
    other = sorted(k for k in sd if k not in want and not k.startswith(IGNORED_PREFIXES))
    missing = sorted(k for k in want if k not in sd)
    if missing:
        hint = ""
        if global_pool and "fc_norm.weight" in missing and "norm.weight" in sd:
            hint = " (the checkpoint has norm.*, so it was trained without global pooling: use --global-pool off)"
        elif not global_pool and "norm.weight" in missing and "fc_norm.weight" in sd:
            hint = " (the checkpoint has fc_norm.*, so it was trained with global pooling: use --global-pool on)"
        shown = ", ".join(missing[:6]) + (f", … ({len(missing)} in all)" if len(missing) > 6 else "")
        raise ExportError(f"missing backbone keys for ViT-{preset}: {shown}{hint}")
    bad = [f"{k} {tuple(sd[k].shape)} (want {tuple(v.shape)})" for k, v in want.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        shown = "; ".join(bad[:4]) + (f"; … ({len(bad)} in all)" if len(bad) > 4 else "")
        raise ExportError(f"mis-shaped backbone keys for ViT-{preset}: {shown}")
    model.load_state_dict({k: sd[k].float() for k in want}, strict=True)
    model.eval()
    return model, {"ignored": ignored, "unexpected": other}


def random_state_dict(preset, seed, global_pool=True, num_logits=0, full_mae=False, img_size=224):
    """A seeded random checkpoint state dict in MAE-Face's exact names and shapes.

    Weights follow MAE's initialisation (truncated-normal-ish linear weights,
    LayerNorm at identity, sin-cos position embeddings), so activations have
    realistic scales. full_mae adds mask_token and the decoder_* keys of a
    pre-training checkpoint.
    """
    g = torch.Generator().manual_seed(seed)
    model = MAEFaceViT(preset, img_size=img_size, global_pool=global_pool, num_logits=num_logits)
    sd = {}
    for k, v in model.state_dict().items():
        sd[k] = _random_like(k, v, g)
    dim = PRESETS[preset][0]
    sd["pos_embed"] = sincos_pos_embed(dim, img_size // PATCH).unsqueeze(0)
    if full_mae:
        ddim, ddepth, _ = DECODER[preset]
        npatch = (img_size // PATCH) ** 2
        sd["mask_token"] = torch.randn(1, 1, ddim, generator=g) * 0.02
        sd["decoder_embed.weight"] = torch.randn(ddim, dim, generator=g) * 0.02
        sd["decoder_embed.bias"] = torch.zeros(ddim)
        sd["decoder_pos_embed"] = sincos_pos_embed(ddim, img_size // PATCH).unsqueeze(0)
        for i in range(ddepth):
            blk = Block(ddim, 1).state_dict()
            for k, v in blk.items():
                sd[f"decoder_blocks.{i}.{k}"] = _random_like(k, v, g)
        sd["decoder_norm.weight"] = torch.ones(ddim)
        sd["decoder_norm.bias"] = torch.zeros(ddim)
        sd["decoder_pred.weight"] = torch.randn(PATCH * PATCH * 3, ddim, generator=g) * 0.02
        sd["decoder_pred.bias"] = torch.zeros(PATCH * PATCH * 3)
        assert sd["decoder_pos_embed"].shape[1] == npatch + 1
    return sd


def _random_like(name, v, g):
    parts = name.split(".")
    if len(parts) > 1 and "norm" in parts[-2]:  # LayerNorms start at identity
        return torch.ones_like(v) if name.endswith("weight") else torch.zeros_like(v)
    if name.endswith("bias"):
        return torch.randn(v.shape, generator=g) * 0.02
    if name in ("cls_token",):
        return torch.randn(v.shape, generator=g) * 0.02
    if name.endswith("proj.weight") and v.ndim == 4:  # patch embedding (Xavier on the flattened view)
        fan_in, fan_out = v[0].numel(), v.shape[0]
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return (torch.rand(v.shape, generator=g) * 2 - 1) * bound
    if v.ndim == 2:  # Linear: Xavier uniform, as MAE initialises them
        bound = math.sqrt(6.0 / (v.shape[0] + v.shape[1]))
        return (torch.rand(v.shape, generator=g) * 2 - 1) * bound
    return torch.randn(v.shape, generator=g) * 0.02


def sincos_pos_embed(dim, grid):
    """MAE's fixed 2-D sin-cos position embedding with a zero CLS row: [1+grid², dim]."""
    if dim % 4:
        raise ExportError(f"embed_dim {dim} is not a multiple of 4")
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")

    def one(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None, :]
        return torch.cat((torch.sin(out), torch.cos(out)), dim=1)

    emb = torch.cat((one(dim // 2, xs), one(dim // 2, ys)), dim=1)
    return torch.cat((torch.zeros(1, dim, dtype=torch.float64), emb), dim=0).float()


# --------------------------------------------------------------------------
# Head specs


def parse_head_arg(arg):
    """Parses NAME:ACTIVATION[:THRESHOLD]=LABELS (LABELS: comma list or @set)."""
    if "=" not in arg:
        raise ExportError(f"--head {arg!r}: want NAME:ACTIVATION[:THRESHOLD]=LABEL,LABEL,… or …=@set")
    left, labels = arg.split("=", 1)
    parts = left.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ExportError(f"--head {arg!r}: want NAME:ACTIVATION[:THRESHOLD]=LABELS")
    head = {"name": parts[0], "activation": parts[1], "labels": labels}
    if len(parts) == 3:
        try:
            head["threshold"] = float(parts[2])
        except ValueError:
            raise ExportError(f"--head {arg!r}: threshold {parts[2]!r} is not a number")
    return head


def resolve_heads(heads, num_logits):
    """Validates a head spec against a head with num_logits outputs.

    Labels given as "@set" are expanded; missing offsets are laid out in order.
    Every logit must belong to exactly one head.
    """
    if not isinstance(heads, list):
        raise ExportError("head spec: want a JSON list of heads")
    out, names, offset = [], set(), 0
    for i, h in enumerate(heads):
        where = f"head spec [{i}]"
        if not isinstance(h, dict):
            raise ExportError(f"{where}: want an object")
        unknown = set(h) - {"name", "offset", "labels", "activation", "threshold"}
        if unknown:
            raise ExportError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        name = h.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ExportError(f"{where}: name {name!r} must match [a-z][a-z0-9_]*")
        if name in names:
            raise ExportError(f"{where}: duplicate head name {name!r}")
        names.add(name)
        labels = h.get("labels")
        if isinstance(labels, str):
            if labels.startswith("@"):
                if labels[1:] not in LABEL_SETS:
                    raise ExportError(f"{where}: unknown label set {labels!r} (known: {', '.join('@' + k for k in LABEL_SETS)})")
                labels = list(LABEL_SETS[labels[1:]])
            else:
                labels = [s.strip() for s in labels.split(",") if s.strip()]
        if not isinstance(labels, list) or not labels or not all(isinstance(s, str) and s for s in labels):
            raise ExportError(f"{where} ({name}): labels must be a non-empty list of strings")
        if len(set(labels)) != len(labels):
            raise ExportError(f"{where} ({name}): duplicate labels")
        act = h.get("activation", "none")
        if act not in ACTIVATIONS:
            raise ExportError(f"{where} ({name}): activation {act!r} not one of {', '.join(ACTIVATIONS)}")
        off = h.get("offset", offset)
        if not isinstance(off, int) or off < 0:
            raise ExportError(f"{where} ({name}): offset {off!r} must be a non-negative integer")
        entry = {"name": name, "offset": off, "labels": labels, "activation": act}
        if "threshold" in h:
            t = h["threshold"]
            if act != "sigmoid":
                raise ExportError(f"{where} ({name}): a threshold needs the sigmoid activation")
            if not isinstance(t, (int, float)) or not 0 < t < 1:
                raise ExportError(f"{where} ({name}): threshold {t!r} must be in (0, 1)")
            entry["threshold"] = float(t)
        out.append(entry)
        offset = off + len(labels)
    used = [None] * num_logits
    for h in out:
        end = h["offset"] + len(h["labels"])
        if end > num_logits:
            raise ExportError(f"head {h['name']!r}: logits [{h['offset']}, {end}) exceed the checkpoint head's {num_logits} outputs")
        for j in range(h["offset"], end):
            if used[j] is not None:
                raise ExportError(f"heads {used[j]!r} and {h['name']!r} overlap at logit {j}")
            used[j] = h["name"]
    free = [j for j, u in enumerate(used) if u is None]
    if free:
        raise ExportError(f"logits {free[:8]} of the checkpoint head's {num_logits} are not covered by any head")
    return out


def load_head_spec(heads_arg, head_args):
    """Combines --heads (a preset name or a JSON file) and repeated --head."""
    spec = []
    if heads_arg:
        if heads_arg in HEAD_PRESETS:
            spec = json.loads(json.dumps(HEAD_PRESETS[heads_arg]))
        else:
            try:
                with open(heads_arg) as f:
                    spec = json.load(f)
            except FileNotFoundError:
                raise ExportError(f"--heads {heads_arg!r}: neither a preset ({', '.join(HEAD_PRESETS)}) nor a file")
            except json.JSONDecodeError as e:
                raise ExportError(f"--heads {heads_arg}: invalid JSON: {e}")
            if isinstance(spec, dict) and "heads" in spec:
                spec = spec["heads"]
    spec = list(spec) + [parse_head_arg(a) for a in head_args or []]
    return spec


def spec_size(spec):
    """Number of logits a spec needs (before validation against a checkpoint)."""
    n, off = 0, 0
    for h in spec:
        labels = h.get("labels")
        if isinstance(labels, str):
            labels = LABEL_SETS.get(labels[1:], []) if labels.startswith("@") else [s for s in labels.split(",") if s.strip()]
        off = h.get("offset", off)
        off += len(labels or [])
        n = max(n, off)
    return n


def apply_activations(logits, heads):
    """Decodes logits [N,K] with each head's activation (the Go engine's contract)."""
    out = torch.empty_like(logits)
    for h in heads:
        s = slice(h["offset"], h["offset"] + len(h["labels"]))
        x = logits[:, s]
        if h["activation"] == "sigmoid":
            x = torch.sigmoid(x)
        elif h["activation"] == "tanh":
            x = torch.tanh(x)
        elif h["activation"] == "softmax":
            x = torch.softmax(x, dim=1)
        out[:, s] = x
    return out
