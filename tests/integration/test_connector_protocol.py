"""The v2 protocol with a change-feed source: the pipeline follows the feed from the durable
cursor (across restarts), applies upserts, deletes and ACL-only updates, falls back to a closed
re-enumeration when the feed cursor expires, and pages identities through a staging area.

FeedSource is an in-memory source with a change log, as a Graph delta query or a Drive
changes feed behaves: an enumeration ends with a cursor into the log; a cursor older than the
log's retention is rejected (CursorExpired).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from connectors.base import (
    AclUpdate,
    Capabilities,
    ContentPage,
    Delete,
    Failure,
    IdentityPage,
    Operation,
    PermissionPage,
    Upsert,
)
from core import principals as P
from core.acl import Acl
from core.errors import CursorExpired, SourceUnavailable
from core.models import Membership, Section, make_document
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline, identity_snapshot_key
from tests.contract.connector_contract import DiesAfter, Killed

pytestmark = pytest.mark.integration

ANN, BOB = "ann@acme.example", "bob@acme.example"


@dataclass
class Item:
    text: str
    readers: tuple[str, ...]


@dataclass
class FeedSource:
    name: str = "feed"
    kind: str = "feed"
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(
        change_feed=True, complete_listing=True))
    items: dict[str, Item] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)  # (kind, source id)
    retained_from: int = 0  # log positions before this are gone: older cursors expire
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    broken_group: str | None = None
    group_outage: str | None = None  # SourceUnavailable when this group's page is read
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    page: int = 2

    # -- the tenant ------------------------------------------------------------------------
    def put(self, sid: str, text: str, *readers: str) -> None:
        self.items[sid] = Item(text, readers)
        self.log.append(("content", sid))

    def share(self, sid: str, *readers: str) -> None:
        self.items[sid] = Item(self.items[sid].text, readers)
        self.log.append(("acl", sid))

    def remove(self, sid: str) -> None:
        del self.items[sid]
        self.log.append(("delete", sid))

    # -- mapping ---------------------------------------------------------------------------
    def doc_id(self, sid: str) -> str:
        return f"{self.name}:{sid}"

    def acl(self, sid: str) -> Acl:
        return Acl.single(self.items[sid].readers)

    def upsert(self, sid: str) -> Upsert:
        item = self.items[sid]
        return Upsert(make_document(doc_id=self.doc_id(sid), title=sid, url=f"feed://{sid}",
                                    sections=[Section(f"{item.text} quokka")], acl=self.acl(sid)))

    # -- protocol --------------------------------------------------------------------------
    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        self.calls.append(("content", cursor))
        state: dict[str, Any] = (json.loads(cursor) if cursor
                                 else {"after": "", "at": len(self.log)})
        if "since" in state:
            yield from self._changes(state["since"])
            return
        ids = sorted(s for s in self.items if s > state["after"])
        for start in range(0, len(ids), self.page):
            chunk = ids[start:start + self.page]
            last = start + self.page >= len(ids)
            nxt = ({"since": state["at"]} if last else {"after": chunk[-1], "at": state["at"]})
            yield ContentPage(tuple(self.upsert(s) for s in chunk), cursor=json.dumps(nxt))
        if not ids:
            yield ContentPage(cursor=json.dumps({"since": state["at"]}))

    def _changes(self, since: int) -> Iterator[ContentPage]:
        if since < self.retained_from:
            raise CursorExpired("410 Gone: resyncRequired")
        ops: list[Operation] = []
        for kind, sid in self.log[since:]:
            if kind == "delete":
                ops.append(Delete(self.doc_id(sid)))
            elif sid not in self.items:
                continue  # changed, then deleted: the delete follows
            elif kind == "acl":
                ops.append(AclUpdate(self.doc_id(sid), self.acl(sid)))
            else:
                ops.append(self.upsert(sid))
        yield ContentPage(tuple(ops), cursor=json.dumps({"since": len(self.log)}))

    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        self.calls.append(("permissions", cursor))
        yield PermissionPage(tuple((self.doc_id(s), self.acl(s)) for s in sorted(self.items)))

    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        self.calls.append(("identities", cursor))
        names = sorted(self.groups)
        start = int(cursor) if cursor else 0
        for n in range(start, len(names)):
            group = names[n]
            if group == self.group_outage:
                raise SourceUnavailable("503 while paging groups")
            if group == self.broken_group:
                yield IdentityPage(failures=(Failure(group, "members could not be read",
                                                     scope="identities"),))
                return
            members = tuple(Membership(P.group(group, self.name), m)
                            for m in self.groups[group])
            yield IdentityPage(members, cursor=str(n + 1) if n + 1 < len(names) else None)


@pytest.fixture
def source() -> FeedSource:
    src = FeedSource()
    for n in range(5):
        src.put(f"d{n}", f"document {n}", f"user:{ANN}")
    src.put("shared", "for the team", P.group("team", "feed"))
    src.groups = {"team": (f"user:{ANN}", f"user:{BOB}"), "ops": (f"user:{BOB}",),
                  "board": (f"user:{ANN}",)}
    return src


def readable(store: SqliteStore, email: str) -> set[str]:
    from auth.identity import CachedResolver
    from retriever.filters import acl_filter

    identity = CachedResolver(store, ["feed"])(email)
    return {h.doc_id for h in store.lexical("quokka", acl_filter(identity), 1000)}


def fresh(source: FeedSource, where: Path) -> dict[str, object]:
    other = SqliteStore(where)
    try:
        Pipeline(other, HashingEmbedder()).full_sync(source)
        return other.snapshot()
    finally:
        other.close()


def test_incremental_follows_the_feed_from_the_durable_cursor_across_a_restart(
        tmp_path: Path, source: FeedSource) -> None:
    db = tmp_path / "index.sqlite3"
    store = SqliteStore(db)
    first = Pipeline(store, HashingEmbedder()).full_sync(source)
    assert first.status == "ok" and first.indexed == 6
    record = Pipeline(store, HashingEmbedder()).cursor("feed", "content")
    assert record is not None and record.next == json.dumps({"since": 6})
    assert not record.in_progress and record.completed_at is not None
    store.close()

    source.put("d1", "document one, rewritten")
    source.share("d2", f"user:{BOB}")
    source.remove("d3")
    source.calls.clear()
    store = SqliteStore(db)  # a restarted worker: the cursor came from the state store
    try:
        report = Pipeline(store, HashingEmbedder()).incremental_sync(source)
        assert source.calls[0] == ("content", json.dumps({"since": 6}))
        assert (report.indexed, report.acl_updated, report.deleted) == (1, 1, 1)
        assert report.unchanged == 0 and report.documents == 1  # only what changed was read
        assert store.snapshot() == fresh(source, tmp_path / "fresh.sqlite3")
        assert "feed:d2" in readable(store, BOB) and "feed:d2" not in readable(store, ANN)
        again = Pipeline(store, HashingEmbedder()).cursor("feed", "content")
        assert again is not None and again.next == json.dumps({"since": 9})
    finally:
        store.close()


def test_a_full_sync_enumerates_even_with_a_feed_cursor(
        tmp_path: Path, source: FeedSource, store: SqliteStore) -> None:
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(source)
    source.calls.clear()
    pipeline.full_sync(source)
    assert source.calls[0] == ("content", None)


def test_an_expired_feed_cursor_re_enumerates_closed_and_reconciles(
        tmp_path: Path, source: FeedSource, store: SqliteStore) -> None:
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(source)
    pipeline.group_sync(source)
    source.share("d0", f"user:{BOB}")  # ann loses d0 while the feed cannot say so
    source.remove("d4")
    source.retained_from = len(source.log)  # the log was trimmed past our cursor
    with pytest.raises(Killed):
        pipeline.incremental_sync(DiesAfter(source, pages=1))
    # Killed during the re-enumeration: only the re-listed page is readable, with ACLs of now.
    assert readable(store, ANN) <= {"feed:d1"} and "feed:d0" not in readable(store, ANN)
    closed = store.document("feed:d3")
    assert closed is not None and not closed.acl.readable_by_somebody
    report = pipeline.incremental_sync(source)
    assert report.status == "ok" and report.resumed and report.deleted == 1
    assert any("rejected" in w for w in report.warnings)
    assert store.snapshot() == fresh(source, tmp_path / "fresh.sqlite3")
    assert readable(store, ANN) == {"feed:d1", "feed:d2", "feed:d3", "feed:shared"}
    assert readable(store, BOB) == {"feed:d0", "feed:shared"}
    record = pipeline.cursor("feed", "content")
    assert record is not None and record.expired_reason == "410 Gone: resyncRequired"
    assert record.next == json.dumps({"since": len(source.log)})


def test_content_passes_of_a_source_with_expensive_identities_do_not_page_groups(
        source: FeedSource, store: SqliteStore) -> None:
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(source)
    pipeline.permission_sync(source)
    assert not [c for c in source.calls if c[0] == "identities"]
    assert readable(store, BOB) == set()  # group:feed:team has no known members yet
    assert pipeline.group_sync(source).status == "ok"
    assert readable(store, BOB) == {"feed:shared"}


def test_identities_are_paged_and_swapped_only_when_complete(
        source: FeedSource, store: SqliteStore) -> None:
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(source)
    assert pipeline.group_sync(source).status == "ok"
    assert [c for c in source.calls if c[0] == "identities"] == [
        ("identities", None)]  # one call, three pages
    good = store.get_state(identity_snapshot_key("feed"))
    assert good is not None and good["memberships"] == 4
    assert readable(store, BOB) == {"feed:shared"}

    source.groups["team"] = (f"user:{ANN}",)  # bob leaves the team...
    source.broken_group = "team"  # ...but the page that says so fails
    report = pipeline.group_sync(source)
    assert report.status == "partial" and report.error_count == 1
    assert store.get_state(identity_snapshot_key("feed")) == good
    assert readable(store, BOB) == {"feed:shared"}, "the last good snapshot stays"
    assert store.get_state("identities:feed:staging") is None  # nothing half-staged is kept

    source.broken_group = None
    assert pipeline.group_sync(source).status == "ok"
    assert readable(store, BOB) == set()


def test_an_identity_pass_that_dies_midway_resumes_from_its_staged_pages(
        source: FeedSource, store: SqliteStore) -> None:
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(source)
    source.group_outage = "team"  # pages: board, ops, team: the third one fails
    with pytest.raises(SourceUnavailable):
        pipeline.group_sync(source)
    assert store.get_state(identity_snapshot_key("feed")) is None  # nothing swapped in
    assert readable(store, BOB) == set()
    record = pipeline.cursor("feed", "identities")
    assert record is not None and record.in_progress and record.cursor == "2"
    source.group_outage = None
    source.calls.clear()
    assert pipeline.group_sync(source).status == "ok"
    assert source.calls == [("identities", "2")]  # resumed after the staged pages
    assert readable(store, BOB) == {"feed:shared"} and readable(store, ANN) >= {"feed:shared"}
    good = store.get_state(identity_snapshot_key("feed"))
    assert good is not None and good["memberships"] == 4


def test_a_permission_pass_during_an_interrupted_re_enumeration_reopens_what_it_confirms(
        tmp_path: Path, source: FeedSource, store: SqliteStore) -> None:
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(source)
    pipeline.group_sync(source)
    source.share("d0", f"user:{BOB}")
    source.retained_from = len(source.log)
    with pytest.raises(Killed):
        pipeline.incremental_sync(DiesAfter(source, pages=1))
    assert readable(store, ANN) == {"feed:d1"}
    # The permission trigger is not lost behind the pending re-enumeration: it reads the
    # source now, so what it lists is confirmed (and readable) with the ACL of now.
    assert pipeline.permission_sync(source).status == "ok"
    assert readable(store, ANN) == {"feed:d1", "feed:d2", "feed:d3", "feed:d4", "feed:shared"}
    assert readable(store, BOB) == {"feed:d0", "feed:shared"}
    resumed = pipeline.incremental_sync(source)
    assert resumed.resumed and resumed.status == "ok"
    assert store.snapshot() == fresh(source, tmp_path / "fresh.sqlite3")


class Trespasser(FeedSource):
    """A buggy source that names documents, ACLs and failures of another connector."""

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        for page in super().content(cursor):
            foreign = make_document(doc_id="other:planted", title="x", url="feed://x",
                                    sections=[Section("planted quokka")],
                                    acl=Acl.single(["everyone"]))
            yield ContentPage((*page.operations, Upsert(foreign), Delete("other:kept"),
                               AclUpdate("other:kept", Acl.single(["everyone"]))),
                              (Failure("x", "gone", doc_id="other:kept"),), page.cursor)

    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        for page in super().permissions(cursor):
            yield PermissionPage((*page.acls, ("other:kept", Acl.single(["everyone"]))))


def test_a_source_cannot_write_another_connectors_documents(
        source: FeedSource, store: SqliteStore, tmp_path: Path) -> None:
    other = FeedSource(name="other")
    other.put("kept", "the other connector's", f"user:{BOB}")
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(other)
    before = store.document("other:kept")
    rogue = Trespasser(items=source.items, log=source.log, groups=source.groups)
    for run in (pipeline.full_sync, pipeline.incremental_sync, pipeline.permission_sync,
                pipeline.prune):
        report = run(rogue)
        assert report.status == "partial"
        assert any("not a document of connector 'feed'" in e for e in report.errors)
    assert store.document("other:planted") is None
    after = store.document("other:kept")
    assert after is not None and before is not None and after.acl == before.acl
    assert set(store.doc_ids("feed")) == {f"feed:{s}" for s in source.items}


def test_a_pass_the_connector_does_not_declare_is_skipped_and_recorded(
        source: FeedSource, store: SqliteStore) -> None:
    source.capabilities = Capabilities(passes=frozenset({"content"}), change_feed=True)
    pipeline = Pipeline(store, HashingEmbedder())
    assert pipeline.full_sync(source).status == "ok"
    for run in (pipeline.permission_sync, pipeline.prune, pipeline.group_sync):
        report = run(source)
        assert report.status == "skipped" and report.error is not None
        assert "has no" in report.error
    assert [c[0] for c in source.calls] == ["content"]
    last = store.get_state("sync:feed:groups:last")
    assert last is not None and last["status"] == "skipped"


def test_a_checkpoint_written_before_v2_still_deletes_after_a_full_walk(
        source: FeedSource, store: SqliteStore) -> None:
    pipeline = Pipeline(store, HashingEmbedder())
    pipeline.full_sync(source)
    source.remove("d4")
    with pytest.raises(Killed):
        pipeline.full_sync(DiesAfter(source, pages=1))
    key = "sync:feed:full:checkpoint"
    saved = store.get_state(key)
    assert saved is not None
    store.set_state(key, {"cursor": saved["cursor"], "report": saved["report"]})  # v1 shape
    report = pipeline.full_sync(source)
    assert report.resumed and report.deleted == 1 and store.document("feed:d4") is None


def test_status_never_shows_url_credentials_of_a_cursor() -> None:
    from indexer.sync import PassCursor

    shown = PassCursor(cursor="https://svc:pw@graph.example/delta?$deltatoken=abc&sig=S3CR3T",
                       next="https://graph.example/delta?access_token=T0K3N&pageToken=42"
                       ).to_status()
    text = json.dumps(shown)
    assert "pw" not in text and "S3CR3T" not in text and "T0K3N" not in text
    assert "$deltatoken=abc" in shown["cursor"] and "pageToken=42" in shown["next"]


class DiesInPage(HashingEmbedder):
    """A worker that dies while embedding the `page`-th page (before its writes)."""

    def __init__(self, page: int) -> None:
        super().__init__()
        self.page, self.calls = page, 0

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls += 1
        if self.calls == self.page:
            raise Killed("died while embedding")
        return super().embed(texts)


def test_the_cursor_is_committed_only_after_the_pages_writes(
        source: FeedSource, store: SqliteStore) -> None:
    with pytest.raises(Killed):
        Pipeline(store, DiesInPage(page=2)).full_sync(source)
    record = Pipeline(store, HashingEmbedder()).cursor("feed", "content")
    assert record is not None and record.in_progress and record.pages == 1
    assert record.cursor == json.dumps({"after": "d1", "at": 6})  # after page 1, not page 2
    assert set(store.doc_ids("feed")) == {"feed:d0", "feed:d1"}
    source.calls.clear()
    resumed = Pipeline(store, HashingEmbedder()).full_sync(source)
    assert resumed.resumed and source.calls[0] == ("content", record.cursor)
    assert len(store.doc_ids("feed")) == 6
