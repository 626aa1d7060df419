"""Hybrid retrieval: BM25 and dense search, each ACL-filtered inside the store query, fused.

Fusion is measured, not assumed (bench/quality, figures in bench/RESULTS.md). The default
("ceiling") divides BM25 by the highest score the question could reach and adds min-max dense
scores with weight 0.55, chosen on the tune halves of five labelled sets (bench.quality.sets,
with the store's own ceiling): on the held-out halves it is within one question of the best
single retriever everywhere (-0.007, howto R@5), level on debfaq R@5, ahead on the other
eight figures, where
equal-weight min-max ("convex", the earlier default chosen on the man pages alone) fell 0.100
below dense retrieval on the Debian FAQ.
Convex, RRF and weighted RRF stay selectable. Results are grouped per document so one long
document cannot crowd out the rest.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from core.acl import AclFilter
from core.models import Hit
from indexer.embedding import Embedder
from indexer.store.base import ChunkHit, ChunkStore

Fusion = Literal["ceiling", "weighted_rrf", "rrf", "convex", "adaptive", "bm25", "dense"]

# Each fusion's dense weight when none is configured, as measured (bench/RESULTS.md): 0.55 is
# the ceiling fusion's weight chosen on the tune halves of all five labelled sets
# (`python -m bench.quality.sets --candidates DIR`, its last table).
DENSE_WEIGHT: dict[str, float] = {"ceiling": 0.55}


@dataclass(frozen=True)
class RetrievalParams:
    k: int = 10
    candidates: int = 100
    fusion: Fusion = "ceiling"
    rrf_k: int = 60
    dense_weight: float | None = None  # None: DENSE_WEIGHT's for the fusion, else 0.5
    passages_per_document: int = 3
    # "adaptive": convex with per-query weights, dense_weight scaled by each list's confidence
    # (how far its top score stands above its first adaptive_depth scores, in their spread).
    adaptive_depth: int = 10


@dataclass(frozen=True)
class Passage:
    chunk: ChunkHit
    score: float


def _rank_fusion(ranked: Sequence[tuple[list[ChunkHit], float]], rrf_k: int) -> list[Passage]:
    scores: dict[int, float] = defaultdict(float)
    chunks: dict[int, ChunkHit] = {}
    for hits, weight in ranked:
        for rank, hit in enumerate(hits):
            scores[hit.chunk_id] += weight / (rrf_k + rank + 1)
            chunks.setdefault(hit.chunk_id, hit)
    return [Passage(chunks[c], s) for c, s in scores.items()]


def _convex(ranked: Sequence[tuple[list[ChunkHit], float]]) -> list[Passage]:
    """Min-max normalise each list's scores, then add them with weights."""
    scores: dict[int, float] = defaultdict(float)
    chunks: dict[int, ChunkHit] = {}
    for hits, weight in ranked:
        if not hits:
            continue
        top, low = hits[0].score, hits[-1].score
        for hit in hits:
            # A list whose scores are all equal (one hit, say) gives each the full weight.
            normalised = (hit.score - low) / (top - low) if top > low else 1.0
            scores[hit.chunk_id] += weight * normalised
            chunks.setdefault(hit.chunk_id, hit)
    return [Passage(chunks[c], s) for c, s in scores.items()]


