"""The pipelined content pass (embedding of page N+1 overlaps the writes of page N) against the
sequential one: same index, same report, same resume points; a page's cursor is never
committed before its writes; a failure in either stage stops at the last committed cursor.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors.base import AclUpdate, ContentPage, Delete, Failure, Upsert
from core.acl import Acl
from core.models import Chunk, Document
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline, SyncReport, cursor_key
from tests.contract.connector_contract import DiesAfter, Killed
from tests.integration.test_connector_protocol import ANN, BOB, FeedSource, Item

pytestmark = pytest.mark.integration

COUNTS = ("documents", "indexed", "unchanged", "deleted", "acl_updated", "chunks_embedded",
          "readable_by_nobody", "error_count", "status")


def counts(report: SyncReport) -> dict[str, Any]:
    return {k: getattr(report, k) for k in COUNTS}


class Scripted(FeedSource):
    """A source whose content pass yields the pages a test scripts; later pages name documents
    of earlier ones (edited, deleted, re-shared), and one page carries failures."""

    def script(self) -> list[ContentPage]:
        for n in range(10):  # the tenant as it is when the pass starts
            self.items[f"d{n}"] = Item(f"document {n} " * (n + 1), (f"user:{ANN}",))
        u = self.upsert
        pages: list[ContentPage] = []
        for n in range(0, 8, 2):
            pages.append(ContentPage((u(f"d{n}"), u(f"d{n + 1}")), cursor=f"p{len(pages)}"))
        self.items["d1"].text = "document one, edited between two pages"
        self.items["d3"].readers = (f"user:{BOB}",)  # re-shared: a resumed run re-checks it
        pages.append(ContentPage((u("d1"), Delete(self.doc_id("d2")),
                                  AclUpdate(self.doc_id("d3"), self.acl("d3"))),
                                 cursor=f"p{len(pages)}", warnings=("a near-miss name",)))
        pages.append(ContentPage((u("d2"), Upsert(self._foreign())), cursor=f"p{len(pages)}"))
        pages.append(ContentPage((u("d8"),), cursor=f"p{len(pages)}", failures=(
            Failure("d4", "parser crashed", doc_id=self.doc_id("d4"), transient=True,
                    acl=Acl.single([f"user:{ANN}"])),)))
        pages.append(ContentPage((u("d9"), u("d5")), cursor="end"))
        return pages

    def _foreign(self) -> Document:
        doc = self.upsert("d0").document
        return Document(**{**doc.__dict__, "doc_id": "other:d0"})

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        self.calls.append(("content", cursor))
        pages = self.script()
        start = 0 if cursor is None else [p.cursor for p in pages].index(cursor) + 1
        yield from pages[start:]


def scripted() -> Scripted:
    src = Scripted()
    src.script()
    return src


def sync(where: Path, *, pipelined: bool, source: FeedSource | None = None
         ) -> tuple[dict[str, Any], dict[str, Any], SyncReport]:
    store = SqliteStore(where)
    try:
        report = Pipeline(store, HashingEmbedder(), pipelined=pipelined).full_sync(
            source or scripted())
        return store.snapshot(), store.get_state(cursor_key("feed", "content")) or {}, report
    finally:
        store.close()


def test_pipelined_index_and_report_equal_the_sequential_ones(tmp_path: Path) -> None:
    seq_snap, seq_cursor, seq = sync(tmp_path / "seq.sqlite3", pipelined=False)
    pip_snap, pip_cursor, pip = sync(tmp_path / "pip.sqlite3", pipelined=True)
    assert pip_snap == seq_snap
    assert counts(pip) == counts(seq)
    assert pip.errors == seq.errors and pip.warnings == seq.warnings
    assert (pip_cursor["cursor"], pip_cursor["pages"]) == (seq_cursor["cursor"],
                                                          seq_cursor["pages"]) == ("end", 8)
    # The scripted edits really happened: the test would not notice a pipeline that skipped them.
    docs = seq_snap["documents"]
    assert "other:d0" not in docs and "feed:d2" in docs and len(docs) == 10
    assert any("edited" in str(c) for c in docs["feed:d1"]["chunks"])
    assert seq.error_count == 2  # the foreign document and d4's parser crash


def test_pipelined_second_run_equals_the_sequential_one(tmp_path: Path) -> None:
    runs: dict[bool, tuple[dict[str, Any], dict[str, Any]]] = {}
    for pipelined in (False, True):
        src = scripted()
        store = SqliteStore(tmp_path / f"{pipelined}.sqlite3")
        try:
            Pipeline(store, HashingEmbedder(), pipelined=pipelined).full_sync(src)
            again = Pipeline(store, HashingEmbedder(), pipelined=pipelined).full_sync(src)
            runs[pipelined] = (counts(again), store.snapshot())
        finally:
            store.close()
    assert runs[True] == runs[False]
    # Embedded again: d1 twice (old text on page 0, edited on page 4) and d2 (deleted on page
    # 4, back on page 5); the rest is unchanged.
    assert runs[True][0]["indexed"] == 3 and runs[True][0]["unchanged"] >= 8


@pytest.mark.parametrize("after", [1, 3, 5, 6])
def test_killed_pipelined_sync_resumes_to_the_sequential_index(tmp_path: Path,
                                                               after: int) -> None:
    want, _, clean = sync(tmp_path / "clean.sqlite3", pipelined=False)
    store = SqliteStore(tmp_path / "killed.sqlite3")
    try:
        src = scripted()
        with pytest.raises(Killed):
            Pipeline(store, HashingEmbedder()).full_sync(DiesAfter(src, after))
        record = store.get_state(cursor_key("feed", "content"))
        # Every page fetched before the kill is committed, as the sequential loop does.
        assert record is not None and record["pages"] == after
        assert record["cursor"] == f"p{after - 1}"
        resumed = Pipeline(store, HashingEmbedder()).full_sync(src)
        assert resumed.resumed and resumed.status == clean.status == "partial"  # d4 failed
        assert store.snapshot() == want
    finally:
        store.close()


class Recording(SqliteStore):
    """A store that logs, in order, the documents written and the cursors committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.events: list[tuple[str, str]] = []
        self.fail_upsert: str | None = None
        self.page0_written = threading.Event()

    def upsert(self, doc: Document, chunks: Sequence[Chunk], vectors: Any, embedder: str,
               run_id: str) -> None:
        if doc.doc_id == self.fail_upsert:
            raise OSError("disk full")
        super().upsert(doc, chunks, vectors, embedder, run_id)
        self.events.append(("write", doc.doc_id))

    def set_state(self, key: str, value: Any) -> None:
        super().set_state(key, value)
        if key == cursor_key("feed", "content"):
            self.events.append(("commit", str(value.get("cursor"))))
            if value.get("cursor") == "p0":
                self.page0_written.set()


