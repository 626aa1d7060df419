"""A permission pass must not leave a moved or deleted document readable under its old ACL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auth.identity import resolve
from retriever.filters import acl_filter
from retriever.hybrid import RetrievalParams, Retriever

pytestmark = pytest.mark.integration

TREE = {
    ".groups.json": {"board": ["user:erin@acme.example"]},
    "public/.access.json": {"read": ["domain:acme.example"]},
    "public/falcon.md": "# Project Falcon\n\nThe acquisition target is Northwind at 40 million.\n",
    "public/lunch.md": "# Lunch\n\nThe canteen serves soup on Fridays.\n",
    "board/.access.json": {"read": ["group:board"]},
}


def visible(store: Any, embedder: Any, email: str) -> set[str]:
    retriever = Retriever(store, embedder, RetrievalParams(k=50, candidates=50))
    hits = retriever.search("acquisition target Northwind", acl_filter(resolve(store, email)))
    return {h.doc_id for h in hits}


def test_moved_file_is_unreadable_at_its_old_path_after_permission_sync(
        make_tree: Any, files_connector: Any, pipeline: Any, store: Any, embedder: Any) -> None:
    root: Path = make_tree(TREE)
    connector = files_connector(root)
    pipeline.full_sync(connector)
    assert "docs:public/falcon.md" in visible(store, embedder, "bob@acme.example")

    (root / "public/falcon.md").rename(root / "board/falcon.md")  # restricted at the source now
    report = pipeline.permission_sync(connector)

    assert report.chunks_embedded == 0
    # Bob may not read the board folder: the stale public copy must not answer him.
    assert "docs:public/falcon.md" not in visible(store, embedder, "bob@acme.example")
    assert "docs:public/falcon.md" not in visible(store, embedder, "erin@acme.example")
    assert store.document("docs:public/falcon.md").acl.readable_by_somebody is False
    # Unaffected documents keep their ACL.
    assert store.document("docs:public/lunch.md").acl.readable_by_somebody is True

    pipeline.full_sync(connector)  # brings the moved file in at its new path, drops the old
    assert store.document("docs:public/falcon.md") is None
    assert "docs:board/falcon.md" in visible(store, embedder, "erin@acme.example")
    assert "docs:board/falcon.md" not in visible(store, embedder, "bob@acme.example")


def test_deleted_file_is_unreadable_after_permission_sync(
        make_tree: Any, files_connector: Any, pipeline: Any, store: Any, embedder: Any) -> None:
    root: Path = make_tree(TREE)
    connector = files_connector(root)
    pipeline.full_sync(connector)
    (root / "public/falcon.md").unlink()
    pipeline.permission_sync(connector)
    assert "docs:public/falcon.md" not in visible(store, embedder, "bob@acme.example")


def test_a_second_permission_sync_does_not_rewrite_already_hidden_documents(
        make_tree: Any, files_connector: Any, pipeline: Any, store: Any) -> None:
    root: Path = make_tree(TREE)
    connector = files_connector(root)
    pipeline.full_sync(connector)
    (root / "public/falcon.md").unlink()
    assert pipeline.permission_sync(connector).acl_updated == 1
    again = pipeline.permission_sync(connector)
    assert again.acl_updated == 0
    assert store.document("docs:public/falcon.md").acl.readable_by_somebody is False
