"""retriever.metrics (shared by `clearance eval` and bench/quality) and the eval aggregation:
definitions checked on lists small enough to work out by hand, plus properties over random
rankings (recall grows with k, nDCG is 1 exactly for an ideal ranking)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assistant.evaluation import Outcome, Question, Report, aggregate, recall_curve, score
from retriever.metrics import ndcg_at, recall_at, reciprocal_rank

pytestmark = pytest.mark.unit

RANKED = ["a", "b", "c", "d", "e", "f"]


def test_recall_counts_relevant_documents_found_within_k() -> None:
    assert recall_at(RANKED, {"c", "z"}, 1) == 0.0
    assert recall_at(RANKED, {"c", "z"}, 3) == 0.5
    assert recall_at(RANKED, {"a", "c"}, 3) == 1.0
    assert recall_at(RANKED, set(), 5) == 0.0
    assert recall_at(["a", "a", "b"], {"b"}, 2) == 1.0  # a repeated id counts once


def test_reciprocal_rank_is_one_over_the_first_relevant_rank_within_k() -> None:
    assert reciprocal_rank(RANKED, {"c", "e"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(RANKED, {"f"}, k=5) == 0.0
    assert reciprocal_rank(RANKED, {"z"}) == 0.0


def test_ndcg_discounts_by_log2_of_the_rank() -> None:
    # relevant at ranks 2 and 4 of two relevant: (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3))
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at(RANKED, {"b", "d"}) == pytest.approx(expected)
    assert ndcg_at(RANKED, {"a"}) == 1.0
    assert ndcg_at(RANKED, {"z"}) == 0.0


@given(st.permutations(list("abcdefghijkl")), st.sets(st.sampled_from(list("abcdefghijkl")),
                                                      min_size=1))
def test_properties_over_random_rankings(ranked: list[str], relevant: set[str]) -> None:
    recalls = [recall_at(ranked, relevant, k) for k in range(1, 13)]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0
    assert 0.0 <= ndcg_at(ranked, relevant) <= 1.0 + 1e-12
    ideal = sorted(ranked, key=lambda d: d not in relevant)
    assert ndcg_at(ideal, relevant) == pytest.approx(1.0)
    assert reciprocal_rank(ideal, relevant) == 1.0


def _row(line: int, relevant: tuple[str, ...], ranked: tuple[str, ...], cited: tuple[str, ...],
         refused: bool = False) -> object:
    return score(Question(line, f"q{line}", "ada@example.org", relevant),
                 Outcome(ranked, refused, cited, ""))


def test_aggregate_means_and_citation_precision_over_all_citations() -> None:
    rows = [
        _row(1, ("docs:a",), ("docs:a", "docs:b"), ("docs:a", "docs:b")),
        _row(2, ("docs:c",), ("docs:b", "docs:c"), ("docs:c",)),
        _row(3, ("wiki:x",), ("docs:b",), (), refused=True),
    ]
    report = Report(rows)  # type: ignore[arg-type]
    overall = aggregate(report.rows)
    assert overall["recall@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert overall["recall@5"] == pytest.approx(2 / 3, abs=1e-4)
    assert overall["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-4)
    assert overall["refusal_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert overall["citation_precision"] == pytest.approx(2 / 3, abs=1e-4)  # 2 of 3 cited
    per = report.per_connector()
    assert set(per) == {"docs", "wiki"} and len(per["docs"]) == 2 and len(per["wiki"]) == 1
    wiki = aggregate(per["wiki"])
    assert wiki["citation_precision"] is None and wiki["refusal_rate"] == 1.0
    assert recall_curve(report.rows, 3) == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert report.to_json()["questions"][2]["citation_precision"] is None
