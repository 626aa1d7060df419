"""The default's fused top K reordered by a sentence-level score, on every set's cached lists.

    python -m bench.quality.sentence_rerank --candidates DIR [--sets ...] [--embedder E]

A passage of ~200 tokens holds several sentences, and the one that answers a question can be
drowned in its chunk's mean-pooled vector. This scores each of the default fusion's first K
chunks by the best cosine between the question and one of the chunk's sentences (MiniLM run on
each sentence alone), and reorders those K by the fused score and that sentence score combined:
"minmax" (each min-max over the K, then (1 - lam) * fused + lam * sentence) or "add" (fused +
lam * sentence). A variant is chosen as in fusion_search: the largest worst margin over the
best single retriever (BM25 or dense alone) on the TUNE halves of all sets, R@5 and MRR@10;
then the held-out halves are read.

Needs the candidate lists and synced indexes that `bench.quality.sets --candidates DIR` keeps
in DIR; the sentence vectors it computes are kept beside them (DIR/<set>.<embedder>.sentences
.npz) and reused. Also prints what it would cost: the sentences per chunk (the vectors an index
would store per chunk to do this at ingest) and the median time to embed the K chunks'
sentences of one question (to do it at query time).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.quality.fusion_search import Cell, best_single, score_ranked, worst_margin
from bench.quality.sets import (
    add_set_arguments,
    candidates_and_ceilings,
    load_set,
    store_path,
)
from indexer.embedding import Embedder, load_embedder
from retriever.hybrid import Passage, RetrievalParams, fuse, group_by_document

_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
LAMBDAS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
DEPTHS = (10, 20, 30)
MODES = ("minmax", "add")


def sentences(text: str) -> list[str]:
    """The chunk's sentences of three words or more (the whole text when it has none)."""
    parts = [s.strip() for s in _BREAK.split(text)]
    return [s for s in parts if len(s.split()) >= 3] or [text]


def rerank(top: Sequence[Passage], sentence_scores: Sequence[float], lam: float,
           mode: str) -> list[Passage]:
    """`top` (best first) reordered by its fused scores combined with `sentence_scores`."""
    if lam <= 0 or not top:
        return list(top)
    fused = np.array([p.score for p in top], dtype=np.float64)
    sent = np.array(sentence_scores, dtype=np.float64)
    if mode == "minmax":
        def spread(x: np.ndarray) -> np.ndarray:
            out: np.ndarray = (x - x.min()) / (x.max() - x.min() + 1e-9)
            return out
        combined = (1 - lam) * spread(fused) + lam * spread(sent)
    elif mode == "add":
        combined = fused + lam * sent
    else:
        raise ValueError(f"unknown mode {mode!r}")
    order = sorted(range(len(top)), key=lambda i: -combined[i])
    return [Passage(top[i].chunk, float(combined[i])) for i in order]


def _chunk_texts(db: sqlite3.Connection, store: Path, ids: Sequence[int]) -> list[str]:
    """The texts of chunks `ids` of the kept index, in that order."""
    rows = dict(db.execute("SELECT chunk_id, text FROM chunks WHERE chunk_id IN "
                           f"({','.join('?' * len(ids))})", list(ids)).fetchall())
    if missing := [c for c in ids if c not in rows]:
        raise SystemExit(f"{store}: chunk {missing[0]} of the cached lists is not in the index "
                         "(rebuild the cache with bench.quality.sets)")
    return [str(rows[c]) for c in ids]


