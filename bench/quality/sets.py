"""Every labelled set, held-out halves: recall@5 and MRR@10 of BM25 alone, dense alone, the
default hybrid and every fusion variant in retriever/hybrid.py.

    python -m bench.quality.sets [--sets faq howto debfaq manpages-name manpages-desc]
                                 [--embedder minilm-onnx-int8] [--candidates DIR]

Sets (bench/quality/README.md): `faq` (data/faq.jsonl, bench/quality/faq.py), `howto`
(data/howto.jsonl, bench/quality/howto.py), `debfaq` (data/debfaq.jsonl, bench/quality/debfaq.py),
`manpages-name` / `manpages-desc`
(bench/quality/dataset.py). Documents are indexed through the real pipeline (chunker, embedder,
SQLite store) as public documents; every question is asked as a reader, and per question the
lexical and dense candidates (RetrievalParams().candidates deep) are retrieved once and every
fusion is scored on the same lists, grouped per document as the product does. The held-out
half of the JSONL sets is the records' `split`; of the man-page sets, run.half_of(qid).

`--candidates DIR` keeps each set's candidate lists and each question's
`store.lexical_ceiling` (the product's "ceiling" fusion needs it; a cache written without it is
refused) as DIR/<set>.<embedder>.json.gz, written after a sync and read instead of syncing when
present, and the synced index beside them as DIR/<set>.<embedder>.sqlite3, so fusion rules and
retrieval experiments can be re-scored without re-embedding. Rows are printed as a
Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.quality.dataset import load_dataset
from bench.quality.run import FUSIONS, DatasetConnector, half_of
from core.acl import Acl, AclFilter
from core.models import Section, make_document
from indexer.chunking import ChunkingPolicy
from indexer.embedding import load_embedder
from indexer.store.base import ChunkHit
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import Passage, RetrievalParams, fuse, group_by_document
from retriever.metrics import recall_at, reciprocal_rank

DATA = Path(__file__).resolve().parent / "data"
JSONL_SETS = {"faq": ("faq.jsonl", "faq-docs.jsonl.gz"),
              "howto": ("howto.jsonl", "howto-docs.jsonl.gz"),
              "debfaq": ("debfaq.jsonl", "debfaq-docs.jsonl.gz")}
READER = frozenset({"everyone"})
PUBLIC = {"gates": [["everyone"]], "deny": []}

# (question, relevant doc ids, half)
Question = tuple[str, frozenset[str], str]
Doc = tuple[str, str, str]  # (doc_id, title, text)
Lists = list[tuple[list[ChunkHit], list[ChunkHit]]]
Ceilings = list[float | None]


def load_set(name: str) -> tuple[list[Doc], list[Question]]:
    if name in JSONL_SETS:
        qfile, dfile = JSONL_SETS[name]
        lines = gzip.decompress((DATA / dfile).read_bytes()).decode("utf-8").splitlines()
        docs = [(str(d["doc_id"]), str(d["title"]), str(d["text"]))
                for d in map(json.loads, lines)]
        questions = [(str(q["question"]), frozenset(q["relevant"]),
                      "held-out" if q["split"] == "heldout" else "tune")
                     for q in map(json.loads, (DATA / qfile).read_text("utf-8").splitlines())]
        return docs, questions
    ds = load_dataset(name)
    return ([(f"man:{d}", title, text) for d, title, text in ds.documents],
            [(text, frozenset(f"man:{r}" for r in rel), half_of(qid))
             for qid, text, rel in ds.questions])


def _hit_json(h: ChunkHit) -> list[object]:
    return [h.chunk_id, h.doc_id, h.ordinal, h.score]


def _hit(row: list[object]) -> ChunkHit:
    cid, doc, ordinal, score = row
    return ChunkHit(int(str(cid)), str(doc), int(str(ordinal)), float(str(score)), "", "", "")


def candidates(name: str, embedder_name: str, cache: Path | None,
               policy: ChunkingPolicy | None = None) -> tuple[Lists, str]:
    """Per question (in load_set order) the lexical and dense candidate lists; `policy`
    None is the product's chunking (the Pipeline's own default for the embedder)."""
    lists, _, note = candidates_and_ceilings(name, embedder_name, cache, policy)
    return lists, note


def store_path(cache: Path, name: str, embedder_name: str, tag: str = "",
               suffix: str = ".sqlite3") -> Path:
    """Where `candidates` keeps the index it synced for `name` (suffix ".json.gz": its lists)."""
    return cache / f"{name}.{embedder_name}{tag}{suffix}"


def candidates_and_ceilings(name: str, embedder_name: str, cache: Path | None,
                            policy: ChunkingPolicy | None = None) -> tuple[Lists, Ceilings, str]:
    """`candidates` and each question's lexical ceiling as the store reports it."""
    tag = "" if policy is None else (f".c{policy.max_tokens}-{policy.target_tokens}"
                                     f"-{policy.overlap_tokens}")
    path = store_path(cache, name, embedder_name, tag, ".json.gz") if cache else None
    if path is not None and path.exists():
        data = json.loads(gzip.decompress(path.read_bytes()))
        if "ceilings" not in data:
            raise SystemExit(f"{path}: written before the store reported its lexical ceiling; "
                             "delete it to rebuild")
        return ([([_hit(r) for r in lx], [_hit(r) for r in dn]) for lx, dn in data["lists"]],
                [None if c is None else float(c) for c in data["ceilings"]], str(data["note"]))
    docs, questions = load_set(name)
    embedder = load_embedder(embedder_name)
    depth = RetrievalParams().candidates
    lists: Lists = []
    ceilings: Ceilings = []
    with tempfile.TemporaryDirectory() as tmp:
        # With a cache the synced index is kept beside the lists (DIR/<set>...sqlite3: the
        # passages' vectors for bench/ivf_recall.py and retrieval experiments without
        # re-embedding), written afresh.
        where = Path(tmp) / "q.sqlite3" if cache is None else store_path(cache, name,
                                                                         embedder_name, tag)
        for old in (where, where.with_name(where.name + "-wal"),
                    where.with_name(where.name + "-shm")):
            old.unlink(missing_ok=True)
        where.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(where)
        t = time.perf_counter()
        connector = docs[0][0].split(":")[0]  # doc ids are "<connector>:..."
        report = Pipeline(store, embedder, policy=policy).full_sync(DatasetConnector(connector, [
            make_document(d, title, f"{connector}://{d}", [Section(text)], Acl.from_json(PUBLIC))
            for d, title, text in docs]))
        built = time.perf_counter() - t
        acl = AclFilter({connector: READER})
        for text, _, _ in questions:
            lists.append((store.lexical(text, acl, depth),
                          store.dense(embedder.embed([text])[0], acl, depth)))
            ceilings.append(store.lexical_ceiling(text))
        store.close()
    note = (f"{name}: {len(docs)} documents, {report.chunks_embedded} chunks "
            f"({embedder_name}{tag}), indexed in {built:.0f}s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"note": note, "ceilings": ceilings,
                   "lists": [[[_hit_json(h) for h in lx], [_hit_json(h) for h in dn]]
                             for lx, dn in lists]}
        path.write_bytes(gzip.compress(json.dumps(payload).encode(), mtime=0))
    return lists, ceilings, note


