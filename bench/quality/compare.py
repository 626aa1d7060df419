"""Retrieval quality of several embedders side by side, in one run, on the labelled sets.

    python -m bench.quality.compare [--datasets manpages-name manpages-desc]
        [--embedders minilm minilm-onnx-int8 minilm-onnx-fp32 static] [--max-words 300]

Each embedder indexes the same documents through the real pipeline (per-document ACLs) and
answers the same questions as bench/quality/run.py does; reported per embedder: recall@5 and
MRR@10 of dense retrieval alone and of the default hybrid (all questions), the fusion chosen on
the "tune" half scored on the "held-out" half, and outsider leaks (must be 0).

`--max-words N` keeps each page's first paragraphs up to about N words (the questions and labels
are unchanged): every embedder sees the same shortened corpus, so the comparison stays fair
while the run fits a loaded 2-core machine (the full corpus is ~14,000 chunks per embedder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.quality.dataset import (
    AclJson,
    acl_cases,
    assign_acls,
    can_read,
    load_dataset,
    principals_of,
)
from bench.quality.run import FUSIONS, HALVES, DatasetConnector, half_of
from core.acl import Acl, AclFilter
from core.models import Section, make_document
from indexer.embedding import Embedder, load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, fuse, group_by_document
from retriever.metrics import recall_at, reciprocal_rank


@dataclass
class Quality:
    embedder: str
    dataset: str
    chunks: int = 0
    seconds: float = 0.0
    questions: int = 0
    # fusion name -> half -> [recall sum, rr sum, count]
    by_half: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    leaks: int = 0

    def score(self, fusion: str, half: str | None = None) -> tuple[float, float]:
        cells = ([self.by_half[fusion][half]] if half
                 else [self.by_half[fusion][h] for h in HALVES])
        n = max(1.0, sum(c[2] for c in cells))
        return sum(c[0] for c in cells) / n, sum(c[1] for c in cells) / n

    def chosen(self) -> str:
        return max(self.by_half, key=lambda f: self.score(f, "tune")[0])


def truncate(text: str, max_words: int | None) -> str:
    if not max_words:
        return text
    kept: list[str] = []
    words = 0
    for para in text.split("\n\n"):
        if words >= max_words:
            break
        kept.append(para)
        words += len(para.split())
    return "\n\n".join(kept)


def evaluate(dataset: str | None, embedder: Embedder, max_words: int | None = None,
             limit: int | None = None) -> Quality:
    ds = load_dataset(dataset)
    acls: dict[str, AclJson] = assign_acls(ds)
    docs = [make_document(f"man:{d}", title, f"man://{d}", [Section(truncate(text, max_words))],
                          Acl.from_json(dict(acls[d])))
            for d, title, text in ds.documents]
    questions = {q: text for q, text, _ in ds.questions}
    cases = acl_cases(ds, acls)[:limit]
    result = Quality(embedder.name, ds.name, questions=len(cases),
                     by_half={name: {h: [0.0, 0.0, 0.0] for h in HALVES} for name, _ in FUSIONS})
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "quality.sqlite3")
        t = time.perf_counter()
        report = Pipeline(store, embedder).full_sync(DatasetConnector("man", docs))
        result.seconds = time.perf_counter() - t
        result.chunks = report.chunks_embedded
        depth = RetrievalParams().candidates
        for case in cases:
            text = questions[case.qid]
            relevant = {f"man:{d}" for d in case.reader_relevant}
            acl = AclFilter({"man": principals_of(case.reader)})
            vector = embedder.embed([text])[0]
            lexical, dense = store.lexical(text, acl, depth), store.dense(vector, acl, depth)
            for name, params in FUSIONS:
                ranked = [h.doc_id for h in group_by_document(
                    fuse(lexical, dense, params), 10, 1, text)]
                cell = result.by_half[name][half_of(case.qid)]
                cell[0] += recall_at(ranked, relevant, 5)
                cell[1] += reciprocal_rank(ranked, relevant, 10)
                cell[2] += 1
            if case.outsider:
                out = AclFilter({"man": principals_of(case.outsider)})
                seen = {h.doc_id for h in store.lexical(text, out, depth)} | {
                    h.doc_id for h in store.dense(vector, out, depth)}
                result.leaks += sum(not can_read(acls[d.removeprefix("man:")], out.held("man"))
                                    for d in seen)
        store.close()
    return result


def table(results: list[Quality]) -> str:
    default = "convex, dense 0.5"  # RetrievalParams()'s fusion, what the product runs
    lines = ["| dataset | embedder | chunks | index s | dense R@5 | dense MRR@10 | "
             f"{default} R@5 | MRR@10 | held-out R@5 (fusion chosen on tune) | held-out MRR@10 "
             "| leaks |", "|" + "---|" * 11]
    for r in results:
        dr, dm = r.score("dense alone")
        hr, hm = r.score(default)
        best = r.chosen()
        br, bm = r.score(best, "held-out")
        lines.append(f"| {r.dataset} | `{r.embedder}` | {r.chunks} | {r.seconds:.0f} | {dr:.3f} | "
                     f"{dm:.3f} | {hr:.3f} | {hm:.3f} | {br:.3f} ({best}) | {bm:.3f} | {r.leaks} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["manpages-name", "manpages-desc"])
    ap.add_argument("--embedders", nargs="+",
                    default=["minilm", "minilm-onnx-int8", "minilm-onnx-fp32"])
    ap.add_argument("--max-words", type=int, default=None)
    ap.add_argument("--limit", type=int, default=None, help="questions (default: all)")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args()
    results = []
    for dataset in args.datasets:
        for name in args.embedders:
            r = evaluate(dataset, load_embedder(name, cache_dir=args.cache_dir),
                         args.max_words, args.limit)
            print(table([r]).splitlines()[-1], flush=True)
            results.append(r)
    print(table(results))


if __name__ == "__main__":
    main()