def _sentence_vectors(path: Path, store: Path, chunk_ids: set[int],
                      embedder: Embedder) -> dict[int, np.ndarray]:
    have: dict[int, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            ids, starts, vecs = z["ids"], z["starts"], z["vectors"]
        for i, cid in enumerate(ids.tolist()):
            have[int(cid)] = vecs[starts[i]:starts[i + 1]]
    todo = sorted(chunk_ids - have.keys())
    if todo:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            for at in range(0, len(todo), 64):
                part = todo[at:at + 64]
                texts, owner = [], []
                for cid, text in zip(part, _chunk_texts(db, store, part), strict=True):
                    split = sentences(text)
                    texts += split
                    owner += [cid] * len(split)
                vecs = np.asarray(embedder.embed(texts), dtype=np.float32)
                owners = np.array(owner)
                for cid in part:
                    have[cid] = vecs[owners == cid]
        finally:
            db.close()
        ids_sorted = sorted(have)
        starts_arr = np.cumsum([0] + [len(have[c]) for c in ids_sorted])
        np.savez(path, ids=np.array(ids_sorted, dtype=np.int64), starts=starts_arr,
                 vectors=np.concatenate([have[c] for c in ids_sorted]))
    return have


def main() -> None:
    ap = argparse.ArgumentParser()
    add_set_arguments(ap)
    ap.add_argument("--candidates", type=Path, required=True)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    embedder = load_embedder(args.embedder)
    params = RetrievalParams()
    loaded = {}
    single: dict[str, Cell] = {}
    per_chunk: list[int] = []
    for name in args.sets:
        if not store_path(args.candidates, name, args.embedder, "", ".json.gz").exists():
            raise SystemExit(f"{name}: no cached candidates in {args.candidates} (run "
                             "bench.quality.sets --candidates with it first)")
        lists, ceilings, _ = candidates_and_ceilings(name, args.embedder, args.candidates)
        _, questions = load_set(name)
        fused = [sorted(fuse(lx, dn, params, c if lx else None), key=lambda p: -p.score)
                 for (lx, dn), c in zip(lists, ceilings, strict=True)]
        need = {p.chunk.chunk_id for f in fused for p in f[:max(DEPTHS)]}
        vecs = _sentence_vectors(
            store_path(args.candidates, name, args.embedder, "", ".sentences.npz"),
            store_path(args.candidates, name, args.embedder), need, embedder)
        per_chunk += [len(vecs[c]) for c in need]
        qv = np.asarray(embedder.embed([q[0] for q in questions]), dtype=np.float32)
        best = [[float((vecs[p.chunk.chunk_id] @ v).max()) for p in f[:max(DEPTHS)]]
                for f, v in zip(fused, qv, strict=True)]
        loaded[name] = (questions, fused, best)
        single[name] = best_single(lists, questions)
    results = []
    for k in DEPTHS:
        for mode in MODES:
            for lam in LAMBDAS:
                if lam == 0 and (k, mode) != (DEPTHS[0], MODES[0]):
                    continue  # lam 0 is the default, once
                cells = {}
                for name, (questions, fused, best) in loaded.items():
                    ranked = [[h.doc_id for h in group_by_document(
                        rerank(f[:k], b[:k], lam, mode) + f[k:], 10, 1, q[0])]
                        for f, b, q in zip(fused, best, questions, strict=True)]
                    cells[name] = score_ranked(ranked, questions)
                label = "the default (no rerank)" if lam == 0 else f"K {k}, {mode}, lam {lam}"
                results.append((worst_margin(cells, single, "tune"),
                                worst_margin(cells, single, "held-out"), -lam, label, cells))
    results.sort(key=lambda r: (-r[0], -r[2]))
    names = list(loaded)
    print("best single per set (held-out R@5 / MRR@10): " + "; ".join(
        f"{n} {single[n]['held-out'][0]:.3f} / {single[n]['held-out'][1]:.3f}" for n in names))
    print("\n| variant | tune worst margin | held-out worst margin | "
          + " | ".join(f"{n} held-out R@5 / MRR@10" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    shown = results[:args.top] + [r for r in results[args.top:] if r[2] == 0]
    for t, h, _, label, cells in shown:
        mark = " (tune choice)" if label == results[0][3] else ""
        print(f"| {label}{mark} | {t:+.3f} | {h:+.3f} | " + " | ".join(
            f"{cells[n]['held-out'][0]:.3f} / {cells[n]['held-out'][1]:.3f}" for n in names)
            + " |")
    # the cost of doing it at query time: embed one question's K chunks' sentences
    db_name = names[0]
    _, fused, _ = loaded[db_name]
    store = store_path(args.candidates, db_name, args.embedder)
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    timings = []
    for f in fused[:20]:
        ids = [p.chunk.chunk_id for p in f[:DEPTHS[0]]]
        texts = [s for t in _chunk_texts(db, store, ids) for s in sentences(t)]
        start = time.perf_counter()
        embedder.embed(texts)
        timings.append((time.perf_counter() - start) * 1000)
    db.close()
    print(f"\nsentences per chunk: median {statistics.median(per_chunk):.0f}, mean "
          f"{statistics.fmean(per_chunk):.1f} ({len(per_chunk)} chunks); embedding the first "
          f"{DEPTHS[0]} chunks' sentences at query time ({db_name}, 20 questions): median "
          f"{statistics.median(timings):.0f} ms")


if __name__ == "__main__":
    main()
