"""The sync pipeline: the same functions run in-process (embedded) and inside Celery tasks.

full_sync        the content pass as an enumeration: operations page by page; unchanged content
                 is skipped, ACL-only changes take the fast path, changed content is chunked and
                 embedded; a checkpoint after every page lets a killed sync resume (and a
                 resumed run re-checks every ACL at the end); documents not seen are deleted.
incremental_sync the content pass from the change-feed cursor the last content pass committed
                 (`capabilities.change_feed`); without one, an enumeration (which deletes what
                 vanished when the listing is complete). A cursor the source rejects
                 (CursorExpired) falls back to an enumeration that reconciles, see `_expired`.
permission_sync  ACLs only (no content, no embedding), resumable page by page.
prune            the permission pass, then deletes indexed documents the source no longer lists.
group_sync       the identity pass: memberships and aliases, paged and staged; the source's
                 snapshot is swapped only when every page arrived without a failure.
prune_orphans    deletes documents of connectors that are no longer configured.

Every pass of every connector has a durable cursor record (`cursors:<connector>:<pass>`,
PassCursor): committed after each page's writes are durable, kept after the run (the next
incremental content pass starts from it), shown by `clearance status`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from assistant import oversharing
from connectors.base import (
    PASSES,
    AclUpdate,
    Connector,
    ContentPage,
    Delete,
    Failure,
    IdentityPage,
    PassKind,
    Upsert,
    as_connector,
)
from core.acl import Acl
from core.errors import CursorExpired, SyncError
from core.models import Alias, Chunk, Document, Membership, ambiguous_aliases
from indexer.chunking import ChunkingPolicy, chunk_document, embedding_text
from indexer.embedding import Embedder
from indexer.store.base import ChunkStore, IdentityStoreProtocol, StateStore

log = logging.getLogger("clearance.sync")

Mode = Literal["full", "incremental", "permissions", "groups", "prune"]
Status = Literal["running", "ok", "partial", "failed", "skipped"]
Progress = Callable[["SyncReport"], None]

# The last good text of a document that fails *transiently* (I/O error, timeout, parser crash)
# stays searchable, under the ACL the source has now, for at most this many consecutive content
# syncs; the next one removes it and says so.
TRANSIENT_KEEP_RUNS = 3
MAX_LISTED = 50  # errors and warnings kept in a report (all are counted)


class SyncReport(BaseModel):
    """One run of one pass: the run record in the state store and the `sync --json` shape."""

    model_config = ConfigDict(extra="ignore")  # "duration" is derived; older records load

    connector: str
    mode: Mode
    run_id: str
    started: float = Field(default_factory=time.time)
    finished: float | None = None
    status: Status = "running"
    resumed: bool = False  # interrupted (killed, crashed) and resumed from its checkpoint
    documents: int = 0
    indexed: int = 0
    acl_updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_embedded: int = 0
    readable_by_nobody: int = 0
    error_count: int = 0
    errors: list[str] = Field(default_factory=list)
    error: str | None = None
    # A subtree, a folder listing or the source's groups could not be read: status "partial".
    partial: bool = False
    warning_count: int = 0
    warnings: list[str] = Field(default_factory=list)
    # What the connector's HTTP policy did during this run (requests, retries, throttled
    # seconds, bytes); None for a connector that makes no HTTP calls.
    http: dict[str, float] | None = None

    def __init__(self, connector: str | None = None, mode: Mode | None = None,
                 run_id: str | None = None, /, **data: Any) -> None:
        # SyncReport(connector, mode, run_id, ...) as well as SyncReport(**record).
        for name, value in (("connector", connector), ("mode", mode), ("run_id", run_id)):
            if value is not None:
                data[name] = value
        super().__init__(**data)

    @property
    def duration(self) -> float:
        return (self.finished or time.time()) - self.started

    def fail(self, failure: Failure, note: str = "") -> None:
        self.error_count += 1
        self.partial = self.partial or failure.partial
        if len(self.errors) < MAX_LISTED:
            self.errors.append(f"{failure.source_id}: {failure.reason}{note}")
        log.warning("sync.skip", extra={"connector": self.connector, "doc": failure.source_id,
                                        "reason": failure.reason, "scope": failure.scope})

    def warn(self, warning: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append(warning)
        log.warning("sync.warning", extra={"connector": self.connector, "warning": warning})

    def to_json(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        out["duration"] = round(self.duration, 3)
        return out

    def to_json_for_resume(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Checkpoint(BaseModel):
    """Where a killed run resumes: the connector's cursor and the report so far. Deleted when
    the run ends (the durable position of the pass is its PassCursor)."""

    cursor: str | None = None
    report: SyncReport
    # The content run started from no cursor (it lists everything, so it may delete what it
    # did not list); False for a run following the change feed.
    enumerating: bool = True
    # Delete what the run did not list at its end: an enumeration of a full sync, of a
    # complete listing, or one that replaces a rejected cursor.
    reconciles: bool = False
    pages: int = 0  # pages committed (permission runs stage each page's listed ids)


class PassCursor(BaseModel):
    """The durable position of one pass of one connector: survives restarts and the end of
    the run."""

    cursor: str | None = None  # committed after the last durable page of the latest run
    # Where the next incremental content pass starts: the last page's cursor of the latest
    # *completed* content run (a delta link); None without a change feed.
    next: str | None = None
    run_id: str | None = None
    mode: Mode | None = None
    in_progress: bool = False
    pages: int = 0  # pages committed by the latest run
    committed_at: float | None = None
    completed_at: float | None = None
    expired_at: float | None = None  # when the source last rejected a cursor
    expired_reason: str | None = None

    def to_status(self) -> dict[str, Any]:
        """The `clearance status` shape (a cursor is a position, never a credential; userinfo
        of a URL is dropped all the same)."""
        out = self.model_dump(mode="json")
        for name in ("cursor", "next"):
            out[name] = _without_userinfo(out[name])
        return out


_CREDENTIAL_PARAMS = ("sig", "signature", "key", "secret", "password", "access_token",
                      "code", "auth", "credential")


def _without_userinfo(cursor: str | None) -> str | None:
    """A URL cursor without user:password@ and without the values of query parameters that
    carry credentials (a SAS `sig`, an `access_token`); position tokens stay."""
    if cursor is None or "://" not in cursor:
        return cursor
    parts = urlsplit(cursor)
    host = parts.netloc.rpartition("@")[2]
    query = [(k, "REDACTED" if any(w in k.lower() for w in _CREDENTIAL_PARAMS) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, host, parts.path, urlencode(query, safe="$"),
                       parts.fragment))


class IdentityStaging(BaseModel):
    """An identity pass in progress: pages are staged under `identities:<c>:staging:<n>`."""

    run_id: str
    cursor: str | None = None
    pages: int = 0


class TransientFailures(BaseModel):
    """Per connector: doc_id -> consecutive content syncs whose read failed transiently."""

    runs: dict[str, int] = Field(default_factory=dict)


class IdentitySnapshotRecord(BaseModel):
    """Written when a source's memberships were replaced from a good (complete) snapshot."""

    replaced_at: float
    memberships: int
    aliases: int


