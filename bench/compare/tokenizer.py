"""open_clip.tokenize on the captions bench/tokenizer.bench.ts writes, for its comparison.

Usage: python3 bench/compare/tokenizer.py TEXTS_JSON OUT_JSON BATCH

Reads a JSON list of strings; writes {"textsPerSecond": ..., "ids": [[...], ...]} where ids
are the context-77 rows of every text (for the bench to check against its own) and the rate
is the median over batches of BATCH texts after one untimed pass (so its word cache is warm,
as the bench's is).
"""
import json
import statistics
import sys
import time

import open_clip


def main() -> None:
    texts_path, out_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    ids = open_clip.tokenize(texts).tolist()
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    times = []
    for chunk in batches:
        start = time.perf_counter()
        open_clip.tokenize(chunk)
        times.append((time.perf_counter() - start) / len(chunk))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"textsPerSecond": 1.0 / statistics.median(times), "ids": ids}, f)


if __name__ == "__main__":
    main()
