"""Fusion of the BM25 and dense candidate lists."""

from __future__ import annotations

import pytest

from indexer.store.base import ChunkHit
from retriever.hybrid import RetrievalParams, fuse

pytestmark = pytest.mark.unit


def hit(chunk_id: int, score: float) -> ChunkHit:
    return ChunkHit(chunk_id, f"d:{chunk_id}", 0, score, "t", "T", "u")


def test_convex_fusion_gives_a_lone_hit_its_full_weight() -> None:
    params = RetrievalParams(fusion="convex", dense_weight=0.5)
    fused = fuse([hit(1, 7.0)], [hit(2, 0.9), hit(3, 0.1)], params)
    scores = {p.chunk.chunk_id: p.score for p in fused}
    # The only BM25 hit ranks with the best dense hit, not below the worst one.
    assert scores[1] == pytest.approx(0.5) and scores[2] == pytest.approx(0.5)
    assert scores[3] == pytest.approx(0.0)


@pytest.mark.parametrize("fusion", ["convex", "weighted_rrf", "rrf"])
def test_a_passage_found_by_both_retrievers_beats_one_found_by_either(fusion: str) -> None:
    params = RetrievalParams(fusion=fusion, dense_weight=0.5)  # type: ignore[arg-type]
    fused = fuse([hit(1, 9.0), hit(2, 5.0), hit(3, 1.0)], [hit(4, 0.9), hit(2, 0.8), hit(5, 0.1)],
                 params)
    assert fused[0].chunk.chunk_id == 2


def test_bm25_and_dense_alone_keep_their_own_order() -> None:
    lexical, dense = [hit(1, 9.0), hit(2, 5.0)], [hit(3, 0.9), hit(1, 0.8)]
    def order(fusion: str) -> list[int]:
        params = RetrievalParams(fusion=fusion)  # type: ignore[arg-type]
        return [p.chunk.chunk_id for p in fuse(lexical, dense, params)]

    assert order("bm25") == [1, 2]
    assert order("dense") == [3, 1]


@pytest.mark.parametrize("fusion", ["convex", "bm25", "dense"])
def test_the_score_shown_is_normalised_never_a_raw_bm25_value(fusion: str) -> None:
    # Raw BM25 carries the index's statistics, unreadable documents included.
    lexical = [hit(1, 17.25), hit(2, 11.5), hit(3, 4.0)]
    dense = [hit(2, 0.7), hit(3, 0.2)]
    fused = fuse(lexical, dense, RetrievalParams(fusion=fusion))  # type: ignore[arg-type]
    scores = [p.score for p in fused]
    assert all(0.0 <= s <= 1.0 for s in scores), scores
    assert not {17.25, 11.5, 4.0} & set(scores)