def confidence(hits: Sequence[ChunkHit], depth: int) -> float:
    """z-score of the top score among the first `depth` scores (0 when fewer than two or flat).

    A retriever whose best candidate stands out is sure of it; one whose top scores are level is
    guessing. The statistic is scale-free, so BM25 and cosine scores compare."""
    scores = [h.score for h in hits[:max(2, depth)]]
    if len(scores) < 2:
        return 0.0
    mean = sum(scores) / len(scores)
    spread = (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5
    return (scores[0] - mean) / spread if spread > 0 else 0.0


def dense_weight(params: RetrievalParams) -> float:
    if params.dense_weight is not None:
        return params.dense_weight
    return DENSE_WEIGHT.get(params.fusion, 0.5)


def adaptive_weight(lexical: Sequence[ChunkHit], dense: Sequence[ChunkHit],
                    params: RetrievalParams) -> float:
    """The dense list's weight for this query: dense_weight, tilted towards the surer list."""
    weight = dense_weight(params)
    d = weight * confidence(dense, params.adaptive_depth)
    lx = (1 - weight) * confidence(lexical, params.adaptive_depth)
    return d / (d + lx) if d + lx > 0 else weight


def _over_ceiling(lexical: list[ChunkHit], ceiling: float, weight: float) -> list[Passage]:
    """BM25 divided by the highest score the question could reach (capped at 1): a question
    whose rare words no readable passage holds keeps a weak lexical side, where min-max would
    stretch its best partial match to 1."""
    if ceiling <= 0.0:
        return []
    return [Passage(h, weight * min(1.0, max(0.0, h.score / ceiling))) for h in lexical]


def fuse(lexical: list[ChunkHit], dense: list[ChunkHit], params: RetrievalParams,
         ceiling: float | None = None) -> list[Passage]:
    """`ceiling`: the store's lexical_ceiling for the question (the "ceiling" fusion; None,
    when the store cannot tell, falls back to min-max, i.e. "convex" with the same weight)."""
    # Single-retriever modes are min-max normalised too: a raw BM25 score carries the index's
    # statistics, hidden documents included (bench/bm25_side_channel.py), and is never shown.
    w = dense_weight(params)
    if params.fusion == "bm25":
        passages = _convex([(lexical, 1.0)])
    elif params.fusion == "dense":
        passages = _convex([(dense, 1.0)])
    elif params.fusion == "ceiling" and ceiling is not None:
        passages = _add(_over_ceiling(lexical, ceiling, 1 - w), _convex([(dense, w)]))
    elif params.fusion in ("convex", "ceiling"):
        passages = _convex([(lexical, 1 - w), (dense, w)])
    elif params.fusion == "adaptive":
        a = adaptive_weight(lexical, dense, params)
        passages = _convex([(lexical, 1 - a), (dense, a)])
    else:
        r = 0.5 if params.fusion == "rrf" else w
        passages = _rank_fusion([(lexical, 1 - r), (dense, r)], params.rrf_k)
    passages.sort(key=lambda p: (-p.score, p.chunk.doc_id, p.chunk.ordinal))
    return passages


def _add(*lists: list[Passage]) -> list[Passage]:
    scores: dict[int, float] = defaultdict(float)
    chunks: dict[int, ChunkHit] = {}
    for passages in lists:
        for p in passages:
            scores[p.chunk.chunk_id] += p.score
            chunks.setdefault(p.chunk.chunk_id, p.chunk)
    return [Passage(chunks[c], s) for c, s in scores.items()]


class Retriever:
    def __init__(self, store: ChunkStore, embedder: Embedder, params: RetrievalParams) -> None:
        self.store = store
        self.embedder = embedder
        self.params = params

    def passages(self, query: str, acl: AclFilter, k: int | None = None) -> list[Passage]:
        """Fused passages the caller may read, best first (several per document)."""
        # Deep enough that k documents survive grouping even when each has several passages.
        wanted = (k or self.params.k) * self.params.passages_per_document
        depth = max(self.params.candidates, wanted)
        lexical = ([] if self.params.fusion == "dense"
                   else self.store.lexical(query, acl, depth))
        dense = ([] if self.params.fusion == "bm25"
                 else self.store.dense(self.embedder.embed([query])[0], acl, depth))
        ceiling = (self.store.lexical_ceiling(query)
                   if self.params.fusion == "ceiling" and lexical else None)
        return fuse(lexical, dense, self.params, ceiling)

    def search(self, query: str, acl: AclFilter, k: int | None = None) -> list[Hit]:
        return group_by_document(self.passages(query, acl, k), k or self.params.k,
                                 self.params.passages_per_document, query)


def group_by_document(passages: Sequence[Passage], k: int, per_document: int,
                      query: str) -> list[Hit]:
    """One hit per document (its best passage is the snippet), best documents first."""
    grouped: dict[str, list[Passage]] = {}
    for p in passages:
        grouped.setdefault(p.chunk.doc_id, []).append(p)
    hits = []
    for doc_id, group in list(grouped.items())[:k]:
        best = group[0].chunk
        hits.append(Hit(
            doc_id=doc_id, title=best.title, url=best.url, score=round(group[0].score, 6),
            snippet=snippet(best.text, query), chunk_text=best.text, chunk_ordinal=best.ordinal,
            passages=tuple(p.chunk.text for p in group[:per_document])))
    return hits


_WORD = re.compile(r"\w+")


def snippet(text: str, query: str, width: int = 320) -> str:
    """The window of `text` around the sentence sharing most words with the query."""
    if len(text) <= width:
        return text
    terms = {w.lower() for w in _WORD.findall(query) if len(w) > 2}
    best_at, best = 0, -1
    for m in re.finditer(r"[^.!?\n]+[.!?]?", text):
        score = len(terms & {w.lower() for w in _WORD.findall(m.group())})
        if score > best:
            best_at, best = m.start(), score
    start = max(0, min(best_at, len(text) - width))
    cut = text[start:start + width]
    return ("…" if start else "") + cut.strip() + ("…" if start + width < len(text) else "")