@dataclass(frozen=True)
class ErrorBudget:
    """Stop a sync that fails wholesale: more than `ratio` of documents and at least `minimum`."""

    ratio: float = 0.5
    minimum: int = 20

    def spent(self, report: SyncReport) -> bool:
        seen = report.documents + report.error_count
        return report.error_count >= self.minimum and report.error_count > self.ratio * seen


class Store(ChunkStore, StateStore, IdentityStoreProtocol, Protocol):
    """What the pipeline needs from one backend (chunks, state, identities)."""


def _checkpoint_key(connector: str, mode: Mode) -> str:
    return f"sync:{connector}:{mode}:checkpoint"


def last_run_key(connector: str, mode: Mode) -> str:
    return f"sync:{connector}:{mode}:last"


def transient_key(connector: str) -> str:
    return f"sync:{connector}:transient"


def identity_snapshot_key(connector: str) -> str:
    return f"identities:{connector}:good"


def cursor_key(connector: str, kind: PassKind) -> str:
    return f"cursors:{connector}:{kind}"


def _staging_key(connector: str) -> str:
    return f"identities:{connector}:staging"


def _listed_key(connector: str, mode: Mode, page: int) -> str:
    return f"sync:{connector}:{mode}:listed:{page}"


def pass_cursor(store: StateStore, connector: str, kind: PassKind) -> PassCursor | None:
    saved = store.get_state(cursor_key(connector, kind))
    return PassCursor.model_validate(saved) if saved else None


def pass_status(store: StateStore, connector: str, now: float) -> dict[str, Any]:
    """`clearance status` per connector: each pass's durable cursor record and the age of the
    source's last good identity snapshot."""
    cursors = {kind: (None if (record := pass_cursor(store, connector, kind)) is None
                      else record.to_status()) for kind in PASSES}
    saved = store.get_state(identity_snapshot_key(connector))
    good = IdentitySnapshotRecord.model_validate(saved) if saved else None
    identities = None if good is None else {
        "replaced_at": good.replaced_at, "age_seconds": round(max(0.0, now - good.replaced_at), 1),
        "memberships": good.memberships, "aliases": good.aliases}
    return {"cursors": cursors, "identities": identities}


PASS_OF_MODE: dict[Mode, PassKind] = {
    "full": "content", "incremental": "content", "permissions": "permissions",
    "prune": "permissions", "groups": "identities"}


@dataclass
class _Pass:
    """What one run carries from page to page."""

    connector: str
    report: SyncReport
    seen_run: str | None
    identities_known: bool
    transient: dict[str, int] = field(default_factory=dict)
    transient_dirty: bool = False


def _own(doc_id: str, run: _Pass, *, report: bool = True) -> bool:
    """A connector writes only its own documents (`<connector>:...`): an operation naming
    another connector's document is refused and reported, never applied."""
    if doc_id.startswith(f"{run.connector}:"):
        return True
    if report:
        run.report.fail(Failure(doc_id, f"not a document of connector {run.connector!r}: "
                                        "ignored", scope="acl"))
    return False


def deny_guard(acl: Acl, identities_known: bool) -> Acl:
    """A deny naming a group whose members are unknown (the source never had a good group
    snapshot) cannot be enforced: nobody reads the document until the members are known."""
    if identities_known or not acl.readable_by_somebody:
        return acl
    groups = sorted(p for p in acl.deny if p.startswith("group:"))
    if not groups:
        return acl
    return Acl.nobody(f"deny names {groups[0]}, whose members are not known yet "
                      "(no good group snapshot of this source)")