def page_of(doc_id: str, pages: list[ContentPage]) -> list[int]:
    return [n for n, p in enumerate(pages) for d in p.documents if d.doc_id == doc_id]


def test_a_pages_cursor_is_committed_only_after_its_writes(tmp_path: Path) -> None:
    store = Recording(tmp_path / "i.sqlite3")
    try:
        src = scripted()
        Pipeline(store, HashingEmbedder()).full_sync(src)
        pages = src.script()
        committed: list[str] = []
        for kind, what in store.events:
            if kind == "commit":
                committed.append(what)
                continue
            # A write belongs to a page whose cursor is not committed yet.
            owner = [n for n in page_of(what, pages) if f"p{n}" not in committed]
            assert owner, f"{what} written after its page's cursor was committed"
        commits = [c for c in committed if c.startswith("p") or c == "end"]
        assert commits[:8] == [*(f"p{n}" for n in range(7)), "end"]
        for n, page in enumerate(pages):  # and every write of page n precedes its commit
            at = store.events.index(("commit", page.cursor or ""))
            for doc in page.documents:
                if doc.doc_id.startswith("feed:"):
                    assert any(e == ("write", doc.doc_id) for e in store.events[:at]), (n, doc)
    finally:
        store.close()


class WaitsForPage0(HashingEmbedder):
    """The embedder of page 1 waits until page 0's cursor is committed: possible only if the
    writes of page 0 go on while page 1 is being embedded (a sequential loop would wait out the
    timeout and see nothing)."""

    def __init__(self, store: Recording) -> None:
        super().__init__()
        self.store, self.calls, self.overlapped = store, 0, False

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.overlapped = self.store.page0_written.wait(timeout=30)
        return super().embed(texts)


def test_embedding_of_the_next_page_overlaps_the_writes(tmp_path: Path) -> None:
    store = Recording(tmp_path / "i.sqlite3")
    try:
        embedder = WaitsForPage0(store)
        Pipeline(store, embedder).full_sync(scripted())
        assert embedder.overlapped
    finally:
        store.close()


def test_a_failed_write_stops_at_the_last_committed_cursor(tmp_path: Path) -> None:
    want, _, _ = sync(tmp_path / "clean.sqlite3", pipelined=False)
    store = Recording(tmp_path / "i.sqlite3")
    try:
        store.fail_upsert = "feed:d4"  # page 2
        with pytest.raises(OSError, match="disk full"):
            Pipeline(store, HashingEmbedder()).full_sync(scripted())
        record = store.get_state(cursor_key("feed", "content"))
        assert record is not None and record["cursor"] == "p1" and record["pages"] == 2
        assert "feed:d4" not in store.doc_ids("feed")
        assert not [t for t in threading.enumerate() if t.name.startswith("sync-embed")]
        store.fail_upsert = None
        assert Pipeline(store, HashingEmbedder()).full_sync(scripted()).resumed
        assert store.snapshot() == want
    finally:
        store.close()


