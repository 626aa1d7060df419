"""A connector that talks HTTP through the one policy reports that run's traffic in its
SyncReport ("http"); a connector without HTTP reports none."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ContentPage
from connectors.files.connector import FilesConnector
from connectors.http import HttpStats
from indexer.sync import Pipeline

pytestmark = pytest.mark.integration


class CountingFiles(FilesConnector):
    """The files connector, as if each page cost two requests through the HTTP policy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_stats = HttpStats()

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        for page in super().content(cursor):
            self.http_stats.add(requests=2, bytes_received=100)
            yield page


def test_each_run_reports_its_own_http_counts(make_tree: Callable[..., Path],
                                              pipeline: Pipeline) -> None:
    root = make_tree({".access.json": {"read": ["everyone"]},
                      **{f"d{i}.md": f"# D{i}\n\nText {i}.\n" for i in range(5)}})
    connector = CountingFiles("docs", root, page_size=2)
    first = pipeline.full_sync(connector)
    assert first.http is not None
    assert (first.http["requests"], first.http["bytes_received"]) == (6, 300)  # 3 pages
    second = pipeline.full_sync(connector)  # the same connector object: only this run's share
    assert second.http is not None and second.http["requests"] == 6
    assert second.to_json()["http"]["requests"] == 6
    assert pipeline.full_sync(FilesConnector("docs", root)).http is None