def _require_indexed(indexed: int, listed: int) -> None:
    """An index holding none of the documents its source lists was lost (cluster restarted
    empty, SQLite file deleted): a permission pass must not report "ok" on nothing."""
    if listed and not indexed:
        raise SyncError(f"index empty or missing: {listed} documents at the source; a full "
                        "sync indexes them again")


_Embedded = tuple[Document, list[Chunk], npt.NDArray[np.float32]]


@dataclass
class _PagePlan:
    """A content page sorted against the index: what _apply writes, what the embedder gets."""

    page: ContentPage
    docs: list[Document] = field(default_factory=list)
    acl_ops: list[tuple[str, Acl]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # another connector's ids: refused
    unchanged: list[str] = field(default_factory=list)
    acl_only: list[Document] = field(default_factory=list)
    changed: list[Document] = field(default_factory=list)

    def touches(self, page: ContentPage) -> bool:
        """Whether `page` names a document this plan writes (then it must be planned after
        these writes, or it would be sorted against the index as it was before them)."""
        mine = {d.doc_id for d in self.docs} | {d for d, _ in self.acl_ops} | set(self.deletes)
        return any((op.document.doc_id if isinstance(op, Upsert) else op.doc_id) in mine
                   for op in page.operations)


class _PagePipeline:
    """Content pages through a two-stage pipeline: one worker thread embeds page N+1 while this
    thread writes page N, commits its cursor, fetches (extracts) page N+2 and chunks it.

    Everything but embedding stays on the calling thread and in page order: the store, the
    report and the run are never touched by the worker, which gets chunks only. A page is
    planned (sorted against the index) before the previous page's writes only when it names
    none of that page's documents and has no failures (failures write); otherwise the previous
    page is finished first. A page's cursor is committed by `done` after its writes, as in the
    sequential loop; a failure anywhere cancels what is in flight and leaves the last committed
    cursor.
    """

    def __init__(self, pipeline: Pipeline, run: _Pass,
                 done: Callable[[ContentPage], None]) -> None:
        self._p, self._run, self._done = pipeline, run, done
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sync-embed")
        self._pending: tuple[_PagePlan, Future[list[_Embedded]]] | None = None

    def __enter__(self) -> _PagePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)  # no embedding outlives the run

    def run(self, pages: Iterable[ContentPage]) -> None:
        source = iter(pages)
        while True:
            try:
                page = next(source)
            except StopIteration:
                break
            except Exception:
                # The source failed fetching the next page: the page in hand is good, and the
                # sequential loop would have committed it before asking.
                self._finish()
                raise
            self._feed(page)
        self._finish()

    def _feed(self, page: ContentPage) -> None:
        pending = self._pending
        if page.failures or (pending is not None and pending[0].touches(page)):
            self._finish()
        if page.failures:
            self._p._page(page, self._run)
            self._done(page)
            return
        plan = self._p._plan(page, self._run)
        # Chunked here, while the worker embeds the previous page: on the worker, chunking
        # (token counting) would delay the model's next batch by its whole cost.
        try:
            chunked = self._p._chunk(plan.changed)
        except BaseException:
            self._finish()  # the page before is good: written and committed, as sequentially
            raise
        future = self._pool.submit(self._p._vectors, chunked)
        try:
            self._finish()
        except BaseException:
            future.cancel()
            raise
        self._pending = (plan, future)

    def _finish(self) -> None:
        """The pending page's writes (once its vectors are in), then its commit."""
        if self._pending is None:
            return
        plan, future = self._pending
        self._pending = None
        embedded = future.result()
        self._p._page_notes(plan.page, self._run)  # warnings only: no failures on this path
        self._p._apply(plan, embedded, self._run)
        self._done(plan.page)


