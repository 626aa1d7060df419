"""The sync pipeline: the same functions run in-process (embedded) and inside Celery tasks.

full_sync        documents page by page; unchanged content is skipped, ACL-only changes take the
                 fast path, changed content is chunked and embedded; a checkpoint after every
                 page lets a killed sync resume (and a resumed run re-checks every ACL at the
                 end); documents not seen are deleted at the end.
incremental_sync full_sync without the deletion pass, except for a source whose listing is
                 complete (`complete_listing`): then what it no longer lists is deleted too.
permission_sync  ACLs only (no content, no embedding), plus group memberships.
prune            the permission pass, then deletes indexed documents the source no longer lists.
group_sync       group memberships and aliases only.
prune_orphans    deletes documents of connectors that are no longer configured.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Connector, DocumentPage, Failure
from core.acl import Acl
from core.errors import SyncError
from core.models import Chunk, Document, ambiguous_aliases
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
    """Where a killed content sync resumes: the connector's cursor and the report so far."""

    cursor: str | None = None
    report: SyncReport


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


@dataclass
class _Pass:
    """What one run carries from page to page."""

    connector: str
    report: SyncReport
    seen_run: str | None
    identities_known: bool
    transient: dict[str, int] = field(default_factory=dict)
    transient_dirty: bool = False


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


