"""One contract every connector passes (as tests/contract/store_contract.py is for stores).

A connector's test module subclasses `ConnectorContract` and provides the `harness` fixture: a
`ConnectorHarness` that builds the connector and owns a `Tenant`, the source's content,
permissions and groups together with a *reference evaluator* of who may read what, written
independently of the connector (it never calls the connector's ACL code or core.acl). The
tenant can be changed between syncs; the harness can force the source to reject a cursor.

Every check goes through what a person gets: the caller's identity resolved from the store,
its ACL filter, and a lexical search for the tenant's marker word (which every document
holds). Ground truth and index are compared for every user, both who sees what and who must
NOT. A connector without HTTP traffic declares `makes_http_calls = False` with the reason
(the 429 test is then not applicable, as k-NN is for stores without it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from auth.identity import CachedResolver
from connectors.base import (
    Capabilities,
    Connector,
    ContentPage,
    IdentityPage,
    PermissionPage,
)
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter

Truth = dict[str, frozenset[str]]  # email -> doc ids readable at the source now


class Tenant(ABC):
    """The source as a test sees it: what is in it, who may read it, and how to change it."""

    marker: ClassVar[str] = "zephyrmarker"  # a word every document's text holds

    @property
    @abstractmethod
    def users(self) -> Sequence[str]:
        """Email addresses of the people to check (include some who can read nothing)."""

    @abstractmethod
    def truth(self) -> Truth:
        """Reference evaluator: for every user, the doc ids the source lets them open now."""

    @abstractmethod
    def doc_ids(self) -> frozenset[str]:
        """Every doc id in scope now (readable by someone or not)."""

    @abstractmethod
    def edit_content(self) -> None:
        """Change the text of some documents and add one."""

    @abstractmethod
    def delete_document(self) -> str:
        """Delete (or trash) one document; returns its doc id."""

    @abstractmethod
    def move_out_of_scope(self) -> str:
        """Move one document where the connector does not look; returns its old doc id."""

    @abstractmethod
    def change_permission(self) -> None:
        """Change ACLs only (no content): someone loses access, someone gains it."""

    @abstractmethod
    def change_group(self) -> None:
        """Change group membership only: someone leaves a group that grants access."""

    @abstractmethod
    def add_unmappable_principal(self) -> str:
        """Grant a document to a principal the connector cannot map; returns its doc id."""

    @abstractmethod
    def break_identities(self) -> None:
        """Make the source's groups unreadable (the identity pass fails)."""


class ConnectorHarness(ABC):
    name: ClassVar[str] = "src"

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    @abstractmethod
    def connector(self) -> Connector:
        """A fresh connector over the tenant (as a restarted worker would build it), with
        pages small enough that the tenant spans several."""

    @abstractmethod
    def expire_cursor(self, pipeline: Pipeline) -> None:
        """Make the next incremental content pass meet a cursor the source rejects."""

    def storm(self, retry_after: float, requests: int) -> None:  # pragma: no cover - HTTP only
        """Answer the next `requests` requests with 429 and `Retry-After: retry_after`."""
        raise NotImplementedError


