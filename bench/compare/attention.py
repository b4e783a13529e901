#!/usr/bin/env python3
"""PyTorch's side of bench/attention.bench.ts: times
torch.nn.functional.scaled_dot_product_attention on the same shapes and prints one JSON
object on stdout (nothing else goes to stdout).

    python3 bench/compare/attention.py --device cpu            # the CPU shapes, 2 threads
    python3 bench/compare/attention.py --device cuda --ceiling # the issue's CUDA shapes, bf16,
                                                               # and the bf16 matmul ceiling
    python3 bench/compare/attention.py --device cpu --shapes 32,12,50,64 8,8,77,64,causal

q, k and v are [B, H, S, D] contiguous, random normal. "fwd" is the forward under no_grad;
"fwdbwd" is a forward with grad followed by backward from a fixed random dO. Times are
medians in milliseconds. On CUDA they are taken with CUDA events, inputs rotated among
enough copies to exceed L2, and the SDPA backend PyTorch picks is reported.
"""
import argparse
import time

import torch
import torch.nn.functional as F
from timing import emit, time_cpu, time_cuda

CPU_SHAPES = ["32,12,50,64", "32,8,77,64,causal", "8,12,197,64"]
CUDA_SHAPES = [
    "256,12,50,64",
    "256,12,197,64",
    "128,16,257,64",
    "256,8,77,64,causal",
    "256,12,17,64",
    "4,16,4096,128",
    "4,16,4096,128,causal",
]


def parse_shape(s):
    parts = s.split(",")
    if len(parts) not in (4, 5) or (len(parts) == 5 and parts[4] != "causal"):
        raise SystemExit(f"attention.py: expected B,H,S,D[,causal] for a shape, got {s!r}")
    b, h, sq, d = (int(p) for p in parts[:4])
    return {"B": b, "H": h, "S": sq, "D": d, "causal": len(parts) == 5}


def flops_fwd(sh):
    f = 4.0 * sh["B"] * sh["H"] * sh["S"] ** 2 * sh["D"]
    return f / 2 if sh["causal"] else f


def sdpa_backend(q, k, v, causal):
    """The backend SDPA dispatches to, found by allowing one at a time."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for name, be in [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)]:
        try:
            with sdpa_kernel([be]):
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            return name
        except RuntimeError:
            continue
    return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default=None, help="default: f32 on cpu, bf16 on cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--shapes", nargs="*", default=None, help="B,H,S,D[,causal] ...")
    ap.add_argument("--ceiling", action="store_true", help="also time a bf16 8192^3 matmul (the tensor-core ceiling)")
    args = ap.parse_args()

    dev = args.device
    dtype_name = args.dtype or ("f32" if dev == "cpu" else "bf16")
    dtype = torch.float32 if dtype_name == "f32" else torch.bfloat16
    if dev == "cpu":
        torch.set_num_threads(args.threads)
    elif not torch.cuda.is_available():
        raise SystemExit("attention.py: --device cuda but torch sees no GPU")
    shapes = [parse_shape(s) for s in (args.shapes or (CPU_SHAPES if dev == "cpu" else CUDA_SHAPES))]
    gen = torch.Generator(device=dev).manual_seed(0)
    results = []
    for sh in shapes:
        b, h, s, d, causal = sh["B"], sh["H"], sh["S"], sh["D"], sh["causal"]
        numel = b * h * s * d
        # Rotate among enough input sets to exceed a 50 MB L2 on the GPU; one set on the CPU.
        n_bufs = 1 if dev == "cpu" else max(1, min(8, (64 << 20) // max(1, 4 * numel * dtype.itemsize)))
        bufs = []
        for _ in range(n_bufs):
            q, k, v, go = (torch.randn(b, h, s, d, device=dev, dtype=dtype, generator=gen) for _ in range(4))
            bufs.append((q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), go))

        def fwd(i):
            q, k, v, _ = bufs[i]
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        def fwdbwd(i):
            q, k, v, go = bufs[i]
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            gq, gk, gv = torch.autograd.grad(out, (q, k, v), go)
            return gq, gk, gv

        if dev == "cpu":
            t_f = time_cpu(lambda: fwd(0), args.reps)
            t_fb = time_cpu(lambda: fwdbwd(0), args.reps)
            backend = "cpu"
        else:
            t_f = time_cuda(fwd, n_bufs, args.reps)
            t_fb = time_cuda(fwdbwd, n_bufs, args.reps)
            backend = sdpa_backend(bufs[0][0], bufs[0][1], bufs[0][2], causal)
        ff = flops_fwd(sh)
        results.append({**sh, "fwd_ms": t_f, "fwdbwd_ms": t_fb, "fwd_tflops": ff / t_f / 1e9,
                        "fwdbwd_tflops": 3.5 * ff / t_fb / 1e9, "backend": backend})
    if args.ceiling and dev == "cuda":
        n = 8192
        a, b = (torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=gen) for _ in range(2))
        ms = time_cuda(lambda i: torch.matmul(a, b), 1, args.reps)
        ceiling = 2.0 * n ** 3 / ms / 1e9
    else:
        ceiling = None
    emit(dev, dtype_name, results, bf16_matmul_tflops=ceiling)


if __name__ == "__main__":
    main()
