"""Fusion with BM25 normalised by its own ceiling (issue 16, session 7).

    python -m bench.quality.absolute --candidates DIR [--sets ...]

Every rule of bench/quality/fusion_search.py normalises each list from its own candidates
(min-max, z-score, top): a question no passage matches well still gets a BM25 list that spans
[0, 1], and has as much say as the dense list. Here BM25 is divided by the highest score the
question could reach, sum over its scored terms of idf(t) * (k1 + 1) (FTS5's bm25 saturates
below k1 + 1 per term), so a weak lexical match stays weak and a question whose rare words a
passage does contain keeps BM25's full weight. The ceiling needs each term's passage count:
each set is indexed again through the real chunker into a store with the hashing embedder
(only FTS5 is read), and the terms are scored exactly as the store's postings do (the
common-term rule included). Dense stays min-max or raw cosine. The weight is chosen on the
TUNE halves of all sets together (largest worst margin over the best single retriever, as
fusion_search.py chooses), then the held-out halves are scored.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.quality.fusion_search import evaluate
from bench.quality.run import DatasetConnector
from bench.quality.sets import PUBLIC, Question, candidates, load_set
from core.acl import Acl
from core.models import Section, make_document
from indexer.chunking import ChunkingPolicy
from indexer.embedding import load_embedder
from indexer.store import postings
from indexer.store.base import ChunkHit
from indexer.store.sqlite import FTS_COLUMNS, TOKENIZE, SqliteStore, query_terms
from indexer.sync import Pipeline


def ceilings(name: str, questions: Sequence[Question]) -> list[float]:
    """Each question's highest reachable BM25 score on `name`'s passages (0: no term)."""
    docs, _ = load_set(name)
    out: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "c.sqlite3")
        connector = docs[0][0].split(":")[0]
        Pipeline(store, load_embedder("hashing"),
                 policy=ChunkingPolicy(max_tokens=230, target_tokens=200)).full_sync(
            DatasetConnector(connector, [
                make_document(d, t, f"{connector}://{d}", [Section(x)], Acl.from_json(PUBLIC))
                for d, t, x in docs]))
        store._db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_fts_instances "
                          "USING fts5vocab(main, chunks_fts, instance)")
        state = store._postings_state()
        assert state is not None
        tokenizer = postings.Tokenizer(TOKENIZE)
        for text, _, _ in questions:
            stems = [t[0] for t in tokenizer.tokens(query_terms(text, store.stopwords))
                     if len(t) == 1]
            counts: dict[str, int] = {}
            for s in dict.fromkeys(stems):
                found = postings.term_postings(store._db, state, s, store.lexical_weights,
                                               FTS_COLUMNS)
                counts[s] = 0 if found is None else len(found[0])
            stems = [s for s in stems if counts[s] > 0]
            rare = store._rare(stems, state.rows, lambda t, _cap, c=counts: c[t])
            phrases = rare + stems if store.common_terms == "score" and len(rare) < len(
                stems) else rare
            out.append(sum(postings.idf(state.rows, counts[s]) * (postings.K1 + 1.0)
                           for s in phrases))
        store.close()
    return out


def ranker(dense_weight: float, dense_norm: str, ceiling: float,  # type: ignore[no-untyped-def]
           span: tuple[float, float] | None = None):
    """`span` (lo, hi): the dense weight per question instead, hi when the best BM25 passage
    reaches none of the question's ceiling, lo when it reaches all of it (session 9)."""
    def rank(lexical: list[ChunkHit], dense: list[ChunkHit]) -> list[str]:
        fused: dict[int, float] = {}
        w = dense_weight
        if span is not None:
            reach = min(1.0, lexical[0].score / ceiling) if lexical and ceiling > 0 else 0.0
            w = span[1] - (span[1] - span[0]) * reach
        doc: dict[int, tuple[str, int]] = {}
        for h in lexical:
            fused[h.chunk_id] = (1 - w) * (h.score / ceiling if ceiling > 0 else 0.0)
            doc[h.chunk_id] = (h.doc_id, h.ordinal)
        if dense:
            top, low = dense[0].score, dense[-1].score
            for h in dense:
                if dense_norm == "cos":
                    s = max(h.score, 0.0)
                else:
                    s = (h.score - low) / (top - low) if top > low else 1.0
                fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + w * s
                doc.setdefault(h.chunk_id, (h.doc_id, h.ordinal))
        order = sorted(fused, key=lambda k: (-fused[k], doc[k]))
        return list(dict.fromkeys(doc[k][0] for k in order))[:10]
    return rank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=["faq", "howto", "debfaq", "manpages-desc",
                                                    "manpages-name"])
    ap.add_argument("--embedder", default="minilm-onnx-int8")
    ap.add_argument("--candidates", type=Path, required=True)
    args = ap.parse_args()
    loaded = []
    for name in args.sets:
        _, questions = load_set(name)
        lists, _ = candidates(name, args.embedder, args.candidates)
        caps = ceilings(name, questions)
        single = {}
        for label, weight in (("bm25", 0.0), ("dense", 1.0)):
            single[label] = evaluate(lists, questions,
                                     lambda lx, dn, w=weight: ranker(w, "minmax", 1.0)(
                                         [] if w == 1.0 else lx, [] if w == 0.0 else dn))
        loaded.append((name, questions, lists, caps, single))
        print(f"{name}: {len(questions)} questions, ceilings {min(caps):.1f}-{max(caps):.1f}",
              flush=True)

    def scores(w: float, norm: str, span: tuple[float, float] | None = None
               ) -> dict[str, dict[str, tuple[float, float]]]:
        out = {}
        for name, questions, lists, caps, _ in loaded:
            acc = {h: [0.0, 0.0, 0] for h in ("tune", "held-out")}
            for (lx, dn), q, cap in zip(lists, questions, caps, strict=True):
                one = evaluate([(lx, dn)], [q], ranker(w, norm, cap, span))
                a = acc[q[2]]
                a[0] += one[q[2]][0]
                a[1] += one[q[2]][1]
                a[2] += 1
            out[name] = {h: (r / max(1, n), m / max(1, n)) for h, (r, m, n) in acc.items()}
        return out

    def margin(cells: dict[str, dict[str, tuple[float, float]]], half: str) -> float:
        worst = 1.0
        for name, _, _, _, single in loaded:
            for metric in (0, 1):
                best = max(single["bm25"][half][metric], single["dense"][half][metric])
                worst = min(worst, cells[name][half][metric] - best)
        return worst

    rows = []
    for norm in ("minmax", "cos"):
        for w in (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8):
            cells = scores(w, norm)
            rows.append((margin(cells, "tune"), margin(cells, "held-out"), f"dense {norm}, w {w}",
                         cells))
    spans = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    for norm in ("minmax", "cos"):
        for lo in spans:
            for hi in spans:
                if hi > lo:
                    cells = scores(0.0, norm, (lo, hi))
                    rows.append((margin(cells, "tune"), margin(cells, "held-out"),
                                 f"dense {norm}, w {hi} - ({hi} - {lo}) x reach", cells))
    rows.sort(key=lambda r: -r[0])
    names = [n for n, *_ in loaded]
    print("\n| rule | tune worst margin | held-out worst margin | " + " | ".join(
        f"{n} held-out R@5 / MRR@10" for n in names) + " |")
    print("|---" * (3 + len(names)) + "|")
    best_held = sorted(rows, key=lambda r: -r[1])[:5]
    # the 15 best on tune (the choice), then the 5 best on held-out: a ceiling, not a choice
    for (tune, held, label, cells), oracle in ([(r, "") for r in rows[:15]]
                                               + [(r, " (oracle)") for r in best_held]):
        print(f"| bm25 / ceiling, {label}{oracle} | {tune:+.3f} | {held:+.3f} | " + " | ".join(
            f"{cells[n]['held-out'][0]:.3f} / {cells[n]['held-out'][1]:.3f}" for n in names)
            + " |")
    print("\nbest single per set (held-out R@5 / MRR@10): " + "; ".join(
        f"{n} " + " / ".join(f"{max(s['bm25']['held-out'][m], s['dense']['held-out'][m]):.3f}"
                             for m in (0, 1)) for n, _, _, _, s in loaded))


if __name__ == "__main__":
    main()
