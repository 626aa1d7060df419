"""BM25 leaves out terms in more than COMMON_FRACTION of passages when rarer ones exist; it must
still find what the rare terms find, never return less for all-common questions, and keep the
ACL filter."""

from __future__ import annotations

import numpy as np
import pytest

from core.acl import Acl, AclFilter
from core.models import Chunk, Section, make_document
from indexer.store import sqlite as sqlite_store
from indexer.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

N = sqlite_store.COMMON_MIN + 200
CALLER = AclFilter({"d": {"everyone", "group:eng"}})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SqliteStore:
    s = SqliteStore(tmp_path_factory.mktemp("common") / "index.sqlite3")
    vec = np.zeros((1, 8), dtype=np.float32)
    with s.batch():
        for i in range(N):
            text = f"policy handbook page {i}"
            if i == 7:
                text += " zeppelin hangar"
            if i == 8:
                text += " zeppelin"
            acl = Acl.single(["group:finance"] if i == 8 else ["everyone"])
            doc = make_document(f"d:{i}", f"Page {i}", f"u:{i}", [Section(text)], acl)
            s.upsert(doc, [Chunk(doc.doc_id, 0, text)], vec, "test", "r")
    return s


def test_a_common_term_is_left_out_when_a_rarer_one_exists(store: SqliteStore) -> None:
    assert store._selective(["policy", "zeppelin"]) == ["zeppelin"]
    hits = store.lexical("policy zeppelin", CALLER, 10)
    assert [h.doc_id for h in hits] == ["d:7"]  # d:8 has the word but is finance-only


def test_only_common_terms_still_search(store: SqliteStore) -> None:
    assert store._selective(["policy", "handbook"]) == ["policy", "handbook"]
    assert len(store.lexical("policy handbook", CALLER, 5)) == 5


def test_the_denied_side_holds_after_pruning(store: SqliteStore) -> None:
    finance = AclFilter({"d": {"group:finance"}})
    assert [h.doc_id for h in store.lexical("policy zeppelin", finance, 10)] == ["d:8"]
    nobody = AclFilter({"d": {"user:x@y.example"}})
    assert store.lexical("policy zeppelin", nobody, 10) == []


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> SqliteStore:
    """Fillers put "policy" in a fifth of the passages (over the cut, set to engage at this size,
    yet with an idf that still counts); three passages hold the rare "zeppelin"."""
    s = SqliteStore(tmp_path_factory.mktemp("ranked") / "index.sqlite3")
    s.common_min = 0  # the cut engages above COMMON_MIN / COMMON_FRACTION passages otherwise
    vec = np.zeros((1, 8), dtype=np.float32)
    texts = {"bare": "zeppelin hangar notes", "both": "zeppelin policy policy notes",
             "hidden": "zeppelin policy policy policy notes"}
    with s.batch():
        for i in range(N):
            texts[f"f{i}"] = f"{'policy ' if i % 5 == 0 else ''}handbook page {i}"
        for key, text in texts.items():
            acl = Acl.single(["group:finance"] if key == "hidden" else ["everyone"])
            doc = make_document(f"d:{key}", key, f"u:{key}", [Section(text)], acl)
            s.upsert(doc, [Chunk(doc.doc_id, 0, text)], vec, "test", "r")
    return s


def test_common_terms_still_rank_the_passages_a_rare_term_found(ranked: SqliteStore) -> None:
    assert ranked.common_terms == "score"  # the default
    assert ranked._selective(["policy", "zeppelin"]) == ["zeppelin"]
    hits = [h.doc_id for h in ranked.lexical("policy zeppelin", CALLER, 10)]
    # only passages with the rare term, and "policy" decides between them
    assert hits == ["d:both", "d:bare"]
    ranked.common_terms = "drop"
    try:  # dropped outright, "policy" says nothing: the shorter passage wins
        assert [h.doc_id for h in ranked.lexical("policy zeppelin", CALLER, 10)] == [
            "d:bare", "d:both"]
    finally:
        ranked.common_terms = "score"


def test_scoring_common_terms_keeps_the_denied_side(ranked: SqliteStore) -> None:
    finance = AclFilter({"d": {"group:finance"}})
    assert [h.doc_id for h in ranked.lexical("policy zeppelin", finance, 10)] == ["d:hidden"]
    assert "d:hidden" not in {h.doc_id for h in ranked.lexical("policy zeppelin", CALLER, 50)}
