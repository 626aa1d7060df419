"""The two Pipeline passes the jobs added, in-process on a real store: incremental_sync (content
without the deletion pass) and prune (the permission pass plus deletion of what vanished), and
how both behave while an interrupted full sync waits to resume."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from auth.identity import resolve
from connectors.files.connector import FilesConnector
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from tests.conftest import write_tree

pytestmark = pytest.mark.integration

ANN, BEN = "ann@acme.com", "ben@acme.com"


def tree(root: Path, n: int = 30) -> Path:
    spec: dict[str, Any] = {
        ".access.json": {"read": ["domain:acme.com"]},
        ".groups.json": {"board": [f"user:{ANN}"]},
        "board/.access.json": {"read": ["group:board"]},
        "public/plan.md": "# Plan\n\nThe lighthouse merger is planned for June.\n",
    }
    for i in range(n):
        spec[f"notes/n{i:02d}.md"] = f"# Note {i}\n\nThe canteen serves soup number {i}.\n"
    return write_tree(root, spec)


class CrashingEmbedder(HashingEmbedder):
    """Raises on the Nth embed call: a sync that dies midway, leaving its checkpoint."""

    def __init__(self, crash_on: int) -> None:
        super().__init__()
        self.calls, self.crash_on = 0, crash_on

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.crash_on:
            raise RuntimeError("worker died")
        return super().embed(texts)


def readable(store: SqliteStore, email: str, query: str) -> set[str]:
    return {h.doc_id for h in store.lexical(query, acl_filter(resolve(store, email)), 50)}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SqliteStore(tmp_path / "home" / "index.sqlite3")
    yield s
    s.close()


def test_incremental_of_a_complete_listing_deletes_what_vanished_and_prune_agrees(
        tmp_path: Path, store: SqliteStore) -> None:
    root = tree(tmp_path / "docs")
    connector = FilesConnector("docs", root, page_size=8)
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(connector)
    (root / "notes" / "n00.md").write_text("# Note 0\n\nThe canteen now serves curry.\n")
    (root / "notes" / "n01.md").unlink()
    # Moved into the board folder: the old public copy must not stay readable by everyone.
    shutil.move(root / "public" / "plan.md", root / "board" / "plan.md")

    # The files listing is complete: incremental deletes the removed and the moved-away copy.
    inc = pipeline.incremental_sync(connector)
    assert (inc.status, inc.deleted, inc.indexed) == ("ok", 2, 2)
    assert "docs:notes/n00.md" in readable(store, BEN, "curry")
    assert readable(store, BEN, "lighthouse") == set()
    assert store.document("docs:public/plan.md") is None

    embedded_before = store.chunk_count()
    pruned = pipeline.prune(connector)
    assert pruned.status == "ok" and pruned.chunks_embedded == 0
    assert pruned.deleted == 0 and store.chunk_count() == embedded_before
    assert readable(store, BEN, "lighthouse") == set()
    assert readable(store, ANN, "lighthouse") == {"docs:board/plan.md"}
    assert store.document("docs:notes/n01.md") is None


@pytest.mark.parametrize("between", ["prune", "incremental_sync", "permission_sync"])
def test_a_pass_between_a_crash_and_the_resume_keeps_the_resumed_full_sync_exact(
        tmp_path: Path, store: SqliteStore, between: str) -> None:
    root = tree(tmp_path / "docs", n=40)
    crashing = Pipeline(store, CrashingEmbedder(crash_on=3))
    with pytest.raises(RuntimeError, match="worker died"):
        crashing.full_sync(FilesConnector("docs", root, page_size=8))
    assert store.get_state("sync:docs:full:checkpoint") is not None

    pipeline = Pipeline(store, HashingEmbedder())
    connector = FilesConnector("docs", root, page_size=8)
    assert getattr(pipeline, between)(connector).status == "ok"
    resumed = pipeline.full_sync(connector)
    assert resumed.resumed and resumed.status == "ok" and resumed.deleted == 0

    reference = SqliteStore(tmp_path / "reference" / "index.sqlite3")
    try:
        Pipeline(reference, HashingEmbedder()).full_sync(FilesConnector("docs", root))
        assert store.snapshot() == reference.snapshot()
    finally:
        reference.close()
