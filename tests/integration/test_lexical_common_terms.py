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
