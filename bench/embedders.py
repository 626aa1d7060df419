"""Embedders side by side in one run: passages/s ratio and mean cosine to numpy MiniLM's vectors.

The passages are real text: consecutive ~210-word windows of the bundled man pages
(bench/quality), the first `--passages` of them in document order. Every embedder embeds the same
passages in the same calls; the ratio to numpy MiniLM is what to read (absolute numbers on a
shared 2-core machine are noisy), so the embedders take turns over `--rounds` and each keeps its
best round. Query latency: one short question embedded alone, median of 30. Memory: peak RSS
of a fresh interpreter that loads one embedder and embeds 64 of the passages (one per embedder).
The static embedder lives in another vector space: it has no cosine to numpy's vectors.

    python -m bench.embedders [--passages 300] [--rounds 3] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.quality.dataset import load_dataset
from indexer.embedding import Embedder, load_embedder

WORDS = 210
NAMES = ("minilm", "minilm-onnx-fp32", "minilm-onnx-int8", "static")


def passages(count: int, words: int = WORDS) -> list[str]:
    out: list[str] = []
    for _, title, text in load_dataset().documents:
        tokens = text.split()
        for start in range(0, len(tokens) - words + 1, words):
            out.append(f"{title}\n" + " ".join(tokens[start : start + words]))
            if len(out) == count:
                return out
    return out


def timed(embedder: Embedder, texts: list[str], batch: int) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    vectors = np.concatenate([embedder.embed(texts[i : i + batch])
                              for i in range(0, len(texts), batch)])
    return time.perf_counter() - t, vectors


def query_ms(embedder: Embedder) -> float:
    samples = []
    for _ in range(30):
        t = time.perf_counter()
        embedder.embed(["How do I list the files of a directory sorted by size?"])
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def peak_rss_mb(name: str, cache_dir: Path | None, texts: list[str] | None = None) -> float:
    """Peak RSS (MB) of a fresh interpreter loading `name` and embedding 64 passages. The
    passages come on stdin: loading the man-page set itself would dominate the figure. Linux's
    VmHWM, not ru_maxrss: the latter carries the forking parent's peak across exec."""
    import json

    code = ("import json, resource, sys\nfrom pathlib import Path\n"
            "from indexer.embedding import load_embedder\n"
            "c = Path(sys.argv[2]) if sys.argv[2] else None\n"
            "load_embedder(sys.argv[1], cache_dir=c).embed(json.load(sys.stdin))\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
            "print(hwm[0].split()[1] if hwm else "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    batch = (texts if texts is not None else passages(64))[:64]
    out = subprocess.run([sys.executable, "-c", code, name, str(cache_dir or "")],
                         input=json.dumps(batch), capture_output=True, text=True, check=True,
                         timeout=600)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--passages", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    texts = passages(args.passages)
    embedders = {n: load_embedder(n, batch_size=args.batch, cache_dir=args.cache_dir)
                 for n in NAMES}
    for e in embedders.values():
        e.embed(texts[:4])  # load, build the graph if missing, warm up
    best = {n: float("inf") for n in NAMES}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for n, e in embedders.items():
            seconds, vectors[n] = timed(e, texts, args.batch)
            best[n] = min(best[n], seconds)
    ref = vectors["minilm"]
    print(f"{len(texts)} passages of {WORDS} words, batches of {args.batch}, "
          f"best of {args.rounds} rounds")
    print("| embedder | passages/s | ratio to numpy | mean cosine | min cosine | query ms "
          "| peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for n, e in embedders.items():
        if vectors[n].shape == ref.shape:
            cos = np.sum(vectors[n] * ref, axis=1)
            cells = f"{cos.mean():.4f} | {cos.min():.4f}"
        else:
            cells = "other space | other space"
        print(f"| {n} | {len(texts) / best[n]:.1f} | {best['minilm'] / best[n]:.2f} | "
              f"{cells} | {query_ms(e):.2f} | {peak_rss_mb(n, args.cache_dir, texts):.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
