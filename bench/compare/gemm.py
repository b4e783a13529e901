#!/usr/bin/env python3
"""PyTorch's side of bench/gemm.bench.ts: times C = op(A) · op(B) on the same shapes and
prints one JSON object on stdout (nothing else goes to stdout).

    python3 bench/compare/gemm.py --device cpu --shapes 1024,1024,1024 1600,3072,768,tb
    python3 bench/compare/gemm.py --device cuda --dtype bf16 --shapes 4096,4096,4096

A shape is M,N,K; a trailing ",tb" means B is stored [N, K] and used transposed (a linear
layer's weight), ",ta" that A is stored [K, M] (a weight gradient's dY), ",ta,tb" both. Inputs are random normal; the output is preallocated (torch.matmul(out=)),
as the benchmark preallocates its own. Times are medians in milliseconds; on CUDA they are
taken with CUDA events after warm-up, inputs rotated among enough copies to exceed L2.
"""
import argparse

import torch
from timing import emit, time_cpu, time_cuda


def parse_shape(s):
    parts = s.split(",")
    flags = parts[3:]
    if len(parts) < 3 or flags not in ([], ["ta"], ["tb"], ["ta", "tb"]):
        raise SystemExit(f"gemm.py: expected M,N,K[,ta][,tb] for a shape, got {s!r}")
    m, n, k = (int(p) for p in parts[:3])
    return {"M": m, "N": n, "K": k, "transA": "ta" in flags, "transB": "tb" in flags}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default=None, help="default: f32 on cpu, bf16 on cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--shapes", nargs="+", required=True, help="M,N,K[,ta][,tb] ...")
    args = ap.parse_args()

    dev = args.device
    dtype_name = args.dtype or ("f32" if dev == "cpu" else "bf16")
    dtype = torch.float32 if dtype_name == "f32" else torch.bfloat16
    if dev == "cpu":
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        raise SystemExit("gemm.py: --device cuda but torch sees no GPU")
    gen = torch.Generator(device=dev).manual_seed(0)
    results = []
    for sh in map(parse_shape, args.shapes):
        m, n, k, ta, tb = sh["M"], sh["N"], sh["K"], sh["transA"], sh["transB"]
        per_set = (m * k + k * n + m * n) * dtype.itemsize
        n_bufs = 1 if dev == "cpu" else max(1, min(8, (64 << 20) // max(1, per_set)))
        bufs = []
        for _ in range(n_bufs):
            a = torch.randn(k, m, device=dev, dtype=dtype, generator=gen) if ta else torch.randn(m, k, device=dev, dtype=dtype, generator=gen)
            b = torch.randn(n, k, device=dev, dtype=dtype, generator=gen) if tb else torch.randn(k, n, device=dev, dtype=dtype, generator=gen)
            bufs.append((a, b, torch.empty(m, n, device=dev, dtype=dtype)))

        def run(i):
            a, b, c = bufs[i]
            torch.matmul(a.t() if ta else a, b.t() if tb else b, out=c)

        ms = time_cpu(lambda: run(0), args.reps) if dev == "cpu" else time_cuda(run, n_bufs, args.reps)
        results.append({**sh, "ms": ms, "gflops": 2.0 * m * n * k / ms / 1e6})
    emit(dev, dtype_name, results)


if __name__ == "__main__":
    main()