class CountingEmbedder(HashingEmbedder):
    """Counts texts embedded: a permission or group change must embed nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def embed(self, texts: Sequence[str]) -> Any:
        self.texts += len(texts)
        return super().embed(texts)


class Killed(RuntimeError):
    """The worker died."""


class DiesAfter:
    """The connector of a worker that dies after `pages` pages of one pass."""

    def __init__(self, inner: Connector, pages: int) -> None:
        self.inner, self.pages = inner, pages
        self.name, self.kind = inner.name, inner.kind
        self.capabilities: Capabilities = inner.capabilities

    def _die(self, pages: Iterator[Any]) -> Iterator[Any]:
        for n, page in enumerate(pages):
            if n == self.pages:
                raise Killed(f"killed after {n} pages")
            yield page

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        return self._die(self.inner.content(cursor))

    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        return self._die(self.inner.permissions(cursor))

    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        return self.inner.identities(cursor)


class ConnectorContract:
    makes_http_calls: ClassVar[bool] = True
    no_http_reason: ClassVar[str] = ""

    @pytest.fixture
    def harness(self, tmp_path: Path) -> ConnectorHarness:
        raise NotImplementedError("a connector's contract test provides the harness")

    @pytest.fixture
    def embedder(self) -> CountingEmbedder:
        return CountingEmbedder()

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SqliteStore]:
        s = SqliteStore(tmp_path / "contract-index.sqlite3")
        yield s
        s.close()

    @pytest.fixture
    def pipeline(self, store: SqliteStore, embedder: CountingEmbedder) -> Pipeline:
        return Pipeline(store, embedder)

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def visible(store: SqliteStore, harness: ConnectorHarness) -> Truth:
        """What every user of the tenant finds (resolved afresh, as a new request would be)."""
        resolver = CachedResolver(store, [harness.name])
        out = {}
        for email in harness.tenant.users:
            hits = store.lexical(harness.tenant.marker, acl_filter(resolver(email)), 10_000)
            out[email] = frozenset(h.doc_id for h in hits)
        return out

    def assert_matches_truth(self, store: SqliteStore, harness: ConnectorHarness) -> None:
        truth = harness.tenant.truth()
        seen = self.visible(store, harness)
        for email in harness.tenant.users:
            leaked = seen[email] - truth[email]
            missing = truth[email] - seen[email]
            assert not leaked, f"{email} finds documents the source denies: {sorted(leaked)}"
            assert not missing, f"{email} misses documents the source grants: {sorted(missing)}"

    def fresh_full_snapshot(self, harness: ConnectorHarness, where: Path) -> dict[str, Any]:
        other = SqliteStore(where)
        try:
            assert Pipeline(other, HashingEmbedder()).full_sync(harness.connector()).status \
                in ("ok", "partial")
            return other.snapshot()
        finally:
            other.close()

    # -- the contract --------------------------------------------------------------------------
    def test_the_tenant_is_a_real_test(self, harness: ConnectorHarness) -> None:
        """Ground truth grants and denies: someone reads something, nobody reads everything."""
        truth = harness.tenant.truth()
        everything = harness.tenant.doc_ids()
        assert any(truth.values()), "nobody can read anything: the contract would prove nothing"
        assert all(docs < everything for docs in truth.values())
        assert any(not docs for docs in truth.values()), "add a user who may read nothing"

    def test_full_sync_equals_ground_truth_for_every_user(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore) -> None:
        report = pipeline.full_sync(harness.connector())
        assert report.status == "ok", report.errors
        assert set(store.doc_ids(harness.name)) == harness.tenant.doc_ids()
        self.assert_matches_truth(store, harness)

    def test_incremental_after_edits_equals_a_fresh_full_sync(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore,
            tmp_path: Path) -> None:
        pipeline.full_sync(harness.connector())
        before = store.snapshot()
        harness.tenant.edit_content()
        harness.tenant.change_permission()
        harness.tenant.delete_document()
        harness.tenant.move_out_of_scope()
        harness.tenant.change_group()
        report = pipeline.incremental_sync(harness.connector())
        pipeline.group_sync(harness.connector())
        assert report.status == "ok", report.errors
        assert report.indexed >= 1 and report.acl_updated >= 1 and report.deleted >= 2
        after = store.snapshot()
        assert after != before
        assert after == self.fresh_full_snapshot(harness, tmp_path / "fresh.sqlite3")
        self.assert_matches_truth(store, harness)

    @pytest.mark.parametrize("mode", ["incremental_sync", "full_sync", "prune"])
    def test_deletions_and_moves_out_of_scope_are_pruned(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore,
            mode: str) -> None:
        pipeline.full_sync(harness.connector())
        deleted = harness.tenant.delete_document()
        moved = harness.tenant.move_out_of_scope()
        assert {deleted, moved} <= set(store.doc_ids(harness.name))
        report = getattr(pipeline, mode)(harness.connector())
        assert report.status == "ok" and report.deleted == 2, report
        assert store.document(deleted) is None and store.document(moved) is None
        assert set(store.doc_ids(harness.name)) == harness.tenant.doc_ids()
        self.assert_matches_truth(store, harness)

    def test_a_permission_only_change_is_enforced_by_the_permission_pass_without_embedding(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore,
            embedder: CountingEmbedder) -> None:
        pipeline.full_sync(harness.connector())
        before = harness.tenant.truth()
        harness.tenant.change_permission()
        assert harness.tenant.truth() != before
        embedder.texts = 0
        report = pipeline.permission_sync(harness.connector())
        assert report.status == "ok" and report.acl_updated >= 1
        assert report.chunks_embedded == 0 and embedder.texts == 0
        self.assert_matches_truth(store, harness)
        # The content pass that follows finds nothing to re-embed either.
        assert pipeline.incremental_sync(harness.connector()).chunks_embedded == 0
        assert embedder.texts == 0

    def test_a_group_change_is_enforced_after_the_identity_pass(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore,
            embedder: CountingEmbedder) -> None:
        pipeline.full_sync(harness.connector())
        before = harness.tenant.truth()
        harness.tenant.change_group()
        assert harness.tenant.truth() != before
        embedder.texts = 0
        report = pipeline.group_sync(harness.connector())
        assert report.status == "ok" and embedder.texts == 0
        self.assert_matches_truth(store, harness)

    def test_an_identity_failure_keeps_the_last_good_snapshot_and_is_reported(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore) -> None:
        pipeline.full_sync(harness.connector())
        seen = self.visible(store, harness)
        good = store.get_state(f"identities:{harness.name}:good")
        harness.tenant.break_identities()
        report = pipeline.group_sync(harness.connector())
        assert report.status == "partial" and report.error_count >= 1
        assert store.get_state(f"identities:{harness.name}:good") == good
        assert self.visible(store, harness) == seen

    def test_a_sync_killed_midway_resumes_from_its_cursor_to_an_identical_index(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore,
            embedder: CountingEmbedder, tmp_path: Path) -> None:
        with pytest.raises(Killed):
            pipeline.full_sync(DiesAfter(harness.connector(), pages=2))
        record = pipeline.cursor(harness.name, "content")
        assert record is not None and record.in_progress and record.cursor is not None
        assert record.pages == 2
        done_before_kill = embedder.texts
        assert done_before_kill > 0
        resumed = pipeline.full_sync(harness.connector())
        assert resumed.resumed and resumed.status == "ok"
        fresh = self.fresh_full_snapshot(harness, tmp_path / "fresh.sqlite3")
        assert store.snapshot() == fresh
        total = sum(len(d["chunks"]) for d in fresh["documents"].values())
        assert embedder.texts == total, "the resumed run re-embedded pages done before the kill"
        after = pipeline.cursor(harness.name, "content")
        assert after is not None and not after.in_progress and after.completed_at is not None
        assert after.pages > record.pages  # the resumed run counts on from the kill
        self.assert_matches_truth(store, harness)

    def test_a_permission_pass_killed_midway_resumes(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore) -> None:
        pipeline.full_sync(harness.connector())
        harness.tenant.change_permission()
        harness.tenant.move_out_of_scope()
        with pytest.raises(Killed):
            pipeline.permission_sync(DiesAfter(harness.connector(), pages=1))
        record = pipeline.cursor(harness.name, "permissions")
        assert record is not None and record.in_progress and record.cursor is not None
        resumed = pipeline.permission_sync(harness.connector())
        assert resumed.resumed and resumed.status == "ok"
        # Documents listed before the kill count as listed: only the moved one is closed.
        self.assert_matches_truth(store, harness)
        listed = harness.tenant.doc_ids()
        open_docs = {d for d in store.doc_ids(harness.name)
                     if (doc := store.document(d)) is not None and doc.acl.readable_by_somebody}
        assert open_docs <= listed

    def test_an_expired_cursor_recovers_without_serving_a_stale_acl(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore,
            tmp_path: Path) -> None:
        pipeline.full_sync(harness.connector())
        harness.tenant.change_permission()
        harness.tenant.delete_document()
        harness.expire_cursor(pipeline)
        # The re-enumeration dies after its first page: nothing served in between is wider
        # than the source allows now.
        with pytest.raises(Killed):
            pipeline.incremental_sync(DiesAfter(harness.connector(), pages=1))
        truth = harness.tenant.truth()
        for email, docs in self.visible(store, harness).items():
            assert docs <= truth[email], f"{email} was served a stale ACL: {docs - truth[email]}"
        report = pipeline.incremental_sync(harness.connector())
        assert report.status == "ok" and report.deleted >= 1
        assert any("rejected" in w for w in report.warnings), report.warnings
        record = pipeline.cursor(harness.name, "content")
        assert record is not None and record.expired_at is not None and not record.in_progress
        assert store.snapshot() == self.fresh_full_snapshot(harness, tmp_path / "fresh.sqlite3")
        self.assert_matches_truth(store, harness)

    def test_a_principal_the_connector_cannot_map_fails_closed(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore) -> None:
        doc_id = harness.tenant.add_unmappable_principal()
        pipeline.full_sync(harness.connector())
        doc = store.document(doc_id)
        assert doc is not None and not doc.acl.readable_by_somebody
        assert all(doc_id not in docs for docs in harness.tenant.truth().values())
        self.assert_matches_truth(store, harness)

    def test_a_429_storm_with_retry_after_is_survived(
            self, harness: ConnectorHarness, pipeline: Pipeline, store: SqliteStore) -> None:
        if not self.makes_http_calls:
            pytest.skip(self.no_http_reason)
        harness.storm(retry_after=1, requests=5)
        report = pipeline.full_sync(harness.connector())
        assert report.status == "ok"
        self.assert_matches_truth(store, harness)
