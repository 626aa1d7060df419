"""Ranking metrics over one ranked list of document ids and the set judged relevant.

One definition for the product's `clearance eval` and for the benchmarks in bench/quality:
binary relevance, a document counted once (its first position), ranks from 1.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


def _first_positions(ranked: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ranked))


def recall_at(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant documents found in the first k (0.0 when none is relevant)."""
    if not relevant:
        return 0.0
    return len(set(_first_positions(ranked)[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """1 / rank of the first relevant document within the first k, else 0."""
    wanted = set(relevant)
    for i, doc_id in enumerate(_first_positions(ranked)[:k]):
        if doc_id in wanted:
            return 1.0 / (i + 1)
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """Normalised discounted cumulative gain at k, binary gains (log2 discount)."""
    wanted = set(relevant)
    if not wanted:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2)
              for i, doc_id in enumerate(_first_positions(ranked)[:k]) if doc_id in wanted)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), k)))
    return dcg / ideal
