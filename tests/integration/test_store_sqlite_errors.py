"""The SQLite store's boundary: every library error leaves it as a StoreError, a damaged file
is refused, and there is no search without the caller's ACL filter."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.acl import Acl, AclFilter
from core.errors import StoreError
from core.models import Chunk, Section, make_document
from indexer.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

EVERYONE = AclFilter({"d": {"everyone"}})


def add(store: SqliteStore, doc_id: str, text: str, acl: Acl | None = None) -> None:
    doc = make_document(doc_id, doc_id, f"u://{doc_id}", [Section(text)],
                        acl or Acl.single(["everyone"]))
    vec = np.ones((1, 8), dtype=np.float32) / np.sqrt(8)
    store.upsert(doc, [Chunk(doc_id, 0, text)], vec, "test", "r1")


@pytest.mark.parametrize("acl", [None, "everyone", frozenset({"everyone"}),
                                 SimpleNamespace(principals=frozenset({"everyone"}))])
def test_there_is_no_search_without_an_acl_filter(store: SqliteStore, acl: object) -> None:
    add(store, "d:open", "the lighthouse opens at dawn")
    with pytest.raises(StoreError, match="ACL filter"):
        store.lexical("lighthouse", acl, 10)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="ACL filter"):
        store.dense(np.ones(8, dtype=np.float32), acl, 10)  # type: ignore[arg-type]
    assert [h.doc_id for h in store.lexical("lighthouse", EVERYONE, 10)] == ["d:open"]


def test_a_full_database_is_a_store_error_and_rolls_the_document_back(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "index.sqlite3")
    try:
        add(store, "d:small", "a small page about herons")
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match="full"):
            add(store, "d:big", " ".join(f"word{i}" for i in range(50000)))
        assert store.document("d:big") is None
        assert [h.doc_id for h in store.lexical("herons", EVERYONE, 10)] == ["d:small"]
    finally:
        store.close()


def test_a_huge_limit_is_a_store_error_not_an_overflow(store: SqliteStore) -> None:
    add(store, "d:open", "the lighthouse opens at dawn")
    with pytest.raises(StoreError):
        store.lexical("lighthouse", EVERYONE, 2**70)


def test_damage_found_by_a_query_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    store = SqliteStore(path)
    for i in range(300):
        add(store, f"d:{i}", f"page {i} about the harbour crane and its lamps " * 20)
    store.close()
    with path.open("r+b") as f:
        f.seek(4096 * 6)
        f.write(b"\x00\xff" * 4096 * 20)
    with pytest.raises(StoreError, match="damaged"):
        reopened = SqliteStore(path)
        try:
            reopened.lexical("harbour crane", EVERYONE, 50)
            reopened.snapshot()
        finally:
            reopened.close()


@pytest.mark.parametrize("content", [b"not an index\n" * 10, b"SQLite format 3\x00" + b"\x00" * 40])
def test_a_file_that_is_not_an_index_is_refused_at_open(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "index.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="damaged"):
        SqliteStore(path)


def test_a_truncated_index_is_refused_before_any_query(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    store = SqliteStore(path)
    for i in range(50):
        add(store, f"d:{i}", f"page {i} " * 200)
    store.close()
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 4096)
    with pytest.raises(StoreError, match="truncated"):
        SqliteStore(path)


def test_the_connection_never_leaks_a_sqlite3_error(store: SqliteStore) -> None:
    with pytest.raises(StoreError) as info:
        store._db.execute("SELECT * FROM no_such_table")
    assert isinstance(info.value.__cause__, sqlite3.Error)
