"""The SQLite store's frequent-term rule ("drop" vs "score", indexer/store/sqlite.py) under
BM25 alone and under the default hybrid, on the labelled sets, held-out halves.

    python -m bench.quality.hybrid_common [--datasets ...] [--embedder minilm-onnx-int8]

One index per set (the real pipeline, per-document ACLs); per question the dense candidates
are retrieved once and the lexical ones once per rule, then fused with RetrievalParams()'s
default and grouped per document as the product does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.quality.dataset import AclJson, acl_cases, assign_acls, load_dataset, principals_of
from bench.quality.run import HALVES, DatasetConnector, half_of
from core.acl import Acl, AclFilter
from core.models import Section, make_document
from indexer.embedding import load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, fuse, group_by_document
from retriever.metrics import recall_at, reciprocal_rank

RULES = ("drop", "score")
ROWS = ["bm25 alone, drop", "bm25 alone, score", "dense alone",
        "default hybrid, drop", "default hybrid, score"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["manpages-name", "manpages-desc"])
    ap.add_argument("--embedder", default="minilm-onnx-int8")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    embedder = load_embedder(args.embedder, cache_dir=args.cache_dir)
    default, bm25, dense_only = (RetrievalParams(), RetrievalParams(fusion="bm25"),
                                 RetrievalParams(fusion="dense"))
    print("| dataset | retrieval | held-out R@5 | held-out MRR@10 | tune R@5 | tune MRR@10 |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        ds = load_dataset(name)
        acls: dict[str, AclJson] = assign_acls(ds)
        docs = [make_document(f"man:{d}", title, f"man://{d}", [Section(text)],
                              Acl.from_json(dict(acls[d])))
                for d, title, text in ds.documents]
        questions = {q: text for q, text, _ in ds.questions}
        cells = {row: {h: [0.0, 0.0, 0.0] for h in HALVES} for row in ROWS}
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(Path(tmp) / "q.sqlite3")
            t = time.perf_counter()
            report = Pipeline(store, embedder).full_sync(DatasetConnector("man", docs))
            built = time.perf_counter() - t
            depth = default.candidates
            for case in acl_cases(ds, acls):
                text = questions[case.qid]
                relevant = {f"man:{d}" for d in case.reader_relevant}
                acl = AclFilter({"man": principals_of(case.reader)})
                dense = store.dense(embedder.embed([text])[0], acl, depth)
                lists = {"dense alone": fuse([], dense, dense_only)}
                for rule in RULES:
                    store.common_terms = rule  # type: ignore[assignment]
                    lexical = store.lexical(text, acl, depth)
                    lists[f"bm25 alone, {rule}"] = fuse(lexical, [], bm25)
                    lists[f"default hybrid, {rule}"] = fuse(lexical, dense, default)
                for row, passages in lists.items():
                    ranked = [h.doc_id for h in group_by_document(passages, 10, 1, text)]
                    cell = cells[row][half_of(case.qid)]
                    cell[0] += recall_at(ranked, relevant, 5)
                    cell[1] += reciprocal_rank(ranked, relevant, 10)
                    cell[2] += 1
            store.close()
        for row in ROWS:
            out = []
            for half in ("held-out", "tune"):
                r, m, n = cells[row][half]
                out += [f"{r / max(1.0, n):.3f}", f"{m / max(1.0, n):.3f}"]
            print(f"| {name} | {row} | " + " | ".join(out) + " |", flush=True)
        print(f"<!-- {name}: {report.chunks_embedded} chunks ({args.embedder}), indexed in "
              f"{built:.0f}s -->", flush=True)


if __name__ == "__main__":
    main()
