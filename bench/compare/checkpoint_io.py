"""PyTorch's side of bench/checkpoint_io.bench.ts: re-saves the safetensors file given as
argv[1] with torch.save to argv[2], then times safetensors.torch.load_file and torch.load
(weights_only) of the two files, median of 5 after a warm-up. Prints JSON. load_file maps
the file lazily, so each tensor is cloned to make it read the bytes as our reader does."""

import json
import statistics
import sys
import time

import torch
from safetensors.torch import load_file


def median_ms(fn):
    fn()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    torch.save(load_file(src), dst)
    print(json.dumps({
        "torch": torch.__version__,
        "safetensorsLoadMs": median_ms(lambda: [t.clone() for t in load_file(src).values()]),
        "torchLoadMs": median_ms(lambda: torch.load(dst, weights_only=True)),
    }))


if __name__ == "__main__":
    main()
