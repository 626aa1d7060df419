"""The BM25 existence side channel (README, access model) is real, and what a reader is shown
hides its magnitude: hidden documents never appear, and the shown score is normalised."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bm25_side_channel import READER, build, observe

pytestmark = pytest.mark.integration


def test_hidden_documents_move_raw_bm25_but_never_appear(tmp_path: Path) -> None:
    seen = []
    for n in (0, 20):
        store = build(tmp_path / f"h{n}.sqlite3", readable=60, hidden=n)
        try:
            seen.append(observe(store, n))
            hits = store.lexical("zeppelin", READER, 1000)
            assert hits and not any(h.doc_id.startswith("bench:hidden") for h in hits)
        finally:
            store.close()
    without, with_hidden = seen
    assert with_hidden.raw_bm25 < without.raw_bm25 * 0.9  # the side channel the README states
    for o in seen:
        assert 0.0 < o.fused_score <= 1.0  # what search --json shows: normalised, not raw
