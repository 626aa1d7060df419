"""BM25 variants of the SQLite store, side by side, on the labelled sets (held-out halves).

    python -m bench.quality.bm25 [--datasets manpages-name manpages-desc]

Each set is indexed once through the real pipeline (per-document ACLs; the hashing embedder,
since only the lexical side is measured), then every question is asked with the ACL filter by
a user who may read a relevant page (bench/quality/dataset.py `acl_cases`), once per variant of
the store's lexical knobs: field weights, the stop-word list, and the frequent-term rule (a
term in at least max(COMMON_MIN, COMMON_FRACTION x passages) passages: 2,000 of these sets'
~8,000; "forced" sets COMMON_MIN to 0 so that the 5% share applies, as it does above 40,000
passages), dropped or scored only where a rarer term matched. BM25 alone, one hit per
document, as `run.py` scores it. Reported on the "held-out" half of the questions
(`run.half_of`), the "tune" half beside it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.quality.dataset import AclJson, acl_cases, assign_acls, load_dataset, principals_of
from bench.quality.run import HALVES, DatasetConnector, half_of
from core.acl import Acl, AclFilter
from core.models import Section, make_document
from indexer.embedding.hashing import HashingEmbedder
from indexer.store import sqlite as sq
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, fuse, group_by_document
from retriever.metrics import recall_at, reciprocal_rank


@dataclass(frozen=True)
class Variant:
    name: str
    weights: tuple[float, float, float] = (3.0, 2.0, 1.0)
    common_fraction: float = sq.COMMON_FRACTION
    common_min: int = sq.COMMON_MIN
    stopwords: frozenset[str] = sq.STOPWORDS
    common_terms: Literal["drop", "score"] = sq.COMMON_TERMS


VARIANTS = [
    Variant("product default (title 3, headings 2, body 1)"),
    Variant("weights 1/1/1", weights=(1.0, 1.0, 1.0)),
    Variant("weights 2/1/1", weights=(2.0, 1.0, 1.0)),
    Variant("weights 1/1/2", weights=(1.0, 1.0, 2.0)),
    Variant("weights 5/2/1", weights=(5.0, 2.0, 1.0)),
    Variant("no stop words", stopwords=frozenset()),
    Variant("frequent-term cut forced (5%)", common_min=0, common_terms="drop"),
    Variant("frequent-term cut forced (20%)", common_min=0, common_fraction=0.20,
            common_terms="drop"),
    Variant("cut forced (5%), common terms scored where a rare one matched", common_min=0,
            common_terms="score"),
]


@dataclass
class Score:
    # half -> [recall@5 sum, rr sum, count]
    cells: dict[str, list[float]] = field(
        default_factory=lambda: {h: [0.0, 0.0, 0.0] for h in HALVES})

    def get(self, half: str) -> tuple[float, float]:
        r, m, n = self.cells[half]
        return r / max(1.0, n), m / max(1.0, n)


def measure(dataset: str, variants: list[Variant]) -> tuple[int, float, dict[str, Score]]:
    ds = load_dataset(dataset)
    acls: dict[str, AclJson] = assign_acls(ds)
    docs = [make_document(f"man:{d}", title, f"man://{d}", [Section(text)],
                          Acl.from_json(dict(acls[d])))
            for d, title, text in ds.documents]
    questions = {q: text for q, text, _ in ds.questions}
    cases = acl_cases(ds, acls)
    scores = {v.name: Score() for v in variants}
    depth = RetrievalParams().candidates
    bm25 = RetrievalParams(fusion="bm25")
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bm25.sqlite3")
        report = Pipeline(store, HashingEmbedder()).full_sync(DatasetConnector("man", docs))
        started = time.perf_counter()
        for variant in variants:
            store.lexical_weights = variant.weights
            store.common_fraction, store.common_min = variant.common_fraction, variant.common_min
            store.stopwords, store.common_terms = variant.stopwords, variant.common_terms
            for case in cases:
                text = questions[case.qid]
                relevant = {f"man:{d}" for d in case.reader_relevant}
                acl = AclFilter({"man": principals_of(case.reader)})
                ranked = [h.doc_id for h in group_by_document(
                    fuse(store.lexical(text, acl, depth), [], bm25), 10, 1, text)]
                cell = scores[variant.name].cells[half_of(case.qid)]
                cell[0] += recall_at(ranked, relevant, 5)
                cell[1] += reciprocal_rank(ranked, relevant, 10)
                cell[2] += 1
        seconds = time.perf_counter() - started
        store.close()
    return report.chunks_embedded, seconds, scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["manpages-name", "manpages-desc"])
    ap.add_argument("--variants", nargs="+", default=None,
                    help="only the variants whose name contains one of these")
    args = ap.parse_args()
    variants = [v for v in VARIANTS if not args.variants or any(w in v.name for w in args.variants)]
    print("| dataset | variant | held-out R@5 | held-out MRR@10 | tune R@5 | tune MRR@10 |")
    print("|---|---|---|---|---|---|")
    for dataset in args.datasets:
        chunks, seconds, scores = measure(dataset, variants)
        for name, s in scores.items():
            (hr, hm), (tr, tm) = s.get("held-out"), s.get("tune")
            print(f"| {dataset} | {name} | {hr:.3f} | {hm:.3f} | {tr:.3f} | {tm:.3f} |",
                  flush=True)
        print(f"<!-- {dataset}: {chunks} chunks, {len(variants)} variants in {seconds:.0f}s -->",
              flush=True)


if __name__ == "__main__":
    main()