class DiesOnCall(HashingEmbedder):
    def __init__(self, call: int) -> None:
        super().__init__()
        self.call, self.calls = call, 0

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        if self.calls == self.call:
            raise Killed("died while embedding")
        return super().embed(texts)


def test_a_failed_embedding_stops_at_the_last_committed_cursor(tmp_path: Path) -> None:
    want, _, _ = sync(tmp_path / "clean.sqlite3", pipelined=False)
    store = SqliteStore(tmp_path / "i.sqlite3")
    try:
        with pytest.raises(Killed):
            Pipeline(store, DiesOnCall(3)).full_sync(scripted())
        record = store.get_state(cursor_key("feed", "content"))
        assert record is not None and record["cursor"] == "p1"  # pages 0 and 1, not page 2
        assert set(store.doc_ids("feed")) == {f"feed:d{n}" for n in range(4)}
        assert Pipeline(store, HashingEmbedder()).full_sync(scripted()).resumed
        assert store.snapshot() == want
        assert json.dumps(want)  # the snapshot is plain data
    finally:
        store.close()


class SignalsExtraction(Scripted):
    """Marks when the source starts producing (fetching, extracting) its second page."""

    def __init__(self) -> None:
        super().__init__()
        self.extracting_page1 = threading.Event()

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        for n, page in enumerate(super().content(cursor)):
            if n == 1:
                self.extracting_page1.set()
            yield page


class WaitsForExtraction(HashingEmbedder):
    """The first embed() (page 0) waits until the source is producing page 1: possible only if
    extraction of the next page goes on while this page is embedded."""

    def __init__(self, source: SignalsExtraction) -> None:
        super().__init__()
        self.source, self.calls, self.overlapped = source, 0, False

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.overlapped = self.source.extracting_page1.wait(timeout=30)
        return super().embed(texts)


def test_extraction_of_the_next_page_overlaps_the_embedding(tmp_path: Path) -> None:
    src = SignalsExtraction()
    src.script()
    embedder = WaitsForExtraction(src)
    store = SqliteStore(tmp_path / "i.sqlite3")
    try:
        report = Pipeline(store, embedder).full_sync(src)
        assert embedder.overlapped
        # Same index and report as the sequential loop (whose page 0 embedding could not see
        # page 1 coming).
        index, _, sequential = sync(tmp_path / "seq.sqlite3", pipelined=False)
        assert store.snapshot() == index and counts(report) == counts(sequential)
    finally:
        store.close()


class ChunksBesideEmbedding(HashingEmbedder):
    """The first embed() (page 0, on the worker) waits until page 1's text is being chunked:
    possible only if the calling thread chunks the next page while this one is embedded."""

    def __init__(self) -> None:
        super().__init__()
        self.calls, self.overlapped = 0, False
        self.counting_page1 = threading.Event()
        self.counted_on: set[int] = set()

    def count_tokens(self, text: str) -> int:
        self.counted_on.add(threading.get_ident())
        if "document 2" in text:  # page 1 holds d2 and d3
            self.counting_page1.set()
        return super().count_tokens(text)

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.overlapped = self.counting_page1.wait(timeout=30)
        return super().embed(texts)


def test_the_next_page_is_chunked_on_the_calling_thread_while_one_is_embedded(
        tmp_path: Path) -> None:
    embedder = ChunksBesideEmbedding()
    store = SqliteStore(tmp_path / "i.sqlite3")
    try:
        report = Pipeline(store, embedder).full_sync(scripted())
        assert embedder.overlapped
        assert embedder.counted_on == {threading.get_ident()}  # the worker only embeds
        index, _, sequential = sync(tmp_path / "seq.sqlite3", pipelined=False)
        assert store.snapshot() == index and counts(report) == counts(sequential)
    finally:
        store.close()


class DiesChunking(HashingEmbedder):
    def count_tokens(self, text: str) -> int:
        if "document 4" in text:  # page 2 holds d4 and d5
            raise Killed("died while chunking")
        return super().count_tokens(text)


def test_a_failed_chunking_stops_after_the_page_before_is_committed(tmp_path: Path) -> None:
    want, _, _ = sync(tmp_path / "clean.sqlite3", pipelined=False)
    store = SqliteStore(tmp_path / "i.sqlite3")
    try:
        with pytest.raises(Killed):
            Pipeline(store, DiesChunking()).full_sync(scripted())
        record = store.get_state(cursor_key("feed", "content"))
        # Page 1 was embedded when page 2's chunking failed: written and committed, as the
        # sequential loop would have done before it got to page 2.
        assert record is not None and record["cursor"] == "p1"
        assert set(store.doc_ids("feed")) == {f"feed:d{n}" for n in range(4)}
        assert Pipeline(store, HashingEmbedder()).full_sync(scripted()).resumed
        assert store.snapshot() == want
    finally:
        store.close()