class Pipeline:
    def __init__(self, store: Store, embedder: Embedder, *,
                 policy: ChunkingPolicy | None = None, budget: ErrorBudget | None = None,
                 progress: Progress | None = None, pipelined: bool = True) -> None:
        self.store = store
        self.embedder = embedder
        # Embedding of page N+1 overlaps the writes of page N (see _PagePipeline).
        self.pipelined = pipelined
        self.policy = policy or ChunkingPolicy(
            max_tokens=min(230, embedder.max_tokens - 26),
            target_tokens=min(200, embedder.max_tokens - 56))
        self.budget = budget or ErrorBudget()
        self.progress: Progress = progress or (lambda report: None)

    # -- content ---------------------------------------------------------------------------
    def full_sync(self, connector: Connector) -> SyncReport:
        return self._content_sync(as_connector(connector), "full")

    def incremental_sync(self, connector: Connector) -> SyncReport:
        return self._content_sync(as_connector(connector), "incremental")

    def cursor(self, connector: str, kind: PassKind) -> PassCursor | None:
        """The durable cursor record of one pass of one connector."""
        return pass_cursor(self.store, connector, kind)

    def _unsupported(self, connector: Connector, mode: Mode) -> SyncReport | None:
        """A pass the connector does not declare runs nothing: recorded as skipped."""
        kind = PASS_OF_MODE[mode]
        if kind in connector.capabilities.passes:
            return None
        report = SyncReport(connector.name, mode, uuid.uuid4().hex, status="skipped",
                            error=f"connector kind {connector.kind!r} has no {kind} pass",
                            finished=time.time())
        self.store.set_state(last_run_key(connector.name, mode), report.to_json())
        return report

    def _content_sync(self, connector: Connector, mode: Mode) -> SyncReport:
        skipped = self._unsupported(connector, mode)
        if skipped is not None:
            return skipped
        key = _checkpoint_key(connector.name, mode)
        saved = self._checkpoint(key)
        if saved is not None:
            report = saved.report.model_copy(update={"resumed": True})
            cursor, enumerating, pages = saved.cursor, saved.enumerating, saved.pages
            # A checkpoint written before `reconciles` existed still deletes after a full walk.
            reconciles = saved.reconciles or (enumerating and (
                mode == "full" or connector.capabilities.complete_listing))
        else:
            report = SyncReport(connector.name, mode, uuid.uuid4().hex)
            feed = self.cursor(connector.name, "content")
            cursor = (feed.next if mode == "incremental" and connector.capabilities.change_feed
                      and feed is not None else None)
            enumerating, pages = cursor is None, 0
            reconciles = enumerating and (mode == "full"
                                          or connector.capabilities.complete_listing)

        def body() -> None:
            try:
                self._content(connector, report, key, cursor, enumerating=enumerating,
                              reconciles=reconciles, pages=pages)
            except CursorExpired as exc:
                self._expired(connector, report, key, exc)

        return self._run(report, body, connector)

    def _checkpoint(self, key: str) -> Checkpoint | None:
        saved = self.store.get_state(key)
        return Checkpoint.model_validate(saved) if saved else None

    def _save_checkpoint(self, key: str, cursor: str | None, report: SyncReport, *,
                         enumerating: bool = True, reconciles: bool = False,
                         pages: int = 0) -> None:
        self.store.set_state(key, Checkpoint(cursor=cursor, report=report,
                                             enumerating=enumerating, reconciles=reconciles,
                                             pages=pages).model_dump(mode="json"))

    def _commit_cursor(self, connector: str, kind: PassKind, report: SyncReport,
                       cursor: str | None, pages: int, *, done: bool = False,
                       feed: bool = False) -> None:
        """The durable record of a pass, written after the page's writes are durable."""
        record = self.cursor(connector, kind) or PassCursor()
        now = time.time()
        update: dict[str, Any] = {"cursor": cursor, "run_id": report.run_id,
                                  "mode": report.mode, "in_progress": not done,
                                  "pages": pages, "committed_at": now}
        if done:
            update["completed_at"] = now
            if kind == "content":
                update["next"] = cursor if feed else None
        self.store.set_state(cursor_key(connector, kind),
                             record.model_copy(update=update).model_dump(mode="json"))

    def _pending_full_run(self, connector: str) -> str | None:
        """The run id of an interrupted full sync. Other passes mark what they see under it, so
        that its deletion pass, when it resumes, keeps those documents."""
        saved = self._checkpoint(_checkpoint_key(connector, "full"))
        return saved.report.run_id if saved else None

    def _content(self, connector: Connector, report: SyncReport, key: str,
                 cursor: str | None, *, enumerating: bool, reconciles: bool,
                 pages: int = 0) -> None:
        seen_run = (report.run_id if report.mode == "full"
                    else self._pending_full_run(connector.name) or report.run_id)
        run = _Pass(connector.name, report, seen_run, self._identities_first(connector, report),
                    self._transient(connector.name))
        self._save_checkpoint(key, cursor, report, enumerating=enumerating,
                              reconciles=reconciles, pages=pages)
        last = cursor

        def done(page: ContentPage) -> None:  # after the page's writes: now durable
            nonlocal pages, last
            if self.budget.spent(report):
                raise SyncError(f"error budget spent: {report.error_count} documents failed "
                                f"(last: {report.errors[-1] if report.errors else '?'})")
            self._save_transient(run)
            pages += 1
            last = page.cursor
            if page.cursor is not None:
                self._save_checkpoint(key, page.cursor, report, enumerating=enumerating,
                                      reconciles=reconciles, pages=pages)
                self._commit_cursor(connector.name, "content", report, page.cursor, pages)
            self.progress(report)

        self._pages(connector.content(cursor), run, done)
        self._reconcile(connector, run, reconciles)
        self._commit_cursor(connector.name, "content", report, last, pages, done=True,
                            feed=connector.capabilities.change_feed)
        self.store.delete_state(key)

    def _reconcile(self, connector: Connector, run: _Pass, deletes: bool) -> None:
        """After the pages: re-check ACLs of a resumed run, delete what an enumeration did not
        list, forget transient counts of documents that left the index."""
        report = run.report
        listed: set[str] | None = None
        if report.resumed or (deletes and run.seen_run != report.run_id):
            # Pages done before the kill carry the ACLs of then; with a full sync pending, the
            # seen marks are its own, so a listing tells this run what vanished.
            listed = self._acl_pass(connector, run, count=False)
        if deletes and run.seen_run == report.run_id:
            report.deleted += len(self.store.delete_unseen(connector.name, report.run_id))
        elif deletes and listed is not None:
            gone = [d for d in self.store.doc_ids(connector.name) if d not in listed]
            self.store.delete(gone)
            report.deleted += len(gone)
        # Counts of documents that left the index (deleted at the source) are forgotten.
        indexed = self.store.document_states(sorted(run.transient))
        if set(run.transient) - set(indexed):
            run.transient = {d: n for d, n in run.transient.items() if d in indexed}
            run.transient_dirty = True
            self._save_transient(run)

    def _expired(self, connector: Connector, report: SyncReport, key: str,
                 exc: CursorExpired) -> None:
        """The source rejected the cursor: whatever changed since it was issued (ACLs
        included) is unknown. Every indexed document of the connector becomes readable by
        nobody, then an enumeration re-lists them: a document is readable again once the source
        re-confirms its ACL, and what it does not re-list is deleted at the end. A permission
        pass run meanwhile re-confirms (and reopens) what it lists: it reads the source now."""
        report.warn(f"the source rejected the sync cursor ({exc}): re-enumerating everything; "
                    "documents are readable by nobody until re-listed")
        record = self.cursor(connector.name, "content") or PassCursor()
        self.store.set_state(cursor_key(connector.name, "content"), record.model_copy(update={
            "next": None, "cursor": None, "expired_at": time.time(),
            "expired_reason": str(exc)}).model_dump(mode="json"))
        closed = Acl.nobody("awaiting re-enumeration: the source rejected the sync cursor")
        ids = self.store.doc_ids(connector.name)
        states = self.store.document_states(ids)
        with self.store.batch():
            for doc_id in ids:
                state = states.get(doc_id)
                if state is not None and state.acl_key != closed.key():
                    self.store.update_acl(doc_id, closed, None)
        # Marks made under the rejected cursor must not count as re-listed: a new run id.
        report.run_id = uuid.uuid4().hex
        # From here on the run is an enumeration that deletes what it does not list; a kill
        # resumes it as one (without closing again what was re-listed).
        self._save_checkpoint(key, None, report, enumerating=True, reconciles=True)
        self._content(connector, report, key, None, enumerating=True, reconciles=True)

    def _page(self, page: ContentPage, run: _Pass) -> None:
        """One page, start to end: its failures, then its plan, embedding and writes."""
        self._page_notes(page, run)
        plan = self._plan(page, run)
        self._apply(plan, self._embed(plan.changed), run)

    def _page_notes(self, page: ContentPage, run: _Pass) -> None:
        """The page's warnings and failures (failures may write: closed ACLs, removals)."""
        report = run.report
        for warning in page.warnings:
            report.warn(warning)
        for failure in page.failures:
            if failure.scope == "listing":
                report.fail(failure)
                self._keep_unlisted(failure, run)
            elif failure.doc_id and _own(failure.doc_id, run):
                self._document_failure(failure, failure.doc_id, run)
            elif not failure.doc_id:
                report.fail(failure)

    def _plan(self, page: ContentPage, run: _Pass) -> _PagePlan:
        """What the page's operations do to the index as it is now. Reads only: the report, the
        run and the store are changed by _apply."""
        plan = _PagePlan(page)
        for op in page.operations:
            doc_id = op.document.doc_id if isinstance(op, Upsert) else op.doc_id
            if not _own(doc_id, run, report=False):
                plan.foreign.append(doc_id)
            elif isinstance(op, Upsert):
                plan.docs.append(dataclasses.replace(
                    op.document, acl=deny_guard(op.document.acl, run.identities_known)))
            elif isinstance(op, AclUpdate):
                plan.acl_ops.append((op.doc_id, deny_guard(op.acl, run.identities_known)))
            elif isinstance(op, Delete):
                plan.deletes.append(op.doc_id)
        states = self.store.document_states([d.doc_id for d in plan.docs])
        for doc in plan.docs:
            state = states.get(doc.doc_id)
            if (state and state.content_hash == doc.content_hash
                    and state.embedder == self.embedder.name):
                if state.acl_key == doc.acl.key():
                    plan.unchanged.append(doc.doc_id)
                else:
                    plan.acl_only.append(doc)
            else:
                plan.changed.append(doc)
        return plan

    def _apply(self, plan: _PagePlan, embedded: list[_Embedded], run: _Pass) -> None:
        """The page's writes, in one store batch, and its counts."""
        report = run.report
        for doc_id in plan.foreign:
            _own(doc_id, run)  # refused and reported
        for doc_id in [d.doc_id for d in plan.docs] + plan.deletes:
            if run.transient.pop(doc_id, None) is not None:
                run.transient_dirty = True
        for doc in plan.docs:
            report.documents += 1
            if not doc.acl.readable_by_somebody:
                report.readable_by_nobody += 1
        gone = list(self.store.document_states(plan.deletes))
        with self.store.batch():
            for doc in plan.acl_only:
                self.store.update_acl(doc.doc_id, doc.acl, run.seen_run)
            for doc_id, acl in plan.acl_ops:
                # Not indexed yet: nothing to update (its content arrives as an upsert).
                if self.store.update_acl(doc_id, acl, run.seen_run):
                    report.acl_updated += 1
            self.store.mark_seen(plan.unchanged, run.seen_run)
            for doc, chunks, vectors in embedded:
                self.store.upsert(doc, chunks, vectors, self.embedder.name, run.seen_run
                                  or run.report.run_id)
                report.chunks_embedded += len(chunks)
            if embedded:  # sensitive-data scan for the oversharing guard (types only)
                oversharing.record(self.store, [doc for doc, _, _ in embedded])
            self.store.delete(gone)
        report.acl_updated += len(plan.acl_only)
        report.unchanged += len(plan.unchanged)
        report.indexed += len(embedded)
        report.deleted += len(gone)

    def _pages(self, pages: Iterable[ContentPage], run: _Pass,
               done: Callable[[ContentPage], None]) -> None:
        """Every page through _page, then `done` (its checkpoint and cursor commit)."""
        if not self.pipelined:
            for page in pages:
                self._page(page, run)
                done(page)
            return
        with _PagePipeline(self, run, done) as pipeline:
            pipeline.run(pages)

    def _document_failure(self, failure: Failure, doc_id: str, run: _Pass) -> None:
        """Keep the last good content (under the ACL the source has now) only while the failure
        is transient and for a bounded number of runs; otherwise the old text leaves at once."""
        runs = run.transient.get(doc_id, 0) + 1
        if failure.transient and failure.acl is not None and runs <= TRANSIENT_KEEP_RUNS:
            acl = deny_guard(failure.acl, run.identities_known)
            if self.store.update_acl(doc_id, acl, run.seen_run):
                run.transient[doc_id] = runs
                run.transient_dirty = True
                run.report.acl_updated += 1
                run.report.fail(failure, f" (kept its last good text, {runs} of "
                                         f"{TRANSIENT_KEEP_RUNS} runs)")
            else:
                run.report.fail(failure)
            return
        if run.transient.pop(doc_id, None) is not None:
            run.transient_dirty = True
        if self.store.document_states([doc_id]):
            self.store.delete([doc_id])
            run.report.deleted += 1
            why = (f"failed {runs} runs in a row" if failure.transient
                   else "no text to keep")
            run.report.fail(failure, f" (removed from the index: {why})")
        else:
            run.report.fail(failure)

    def _keep_unlisted(self, failure: Failure, run: _Pass) -> set[str]:
        """Documents under a folder that could not be listed did not vanish: keep them, marked
        seen, but readable by nobody, since their ACL cannot be confirmed."""
        prefix = failure.unlisted_prefix
        if not prefix:
            return set()
        kept = [d for d in self.store.doc_ids(run.connector) if d.startswith(prefix)]
        closed = Acl.nobody(f"could not list {failure.source_id}: ACL cannot be confirmed")
        states = self.store.document_states(kept)
        with self.store.batch():
            for doc_id in kept:
                state = states.get(doc_id)
                if state is not None and state.acl_key != closed.key():
                    self.store.update_acl(doc_id, closed, run.seen_run)
                    run.report.acl_updated += 1
            self.store.mark_seen(kept, run.seen_run)
        return set(kept)

    def _transient(self, connector: str) -> dict[str, int]:
        saved = self.store.get_state(transient_key(connector))
        return dict(TransientFailures.model_validate(saved).runs) if saved else {}

    def _save_transient(self, run: _Pass) -> None:
        if run.transient_dirty:
            self.store.set_state(transient_key(run.connector),
                                 TransientFailures(runs=run.transient).model_dump(mode="json"))
            run.transient_dirty = False

    def _embed(self, docs: Sequence[Document]) -> list[_Embedded]:
        """Chunk every changed document of a page and embed all their chunks in one call."""
        return self._vectors(self._chunk(docs))

    def _chunk(self, docs: Sequence[Document]) -> list[tuple[Document, list[Chunk]]]:
        """Every document's chunks (pure: reads the documents and the chunking policy)."""
        count = self.embedder.count_tokens
        return [(doc, chunk_document(doc, count, self.policy)) for doc in docs]

    def _vectors(self, per_doc: list[tuple[Document, list[Chunk]]]) -> list[_Embedded]:
        """All chunks of a page through the embedder in one call, split back per document."""
        texts = [embedding_text(doc.title, c) for doc, chunks in per_doc for c in chunks]
        vectors = (self.embedder.embed(texts) if texts
                   else np.zeros((0, self.embedder.dim), dtype=np.float32))
        out = []
        offset = 0
        for doc, chunks in per_doc:
            out.append((doc, chunks, vectors[offset:offset + len(chunks)]))
            offset += len(chunks)
        return out

    # -- permissions -----------------------------------------------------------------------
    def permission_sync(self, connector: Connector) -> SyncReport:
        return self._permission_run(as_connector(connector), "permissions")

    def prune(self, connector: Connector) -> SyncReport:
        return self._permission_run(as_connector(connector), "prune")

    def _permission_run(self, connector: Connector, mode: Mode) -> SyncReport:
        """The permission pass, resumable page by page; prune also deletes what it did not
        list."""
        skipped = self._unsupported(connector, mode)
        if skipped is not None:
            return skipped
        key = _checkpoint_key(connector.name, mode)
        saved = self._checkpoint(key)
        if saved is not None:
            report = saved.report.model_copy(update={"resumed": True})
            resume: tuple[str | None, int] = (saved.cursor, saved.pages)
        else:
            report = SyncReport(connector.name, mode, uuid.uuid4().hex)
            resume = (None, 0)

        def body() -> None:
            seen_run = None if mode == "permissions" else (
                self._pending_full_run(connector.name) or report.run_id)
            run = _Pass(connector.name, report, seen_run,
                        self._identities_first(connector, report))
            try:
                listed = self._acl_pass(connector, run, count=True, key=key, resume=resume)
            except CursorExpired as exc:
                # Pages done are ACLs read from the source now: starting over serves nothing
                # stale, it only reads them again.
                report.warn(f"the source rejected the permission cursor ({exc}): starting over")
                self._drop_listed(connector.name, mode, resume[1])
                listed = self._acl_pass(connector, run, count=True, key=key, resume=(None, 0))
            if mode == "prune":
                gone = [d for d in self.store.doc_ids(connector.name) if d not in listed]
                self.store.delete(gone)
                report.deleted += len(gone)
            self.store.delete_state(key)

        return self._run(report, body, connector)

    def _drop_listed(self, connector: str, mode: Mode, pages: int) -> None:
        for page in range(pages):
            self.store.delete_state(_listed_key(connector, mode, page))

    def _acl_pass(self, connector: Connector, run: _Pass, *, count: bool,
                  key: str | None = None,
                  resume: tuple[str | None, int] = (None, 0)) -> set[str]:
        """Every listed document's current ACL onto its indexed copy; documents the listing no
        longer names become readable by nobody. Returns the ids listed (or kept unlisted).

        With `key` (a permission run of its own) each page is checkpointed: its listed ids are
        staged in the state store and the cursor committed, so a killed run resumes after it."""
        report = run.report
        cursor, pages = resume
        listed: set[str] = set()
        for page_no in range(pages):  # pages a killed run committed
            listed.update(self.store.get_state(_listed_key(run.connector, report.mode,
                                                           page_no)) or [])
        if key is not None:
            self._save_checkpoint(key, cursor, report, pages=pages)
        for page in connector.permissions(cursor):
            page_listed: set[str] = set()
            for failure in page.failures:
                if count:
                    report.fail(failure)
                page_listed |= self._keep_unlisted(failure, run)
            if count:
                for warning in page.warnings:
                    report.warn(warning)
            acls = [(d, deny_guard(acl, run.identities_known)) for d, acl in page.acls
                    if _own(d, run, report=count)]
            page_listed.update(doc_id for doc_id, _ in acls)
            states = self.store.document_states([doc_id for doc_id, _ in acls])
            confirmed = []
            with self.store.batch():
                for doc_id, acl in acls:
                    if count:
                        report.documents += 1
                        if not acl.readable_by_somebody:
                            report.readable_by_nobody += 1
                    state = states.get(doc_id)
                    if state is None:
                        continue  # not indexed yet: the next full sync brings its content
                    if state.acl_key != acl.key():
                        self.store.update_acl(doc_id, acl, run.seen_run)
                        report.acl_updated += 1
                    else:
                        confirmed.append(doc_id)
                self.store.mark_seen(confirmed, run.seen_run)
            listed |= page_listed
            if key is not None and page.cursor is not None:
                self.store.set_state(_listed_key(run.connector, report.mode, pages),
                                     sorted(page_listed))
                pages += 1
                self._save_checkpoint(key, page.cursor, report, pages=pages)
                self._commit_cursor(run.connector, "permissions", report, page.cursor, pages)
            self.progress(report)
        # A complete listing that no longer names a document (moved, deleted, out of scope):
        # nobody may read its indexed copy any more; prune or the next full sync removes it.
        gone = Acl.nobody("no longer listed at the source")
        indexed = self.store.doc_ids(connector.name)
        _require_indexed(len(indexed), len(listed))
        candidates = [d for d in indexed if d not in listed]
        # Already fail-closed by an earlier pass: rewriting them would only invalidate caches.
        unlisted = [d for d, state in self.store.document_states(candidates).items()
                    if state.acl_key != gone.key()]
        with self.store.batch():
            for doc_id in unlisted:
                self.store.update_acl(doc_id, gone, None)
        report.acl_updated += len(unlisted)
        if key is not None:
            self._commit_cursor(run.connector, "permissions", report, None, pages, done=True)
            self._drop_listed(run.connector, report.mode, pages)
        return listed

    # -- identities ------------------------------------------------------------------------
    def group_sync(self, connector: Connector) -> SyncReport:
        source = as_connector(connector)
        skipped = self._unsupported(source, "groups")
        if skipped is not None:
            return skipped
        report = SyncReport(connector.name, "groups", uuid.uuid4().hex)

        def body() -> None:
            self._identities(source, report)

        return self._run(report, body, connector)

    def _identities_first(self, connector: Connector, report: SyncReport) -> bool:
        """Before a content or permission pass: refresh the source's identities when that is
        cheap (`identities_each_pass`); True when a good snapshot of the source is stored."""
        caps = connector.capabilities
        if caps.identities_each_pass and "identities" in caps.passes:
            return self._identities(connector, report)
        return self.store.get_state(identity_snapshot_key(connector.name)) is not None

    def _identities(self, connector: Connector, report: SyncReport) -> bool:
        """The identity pass: pages are staged and the source's memberships are replaced only
        when every page arrived without a failure; True when the store holds a good snapshot
        of this source (now or from an earlier run)."""
        key = identity_snapshot_key(connector.name)
        staging_key = _staging_key(connector.name)
        saved = self.store.get_state(staging_key)
        staging = (IdentityStaging.model_validate(saved) if saved
                   else IdentityStaging(run_id=report.run_id))
        self.store.set_state(staging_key, staging.model_dump(mode="json"))
        try:
            failed = self._stage_identities(connector, report, staging)
        except CursorExpired as exc:
            report.warn(f"the source rejected the identity cursor ({exc}): starting over")
            self._drop_staging(connector.name, staging)
            staging = IdentityStaging(run_id=report.run_id)
            self.store.set_state(staging_key, staging.model_dump(mode="json"))
            failed = self._stage_identities(connector, report, staging)
        if failed:
            # A partial snapshot could drop a member of a *deny* group and widen access:
            # keep the previous memberships until the source is readable again.
            self._drop_staging(connector.name, staging)
            self._commit_cursor(connector.name, "identities", report, None, staging.pages,
                                done=True)
            return self.store.get_state(key) is not None
        memberships: list[Membership] = []
        aliases: list[Alias] = []
        for page_no in range(staging.pages):
            page = self.store.get_state(f"{staging_key}:{page_no}") or {}
            memberships.extend(Membership(g, m) for g, m in page.get("memberships", []))
            aliases.extend(Alias(a, p) for a, p in page.get("aliases", []))
        self.store.replace_identities(connector.name, memberships, aliases)
        for address, people in ambiguous_aliases(aliases).items():
            report.warn(f"alias {address} is claimed by {', '.join(people)}: it grants none "
                        "of them anything")
        record = IdentitySnapshotRecord(replaced_at=time.time(), memberships=len(memberships),
                                        aliases=len(aliases))
        self.store.set_state(key, record.model_dump(mode="json"))
        self._drop_staging(connector.name, staging)
        self._commit_cursor(connector.name, "identities", report, None, staging.pages,
                            done=True)
        return True

    def _stage_identities(self, connector: Connector, report: SyncReport,
                          staging: IdentityStaging) -> bool:
        """Stages each page; True when a page reported a failure (the snapshot is not
        complete and must not replace the last good one)."""
        staging_key = _staging_key(connector.name)
        for page in connector.identities(staging.cursor):
            for failure in page.failures:
                report.fail(failure)
            if page.failures:
                return True
            self._stage_page(staging_key, staging.pages, page)
            staging.pages += 1
            staging.cursor = page.cursor
            self.store.set_state(staging_key, staging.model_dump(mode="json"))
            if page.cursor is not None:
                self._commit_cursor(connector.name, "identities", report, page.cursor,
                                    staging.pages)
        return False

    def _stage_page(self, staging_key: str, page_no: int, page: IdentityPage) -> None:
        self.store.set_state(f"{staging_key}:{page_no}", {
            "memberships": [[m.group, m.member] for m in page.memberships],
            "aliases": [[a.alias, a.primary] for a in page.aliases]})

    def _drop_staging(self, connector: str, staging: IdentityStaging) -> None:
        staging_key = _staging_key(connector)
        for page_no in range(staging.pages):
            self.store.delete_state(f"{staging_key}:{page_no}")
        self.store.delete_state(staging_key)

    # -- connectors no longer configured ---------------------------------------------------
    def orphaned(self, configured: Iterable[str]) -> dict[str, int]:
        """Connectors with indexed documents that the configuration no longer names (removed
        or renamed), with their document counts."""
        return orphaned_connectors(self.store, configured)

    def prune_orphans(self, configured: Iterable[str],
                      only: Iterable[str] | None = None) -> dict[str, int]:
        return prune_orphans(self.store, configured, only)

    # -- bookkeeping -----------------------------------------------------------------------
    def _run(self, report: SyncReport, body: Callable[[], None],
             connector: Connector | None = None) -> SyncReport:
        http_before = _http_counts(connector)
        log.info("sync.start", extra={"connector": report.connector, "mode": report.mode,
                                      "run_id": report.run_id, "resumed": report.resumed})
        try:
            body()
            report.status = "partial" if report.partial else "ok"
        except Exception as exc:
            report.status = "failed"
            report.error = str(exc)
            raise
        finally:
            report.finished = time.time()
            report.http = _http_delta(http_before, _http_counts(connector))
            try:
                self.store.set_state(last_run_key(report.connector, report.mode), report.to_json())
            except Exception as secondary:
                if report.status != "failed":
                    raise
                # The store that failed the sync often cannot take its report either: the
                # sync's own error is what the caller must see, this one is only logged.
                log.warning("sync.report_not_saved", extra={"connector": report.connector,
                                                            "error": str(secondary)})
            log.info("sync.end", extra={"connector": report.connector, "mode": report.mode,
                                        "status": report.status,
                                        "duration": round(report.duration, 3)})
        return report


