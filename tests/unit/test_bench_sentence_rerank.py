"""bench/quality/sentence_rerank.py's parts: the sentence split, the reordering of the fused top
K, and fusion_search's scoring and worst margin it chooses by, on hand-made inputs whose
answers are known."""

from __future__ import annotations

import pytest

from bench.quality.fusion_search import score_ranked, worst_margin
from bench.quality.sentence_rerank import rerank, sentences
from indexer.store.base import ChunkHit
from retriever.hybrid import Passage

pytestmark = pytest.mark.unit


def _p(cid: int, score: float) -> Passage:
    return Passage(ChunkHit(cid, f"d{cid}", 0, score, "", "", ""), score)


def test_sentences_split_on_stops_and_lines_and_drop_fragments() -> None:
    text = "Run the tool twice. It writes a log!\nSee also: frob(1)\nok\nWhy is it slow? Disks."
    assert sentences(text) == ["Run the tool twice.", "It writes a log!",
                               "See also: frob(1)", "Why is it slow?"]
    # a text with no sentence of three words is kept whole rather than dropped
    assert sentences("a b") == ["a b"]


def test_rerank_moves_the_chunk_whose_sentence_matches() -> None:
    top = [_p(1, 0.9), _p(2, 0.8), _p(3, 0.1)]
    sent = [0.2, 0.9, 0.1]
    assert [p.chunk.chunk_id for p in rerank(top, sent, 0.0, "minmax")] == [1, 2, 3]
    assert [p.chunk.chunk_id for p in rerank(top, sent, 0.5, "minmax")] == [2, 1, 3]
    assert [p.chunk.chunk_id for p in rerank(top, sent, 0.1, "add")] == [1, 2, 3]
    assert [p.chunk.chunk_id for p in rerank(top, sent, 1.0, "add")] == [2, 1, 3]
    with pytest.raises(ValueError):
        rerank(top, sent, 0.5, "max")


def test_score_half_and_worst_margin() -> None:
    questions = [("q1", frozenset({"a"}), "tune"), ("q2", frozenset({"b"}), "held-out")]
    cells = score_ranked([["a", "x"], ["x", "y", "b"]], questions)
    assert cells["tune"] == (1.0, 1.0)
    assert cells["held-out"] == (1.0, pytest.approx(1 / 3))
    single = {"s": {"tune": (1.0, 0.5), "held-out": (1.0, 0.5)}}
    assert worst_margin({"s": cells}, single, "tune") == 0.0
    assert worst_margin({"s": cells}, single, "held-out") == pytest.approx(1 / 3 - 0.5)
