#!/usr/bin/env python3
"""PyTorch's side of bench/dwconv.bench.ts: times nn.Conv2d(C, C, K, groups=C) (PyTorch's
depthwise convolution: cuDNN or its native kernels on CUDA, its CPU kernels otherwise) on
the same shapes and prints one JSON object on stdout (nothing else goes to stdout).

    python3 bench/compare/dwconv.py --device cpu             # PERF.md's CPU shapes, f32, 2 threads
    python3 bench/compare/dwconv.py --device cuda --ceiling  # the issue's shapes, bf16, NCHW and
                                                             # channels_last, plus the ceilings
    python3 bench/compare/dwconv.py --device cpu --shapes 8,128,28,28,13 1,64,56,56,3,2,1

A shape is N,C,H,W,K[,stride[,dilation]] with padding dilation*(K-1)//2 and a bias. Times are
medians in ms of: "fwd" (no grad), "dgrad" and "wgrad" (aten.convolution_backward asked for
the input gradient alone, and for the weight and bias gradients alone: the kernels PyTorch
runs in a backward), and "fwdbwd" (forward with grad, then autograd for x, w and b). On CUDA
they are taken with CUDA events, inputs rotated among enough copies to exceed a 50 MB L2.
--ceiling adds the fp32 CUDA-core rate (an 8192^3 fp32 matmul with TF32 off: FMAs on the CUDA
cores) and the device copy bandwidth (bytes read + written), measured in the same run.
"""
import argparse

import torch
from timing import emit, time_cpu, time_cuda

CPU_SHAPES = ["8,128,28,28,7", "8,128,28,28,13", "8,128,28,28,31"]
CUDA_SHAPES = [
    "128,192,56,56,13",
    "128,384,28,28,13",
    "128,768,14,14,13",
    "128,1536,7,7,13",
    "128,128,56,56,31",
    "128,256,28,28,31",
    "128,384,28,28,3",
    "128,384,28,28,5",
    "128,384,28,28,7",
]


def parse_shape(s):
    parts = [int(p) for p in s.split(",")]
    if len(parts) not in (5, 6, 7):
        raise SystemExit(f"dwconv.py: expected N,C,H,W,K[,stride[,dilation]] for a shape, got {s!r}")
    n, c, h, w, k = parts[:5]
    stride = parts[5] if len(parts) > 5 else 1
    dil = parts[6] if len(parts) > 6 else 1
    return {"N": n, "C": c, "H": h, "W": w, "K": k, "stride": stride, "dilation": dil}


def bench_shape(sh, dev, dtype, layout, reps, gen):
    n, c, h, w, k, s, d = sh["N"], sh["C"], sh["H"], sh["W"], sh["K"], sh["stride"], sh["dilation"]
    pad = d * (k - 1) // 2
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    conv = torch.nn.Conv2d(c, c, k, stride=s, padding=pad, dilation=d, groups=c, bias=True).to(dev, dtype)
    conv = conv.to(memory_format=fmt)
    ho = (h + 2 * pad - d * (k - 1) - 1) // s + 1
    wo = (w + 2 * pad - d * (k - 1) - 1) // s + 1
    bytes_one = (n * c * (h * w + ho * wo)) * torch.tensor([], dtype=dtype).element_size()
    n_bufs = 1 if dev == "cpu" else max(1, min(8, (64 << 20) // max(1, bytes_one) + 1))
    bufs = []
    for _ in range(n_bufs):
        x = torch.randn(n, c, h, w, device=dev, dtype=dtype, generator=gen).to(memory_format=fmt).requires_grad_()
        gy = torch.randn(n, c, ho, wo, device=dev, dtype=dtype, generator=gen).to(memory_format=fmt)
        bufs.append((x, gy))
    wt, bias = conv.weight, conv.bias
    conv_bwd = torch.ops.aten.convolution_backward

    def fwd(i):
        with torch.no_grad():
            conv(bufs[i][0])

    def bwd(i, mask):
        x, gy = bufs[i]
        conv_bwd(gy, x.detach(), wt.detach(), [c], [s, s], [pad, pad], [d, d], False, [0, 0], c, mask)

    def fwdbwd(i):
        x, gy = bufs[i]
        y = conv(x)
        torch.autograd.grad(y, (x, wt, bias), gy)

    if dev == "cpu":
        t = lambda f: time_cpu(lambda: f(0), reps)
    else:
        t = lambda f: time_cuda(f, n_bufs, reps)
    return {
        **sh,
        "layout": layout,
        "fwd_ms": t(fwd),
        "dgrad_ms": t(lambda i: bwd(i, [True, False, False])),
        "wgrad_ms": t(lambda i: bwd(i, [False, True, True])),
        "fwdbwd_ms": t(fwdbwd),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default=None, help="default: f32 on cpu, bf16 on cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--shapes", nargs="*", default=None, help="N,C,H,W,K[,stride[,dilation]] ...")
    ap.add_argument("--layouts", default=None, help="comma list of nchw, channels_last (default: nchw on cpu, both on cuda)")
    ap.add_argument("--ceiling", action="store_true", help="also measure the fp32 FMA rate and the copy bandwidth (cuda)")
    args = ap.parse_args()

    dev = args.device
    dtype_name = args.dtype or ("f32" if dev == "cpu" else "bf16")
    dtype = torch.float32 if dtype_name == "f32" else torch.bfloat16
    if dev == "cpu":
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        raise SystemExit("dwconv.py: --device cuda but torch sees no GPU")
    layouts = (args.layouts or ("nchw" if dev == "cpu" else "nchw,channels_last")).split(",")
    for lay in layouts:
        if lay not in ("nchw", "channels_last"):
            raise SystemExit(f"dwconv.py: expected nchw or channels_last in --layouts, got {lay!r}")
    shapes = [parse_shape(s) for s in (args.shapes or (CPU_SHAPES if dev == "cpu" else CUDA_SHAPES))]
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    gen = torch.Generator(device=dev).manual_seed(0)
    results = [bench_shape(sh, dev, dtype, lay, args.reps, gen) for sh in shapes for lay in layouts]
    fma_tflops = copy_tbs = None
    if args.ceiling and dev == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        m = 8192
        a, b = (torch.randn(m, m, device=dev, dtype=torch.float32, generator=gen) for _ in range(2))
        fma_tflops = 2.0 * m ** 3 / time_cuda(lambda i: torch.matmul(a, b), 1, args.reps) / 1e9
        src = torch.empty(1 << 30, device=dev, dtype=torch.uint8)
        dst = torch.empty_like(src)
        copy_tbs = 2.0 * src.numel() / time_cuda(lambda i: dst.copy_(src), 1, args.reps) / 1e9
    emit(dev, dtype_name, results, fp32_fma_tflops=fma_tflops, copy_tb_per_s=copy_tbs)


if __name__ == "__main__":
    main()
