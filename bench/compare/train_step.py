#!/usr/bin/env python3
"""PyTorch's side of bench/train_step.bench.ts: one CLIP training step (forward of both towers,
the CLIP loss over materialized logits with F.cross_entropy, backward, AdamW) of the
OpenCLIP-equivalent model built from one of clipforge's model config files, on random images
and token ids. Prints one JSON object on stdout.

    python3 bench/compare/train_step.py --config lib/nn/configs/tiny-builtin.json --batch 128
    python3 bench/compare/train_step.py --device cuda --precision amp_bf16 --config ... --batch 256

The model follows OpenCLIP's VisionTransformer and text transformer (pre-norm residual blocks
with nn.MultiheadAttention, GELU MLP, class token, learned position embeddings, EOT pooling,
causal text mask); the parameter count it prints must equal clipforge's for the same config,
which the benchmark checks. ViT configs only (no CLIPA or UniRepLKNet options).
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch import nn
from timing import emit, time_cpu, time_cuda


class Block(nn.Module):
    def __init__(self, width, heads, mlp_ratio=4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Vision(nn.Module):
    def __init__(self, cfg, embed_dim):
        super().__init__()
        size, patch, width = cfg["image_size"], cfg["patch_size"], cfg["width"]
        heads = width // cfg.get("head_width", 64)
        grid = size // patch
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * width**-0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.blocks = nn.ModuleList(Block(width, heads, cfg.get("mlp_ratio", 4.0)) for _ in range(cfg["layers"]))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, embed_dim) * width**-0.5)

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding)
        for b in self.blocks:
            x = b(x)
        return self.ln_post(x[:, 0]) @ self.proj


class Text(nn.Module):
    def __init__(self, cfg, embed_dim):
        super().__init__()
        ctx, width = cfg["context_length"], cfg["width"]
        self.token_embedding = nn.Embedding(cfg["vocab_size"], width)
        self.positional_embedding = nn.Parameter(torch.randn(ctx, width) * 0.01)
        self.blocks = nn.ModuleList(Block(width, cfg["heads"], cfg.get("mlp_ratio", 4.0)) for _ in range(cfg["layers"]))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, embed_dim) * width**-0.5)
        self.register_buffer("mask", torch.full((ctx, ctx), float("-inf")).triu(1), persistent=False)

    def forward(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding
        for b in self.blocks:
            x = b(x, self.mask)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), ids.argmax(-1)] @ self.text_projection


class Clip(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.visual = Vision(config["vision_cfg"], config["embed_dim"])
        self.text = Text(config["text_cfg"], config["embed_dim"])
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def loss(self, images, ids):
        img = F.normalize(self.visual(images), dim=-1)
        txt = F.normalize(self.text(ids), dim=-1)
        logits = self.logit_scale.exp() * img @ txt.t()
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="a clipforge model config JSON (ViT image tower)")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "amp_bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    dev = args.device
    if dev == "cpu":
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        raise SystemExit("train_step.py: --device cuda but torch sees no GPU")
    torch.manual_seed(0)
    model = Clip(config).to(dev)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-4, fused=dev == "cuda")
    vc, tc = config["vision_cfg"], config["text_cfg"]
    n_bufs = 1 if dev == "cpu" else 2
    bufs = [
        (
            torch.randn(args.batch, 3, vc["image_size"], vc["image_size"], device=dev),
            torch.randint(1, tc["vocab_size"], (args.batch, tc["context_length"]), device=dev),
        )
        for _ in range(n_bufs)
    ]

    def step(i):
        images, ids = bufs[i]
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=args.precision == "amp_bf16"):
            loss = model.loss(images, ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    ms = time_cpu(lambda: step(0), args.reps) if dev == "cpu" else time_cuda(step, n_bufs, args.reps)
    params = sum(p.numel() for p in model.parameters())
    emit(dev, args.precision, [{"batch": args.batch, "ms": ms, "samples_per_s": args.batch / ms * 1e3, "parameters": params}])


if __name__ == "__main__":
    main()