class Pipeline:
    def __init__(self, store: Store, embedder: Embedder, *,
                 policy: ChunkingPolicy | None = None, budget: ErrorBudget | None = None,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.policy = policy or ChunkingPolicy(
            max_tokens=min(230, embedder.max_tokens - 26),
            target_tokens=min(200, embedder.max_tokens - 56))
        self.budget = budget or ErrorBudget()
        self.progress: Progress = progress or (lambda report: None)

    # -- full sync -------------------------------------------------------------------------
    def full_sync(self, connector: Connector) -> SyncReport:
        return self._content_sync(connector, "full")

    def incremental_sync(self, connector: Connector) -> SyncReport:
        return self._content_sync(connector, "incremental")

    def _content_sync(self, connector: Connector, mode: Mode) -> SyncReport:
        key = _checkpoint_key(connector.name, mode)
        saved = self._checkpoint(key)
        if saved is not None:
            report = saved.report.model_copy(update={"resumed": True})
            cursor = saved.cursor
        else:
            report = SyncReport(connector.name, mode, uuid.uuid4().hex)
            cursor = None
        return self._run(report, lambda: self._content(connector, report, key, cursor))

    def _checkpoint(self, key: str) -> Checkpoint | None:
        saved = self.store.get_state(key)
        return Checkpoint.model_validate(saved) if saved else None

    def _save_checkpoint(self, key: str, cursor: str | None, report: SyncReport) -> None:
        self.store.set_state(key, Checkpoint(cursor=cursor, report=report).model_dump(mode="json"))

    def _pending_full_run(self, connector: str) -> str | None:
        """The run id of an interrupted full sync. Other passes mark what they see under it, so
        that its deletion pass, when it resumes, keeps those documents."""
        saved = self._checkpoint(_checkpoint_key(connector, "full"))
        return saved.report.run_id if saved else None

    def _content(self, connector: Connector, report: SyncReport, key: str,
                 cursor: str | None) -> None:
        seen_run = (report.run_id if report.mode == "full"
                    else self._pending_full_run(connector.name) or report.run_id)
        run = _Pass(connector.name, report, seen_run, self._identities(connector, report),
                    self._transient(connector.name))
        self._save_checkpoint(key, cursor, report)
        for page in connector.documents(cursor):
            self._page(page, run)
            if self.budget.spent(report):
                raise SyncError(f"error budget spent: {report.error_count} documents failed "
                                f"(last: {report.errors[-1] if report.errors else '?'})")
            self._save_transient(run)
            if page.checkpoint is not None:
                self._save_checkpoint(key, page.checkpoint, report)
            self.progress(report)
        prunes = report.mode == "incremental" and getattr(connector, "complete_listing", False)
        listed: set[str] | None = None
        if report.resumed or prunes:
            # Pages done before the kill carry the ACLs of then; a complete listing also tells
            # an incremental run what vanished (moved, deleted).
            listed = self._acl_pass(connector, run, count=False)
        if report.mode == "full":
            report.deleted += len(self.store.delete_unseen(connector.name, report.run_id))
        elif prunes and listed is not None:
            gone = [d for d in self.store.doc_ids(connector.name) if d not in listed]
            self.store.delete(gone)
            report.deleted += len(gone)
        # Counts of documents that left the index (deleted at the source) are forgotten.
        indexed = self.store.document_states(sorted(run.transient))
        if set(run.transient) - set(indexed):
            run.transient = {d: n for d, n in run.transient.items() if d in indexed}
            run.transient_dirty = True
            self._save_transient(run)
        self.store.delete_state(key)

    def _page(self, page: DocumentPage, run: _Pass) -> None:
        report = run.report
        for warning in page.warnings:
            report.warn(warning)
        for failure in page.failures:
            if failure.scope == "listing":
                report.fail(failure)
                self._keep_unlisted(failure, run)
            elif failure.doc_id:
                self._document_failure(failure, failure.doc_id, run)
            else:
                report.fail(failure)
        docs = [dataclasses.replace(d, acl=deny_guard(d.acl, run.identities_known))
                for d in page.documents]
        for doc in docs:
            if run.transient.pop(doc.doc_id, None) is not None:
                run.transient_dirty = True
        states = self.store.document_states([d.doc_id for d in docs])
        unchanged: list[str] = []
        acl_only: list[Document] = []
        changed: list[Document] = []
        for doc in docs:
            report.documents += 1
            if not doc.acl.readable_by_somebody:
                report.readable_by_nobody += 1
            state = states.get(doc.doc_id)
            if (state and state.content_hash == doc.content_hash
                    and state.embedder == self.embedder.name):
                if state.acl_key == doc.acl.key():
                    unchanged.append(doc.doc_id)
                else:
                    acl_only.append(doc)
            else:
                changed.append(doc)
        embedded = self._embed(changed)  # outside the write transaction: it is the slow part
        with self.store.batch():
            for doc in acl_only:
                self.store.update_acl(doc.doc_id, doc.acl, run.seen_run)
            self.store.mark_seen(unchanged, run.seen_run)
            for doc, chunks, vectors in embedded:
                self.store.upsert(doc, chunks, vectors, self.embedder.name, run.seen_run
                                  or run.report.run_id)
                report.chunks_embedded += len(chunks)
        report.acl_updated += len(acl_only)
        report.unchanged += len(unchanged)
        report.indexed += len(embedded)

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

    def _embed(self, docs: Sequence[Document]
               ) -> list[tuple[Document, list[Chunk], npt.NDArray[np.float32]]]:
        """Chunk every changed document of a page and embed all their chunks in one call."""
        count = self.embedder.count_tokens
        per_doc = [(doc, chunk_document(doc, count, self.policy)) for doc in docs]
        texts = [embedding_text(doc.title, c) for doc, chunks in per_doc for c in chunks]
        vectors = (self.embedder.embed(texts) if texts
                   else np.zeros((0, self.embedder.dim), dtype=np.float32))
        out = []
        offset = 0
        for doc, chunks in per_doc:
            out.append((doc, chunks, vectors[offset:offset + len(chunks)]))
            offset += len(chunks)
        return out

    # -- permissions and groups ------------------------------------------------------------
    def permission_sync(self, connector: Connector) -> SyncReport:
        report = SyncReport(connector.name, "permissions", uuid.uuid4().hex)
        return self._run(report, lambda: self._permissions(connector, report, None))

    def prune(self, connector: Connector) -> SyncReport:
        report = SyncReport(connector.name, "prune", uuid.uuid4().hex)

        def body() -> None:
            seen_run = self._pending_full_run(connector.name) or report.run_id
            self._permissions(connector, report, seen_run)
            report.deleted = len(self.store.delete_unseen(connector.name, seen_run))

        return self._run(report, body)

    def _permissions(self, connector: Connector, report: SyncReport,
                     seen_run: str | None) -> None:
        run = _Pass(connector.name, report, seen_run, self._identities(connector, report))
        self._acl_pass(connector, run, count=True)

    def _acl_pass(self, connector: Connector, run: _Pass, *, count: bool) -> set[str]:
        """Every listed document's current ACL onto its indexed copy; documents the listing no
        longer names become readable by nobody. Returns the ids listed (or kept unlisted)."""
        report = run.report
        listed: set[str] = set()
        for page in connector.permissions(None):
            for failure in page.failures:
                if count:
                    report.fail(failure)
                listed |= self._keep_unlisted(failure, run)
            if count:
                for warning in page.warnings:
                    report.warn(warning)
            acls = [(d, deny_guard(acl, run.identities_known)) for d, acl in page.acls]
            listed.update(doc_id for doc_id, _ in acls)
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
        return listed

    def group_sync(self, connector: Connector) -> SyncReport:
        report = SyncReport(connector.name, "groups", uuid.uuid4().hex)

        def body() -> None:
            self._identities(connector, report)

        return self._run(report, body)

    def _identities(self, connector: Connector, report: SyncReport) -> bool:
        """Replace the source's memberships from a good snapshot; True when the store holds a
        good snapshot of this source (now or from an earlier run)."""
        snapshot = connector.identities()
        for failure in snapshot.failures:
            report.fail(failure)
        key = identity_snapshot_key(connector.name)
        if snapshot.failures:
            # A partial snapshot could drop a member of a *deny* group and widen access:
            # keep the previous memberships until the source is readable again.
            return self.store.get_state(key) is not None
        self.store.replace_identities(connector.name, snapshot.memberships, snapshot.aliases)
        for address, people in ambiguous_aliases(snapshot.aliases).items():
            report.warn(f"alias {address} is claimed by {', '.join(people)}: it grants none "
                        "of them anything")
        record = IdentitySnapshotRecord(replaced_at=time.time(),
                                        memberships=len(snapshot.memberships),
                                        aliases=len(snapshot.aliases))
        self.store.set_state(key, record.model_dump(mode="json"))
        return True

    # -- connectors no longer configured ---------------------------------------------------
    def orphaned(self, configured: Iterable[str]) -> dict[str, int]:
        """Connectors with indexed documents that the configuration no longer names (removed
        or renamed), with their document counts."""
        return orphaned_connectors(self.store, configured)

    def prune_orphans(self, configured: Iterable[str],
                      only: Iterable[str] | None = None) -> dict[str, int]:
        return prune_orphans(self.store, configured, only)

    # -- bookkeeping -----------------------------------------------------------------------
    def _run(self, report: SyncReport, body: Callable[[], None]) -> SyncReport:
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
