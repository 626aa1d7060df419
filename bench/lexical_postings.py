"""BM25 from postings against FTS5's bm25() in SQL, in one run on one store (issue 16).

    python -m bench.lexical_postings [--chunks 100000] [--queries 200] [--store FILE]
                                     [--embedder minilm-onnx-int8]

On bench/retrieval.py's synthetic store (150-word Zipf passages, mixed ACLs), each question
is asked by its own caller through both engines in turn (alternating which goes first):
lexical p50 / p95 for questions whose terms are new to the postings cache ("cold") and asked
again ("warm"), the full hybrid (BM25 + dense at the retriever's candidate depth, fused,
grouped per document) plus the query embedding with the default embedder, and what the first
question after a write costs (1 document, then 1,000 documents upserted). Answers are
compared: the postings must return the same chunks in the same order with the same scores.
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

from bench.retrieval import DIM, build
from bench.synthetic import TextGenerator, caller_principals
from core.acl import Acl, AclFilter
from core.models import Chunk, Section, make_document
from indexer.store.postings import TERM_BUDGET
from indexer.store.sqlite import SqliteStore
from retriever.hybrid import RetrievalParams, fuse, group_by_document

ENGINES = ("fts5", "postings")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def ms(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def run(store: SqliteStore, n_queries: int, embedder_name: str) -> None:
    params = RetrievalParams()
    depth = params.candidates
    gen, rng, nrng = TextGenerator(4321), random.Random(2), np.random.default_rng(2)
    questions = [(gen.query(), AclFilter({"bench": caller_principals(rng)}))
                 for _ in range(n_queries)]
    vectors = [v / np.linalg.norm(v) for v in nrng.standard_normal((n_queries, DIM))
               .astype(np.float32)]
    try:
        from indexer.embedding import load_embedder
        embedder = load_embedder(embedder_name)
        embedder.embed(["warm up"])
    except Exception as exc:  # optional figure: say why it is missing
        print(f"query embedding not measured ({exc}); hybrid rows exclude it")
        embedder = None

    before = rss_mb()
    store.lexical_engine = "postings"
    load_ms, _ = ms(lambda: store.lexical("warm", questions[0][1], depth))
    grown = rss_mb() - before
    store.dense(vectors[0], questions[0][1], depth)  # the dense matrix, outside every timing
    print(f"{store.chunk_count():,} chunks; postings state load {load_ms:.0f} ms, "
          f"RSS +{grown:.0f} MB after it (term postings come on top, {TERM_BUDGET:,} entries "
          "at most)")

    lexical: dict[tuple[str, str], list[float]] = {}
    hybrid: dict[str, list[float]] = {e: [] for e in ENGINES}
    differ = 0
    for rnd in ("cold", "warm"):
        for i, (q, acl) in enumerate(questions):
            answers = {}
            order = ENGINES if i % 2 == 0 else ENGINES[::-1]
            for engine in order:
                store.lexical_engine = engine
                took, hits = ms(lambda q=q, acl=acl: store.lexical(q, acl, depth))
                lexical.setdefault((engine, rnd), []).append(took)
                answers[engine] = [(h.chunk_id, h.score) for h in hits]  # type: ignore[attr-defined]
            differ += answers["fts5"] != answers["postings"]
    for i, (q, acl) in enumerate(questions):
        order = ENGINES if i % 2 == 0 else ENGINES[::-1]
        for engine in order:
            store.lexical_engine = engine

            def ask(q: str = q, acl: AclFilter = acl, v: np.ndarray = vectors[i]) -> object:
                vec = embedder.embed([q])[0] if embedder is not None else v
                return group_by_document(fuse(store.lexical(q, acl, depth),
                                              store.dense(vec, acl, depth), params),
                                         params.k, 3, q)
            hybrid[engine].append(ms(ask)[0])
    print(f"answers that differ between the engines: {differ} of {2 * n_queries}")
    print("\n| engine | lexical cold p50 / p95 ms | lexical warm p50 / p95 ms | "
          "hybrid warm p50 / p95 ms (incl. query embedding) |")
    print("|---|---|---|---|")
    for e in ENGINES:
        c, w, h = lexical[(e, "cold")], lexical[(e, "warm")], hybrid[e]
        print(f"| {e} | {statistics.median(c):.2f} / {pct(c, 95):.2f} | "
              f"{statistics.median(w):.2f} / {pct(w, 95):.2f} | "
              f"{statistics.median(h):.2f} / {pct(h, 95):.2f} |")
    f, p = hybrid["fts5"], hybrid["postings"]
    print(f"postings / fts5: hybrid p50 {statistics.median(p) / statistics.median(f):.2f}, "
          f"p95 {pct(p, 95) / pct(f, 95):.2f}")

    # The first question after a write: the state is brought forward (rows appended, rows
    # gone masked), then each term's postings reload; the same for the whole hybrid (the
    # dense cache is brought forward too, sharing the chunk ACL read).
    store.lexical_engine = "postings"
    rows = []

    def write(n_docs: int, tag: str) -> None:
        with store.batch():
            for j in range(n_docs):
                text = gen.paragraph(150)
                doc = make_document(f"bench:{tag}{n_docs}-{j}", f"Written {j}",
                                    f"bench://{tag}{j}", [Section(text)],
                                    Acl.single(["everyone"]))
                store.upsert(doc, [Chunk(doc.doc_id, 0, text)],
                             vectors[j % len(vectors)][None, :], "bench", "r1")

    for n_docs in (1, 1000):
        write(n_docs, "w")
        q, acl = questions[n_docs % len(questions)]
        first, _ = ms(lambda q=q, acl=acl: store.lexical(q, acl, depth))
        again, _ = ms(lambda q=q, acl=acl: store.lexical(q, acl, depth))
        store.lexical_engine = "fts5"
        ref, _ = ms(lambda q=q, acl=acl: store.lexical(q, acl, depth))
        store.lexical_engine = "postings"
        write(n_docs, "h")
        q, acl = questions[(n_docs + 1) % len(questions)]

        def hybrid_ask(q: str = q, acl: AclFilter = acl) -> object:
            vec = embedder.embed([q])[0] if embedder is not None else vectors[0]
            return group_by_document(fuse(store.lexical(q, acl, depth),
                                          store.dense(vec, acl, depth), params), params.k, 3, q)
        if embedder is not None:
            embedder.embed([q])  # the question's embedding is not what a write costs
        hybrid_first, _ = ms(hybrid_ask)
        hybrid_again, _ = ms(hybrid_ask)
        rows.append((n_docs, first, again, ref, hybrid_first, hybrid_again))
    print("\n| documents written | first question after, ms | the same question again | "
          "fts5, same question | first hybrid question after, ms | again |")
    print("|---|---|---|---|---|---|")
    for n_docs, first, again, ref, h1, h2 in rows:
        print(f"| {n_docs:,} | {first:.1f} | {again:.2f} | {ref:.1f} | {h1:.1f} | {h2:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--store", type=Path, help="a copy of a store built by an earlier run "
                    "(it is written to: the after-write rows upsert documents)")
    ap.add_argument("--embedder", default="minilm-onnx-int8")
    args = ap.parse_args()
    if args.queries < 1 or args.chunks < 100:
        ap.error("--queries at least 1, --chunks at least 100")
    if args.store is not None:
        if not args.store.is_file():
            ap.error(f"--store {args.store}: not a file")
        run(SqliteStore(args.store), args.queries, args.embedder)
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        store = build(Path(tmp) / "s.sqlite3", args.chunks)
        print(f"built in {time.perf_counter() - t:.0f} s")
        run(store, args.queries, args.embedder)


if __name__ == "__main__":
    main()