# (lexical, dense, question, the store's lexical ceiling) -> fused passages
Rule = Callable[[list[ChunkHit], list[ChunkHit], str, float | None], list[Passage]]


def _fixed(params: RetrievalParams) -> Rule:
    def rule(lexical: list[ChunkHit], dense: list[ChunkHit], query: str,
             ceiling: float | None) -> list[Passage]:
        # as the Retriever does: the ceiling is asked for only when there is a lexical list
        return fuse(lexical, dense, params, ceiling if lexical else None)
    return rule


def rules() -> list[tuple[str, Rule]]:
    return [("default hybrid", _fixed(RetrievalParams())),
            *[(label, _fixed(params)) for label, params in FUSIONS],
            *[(f"ceiling, dense {w}", _fixed(RetrievalParams(fusion="ceiling", dense_weight=w)))
              for w in (0.4, 0.5, 0.7, 0.8)]]


def score(lists: Lists, ceilings: Ceilings, questions: list[Question],
          rule: Rule) -> dict[str, tuple[float, float, int]]:
    cells = {h: [0.0, 0.0, 0] for h in ("tune", "held-out")}
    for (lexical, dense), ceiling, (text, relevant, half) in zip(lists, ceilings, questions,
                                                                 strict=True):
        ranked = [h.doc_id for h in group_by_document(rule(lexical, dense, text, ceiling),
                                                      10, 1, text)]
        cell = cells[half]
        cell[0] += recall_at(ranked, set(relevant), 5)
        cell[1] += reciprocal_rank(ranked, set(relevant), 10)
        cell[2] += 1
    return {h: (r / max(1, n), m / max(1, n), int(n)) for h, (r, m, n) in cells.items()}


ADAPTIVE = [RetrievalParams(fusion="adaptive", dense_weight=w, adaptive_depth=d)
            for w in (0.3, 0.4, 0.5, 0.6, 0.7) for d in (3, 5, 10, 20, 50, 100)]


SET_NAMES = ("faq", "howto", "debfaq", "manpages-name", "manpages-desc")


def add_set_arguments(ap: argparse.ArgumentParser) -> None:
    """--sets (every labelled set by default) and --embedder, as the quality benches take them."""
    ap.add_argument("--sets", nargs="+", default=list(SET_NAMES))
    ap.add_argument("--embedder", default="minilm-onnx-int8")


