"""Shared fixtures: a folder-tree builder, the deterministic embedder, a store and pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.files.connector import FilesConnector
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline

TreeSpec = dict[str, Any]


def write_tree(root: Path, spec: TreeSpec) -> Path:
    """Write {"a/b.md": "text", "a/.access.json": {...}} under root; dicts become JSON."""
    for rel, content in spec.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text(json.dumps(content), encoding="utf-8")
    return root


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[[TreeSpec], Path]:
    def make(spec: TreeSpec, name: str = "docs") -> Path:
        return write_tree(tmp_path / name, spec)

    return make


@pytest.fixture
def embedder() -> Any:
    from indexer.embedding.hashing import HashingEmbedder

    return HashingEmbedder()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "index.sqlite3")
    yield s
    s.close()


@pytest.fixture
def pipeline(store: SqliteStore, embedder: Any) -> Pipeline:
    return Pipeline(store, embedder)


@pytest.fixture
def files_connector() -> Callable[[Path], FilesConnector]:
    def make(root: Path, name: str = "docs", page_size: int = 64) -> FilesConnector:
        return FilesConnector(name, root, page_size=page_size)

    return make
