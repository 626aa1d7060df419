"""Retrieval latency: ACL-filtered vs unfiltered hybrid search on the SQLite store.

Builds stores of 10k and 100k chunks (synthetic Zipf text, clustered unit vectors, a mix of
ACL shapes), then times the same hybrid query (BM25 + dense, fused, grouped per document)
with the caller's ACL filter inside both queries and without any filter (bench/unfiltered.py:
the store itself has no unfiltered query). Prints p50/p95 and
the filtered/unfiltered ratio. Query embedding is timed separately (MiniLM, if installed).

    python -m bench.retrieval [--sizes 10000 100000] [--queries 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.synthetic import TextGenerator, caller_principals, random_acl
from bench.unfiltered import UnfilteredBaseline
from core.acl import AclFilter
from core.models import Chunk, Section, make_document
from indexer.store.sqlite import SqliteStore
from retriever.hybrid import RetrievalParams, fuse, group_by_document

DIM = 384


def build(path: Path, n_chunks: int, seed: int = 5) -> SqliteStore:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    gen = TextGenerator(seed)
    centroids = nrng.standard_normal((64, DIM)).astype(np.float32)
    store = SqliteStore(path)
    made, doc_no = 0, 0
    with store.batch():
        while made < n_chunks:
            n = min(rng.randint(1, 5), n_chunks - made)
            texts = [gen.paragraph(150) for _ in range(n)]
            doc = make_document(f"bench:doc{doc_no}", f"Document {doc_no}", f"bench://{doc_no}",
                                [Section(t) for t in texts], random_acl(rng))
            c = centroids[rng.randrange(64)]
            vecs = c + 0.8 * nrng.standard_normal((n, DIM)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            chunks = [Chunk(doc.doc_id, i, t) for i, t in enumerate(texts)]
            store.upsert(doc, chunks, vecs.astype(np.float32), "bench", "r0")
            made += n
            doc_no += 1
    return store


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def timed(fn: Callable[[], object], runs: list[float]) -> None:
    t = time.perf_counter()
    fn()
    runs.append((time.perf_counter() - t) * 1000)


def measure(store: SqliteStore, queries: list[tuple[str, np.ndarray]], acl: AclFilter,
            params: RetrievalParams) -> dict[str, float]:
    depth = params.candidates
    # The store cannot search without an ACL; the baseline is bench's own copy of its queries.
    baseline = UnfilteredBaseline(store.path, match=store._match)

    def filtered(q: str, v: np.ndarray) -> object:
        return group_by_document(fuse(store.lexical(q, acl, depth), store.dense(v, acl, depth),
                                      params), params.k, 3, q)

    def unfiltered(q: str, v: np.ndarray) -> object:
        return group_by_document(fuse(baseline.lexical(q, depth), baseline.dense(v, depth),
                                      params), params.k, 3, q)

    for q, v in queries[:20]:  # warm caches (vector matrix load, page cache)
        filtered(q, v)
        unfiltered(q, v)
    f_runs: list[float] = []
    u_runs: list[float] = []
    for i, (q, v) in enumerate(queries):
        # Alternate the order so neither side always runs on a warmer cache.
        pair = [(filtered, f_runs), (unfiltered, u_runs)]
        for fn, runs in pair if i % 2 == 0 else pair[::-1]:
            timed(lambda fn=fn, q=q, v=v: fn(q, v), runs)  # type: ignore[misc]
    baseline.close()
    return {
        "filtered_p50": percentile(f_runs, 50), "filtered_p95": percentile(f_runs, 95),
        "unfiltered_p50": percentile(u_runs, 50), "unfiltered_p95": percentile(u_runs, 95),
        "ratio_p50": statistics.median(f_runs) / statistics.median(u_runs),
        "ratio_p95": percentile(f_runs, 95) / percentile(u_runs, 95),
    }


def query_embedding_ms(name: str, n: int = 50) -> float | None:
    try:
        from indexer.embedding import load_embedder

        emb = load_embedder(name)
        emb.embed(["warm up"])
    except Exception as exc:  # the figure is optional: say why it is missing
        print(f"query embedding with {name!r} not measured: {exc}")
        return None
    gen = TextGenerator(99)
    runs: list[float] = []
    for _ in range(n):
        q = "how do I " + gen.query()
        timed(lambda q=q: emb.embed([q]), runs)  # type: ignore[misc]
    return percentile(runs, 50)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    args = ap.parse_args()
    params = RetrievalParams()
    rng = random.Random(1)
    nrng = np.random.default_rng(1)
    gen = TextGenerator(1234)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            t = time.perf_counter()
            store = build(Path(tmp) / f"s{size}.sqlite3", size)
            built = time.perf_counter() - t
            queries = []
            for _ in range(args.queries):
                v = nrng.standard_normal(DIM).astype(np.float32)
                queries.append((gen.query(), v / np.linalg.norm(v)))
            acl = AclFilter({"bench": caller_principals(rng)})
            admitted = len(store.admitted_acl_ids(acl))
            r = measure(store, queries, acl, params)
            print(f"{size:>7} chunks (built in {built:.0f}s; caller admitted to {admitted} ACLs): "
                  f"filtered p50 {r['filtered_p50']:.1f} ms p95 {r['filtered_p95']:.1f} ms | "
                  f"unfiltered p50 {r['unfiltered_p50']:.1f} ms p95 {r['unfiltered_p95']:.1f} ms"
                  f" | ratio p50 {r['ratio_p50']:.2f} p95 {r['ratio_p95']:.2f}")
            store.close()
    from core.settings import EmbedderSettings

    name = EmbedderSettings().name  # the product's default embedder
    emb = query_embedding_ms(name)
    if emb is not None:
        print(f"query embedding ({name}) p50 {emb:.1f} ms, added to both sides")


if __name__ == "__main__":
    main()
