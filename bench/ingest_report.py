"""Issue 12's figures in one run: numpy MiniLM, int8 ONNX (the default) and static side by side.

Sections, in this order, each printed as a Markdown table as soon as it is measured:

1. raw embedding: passages/s on the same real ~210-word passages (bench/embedders.py: the
   embedders take turns over `--rounds`, each keeps its best), query-embedding latency (one short
   question alone, median of 30) and peak RSS of a fresh interpreter per embedder;
2. ingest: a clean pipelined full sync of the Acme tenant and of a generated tree of `--docs`
   documents per embedder, then the same chunk texts embedded again by the bare embedder
   (bench/ingest.py's `measure`): end-to-end chunks/s, raw chunks/s, their ratio, and each
   embedder's end-to-end ratio to numpy's on the same chunks;
3. the default embedder on the big generated tree (`--big-docs`, default 10,000), pipelined
   (and sequential with `--big-sequential`), end to end against raw;
4. threads and batch size of the int8 embedder inside the pipelined sync (ORT intra-op threads,
   spinning, batch), settings taking turns;
5. retrieval quality of each embedder on the labelled sets (bench/quality/compare.py; pages cut
   to `--max-words` for all embedders alike), recall@5 and MRR@10, and outsider leaks.

The machine is shared: read ratios within this run, not absolute rates.

    python -m bench.ingest_report [--docs 1000] [--big-docs 10000] [--skip threads quality]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from apps.demo import TENANT
from bench.embedders import passages, peak_rss_mb, query_ms, timed
from bench.ingest import measure
from bench.synthetic import write_tree
from indexer.embedding import Embedder, load_embedder
from indexer.embedding.onnx import OnnxMiniLMEmbedder, default_cache_dir

NAMES = ("minilm", "minilm-onnx-int8", "static")
DEFAULT = "minilm-onnx-int8"


def raw_section(embedders: dict[str, Embedder], cache: Path, count: int, rounds: int) -> None:
    texts = passages(count)
    best = {n: float("inf") for n in embedders}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for n, e in embedders.items():
            seconds, vectors[n] = timed(e, texts, 32)
            best[n] = min(best[n], seconds)
    print(f"\n### Raw embedding: {len(texts)} passages of ~210 words, batches of 32, best of "
          f"{rounds} alternating rounds\n")
    print("| embedder | passages/s | ratio to numpy | mean cosine to numpy | query ms (median) "
          "| peak RSS MB |\n|---|---|---|---|---|---|")
    ref = vectors["minilm"]
    for n, e in embedders.items():
        cos = (f"{float(np.sum(vectors[n] * ref, axis=1).mean()):.4f}"
               if vectors[n].shape == ref.shape else "other space")
        print(f"| `{n}` | {len(texts) / best[n]:.1f} | {best['minilm'] / best[n]:.2f} | {cos} | "
              f"{query_ms(e):.1f} | {peak_rss_mb(n, cache, texts):.0f} |", flush=True)


def ingest_section(embedders: dict[str, Embedder], work: Path, root: Path, docs: int) -> None:
    print(f"\n### Ingest: pipelined full sync, then the same chunks raw (Acme, {docs} generated "
          "docs)\n")
    print("| corpus | embedder | chunks | e2e chunks/s | raw chunks/s | e2e / raw "
          "| e2e ratio to numpy | CPU ms per chunk e2e | CPU raw / e2e | CPU ratio to numpy |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for corpus, tree in (("Acme tenant", TENANT), (f"generated {docs}", root)):
        numpy_e2e = numpy_cpu = 0.0
        for n, e in embedders.items():
            r = measure(f"{corpus.split()[0]}-{n}", tree, e, work)
            if n == "minilm":
                numpy_e2e, numpy_cpu = r["chunks_per_s"], r["cpu_ms_per_chunk"]
            print(f"| {corpus} | `{n}` | {r['chunks']:.0f} | {r['chunks_per_s']:.1f} | "
                  f"{r['raw_chunks_per_s']:.1f} | {r['ratio']:.2f} | "
                  f"{r['chunks_per_s'] / numpy_e2e:.2f} | {r['cpu_ms_per_chunk']:.0f} | "
                  f"{r['cpu_ratio']:.2f} | {numpy_cpu / r['cpu_ms_per_chunk']:.2f} |",
                  flush=True)


def big_section(embedder: Embedder, work: Path, docs: int, sequential: bool,
                raw_every: int) -> None:
    root = write_tree(work / "big", docs)
    sample = f" (raw rate over every {raw_every}th page's chunks)" if raw_every > 1 else ""
    print(f"\n### Default embedder `{DEFAULT}` on a generated tree of {docs} documents{sample}\n")
    print("| sync | documents | chunks | e2e s | e2e chunks/s | raw chunks/s | e2e / raw "
          "| CPU raw / e2e |\n|---|---|---|---|---|---|---|---|")
    for pipelined in (True, False) if sequential else (True,):
        r = measure(f"big-{pipelined}", root, embedder, work, pipelined, raw_every)
        print(f"| {'pipelined' if pipelined else 'sequential'} | {r['documents']:.0f} | "
              f"{r['chunks']:.0f} | {r['e2e_s']:.0f} | {r['chunks_per_s']:.1f} | "
              f"{r['raw_chunks_per_s']:.1f} | {r['ratio']:.2f} | {r['cpu_ratio']:.2f} |",
              flush=True)


def threads_section(cache: Path, work: Path, root: Path, rounds: int) -> None:
    settings = [(2, False, 32), (2, True, 32), (1, False, 32), (2, False, 64)]
    rows: dict[tuple[int, bool, int], list[dict[str, float]]] = {s: [] for s in settings}
    for turn in range(rounds):
        for s in settings:
            threads, spin, batch = s
            e = OnnxMiniLMEmbedder("int8", batch_size=batch, cache_dir=cache, threads=threads,
                                   spinning=spin)
            e.embed(["warm up the model"])
            rows[s].append(measure(f"threads-{turn}-{threads}-{spin}-{batch}", root, e, work))
    print(f"\n### int8 threads / batch inside the pipelined sync ({rounds} alternating rounds, "
          "best e2e kept)\n")
    print("| intra-op threads | spinning | batch | chunks | e2e chunks/s | raw chunks/s "
          "| e2e / raw | CPU ms per chunk e2e | CPU raw / e2e |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for (threads, spin, batch), rs in rows.items():
        r = max(rs, key=lambda x: x["chunks_per_s"])
        print(f"| {threads} | {'yes' if spin else 'no'} | {batch} | {r['chunks']:.0f} | "
              f"{r['chunks_per_s']:.1f} | {max(x['raw_chunks_per_s'] for x in rs):.1f} | "
              f"{r['ratio']:.2f} | {r['cpu_ms_per_chunk']:.0f} | {r['cpu_ratio']:.2f} |",
              flush=True)


def quality_section(cache: Path, max_words: int) -> None:
    from bench.quality.compare import evaluate, table

    results = []
    print(f"\n### Retrieval quality (labelled sets, pages cut to ~{max_words} words)\n",
          flush=True)
    for dataset in ("manpages-name", "manpages-desc"):
        for n in NAMES:
            results.append(evaluate(dataset, load_embedder(n, cache_dir=cache), max_words))
    print(table(results), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--big-docs", type=int, default=10_000)
    ap.add_argument("--big-sequential", action="store_true",
                    help="sync the big tree sequentially too (doubles the section's time)")
    ap.add_argument("--big-raw-every", type=int, default=1,
                    help="raw rate of the big tree over every n-th page only (saves time)")
    ap.add_argument("--threads-docs", type=int, default=300)
    ap.add_argument("--passages", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-words", type=int, default=150)
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="built graphs and tables (default: the embedders' own cache folder)")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["raw", "ingest", "big", "threads", "quality"])
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = args.cache_dir or default_cache_dir()
        embedders = {n: load_embedder(n, cache_dir=cache) for n in NAMES}
        for e in embedders.values():
            e.embed(["load the model, build the graph or table if missing"])
        root = write_tree(work / "generated", args.docs)
        if "raw" not in args.skip:
            raw_section(embedders, cache, args.passages, args.rounds)
        if "ingest" not in args.skip:
            ingest_section(embedders, work, root, args.docs)
        if "big" not in args.skip:
            big_section(embedders[DEFAULT], work, args.big_docs, args.big_sequential,
                        args.big_raw_every)
        if "threads" not in args.skip:
            threads_section(cache, work, write_tree(work / "threads", args.threads_docs),
                            args.rounds)
        if "quality" not in args.skip:
            quality_section(cache, args.max_words)
    print(f"\nrun took {time.perf_counter() - start:.0f}s; load average at end: "
          f"{os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
