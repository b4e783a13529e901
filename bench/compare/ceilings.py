#!/usr/bin/env python3
"""The device's two ceilings, measured through PyTorch: device-to-device copy bandwidth
(bytes read plus bytes written over time) and the bf16 matrix rate of an 8192^3 product on
random data. Prints one JSON object on stdout.

    python3 bench/compare/ceilings.py
"""
import torch
from timing import emit, time_cuda


def main():
    if not torch.cuda.is_available():
        raise SystemExit("ceilings.py: torch sees no GPU")
    gen = torch.Generator(device="cuda").manual_seed(0)
    n_bytes = 2 << 30
    src = [torch.empty(n_bytes // 4, device="cuda").uniform_(generator=gen) for _ in range(2)]
    dst = torch.empty_like(src[0])
    copy_ms = time_cuda(lambda i: dst.copy_(src[i]), 2, 20)
    n = 8192
    mats = [(torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen),
             torch.randn(n, n, device="cuda", dtype=torch.bfloat16, generator=gen)) for _ in range(2)]
    out = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    mm_ms = time_cuda(lambda i: torch.matmul(*mats[i], out=out), 2, 20)
    results = [
        {"what": "device-to-device copy", "bytes": 2 * n_bytes, "ms": copy_ms, "GB/s": 2 * n_bytes / copy_ms / 1e6},
        {"what": "bf16 matmul 8192^3", "flops": 2 * n**3, "ms": mm_ms, "TFLOP/s": 2 * n**3 / mm_ms / 1e9},
    ]
    emit("cuda", "bf16", results)


if __name__ == "__main__":
    main()
