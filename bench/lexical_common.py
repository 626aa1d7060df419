"""Cost of the frequent-term rule of the SQLite store's BM25, in one run on the same store.

    python -m bench.lexical_common [--chunks 100000] [--queries 300]

Above COMMON_MIN / COMMON_FRACTION (40,000) passages, a query term found in more than 5% of
the passages (below that: in 2,000 or more) is either dropped from the query ("drop"), or
kept for scoring in the passages a rarer term matched ("score": `(rare...) AND (all...)`),
or the rule is off ("keep all").
Times `store.lexical` alone (the ACL filter inside, 100 candidates) on bench/retrieval.py's
synthetic Zipf store, the three modes interleaved per query; prints p50/p95 and ratios to
"drop". Quality of the same modes: bench/quality/bm25.py.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.retrieval import build
from bench.synthetic import TextGenerator, caller_principals
from core.acl import AclFilter
from indexer.store import sqlite as sq
from indexer.store.sqlite import SqliteStore

MODES = ("drop", "score", "keep all")


def configure(store: SqliteStore, mode: str) -> None:
    store.common_terms = "score" if mode == "score" else "drop"
    store.common_min = 10**12 if mode == "keep all" else sq.COMMON_MIN


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    gen = TextGenerator(1234)
    queries = [gen.query() for _ in range(args.queries)]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = build(Path(tmp) / "s.sqlite3", args.chunks)
        built = time.perf_counter() - t
        acl = AclFilter({"bench": caller_principals(random.Random(1))})
        runs: dict[str, list[float]] = {m: [] for m in MODES}
        cut = 0
        for i, q in enumerate(queries):
            terms = sq.query_terms(q)
            configure(store, "drop")
            cut += len(store._selective(terms)) < len(terms)
            order = MODES[i % 3:] + MODES[:i % 3]  # rotate: no mode always runs on a warm cache
            for mode in order:
                configure(store, mode)
                started = time.perf_counter()
                store.lexical(q, acl, 100)
                runs[mode].append((time.perf_counter() - started) * 1000)
        store.close()
    p = {m: (float(np.percentile(r, 50)), float(np.percentile(r, 95))) for m, r in runs.items()}
    print(f"{args.chunks} chunks (built in {built:.0f}s), {len(queries)} queries, "
          f"{cut} with a term over the cut")
    print("| mode | p50 ms | p95 ms | p50 / drop | p95 / drop |")
    print("|---|---|---|---|---|")
    for m in MODES:
        print(f"| {m} | {p[m][0]:.1f} | {p[m][1]:.1f} | {p[m][0] / p['drop'][0]:.2f} | "
              f"{p[m][1] / p['drop'][1]:.2f} |")


if __name__ == "__main__":
    main()