def _http_counts(connector: Connector | None) -> dict[str, float] | None:
    """The connector's HTTP policy counters now (`http_stats`, see connectors.http), if any."""
    stats = getattr(connector, "http_stats", None)
    return dict(stats.to_json()) if stats is not None else None


def _http_delta(before: dict[str, float] | None,
                after: dict[str, float] | None) -> dict[str, float] | None:
    """This run's share of the counters (a connector object may serve several runs)."""
    if before is None or after is None:
        return None
    return {k: round(after[k] - before.get(k, 0), 3) for k in after}


def orphaned_connectors(store: ChunkStore, configured: Iterable[str]) -> dict[str, int]:
    """Indexed connector names the configuration does not name, with their document counts."""
    known = set(configured)
    return {name: store.stats(name).documents for name in store.connector_names()
            if name not in known}


def prune_orphans(store: ChunkStore, configured: Iterable[str],
                  only: Iterable[str] | None = None) -> dict[str, int]:
    """Delete every document of connectors no longer configured; returns what was deleted.
    `only` limits it to those names (the caller holds their sync locks)."""
    names = set(only) if only is not None else None
    deleted: dict[str, int] = {}
    for name in orphaned_connectors(store, configured):
        if names is not None and name not in names:
            continue
        ids = store.doc_ids(name)
        store.delete(ids)
        deleted[name] = len(ids)
        log.info("sync.orphan_deleted", extra={"connector": name, "documents": len(ids)})
    return deleted
