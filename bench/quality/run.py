"""Retrieval quality with ACLs: recall@5 and MRR@10 of BM25 alone, dense alone and the fusions.

Indexes the labelled man-page set (bench/quality/dataset.py) through the real pipeline with
per-document ACLs, asks each question as a user who may read a relevant page, scores the
filtered results, and checks that a user who may not read it never gets any document their ACL
refuses. Candidate lists are retrieved once per question; every fusion is scored on the same
lists.

    python -m bench.quality.run [--dataset manpages-name] [--embedder minilm]

Questions are also split in two halves by a hash of their id: the fusion that scores best on
the "tune" half is reported on the "held-out" half (the figure to compare embedders on).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.quality.dataset import (
    AclJson,
    acl_cases,
    assign_acls,
    can_read,
    load_dataset,
    principals_of,
)
from connectors.base import Capabilities, ContentPage, IdentityPage, PermissionPage, Upsert
from core.acl import Acl, AclFilter
from core.models import Document, Section, make_document
from indexer.embedding import load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, fuse, group_by_document
from retriever.metrics import recall_at, reciprocal_rank


class DatasetConnector:
    """Feeds the labelled documents to the real pipeline, 64 per page."""

    kind = "bench"
    capabilities = Capabilities(complete_listing=True, identities_each_pass=True)

    def __init__(self, name: str, docs: list[Document]) -> None:
        self.name = name
        self.docs = docs

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        for start in range(int(cursor or 0), len(self.docs), 64):
            last = start + 64 >= len(self.docs)
            yield ContentPage(tuple(Upsert(d) for d in self.docs[start:start + 64]), (),
                              None if last else str(start + 64))

    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        yield PermissionPage(tuple((d.doc_id, d.acl) for d in self.docs))

    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        yield IdentityPage()


FUSIONS: list[tuple[str, RetrievalParams]] = [
    ("bm25 alone", RetrievalParams(fusion="bm25")),
    ("dense alone", RetrievalParams(fusion="dense")),
    ("rrf (equal weights)", RetrievalParams(fusion="rrf")),
    *[(f"weighted rrf, dense {w}", RetrievalParams(fusion="weighted_rrf", dense_weight=w))
      for w in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)],
    *[(f"convex, dense {w}", RetrievalParams(fusion="convex", dense_weight=w))
      for w in (0.3, 0.5, 0.7)],
]


HALVES = ("tune", "held-out")


def half_of(qid: str) -> str:
    return HALVES[hashlib.sha256(qid.encode()).digest()[0] % 2]


def show_halves(embedder: str, halves: dict[str, dict[str, list[float]]]) -> None:
    """Per half; the fusion chosen on the tune half, scored on the held-out half."""
    print(f"{'retrieval':<28} {'tune r@5':>9} {'tune MRR':>9} {'held r@5':>9} {'held MRR':>9}")
    for name, by_half in halves.items():
        cells = [by_half[h][i] / max(1.0, by_half[h][2]) for h in HALVES for i in (0, 1)]
        print(f"{name:<28} " + " ".join(f"{c:>9.3f}" for c in cells))
    best = max(halves, key=lambda n: halves[n]["tune"][0] / max(1.0, halves[n]["tune"][2]))
    held = halves[best]["held-out"]
    print(f"{embedder}: chosen on the tune half: {best}; held-out ({held[2]:.0f} questions) "
          f"recall@5 {held[0] / max(1.0, held[2]):.3f}, MRR@10 {held[1] / max(1.0, held[2]):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--limit", type=int, default=None, help="questions (default: all)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="ONNX embedders' graphs")
    args = ap.parse_args()
    ds = load_dataset(args.dataset)
    acls: dict[str, AclJson] = assign_acls(ds)
    docs = [make_document(f"man:{d}", title, f"man://{d}", [Section(text)],
                          Acl.from_json(dict(acls[d])))
            for d, title, text in ds.documents]
    embedder = load_embedder(args.embedder, cache_dir=args.cache_dir)
    questions = {q: (text, rel) for q, text, rel in ds.questions}
    cases = acl_cases(ds, acls)[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "quality.sqlite3")
        t = time.perf_counter()
        report = Pipeline(store, embedder).full_sync(DatasetConnector("man", docs))
        print(f"{ds.name}: indexed {report.documents} documents, {report.chunks_embedded} chunks "
              f"in {time.perf_counter() - t:.0f}s; {len(cases)} questions asked with ACLs")
        depth = RetrievalParams().candidates
        scores = {name: [0.0, 0.0] for name, _ in FUSIONS}
        halves = {name: {h: [0.0, 0.0, 0] for h in HALVES} for name, _ in FUSIONS}
        leaks = 0
        for case in cases:
            text, _ = questions[case.qid]
            relevant = {f"man:{d}" for d in case.reader_relevant}
            acl = AclFilter({"man": principals_of(case.reader)})
            vector = embedder.embed([text])[0]
            lexical, dense = store.lexical(text, acl, depth), store.dense(vector, acl, depth)
            for name, params in FUSIONS:
                ranked = [h.doc_id for h in group_by_document(
                    fuse(lexical, dense, params), 10, 1, text)]
                recall = recall_at(ranked, relevant, 5)
                rr = reciprocal_rank(ranked, relevant, 10)
                scores[name][0] += recall
                scores[name][1] += rr
                half = halves[name][half_of(case.qid)]
                half[0], half[1], half[2] = half[0] + recall, half[1] + rr, int(half[2]) + 1
            if case.outsider:
                out = AclFilter({"man": principals_of(case.outsider)})
                seen = {h.doc_id for h in store.lexical(text, out, depth)} | {
                    h.doc_id for h in store.dense(vector, out, depth)}
                leaks += sum(not can_read(acls[d.removeprefix("man:")], out.held("man"))
                             for d in seen)
        n = len(cases)
        print(f"{'retrieval':<28} {'recall@5':>9} {'MRR@10':>8}")
        for name, (recall, mrr) in scores.items():
            print(f"{name:<28} {recall / n:>9.3f} {mrr / n:>8.3f}")
        print(f"documents returned to a user their ACL refuses: {leaks}")
        show_halves(args.embedder, halves)
        store.close()


if __name__ == "__main__":
    main()
