#!/usr/bin/env python3
"""Times torch.optim.AdamW.step() on a list of f32 parameters with f32 gradients, for the
implementations PyTorch offers on the device: foreach (multi-tensor) and fused.

Prints one JSON object: per implementation, the median step time in ms.

Usage: python3 bench/compare/adamw.py --device cpu --sizes 4096,1048576,... [--threads 2] [--repeats 10]
"""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    sizes = [int(s) for s in a.sizes.split(",")]
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "ms": {}}
    for impl in ["foreach", "fused"]:
        params = [torch.nn.Parameter(torch.randn(n, device=dev)) for n in sizes]
        for p in params:
            p.grad = torch.randn_like(p)
        try:
            opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1, **{impl: True})
            for _ in range(3):
                opt.step()
        except (RuntimeError, ValueError) as e:
            out["ms"][impl] = None
            out.setdefault("unavailable", {})[impl] = str(e).splitlines()[0]
            continue
        times = []
        for _ in range(a.repeats):
            sync()
            t0 = time.perf_counter()
            opt.step()
            sync()
            times.append((time.perf_counter() - t0) * 1000)
        out["ms"][impl] = statistics.median(times)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
