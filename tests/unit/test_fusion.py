"""Fusion of the BM25 and dense candidate lists."""

from __future__ import annotations

import pytest

from indexer.store.base import ChunkHit
from retriever.hybrid import (
    DENSE_WEIGHT,
    RetrievalParams,
    adaptive_weight,
    confidence,
    dense_weight,
    fuse,
)

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


@pytest.mark.parametrize("fusion", ["ceiling", "convex", "bm25", "dense"])
def test_the_score_shown_is_normalised_never_a_raw_bm25_value(fusion: str) -> None:
    # Raw BM25 carries the index's statistics, unreadable documents included.
    lexical = [hit(1, 17.25), hit(2, 11.5), hit(3, 4.0)]
    dense = [hit(2, 0.7), hit(3, 0.2)]
    fused = fuse(lexical, dense, RetrievalParams(fusion=fusion))  # type: ignore[arg-type]
    scores = [p.score for p in fused]
    assert all(0.0 <= s <= 1.0 for s in scores), scores
    assert not {17.25, 11.5, 4.0} & set(scores)


def test_confidence_is_zero_for_flat_or_single_lists_and_scale_free() -> None:
    assert confidence([], 10) == 0.0
    assert confidence([hit(1, 3.0)], 10) == 0.0
    assert confidence([hit(1, 2.0), hit(2, 2.0), hit(3, 2.0)], 10) == 0.0
    sure = [hit(1, 9.0), hit(2, 1.0), hit(3, 1.0), hit(4, 1.0)]
    level = [hit(1, 9.0), hit(2, 8.9), hit(3, 8.8), hit(4, 1.0)]
    assert confidence(sure, 10) > confidence(level, 10) > 0.0
    scaled = [hit(h.chunk_id, h.score * 40.0) for h in sure]
    assert confidence(scaled, 10) == pytest.approx(confidence(sure, 10))
    # Only the first `depth` scores count: the outlier at rank 4 is outside depth 3.
    assert confidence(level, 3) == pytest.approx(confidence(level[:3], 10))


def test_adaptive_fusion_follows_the_surer_list() -> None:
    params = RetrievalParams(fusion="adaptive", dense_weight=0.5, adaptive_depth=10)
    lexical = [hit(1, 20.0), hit(2, 2.0), hit(3, 1.9), hit(4, 1.8)]  # BM25 is sure of 1
    dense = [hit(2, 0.61), hit(5, 0.60), hit(6, 0.60), hit(7, 0.59)]  # dense is less sure
    w = adaptive_weight(lexical, dense, params)
    assert 0.0 < w < 0.5
    assert fuse(lexical, dense, params)[0].chunk.chunk_id == 1
    # The same lists under fixed equal weights put dense's barely-first passage first.
    assert fuse(lexical, dense, RetrievalParams(fusion="convex"))[0].chunk.chunk_id == 2
    swapped = adaptive_weight([hit(h.chunk_id, h.score) for h in dense],
                              [hit(h.chunk_id, h.score) for h in lexical], params)
    assert swapped == pytest.approx(1 - w)


def test_adaptive_fusion_falls_back_to_dense_weight_when_neither_list_is_sure() -> None:
    params = RetrievalParams(fusion="adaptive", dense_weight=0.3)
    flat = [hit(1, 1.0), hit(2, 1.0)]
    assert adaptive_weight(flat, [hit(3, 0.5), hit(4, 0.5)], params) == pytest.approx(0.3)
    assert adaptive_weight([], [], params) == pytest.approx(0.3)
    assert fuse([], [], params) == []
    # One list empty: the other carries the query alone.
    only_dense = fuse([], [hit(5, 0.9), hit(6, 0.1), hit(7, 0.1)], params)
    assert only_dense[0].chunk.chunk_id == 5
    assert only_dense[0].score == pytest.approx(1.0)


def test_ceiling_fusion_keeps_a_weak_lexical_match_weak() -> None:
    # One question whose best BM25 passage reaches a tenth of its ceiling, one that reaches all:
    # min-max would give both best passages the full lexical weight.
    params = RetrievalParams()  # the default: "ceiling" at its measured dense weight
    assert params.fusion == "ceiling"
    w = dense_weight(params)
    assert w == DENSE_WEIGHT["ceiling"] and 0.5 <= w < 0.7
    lexical, dense = [hit(1, 1.0), hit(2, 0.5)], [hit(3, 0.9), hit(2, 0.5), hit(4, 0.1)]
    weak = {p.chunk.chunk_id: p.score for p in fuse(lexical, dense, params, ceiling=10.0)}
    assert weak[1] == pytest.approx((1 - w) * 0.1)
    assert weak[3] == pytest.approx(w) and max(weak, key=weak.__getitem__) == 3
    strong = {p.chunk.chunk_id: p.score for p in fuse(lexical, dense, params, ceiling=1.0)}
    assert strong[1] == pytest.approx(1 - w) and strong[3] == pytest.approx(w)
    assert strong[2] == pytest.approx((1 - w) * 0.5 + w * 0.5)


def test_ceiling_fusion_without_a_ceiling_is_convex_with_the_same_weight() -> None:
    lexical, dense = [hit(1, 7.0), hit(2, 3.0)], [hit(3, 0.9), hit(1, 0.2)]
    got = [(p.chunk.chunk_id, p.score) for p in fuse(lexical, dense, RetrievalParams())]
    want = [(p.chunk.chunk_id, p.score) for p in fuse(
        lexical, dense, RetrievalParams(fusion="convex", dense_weight=DENSE_WEIGHT["ceiling"]))]
    assert got == want
    # a ceiling of 0 (no term scored) leaves dense alone; a score past it counts as the ceiling
    assert [p.chunk.chunk_id for p in fuse(lexical, dense, RetrievalParams(), 0.0)] == [3, 1]
    over = fuse([hit(1, 12.0)], [], RetrievalParams(), 6.0)
    assert over[0].score == pytest.approx(1 - DENSE_WEIGHT["ceiling"])


def test_each_fusion_keeps_its_measured_dense_weight_unless_one_is_set() -> None:
    assert dense_weight(RetrievalParams()) == 0.55
    assert dense_weight(RetrievalParams(fusion="convex")) == 0.5
    assert dense_weight(RetrievalParams(fusion="ceiling", dense_weight=0.2)) == 0.2
