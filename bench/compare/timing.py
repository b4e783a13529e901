"""Median timings shared by the PyTorch comparison scripts (milliseconds)."""
import statistics
import time


def time_cpu(fn, reps, min_seconds=0.5):
    """Median of at least `reps` calls (two warm-ups first), running for at least
    `min_seconds` but at most 10 * reps calls."""
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 10 * reps:
            break
    return statistics.median(times)


def time_cuda(fn_of, n_bufs, reps):
    """Median of `reps` CUDA-event timings of fn_of(i), cycling over n_bufs input sets so
    that caches do not hold the previous call's data."""
    import torch

    for i in range(3):
        fn_of(i % n_bufs)
    torch.cuda.synchronize()
    times = []
    for r in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn_of(r % n_bufs)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def emit(dev, dtype_name, results, **extra):
    """Prints the run as one JSON line: torch version, device, CPU threads, dtype, the
    per-shape results and any extra fields (ceilings measured on the device)."""
    import json
    import sys

    import torch

    out = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "threads": torch.get_num_threads() if dev == "cpu" else None,
        "dtype": dtype_name,
        "results": results,
        **extra,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
