"""BM25 statistics of documents a person cannot read shift the scores they see.

BM25's idf counts every passage holding a term, readable or not (FTS5 and OpenSearch alike
keep one set of statistics per index; document-level security filters rows, not statistics).
So the same readable corpus, with and without N hidden documents that contain a term, gives
a reader different raw scores: an existence side channel ("how many documents I cannot open
mention 'acquisition'?").

This bench builds that pair of stores and reports, for one readable target passage, how its
raw BM25 score, its rank among the reader's hits for a two-term query, and the fused
normalised score that `search --json` prints move as N grows.

    python -m bench.bm25_side_channel [--hidden 0 10 100 1000] [--readable 300]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.synthetic import TextGenerator
from core.acl import Acl, AclFilter
from core.models import Chunk, Section, make_document
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from retriever.hybrid import RetrievalParams, Retriever

TERM = "zeppelin"  # the probed term: rare in the readable corpus
OTHER = "budget"  # a second query term, common in the readable corpus
READER = AclFilter({"bench": {"everyone", "user:reader@example.org"}})
PUBLIC = Acl.single(["everyone"])
HIDDEN = Acl.single(["group:board"])


@dataclass(frozen=True)
class Observation:
    hidden: int
    raw_bm25: float
    rank: int  # the target's rank among the reader's lexical hits for TERM + OTHER
    fused_score: float  # what `search --json` prints as "score" for the target
    fused_rank: int


def build(path: Path, readable: int, hidden: int, seed: int = 3) -> SqliteStore:
    rng = random.Random(seed)
    gen = TextGenerator(seed)
    embedder = HashingEmbedder()
    store = SqliteStore(path)

    def add(doc_id: str, text: str, acl: Acl) -> None:
        doc = make_document(doc_id, doc_id, f"bench://{doc_id}", [Section(text)], acl)
        chunk = Chunk(doc.doc_id, 0, text)
        store.upsert(doc, [chunk], embedder.embed([text]), embedder.name, "r0")

    with store.batch():
        add("bench:target", f"{gen.paragraph(60)} the {TERM} hangar {gen.paragraph(60)}", PUBLIC)
        for i in range(readable):
            extra = f" {OTHER} review" if rng.random() < 0.3 else ""
            add(f"bench:public{i}", gen.paragraph(120) + extra, PUBLIC)
        for i in range(hidden):
            add(f"bench:hidden{i}", f"{gen.paragraph(100)} {TERM} {gen.paragraph(20)}", HIDDEN)
    return store


def observe(store: SqliteStore, hidden: int) -> Observation:
    raw = store.lexical(TERM, READER, 50)
    target = [h for h in raw if h.doc_id == "bench:target"]
    assert target and all(not h.doc_id.startswith("bench:hidden") for h in raw)
    both = store.lexical(f"{TERM} {OTHER}", READER, 1000)
    rank = next(i for i, h in enumerate(both, 1) if h.doc_id == "bench:target")
    retriever = Retriever(store, HashingEmbedder(), RetrievalParams())
    hits = retriever.search(f"{TERM} {OTHER}", READER, 1000)
    fused_rank = next(i for i, h in enumerate(hits, 1) if h.doc_id == "bench:target")
    return Observation(hidden, target[0].score, rank, hits[fused_rank - 1].score, fused_rank)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, nargs="+", default=[0, 10, 100, 1000])
    ap.add_argument("--readable", type=int, default=300)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.hidden:
            store = build(Path(tmp) / f"h{n}.sqlite3", args.readable, n)
            rows.append(observe(store, n))
            store.close()
    base = rows[0]
    print(f"readable corpus: {args.readable + 1} passages; query {TERM!r} and "
          f"{TERM + ' ' + OTHER!r}; hidden passages contain {TERM!r} and are not readable")
    print("| hidden docs | raw BM25 (target) | change | lexical rank | fused score | fused rank |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        change = (r.raw_bm25 - base.raw_bm25) / base.raw_bm25 * 100
        print(f"| {r.hidden} | {r.raw_bm25:.3f} | {change:+.0f}% | {r.rank} | "
              f"{r.fused_score:.3f} | {r.fused_rank} |")


if __name__ == "__main__":
    main()
