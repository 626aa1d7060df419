"""The sync pipeline: the same functions run in-process (embedded) and inside Celery tasks.

full_sync        documents page by page; unchanged content is skipped, ACL-only changes take the
                 fast path, changed content is chunked and embedded; a checkpoint after every
                 page lets a killed sync resume; documents not seen are deleted at the end.
incremental_sync full_sync without the deletion pass (a source without a change feed re-lists
                 everything; unchanged content is still skipped by its hash).
permission_sync  ACLs only (no content, no embedding), plus group memberships.
prune            the permission pass, then deletes indexed documents the source no longer lists.
group_sync       group memberships and aliases only.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from connectors.base import Connector, DocumentPage, Failure
from core.acl import Acl
from core.errors import SyncError
from core.models import Chunk, Document
from indexer.chunking import ChunkingPolicy, chunk_document, embedding_text
from indexer.embedding import Embedder
from indexer.store.base import ChunkStore, IdentityStoreProtocol, StateStore

log = logging.getLogger("clearance.sync")

Mode = Literal["full", "incremental", "permissions", "groups", "prune"]
Progress = Callable[["SyncReport"], None]


@dataclass
class SyncReport:
    connector: str
    mode: Mode
    run_id: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    status: Literal["running", "ok", "failed", "skipped"] = "running"
    resumed: bool = False
    documents: int = 0
    indexed: int = 0
    acl_updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks_embedded: int = 0
    readable_by_nobody: int = 0
    error_count: int = 0
    errors: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def duration(self) -> float:
        return (self.finished or time.time()) - self.started

    def fail(self, failure: Failure) -> None:
        self.error_count += 1
        if len(self.errors) < 50:
            self.errors.append(f"{failure.source_id}: {failure.reason}")
        log.warning("sync.skip", extra={"connector": self.connector, "doc": failure.source_id,
                                        "reason": failure.reason})

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration"] = round(self.duration, 3)
        return out

    def to_json_for_resume(self) -> dict[str, Any]:
        return asdict(self)


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
        self.progress = progress or (lambda report: None)

    # -- full sync -------------------------------------------------------------------------
    def full_sync(self, connector: Connector) -> SyncReport:
        return self._content_sync(connector, "full")

    def incremental_sync(self, connector: Connector) -> SyncReport:
        return self._content_sync(connector, "incremental")

    def _content_sync(self, connector: Connector, mode: Mode) -> SyncReport:
        key = _checkpoint_key(connector.name, mode)
        saved = self.store.get_state(key)
        if saved:
            report = SyncReport(**{**saved["report"], "resumed": True})
            cursor: str | None = saved["cursor"]
        else:
            report = SyncReport(connector.name, mode, uuid.uuid4().hex)
            cursor = None
        return self._run(report, lambda: self._full(connector, report, key, cursor))

    def _pending_full_run(self, connector: str) -> str | None:
        """The run id of an interrupted full sync. Other passes mark what they see under it, so
        that its deletion pass, when it resumes, keeps those documents."""
        saved = self.store.get_state(_checkpoint_key(connector, "full"))
        return str(saved["report"]["run_id"]) if saved else None

    def _full(self, connector: Connector, report: SyncReport, key: str, cursor: str | None) -> None:
        seen_run = (report.run_id if report.mode == "full"
                    else self._pending_full_run(connector.name) or report.run_id)
        self._identities(connector, report)
        self.store.set_state(key, {"cursor": cursor, "report": report.to_json_for_resume()})
        for page in connector.documents(cursor):
            self._page(page, report, seen_run)
            if self.budget.spent(report):
                raise SyncError(f"error budget spent: {report.error_count} documents failed "
                                f"(last: {report.errors[-1] if report.errors else '?'})")
            if page.checkpoint is not None:
                self.store.set_state(key, {"cursor": page.checkpoint,
                                           "report": report.to_json_for_resume()})
            self.progress(report)
        if report.mode == "full":
            report.deleted = len(self.store.delete_unseen(connector.name, report.run_id))
        self.store.delete_state(key)

    def _page(self, page: DocumentPage, report: SyncReport, seen_run: str) -> None:
        for failure in page.failures:
            report.fail(failure)
            # Keep the last good content, but only under the ACL the source has now.
            if (failure.doc_id and failure.acl is not None
                    and self.store.update_acl(failure.doc_id, failure.acl, seen_run)):
                report.acl_updated += 1
        docs = list(page.documents)
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
                self.store.update_acl(doc.doc_id, doc.acl, seen_run)
            self.store.mark_seen(unchanged, seen_run)
            for doc, chunks, vectors in embedded:
                self.store.upsert(doc, chunks, vectors, self.embedder.name, seen_run)
                report.chunks_embedded += len(chunks)
        report.acl_updated += len(acl_only)
        report.unchanged += len(unchanged)
        report.indexed += len(embedded)

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
        return self._run(report, lambda: self._permissions(connector, report))

    def prune(self, connector: Connector) -> SyncReport:
        report = SyncReport(connector.name, "prune", uuid.uuid4().hex)

        def body() -> None:
            seen_run = self._pending_full_run(connector.name) or report.run_id
            self._permissions(connector, report, seen_run)
            report.deleted = len(self.store.delete_unseen(connector.name, seen_run))

        return self._run(report, body)

    def _permissions(self, connector: Connector, report: SyncReport,
                     seen_run: str | None = None) -> None:
        self._identities(connector, report)
        listed: set[str] = set()
        for page in connector.permissions(None):
            for failure in page.failures:
                report.fail(failure)
            listed.update(doc_id for doc_id, _ in page.acls)
            states = self.store.document_states([doc_id for doc_id, _ in page.acls])
            confirmed = []
            with self.store.batch():
                for doc_id, acl in page.acls:
                    report.documents += 1
                    if not acl.readable_by_somebody:
                        report.readable_by_nobody += 1
                    state = states.get(doc_id)
                    if state is None:
                        continue  # not indexed yet: the next full sync brings its content
                    if state.acl_key != acl.key():
                        self.store.update_acl(doc_id, acl, seen_run)
                        report.acl_updated += 1
                    else:
                        confirmed.append(doc_id)
                self.store.mark_seen(confirmed, seen_run)
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

    def group_sync(self, connector: Connector) -> SyncReport:
        report = SyncReport(connector.name, "groups", uuid.uuid4().hex)
        return self._run(report, lambda: self._identities(connector, report))

    def _identities(self, connector: Connector, report: SyncReport) -> None:
        snapshot = connector.identities()
        for failure in snapshot.failures:
            report.fail(failure)
        if snapshot.failures:
            # A partial snapshot could drop a member of a *deny* group and widen access:
            # keep the previous memberships until the source is readable again.
            return
        self.store.replace_identities(connector.name, snapshot.memberships, snapshot.aliases)

    # -- bookkeeping -----------------------------------------------------------------------
    def _run(self, report: SyncReport, body: Callable[[], None]) -> SyncReport:
        log.info("sync.start", extra={"connector": report.connector, "mode": report.mode,
                                      "run_id": report.run_id, "resumed": report.resumed})
        try:
            body()
            report.status = "ok"
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
