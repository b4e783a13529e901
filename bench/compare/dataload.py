#!/usr/bin/env python3
"""The training image pipeline in PIL + torchvision, on the JPEGs bench/dataload.bench.ts wrote,
for its per-core comparison: decode (PIL, .convert('RGB')), RandomResizedCrop(224, scale=(0.9, 1.0),
ratio=(3/4, 4/3), bicubic), ToTensor, Normalize(OpenAI mean/std) -- OpenCLIP's training
transform without augmentation. One thread (torch.set_num_threads(1)); files are read into
memory first, so disk is not timed.

Prints one JSON object: {"imagesPerSecond": [one wall-clock rate per pass], "imagesPerCpuSecond":
[one rate per pass over the process's CPU time], "pil": ..., "torchvision": ...}.

Usage: python3 bench/compare/dataload.py DIR PASSES
"""
import io
import json
import os
import sys
import time

import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T


def main() -> None:
    folder, passes = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".jpg"))
    files = []
    for n in names:
        with open(os.path.join(folder, n), "rb") as f:
            files.append(f.read())
    transform = T.Compose(
        [
            T.RandomResizedCrop(224, scale=(0.9, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
        ]
    )
    for data in files[:4]:
        transform(Image.open(io.BytesIO(data)).convert("RGB"))
    rates = []
    cpu_rates = []
    for _ in range(passes):
        start = time.perf_counter()
        cpu_start = time.process_time()
        for data in files:
            out = transform(Image.open(io.BytesIO(data)).convert("RGB"))
            assert out.shape == (3, 224, 224)
        rates.append(len(files) / (time.perf_counter() - start))
        cpu_rates.append(len(files) / (time.process_time() - cpu_start))
    print(json.dumps({"imagesPerSecond": rates, "imagesPerCpuSecond": cpu_rates, "pil": PIL.__version__, "torchvision": torchvision.__version__}))


if __name__ == "__main__":
    main()
