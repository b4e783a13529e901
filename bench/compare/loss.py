#!/usr/bin/env python3
"""Times OpenCLIP's formulation of the CLIP and SigLIP losses, forward + backward, in PyTorch.

CLIP (open_clip ClipLoss): logits_per_image = s * img @ txt.T, logits_per_text = s * txt @ img.T
(both materialized, N x N), loss = (F.cross_entropy(lpi, labels) + F.cross_entropy(lpt, labels)) / 2.
SigLIP (open_clip SigLipLoss): logits = s * img @ txt.T + bias, labels = 2 I - 1,
loss = -F.logsigmoid(labels * logits).sum() / N.
s = exp(logit_scale) in both. Gradients flow to img, txt, logit_scale (and bias).

Prints one JSON object: the machine's measured matrix rate (f32 GEMM on CPU at the same thread
count, bf16 GEMM on CUDA) and, per shape and loss, the median time, the peak memory and the loss
value; "oom" marks shapes PyTorch cannot hold. With --check DIR, the features are read from
DIR/img.f32 and DIR/txt.f32 (raw little-endian f32, [N, D]) so the caller can compare losses and
gradient sums on identical data.

Usage: python3 bench/compare/loss.py --device cpu --shapes 4096x512 [--threads 2] [--repeats 5]
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def clip_loss(img, txt, logit_scale, _bias):
    s = logit_scale.exp()
    lpi = s * img @ txt.T
    lpt = s * txt @ img.T
    labels = torch.arange(img.shape[0], device=img.device)
    return (F.cross_entropy(lpi.float(), labels) + F.cross_entropy(lpt.float(), labels)) / 2


def siglip_loss(img, txt, logit_scale, bias):
    logits = logit_scale.exp() * img @ txt.T + bias
    n = img.shape[0]
    labels = 2 * torch.eye(n, device=img.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / n


LOSSES = {'clip': clip_loss, 'siglip': siglip_loss}
INIT = {'clip': (2.6592600345611572, 0.0), 'siglip': (2.302585092994046, -10.0)}


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def matrix_rate(device, dtype):
    """FLOP/s of a large square matmul: the machine's practical peak for the floor."""
    n = 8192 if device == 'cuda' else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 20 if device == 'cuda' else 5
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def features(n, d, device, dtype, gen):
    x = torch.randn(n, d, device=device, generator=gen)
    return F.normalize(x, dim=-1).to(dtype)


def run_one(kind, img, txt, device, repeats):
    ls0, b0 = INIT[kind]
    logit_scale = torch.tensor(ls0, device=device, requires_grad=True)
    bias = torch.tensor(b0, device=device, requires_grad=True)
    img = img.detach().requires_grad_()
    txt = txt.detach().requires_grad_()
    fn = LOSSES[kind]

    def step():
        loss = fn(img, txt, logit_scale, bias)
        loss.backward()
        return loss

    times = []
    loss = None
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for r in range(repeats + 1):
        img.grad = txt.grad = logit_scale.grad = bias.grad = None
        if device == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step()
            end.record()
            torch.cuda.synchronize()
            dt = start.elapsed_time(end) / 1e3
        else:
            t = time.perf_counter()
            loss = step()
            dt = time.perf_counter() - t
        if r > 0:  # the first run warms up
            times.append(dt)
    if device == 'cuda':
        peak = torch.cuda.max_memory_allocated() - base
    else:
        # ru_maxrss is in KiB on Linux; it only grows, so shapes run smallest first.
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    return {
        'median_s': statistics.median(times),
        'min_s': min(times),
        'peak_bytes': peak,
        'loss': loss.item(),
        'dimg_abs_sum': img.grad.float().abs().sum().item(),
        'dtxt_abs_sum': txt.grad.float().abs().sum().item(),
        'dscale': logit_scale.grad.item(),
        'dbias': bias.grad.item() if kind == 'siglip' else None,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    p.add_argument('--shapes', default='4096x512', help='comma-separated NxD list, run in this order')
    p.add_argument('--kinds', default='clip,siglip')
    p.add_argument('--dtype', choices=['f32', 'bf16'], default=None, help='default: f32 on CPU, bf16 on CUDA')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--check', default=None, help='folder with img.f32 and txt.f32 for the first shape')
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    dtype_name = args.dtype or ('bf16' if args.device == 'cuda' else 'f32')
    dtype = torch.bfloat16 if dtype_name == 'bf16' else torch.float32
    gen = torch.Generator(device=args.device).manual_seed(0)
    out = {
        'torch': torch.__version__,
        'device': args.device,
        'device_name': torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu',
        'threads': args.threads,
        'dtype': dtype_name,
        'matrix_flops': matrix_rate(args.device, dtype),
        'results': [],
    }
    for si, shape in enumerate(args.shapes.split(',')):
        n, d = (int(v) for v in shape.lower().split('x'))
        if si == 0 and args.check:
            import numpy as np
            img = torch.from_numpy(np.fromfile(f'{args.check}/img.f32', dtype='<f4').reshape(n, d)).to(args.device, dtype)
            txt = torch.from_numpy(np.fromfile(f'{args.check}/txt.f32', dtype='<f4').reshape(n, d)).to(args.device, dtype)
        for kind in args.kinds.split(','):
            entry = {'kind': kind, 'n': n, 'd': d}
            try:
                if not (si == 0 and args.check):
                    img = features(n, d, args.device, dtype, gen)
                    txt = features(n, d, args.device, dtype, gen)
                entry.update(run_one(kind, img, txt, args.device, args.repeats))
            except torch.OutOfMemoryError:
                entry['oom'] = True
            finally:
                if args.device == 'cuda':
                    torch.cuda.empty_cache()
            out['results'].append(entry)
            print(f'{kind} {n}x{d}: ' + ('out of memory' if entry.get('oom') else f"{entry['median_s'] * 1e3:.1f} ms"), file=sys.stderr)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