def main() -> None:
    ap = argparse.ArgumentParser()
    add_set_arguments(ap)
    ap.add_argument("--candidates", type=Path, default=None)
    ap.add_argument("--chunking", default=None, metavar="MAX,TARGET,OVERLAP",
                    help="chunk sizes in tokens instead of the product's (230,200,40)")
    args = ap.parse_args()
    policy = None
    if args.chunking is not None:
        try:
            mx, target, overlap = (int(x) for x in args.chunking.split(","))
        except ValueError:
            ap.error("--chunking: three integers MAX,TARGET,OVERLAP")
        if not 0 <= overlap < target <= mx <= 256:
            ap.error("--chunking: need 0 <= OVERLAP < TARGET <= MAX <= 256")
        policy = ChunkingPolicy(max_tokens=mx, target_tokens=target, overlap_tokens=overlap)
    print("| set | retrieval | held-out R@5 | held-out MRR@10 | tune R@5 | tune MRR@10 |")
    print("|---|---|---|---|---|---|")
    loaded: Loaded = []
    for name in args.sets:
        _, questions = load_set(name)
        lists, caps, note = candidates_and_ceilings(name, args.embedder, args.candidates,
                                                    policy)
        loaded.append((name, questions, lists, caps))
        n = {h: sum(1 for q in questions if q[2] == h) for h in ("tune", "held-out")}
        for label, rule in rules():
            _row(name, label, score(lists, caps, questions, rule))
        print(f"<!-- {note}; questions tune {n['tune']} / held-out {n['held-out']} -->",
              flush=True)
    # The adaptive rule's two parameters, chosen on the tune halves of all sets together (mean
    # of R@5 + MRR@10 over sets); only then are the held-out halves scored.
    def tuned(params: RetrievalParams) -> float:
        total = 0.0
        for _, questions, lists, caps in loaded:
            t = score(lists, caps, questions, _fixed(params))["tune"]
            total += t[0] + t[1]
        return total / len(loaded)
    best = max(ADAPTIVE, key=tuned)
    label = f"adaptive, dense {best.dense_weight}, depth {best.adaptive_depth} (tuned)"
    for name, questions, lists, caps in loaded:
        _row(name, label, score(lists, caps, questions, _fixed(best)))
    ceiling_weights(loaded)


CEILING_WEIGHTS = [round(0.3 + 0.05 * i, 2) for i in range(13)]  # 0.30 ... 0.90


Loaded = list[tuple[str, list[Question], Lists, Ceilings]]


Scores = dict[str, tuple[float, float, int]]


def margins(loaded: Loaded, singles: list[list[Scores]], params: RetrievalParams
            ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Per half, the smallest margin over sets and over R@5 and MRR@10 of `params` above the
    better single retriever (`singles`: BM25's and dense's scores per set); and the rule's
    held-out (R@5, MRR@10) per set."""
    worst = {"tune": float("inf"), "held-out": float("inf")}
    cells = {}
    for (name, questions, lists, caps), alone in zip(loaded, singles, strict=True):
        got = score(lists, caps, questions, _fixed(params))
        for half in worst:
            worst[half] = min(worst[half], got[half][0] - max(s[half][0] for s in alone),
                              got[half][1] - max(s[half][1] for s in alone))
        cells[name] = got["held-out"][:2]
    return worst, cells


def ceiling_weights(loaded: Loaded) -> None:
    """The ceiling fusion's dense weight chosen on the tune halves of every set at once (the
    largest worst margin over the better single retriever; a tie goes to the weight nearer
    0.5), then its held-out figures."""
    print("\n| ceiling fusion, dense weight | tune worst margin | held-out worst margin | "
          + " | ".join(f"{name} held-out R@5 / MRR@10" for name, *_ in loaded) + " |")
    print("|---|---|---|" + "---|" * len(loaded))
    singles = [[score(lists, caps, questions, _fixed(RetrievalParams(fusion=f)))
                for f in ("bm25", "dense")] for _, questions, lists, caps in loaded]
    measured = {w: margins(loaded, singles, RetrievalParams(fusion="ceiling", dense_weight=w))
                for w in CEILING_WEIGHTS}
    pick = max(CEILING_WEIGHTS, key=lambda w: (measured[w][0]["tune"], -abs(w - 0.5)))
    for w, (worst, cells) in measured.items():
        mark = " (tune choice)" if w == pick else ""
        print(f"| {w}{mark} | {worst['tune']:+.3f} | {worst['held-out']:+.3f} | " + " | ".join(
            f"{r:.3f} / {m:.3f}" for r, m in cells.values()) + " |", flush=True)


def _row(name: str, label: str, s: dict[str, tuple[float, float, int]]) -> None:
    print(f"| {name} | {label} | {s['held-out'][0]:.3f} | {s['held-out'][1]:.3f} | "
          f"{s['tune'][0]:.3f} | {s['tune'][1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
