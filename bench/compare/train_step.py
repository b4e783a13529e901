#!/usr/bin/env python3
"""PyTorch's side of bench/train_step.bench.ts: one CLIP training step (forward of both towers,
the CLIP loss over materialized logits with F.cross_entropy, backward, AdamW) of the
OpenCLIP-equivalent model built from one of clipforge's model config files, on random images
and token ids. Prints one JSON object on stdout.

    python3 bench/compare/train_step.py --config lib/nn/configs/tiny-builtin.json --batch 128
    python3 bench/compare/train_step.py --device cuda --precision amp_bf16 --config ... --batch 256

The text tower and the ViT image tower follow OpenCLIP's (pre-norm residual blocks with
nn.MultiheadAttention, GELU MLP, class token, learned position embeddings, EOT pooling, causal
text mask). A vision_cfg whose timm_model_name starts with 'unireplknet' gets a UniRepLKNet
tower instead, as OpenCLIP's TimmModel would wrap the official model: the training form
(Dilated Reparam Blocks with their BatchNorms, layer scale), NCHW with depthwise nn.Conv2d,
the FFN in NHWC, spatial mean -> LayerNorm -> linear projection. Its modules mirror
lib/nn/unireplknet*.ts. The parameter count printed must equal clipforge's for the same config,
which the benchmark checks. No CLIPA options, no UniRepLKNet drop path or deploy form.
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


# UniRepLKNet: depths and dims of the released variants, and the dilated branches (kernel,
# dilation) of a Dilated Reparam Block by its large kernel size, as lib/nn/unireplknet.ts has them.
URLK_VARIANTS = {
    "a": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "f": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "p": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "n": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "t": ((3, 3, 18, 3), (80, 160, 320, 640)),
    "s": ((3, 3, 27, 3), (96, 192, 384, 768)),
    "b": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "l": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "xl": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}
DILATED_BRANCHES = {
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    7: ((5, 3, 3), (1, 2, 3)),
}


def default_kernel_sizes(depths):
    """3 x 3 blocks in stage 1, 13 x 13 in stages 2 and 4, and in stage 3 all 13 (A to N), 13
    and 3 alternating (T) or one 13 to two 3s (S to XL); other depths have no default."""
    third = {(2, 2, 6, 2): [13] * 6, (2, 2, 8, 2): [13] * 8, (3, 3, 18, 3): [13, 3] * 9, (3, 3, 27, 3): [13, 3, 3] * 9}.get(tuple(depths))
    if third is None:
        raise SystemExit(f"train_step.py: no default kernel sizes for depths {depths}; give timm_model_kwargs.kernel_sizes")
    return [[3] * depths[0], [13] * depths[1], third, [13] * depths[3]]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of NCHW activations (the stem's and downsampling layers')."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def depthwise(c, k, dilation=1):
    """'Same'-padded depthwise conv without bias (a BatchNorm follows)."""
    return nn.Conv2d(c, c, k, padding=dilation * (k - 1) // 2, dilation=dilation, groups=c, bias=False)


class DilatedReparamBlock(nn.Module):
    """BN(DW_K(x)) + the sum over branches of BN_b(DW_{k_b, dilation d_b}(x))."""

    def __init__(self, c, k):
        super().__init__()
        self.lk_origin = depthwise(c, k)
        self.origin_bn = nn.BatchNorm2d(c)
        kernels, dilations = DILATED_BRANCHES[k]
        self.dil_convs = nn.ModuleList(depthwise(c, kb, d) for kb, d in zip(kernels, dilations))
        self.dil_bns = nn.ModuleList(nn.BatchNorm2d(c) for _ in kernels)

    def forward(self, x):
        out = self.origin_bn(self.lk_origin(x))
        for conv, bn in zip(self.dil_convs, self.dil_bns):
            out = out + bn(conv(x))
        return out


class SEBlock(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.down = nn.Conv2d(c, r, 1)
        self.up = nn.Conv2d(r, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.up(F.relu(self.down(x.mean((2, 3), keepdim=True)))))


class GRN(nn.Module):
    """Global response normalization over NHWC: (gamma * G / (mean_c G + 1e-6) + 1) * x + beta,
    G the L2 norm over H and W per sample and channel."""

    def __init__(self, c):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, c))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, c))

    def forward(self, x):
        g = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        return (self.gamma * (g / (g.mean(-1, keepdim=True) + 1e-6)) + 1) * x + self.beta


class UniRepLKNetBlock(nn.Module):
    """x + gamma * BN(pwconv2(GRN(GELU(pwconv1(SE(BN(dwconv(x)))))))), the FFN in NHWC."""

    def __init__(self, c, k, layer_scale):
        super().__init__()
        if k == 0:
            self.dwconv = self.norm = nn.Identity()
        else:
            self.dwconv = DilatedReparamBlock(c, k) if k >= 7 else depthwise(c, k)
            self.norm = nn.BatchNorm2d(c)
        self.se = SEBlock(c, c // 4)
        self.pwconv1 = nn.Linear(c, 4 * c)
        self.grn = GRN(4 * c)
        self.pwconv2 = nn.Linear(4 * c, c, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.gamma = nn.Parameter(torch.full((c, 1, 1), float(layer_scale))) if layer_scale else None

    def forward(self, x):
        y = self.se(self.norm(self.dwconv(x))).permute(0, 2, 3, 1)
        y = self.grn(F.gelu(self.pwconv1(y)))
        y = self.bn(self.pwconv2(y).permute(0, 3, 1, 2))
        return x + (y if self.gamma is None else self.gamma * y)


class UniRepLKNetVision(nn.Module):
    """Stem and downsampling layers (stride-2 3 x 3 convs with LayerNorm), four stages of
    blocks, spatial mean -> LayerNorm, then the projection to embed_dim."""

    def __init__(self, cfg, embed_dim, init_weights=True):
        super().__init__()
        kwargs = cfg.get("timm_model_kwargs", {})
        if kwargs.get("deploy") or kwargs.get("drop_path_rate") or cfg.get("timm_drop_path"):
            raise SystemExit("train_step.py: UniRepLKNet is built in its training form without drop path")
        depths, dims = URLK_VARIANTS[cfg["timm_model_name"].removeprefix("unireplknet_")]
        depths, dims = kwargs.get("depths", depths), kwargs.get("dims", dims)
        kernel_sizes = kwargs.get("kernel_sizes") or default_kernel_sizes(depths)
        layer_scale = kwargs.get("layer_scale_init_value", 1e-6)
        c0 = dims[0]
        stem = nn.Sequential(
            nn.Conv2d(3, c0 // 2, 3, 2, 1), LayerNorm2d(c0 // 2, eps=1e-6), nn.GELU(),
            nn.Conv2d(c0 // 2, c0, 3, 2, 1), LayerNorm2d(c0, eps=1e-6),
        )
        self.downsample_layers = nn.ModuleList(
            [stem] + [nn.Sequential(nn.Conv2d(dims[i], dims[i + 1], 3, 2, 1), LayerNorm2d(dims[i + 1], eps=1e-6)) for i in range(3)]
        )
        self.stages = nn.ModuleList(nn.Sequential(*(UniRepLKNetBlock(dims[s], k, layer_scale) for k in kernel_sizes[s])) for s in range(4))
        self.norm = nn.LayerNorm(dims[3], eps=1e-6)
        self.proj = nn.Linear(dims[3], embed_dim, bias=cfg.get("timm_proj_bias", False))
        # Ours and the official init (N(0, 0.02) weights, zero biases): both sides then compute
        # on values of the same scale. Fake tensors (the traffic count) have no values to draw.
        for m in self.modules() if init_weights else ():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.proj(self.norm(x.mean((2, 3))))


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
    def __init__(self, config, init_weights=True):
        super().__init__()
        vc = config["vision_cfg"]
        if vc.get("timm_model_name", "").startswith("unireplknet"):
            self.visual = UniRepLKNetVision(vc, config["embed_dim"], init_weights)
        else:
            self.visual = Vision(vc, config["embed_dim"])
        self.text = Text(config["text_cfg"], config["embed_dim"])
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def loss(self, images, ids):
        img = F.normalize(self.visual(images), dim=-1)
        txt = F.normalize(self.text(ids), dim=-1)
        logits = self.logit_scale.exp() * img @ txt.t()
        labels = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


# Ops whose work is counted in FLOPs (they run on the tensor cores on a GPU); every other
# op that moves data counts the bytes of its tensor inputs and outputs, as
# bench/step_traffic.bench.ts does for clipforge's native calls. Views move nothing, and
# neither do the reshapes that aten does not mark as views.
PRODUCTS = {"mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward"}
# Ops that move no data: reshapes without a copy, and `device`, the query a fake tensor answers
# through the dispatcher.
NO_DATA_MOVED = {"_unsafe_view", "_reshape_alias", "alias", "device"}


def product_flops(name, args, outs):
    if name in ("mm", "bmm"):
        a = args[0]
        return 2 * outs[0].numel() * a.shape[-1]
    if name in ("addmm", "baddbmm"):
        return 2 * outs[0].numel() * args[1].shape[-1]
    if name == "convolution":
        w = args[1]
        return 2 * outs[0].numel() * w[0].numel()
    if name == "convolution_backward":
        w = args[2]
        return 4 * args[0].numel() * w[0].numel()
    if name.startswith("_scaled_dot_product"):
        q = args[0]
        s = q.shape[-2]
        return (10 if name.endswith("backward") else 4) * q.numel() * s
    return 0


def count_traffic(step):
    """Bytes per non-product op and product FLOPs of one call of step(), by aten op name."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    work = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func._overloadpacket.__name__
            if func.is_view or name in NO_DATA_MOVED:
                return out
            ins = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
            outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            w = work.setdefault(name, {"calls": 0, "bytes": 0, "flops": 0})
            w["calls"] += 1
            w["bytes"] += sum(t.numel() * t.element_size() for t in ins + outs)
            if name in PRODUCTS or name.startswith("_scaled_dot_product"):
                w["flops"] += product_flops(name, ins, outs)
            return out

    with Count():
        step()
    return work


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="a clipforge model config JSON (ViT or UniRepLKNet image tower)")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "amp_bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--count-traffic", action="store_true",
                    help="instead of timing: count each op's bytes and the products' FLOPs of the forward and backward "
                         "(no optimizer) at batch 2 and 4 and print them extrapolated to --batch; on fake tensors under "
                         "the CPU's autocast, whatever --device says")
    args = ap.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    dev = args.device
    if dev == "cpu":
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        raise SystemExit("train_step.py: --device cuda but torch sees no GPU")
    vc, tc = config["vision_cfg"], config["text_cfg"]
    if args.count_traffic:
        # The count needs shapes and dtypes, not values: fake tensors give the same op sequence
        # under autocast without computing anything (PyTorch's bf16 depthwise convolutions on a
        # CPU would take hours for UniRepLKNet-L).
        from torch._subclasses.fake_tensor import FakeTensorMode
        counts = {}
        with FakeTensorMode(allow_non_fake_inputs=False):
            fake_model = Clip(config, init_weights=False)
            for b in (2, 4):
                images = torch.randn(b, 3, vc["image_size"], vc["image_size"])
                ids = torch.randint(1, tc["vocab_size"], (b, tc["context_length"]))

                def forward_backward():
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "amp_bf16"):
                        loss = fake_model.loss(images, ids)
                    loss.backward()

                counts[b] = count_traffic(forward_backward)
                fake_model.zero_grad(set_to_none=True)
        t = (args.batch - 2) / 2
        ops = {}
        for name in set(counts[2]) | set(counts[4]):
            a = counts[2].get(name, {"calls": 0, "bytes": 0, "flops": 0})
            c = counts[4].get(name, {"calls": 0, "bytes": 0, "flops": 0})
            ops[name] = {k: c[k] if k == "calls" else a[k] + t * (c[k] - a[k]) for k in a}
        print(json.dumps({"device": "cpu (fake tensors)", "precision": args.precision, "batch": args.batch, "ops": ops}))
        return
    torch.manual_seed(0)
    model = Clip(config).to(dev)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}], lr=1e-4, fused=dev == "cuda")
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
