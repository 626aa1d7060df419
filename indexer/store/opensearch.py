"""The production store: chunks, identities and sync state in OpenSearch (opensearch-py).

Indices (definitions committed in opensearch_mappings.json):
  <prefix>-chunks      alias of <prefix>-chunks-v<n>; one record per chunk (kind "chunk": text
                       for BM25, `embedding` for k-NN, ACL fields) and one per document (kind
                       "document": hash, ACL key, seen run, chunk ordinals; no text, no vector,
                       so it can never be a search hit).
  <prefix>-identities  group memberships and address aliases, per source  } opensearch_
  <prefix>-state       sync checkpoints and reports, and `identity_version` } identities.py

Vectors use the Lucene HNSW engine: its k-NN query applies the `filter` while it walks the graph
and falls back to an exact scan when the filter admits few documents, so a person who may read
1% of the corpus still gets the k best chunks they may read (efficient filtering). Faiss gained
the same only in 2.9 and keeps its graphs in native memory sized by hand; Lucene's filtered k-NN
(2.4+) runs on any current OpenSearch, Amazon OpenSearch Service included, from the page cache.

Hybrid search is two queries, BM25 and k-NN, each carrying the ACL filter, fused client-side by
`retriever.hybrid.fuse`: the same fusion code and weights as the SQLite store and as measured in
bench/quality, and no dependency on the neural-search plugin's normalization search pipeline.

Writes are buffered per thread and sent with `_bulk` (batches of `max_actions`); a document's
chunk actions go first and its record last, only if every chunk action succeeded. A document
whose write fails for good is removed (fail closed) and named in a StoreError. No refresh per
document: the outermost `batch()` ends with one refresh, so a sync page becomes searchable when
the page ends; reads by id (`_mget`, `_doc`) are real-time and see buffered-then-sent writes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from core.acl import Acl, AclFilter
from core.errors import ConfigError, IndexMissing, StoreError
from core.models import Alias, Chunk, Document, Membership
from core.settings import StoreSettings
from indexer.store.base import (
    ChunkHit,
    ConnectorStats,
    DocState,
    StoredDocument,
    acl_key_of,
    connector_of,
    stored_acl,
    stored_acl_key,
)
from indexer.store.opensearch_client import (
    BLOCKED,
    BulkAction,
    Cluster,
    make_client,
    missing_index_in,
    missing_message,
)
from indexer.store.opensearch_identities import CHECKPOINT_SUFFIX, IdentityIndex, StateIndex
from indexer.store.opensearch_query import (
    acl_fields,
    ceiling,
    ceiling_searches,
    chunk_doc_id,
    chunk_id,
    chunks_index_body,
    cosine_from_score,
    dense_body,
    gate_fields,
    index_definition,
    lexical_body,
    query_text,
    record_doc_id,
    too_many_gates,
    vector_json,
)

log = logging.getLogger("clearance.store.opensearch")

PAGE = 1000  # ids per terms query
MAX_WINDOW = 10_000  # index.max_result_window
REINDEX_TIMEOUT = 6 * 3600.0
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VERSION = re.compile(r"-v(\d+)$")


@dataclass(frozen=True)
class ReindexResult:
    old_index: str
    new_index: str
    records: int  # index records copied: chunks plus one record per document
    dimension: int

    def to_json(self) -> dict[str, Any]:
        return {"old_index": self.old_index, "new_index": self.new_index,
                "records": self.records, "dimension": self.dimension}


@dataclass
class _Batch:
    """One thread's open batch: depth, and the actions not sent yet."""

    depth: int = 0
    chunk_actions: list[BulkAction] = field(default_factory=list)
    record_actions: list[BulkAction] = field(default_factory=list)
    docs: set[str] = field(default_factory=set)
    sent: bool = False

    def take(self) -> tuple[list[BulkAction], list[BulkAction]]:
        taken = (self.chunk_actions, self.record_actions)
        self.chunk_actions, self.record_actions, self.docs = [], [], set()
        return taken

    def __len__(self) -> int:
        return len(self.chunk_actions) + len(self.record_actions)


def open_store(settings: StoreSettings, environ: Mapping[str, str], dimension: int, *,
               create: bool = True) -> OpenSearchStore:
    """The store for `[store] kind = "opensearch"`. Write commands (`sync`, `reindex`) create
    missing indices; read commands pass `create=False` and create nothing: a missing index is
    reported (and fails closed), never recreated empty behind the reader's back."""
    return OpenSearchStore.open(make_client(settings, environ), settings.index_prefix, dimension,
                                create=create)


def reindex(store: object, dimension: int | None = None) -> ReindexResult:
    """`clearance reindex`: rebuild the chunks index from the committed mapping, swap the alias."""
    if not isinstance(store, OpenSearchStore):
        raise ConfigError('reindex needs [store] kind = "opensearch" '
                          "(the SQLite store has no index versions)")
    return store.reindex(dimension)


class OpenSearchStore:
    """Chunk, identity and state store in OpenSearch; same protocols as SqliteStore."""

    def __init__(self, cluster: Cluster, prefix: str, *, clock: Callable[[], float] = time.time,
                 max_actions: int = 500) -> None:
        if not _PREFIX.match(prefix):
            raise ConfigError(f"[store] index_prefix {prefix!r}: use lower-case letters, digits, "
                              "'.', '_' or '-'")
        self.cluster = cluster
        self.client: OpenSearch = cluster.client
        self.chunks = f"{prefix}-chunks"
        self.identities = f"{prefix}-identities"
        self.state = f"{prefix}-state"
        self.dimension = 0
        self.clock = clock
        self.max_actions = max_actions
        self._local = threading.local()
        self.writer = False  # opened by a write command: may (re)create its indices
        self._state = StateIndex(cluster, self.state)
        self._identities = IdentityIndex(cluster, self.identities, self._state)

    @classmethod
    def open(cls, client: OpenSearch, prefix: str, dimension: int, *, create: bool = True,
             **options: Any) -> OpenSearchStore:
        store = cls(Cluster(client), prefix, **options)
        if create:
            store.writer = True
            store.create_indices(dimension)
        else:
            store.attach()
        return store

    def attach(self) -> None:
        """Read-only open: learn the index's dimension if it exists; create nothing. A plain
        index in the alias's place is refused at once: its dynamic mapping makes ACL fields
        analysed text, on which a deny no longer matches."""
        if not self._exists_alias():
            self._refuse_a_plain_index()
        try:
            self.dimension = self._current_dimension()
        except IndexMissing:
            self.dimension = 0  # reads fail closed on the missing index; `status` says so

    def close(self) -> None:
        self.client.close()

    # -- indices ---------------------------------------------------------------------------
    def create_indices(self, dimension: int) -> None:
        """Create what is missing: `<alias>-v1` (with the alias), state, identities.

        A new chunks index next to an older state index (cluster partly lost, index deleted)
        discards the sync checkpoints: they point past pages whose documents are gone, and a
        resumed sync would never index them again. A new identities index next to indexed
        documents is marked pending for their connectors, so that searches fail closed until
        each of them has written its group snapshot again (a deny group must never be empty
        just because its index was lost).
        """
        new_chunks = not self._exists_alias()
        if new_chunks:
            self._refuse_a_plain_index()
            self._create(f"{self.chunks}-v1", chunks_index_body(dimension, self.chunks))
            if not self._exists_alias():
                raise StoreError(f"{self.chunks}-v1 exists but the alias {self.chunks} does not "
                                 "point at it; add the alias or delete the index")
        if not self._exists(self.state):
            self._create(self.state, index_definition("state"))
        elif new_chunks:
            self._state.discard_checkpoints()
        if not self._exists(self.identities):
            if not new_chunks:
                self._identities.mark_pending(self._indexed_connectors())
            self._create(self.identities, index_definition("identities"))
        self.dimension = self._current_dimension()

    def _refuse_a_plain_index(self) -> None:
        """A concrete index named like the alias (implicitly created by a write of an older
        version, dynamically mapped) blocks the alias: say what to do, delete nothing."""
        if self._exists(self.chunks):
            raise StoreError(self._plain_index_message())

    def _plain_index_message(self) -> str:
        return (f"{self.chunks} is a plain index, not the alias of {self.chunks}-v<n> (created "
                "implicitly, with a dynamic mapping, after the cluster lost its index): delete "
                f"it (DELETE /{self.chunks}) and run `clearance sync`")

    def _rebuild_if_lost(self) -> None:
        """A long-lived writer (a worker process) that met a missing index rebuilds it when its
        *next* sync starts, not in the failing one: a sync of another connector running
        meanwhile then fails on the missing index instead of half-filling a fresh one."""
        if self.writer and self.cluster.lost:
            self.cluster.lost = False
            self.create_indices(self.dimension)

    def _exists_alias(self) -> bool:
        return bool(self._call("alias lookup", lambda: self.client.indices.exists_alias(
            name=self.chunks)))

    def _exists(self, index: str) -> bool:
        return bool(self._call("index lookup", partial(self.client.indices.exists, index=index)))

    def _indexed_connectors(self) -> list[str]:
        body = {"size": 0, "query": {"term": {"kind": "document"}},
                "aggs": {"connectors": {"terms": {"field": "connector", "size": 10_000}}}}
        found = self._call("connector lookup",
                           lambda: self.client.search(index=self.chunks, body=body))
        return sorted(str(b["key"]) for b in found["aggregations"]["connectors"]["buckets"])

    def problems(self) -> list[str]:
        """What makes the store unfit to answer or to sync, one line each (for `status`)."""
        found: list[str] = []
        if not self._exists_alias():
            found.append(self._plain_index_message() if self._exists(self.chunks)
                         else missing_message(self.chunks))
        else:
            old = self.current_index()
            if self._write_blocked(old):
                found.append(f"a reindex was interrupted: {old} is write-blocked; run "
                             "`clearance reindex` again")
        if not self._exists(self.identities):
            found.append(missing_message(self.identities))
        else:
            pending = self._identities.pending()
            if pending:
                found.append(self._identities.pending_message(pending))
        return found

    def current_index(self) -> str:
        found = self._call("alias lookup", lambda: self.client.indices.get_alias(name=self.chunks))
        if len(found) != 1:
            raise StoreError(f"alias {self.chunks} points at {sorted(found)}; expected one index")
        return str(next(iter(found)))

    def _current_dimension(self) -> int:
        mappings = self._call("mapping lookup",
                              lambda: self.client.indices.get_mapping(index=self.chunks))
        for definition in mappings.values():
            embedding = definition["mappings"].get("properties", {}).get("embedding", {})
            if "dimension" not in embedding:
                raise StoreError(self._plain_index_message())
            return int(embedding["dimension"])
        raise StoreError(f"no index behind {self.chunks}")

    def _create(self, index: str, body: dict[str, Any]) -> None:
        def create() -> None:
            try:
                self.client.indices.create(index=index, body=body)
            except RequestError as exc:  # another worker created it first
                if exc.error != "resource_already_exists_exception":
                    raise

        self._call(f"create index {index}", create)

    def _call(self, what: str, fn: Callable[[], Any], *, retry: bool = True) -> Any:
        return self.cluster.call(what, fn, retry=retry)

    def _refresh(self, index: str | None = None) -> None:
        target = index or self.chunks
        self._call("refresh", lambda: self.client.indices.refresh(index=target))

    # -- batches -----------------------------------------------------------------------------
    def _batch_state(self) -> _Batch:
        state: _Batch | None = getattr(self._local, "batch", None)
        if state is None:
            state = self._local.batch = _Batch()
        return state

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Buffer writes; at the outermost exit send them and refresh once."""
        state = self._batch_state()
        state.depth += 1
        try:
            yield
        except BaseException:
            state.depth -= 1
            if state.depth == 0:
                state.take()  # unsent writes are dropped, as a rollback would
                self._end(state, quiet=True)
            raise
        state.depth -= 1
        if state.depth == 0:
            try:
                self._flush(state)
            finally:
                self._end(state, quiet=False)

    def _end(self, state: _Batch, *, quiet: bool) -> None:
        """One refresh for everything the batch sent (none if it sent nothing)."""
        if not state.sent:
            return
        state.sent = False
        try:
            self._refresh()
        except StoreError as exc:
            if not quiet:
                raise
            log.warning("store.refresh_failed", extra={"error": str(exc)})

    def _queue(self, doc_id: str, chunk_actions: list[BulkAction],
               record_actions: list[BulkAction]) -> None:
        state = self._batch_state()
        state.chunk_actions.extend(chunk_actions)
        state.record_actions.extend(record_actions)
        state.docs.add(doc_id)
        if len(state) >= self.max_actions:
            self._flush(state)

    def _flush_for(self, doc_ids: Iterable[str]) -> None:
        """Send buffered writes first if they touch documents about to be read."""
        state = self._batch_state()
        if state.docs and not state.docs.isdisjoint(doc_ids):
            self._flush(state)

    def _flush(self, state: _Batch) -> None:
        chunk_actions, record_actions = state.take()
        if not chunk_actions and not record_actions:
            return
        state.sent = True
        failed = self._send(chunk_actions)
        failed.update(self._send([a for a in record_actions if a.doc_id not in failed]))
        if failed:
            self._quarantine(failed)

    def _send(self, actions: Sequence[BulkAction]) -> dict[str, str]:
        failed = self.cluster.send(actions, self.max_actions)
        blocked = {d for d, why in failed.items() if BLOCKED in why}
        acl_updates = {a.doc_id for a in actions if a.doc_id in blocked and a.op == "update"}
        if not acl_updates:
            return failed
        # A revocation must not wait for someone to rerun a killed reindex. No reindex is
        # running: it holds every connector's lock, and this write runs under one; and if one
        # were, it refuses to swap once the block is gone (see reindex).
        self._lift_write_block()
        again = [a for a in actions if a.doc_id in blocked]
        rest = {d: why for d, why in failed.items() if d not in blocked}
        return {**rest, **self.cluster.send(again, self.max_actions)}

    def _lift_write_block(self) -> None:
        index = self.current_index()
        log.warning("store.write_block_lifted", extra={
            "index": index, "why": "ACL updates met the write block of an interrupted reindex; "
                                   "run `clearance reindex` again"})
        self._set_write_block(index, False)

    def _quarantine(self, failed: dict[str, str]) -> None:
        """Remove documents whose write failed part-way (their chunks may mix old and new ACLs),
        then name every failed document. A write-blocked index wrote nothing: nothing to undo."""
        ids = sorted(failed)
        partial_writes = [d for d in ids if BLOCKED not in failed[d]]
        outcome = ""
        if partial_writes:
            try:
                self._refresh()
                self._delete_by_doc_ids(partial_writes)
                outcome = "; removed from the index until the next sync"
            except StoreError as exc:
                outcome = f"; and could not be removed either ({exc})"
        shown = "; ".join(f"{d} ({failed[d]})" for d in ids[:10])
        more = f"; and {len(ids) - 10} more" if len(ids) > 10 else ""
        raise StoreError(f"OpenSearch could not write {len(ids)} document(s): {shown}{more}"
                         f"{outcome}")

    # -- writes ------------------------------------------------------------------------------
    def _write(self, op: str, id: str, doc_id: str, source: dict[str, Any] | None = None, *,
               missing_ok: bool = False) -> BulkAction:
        """A bulk item against the chunks alias, never creating an index (require_alias)."""
        return BulkAction(op, self.chunks, id, doc_id, source, missing_ok, require_alias=True)

    def document_states(self, doc_ids: Sequence[str]) -> dict[str, DocState]:
        self._rebuild_if_lost()  # a permission pass starts here (or with its identities)
        records = self._records(doc_ids, ["content_hash", "acl_key", "embedder"])
        return {d: DocState(r["content_hash"], acl_key_of(d, r["acl_key"]), r["embedder"])
                for d, r in records.items()}

    def _records(self, doc_ids: Sequence[str],
                 fields: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Document records by id, read in real time (no refresh needed)."""
        self._flush_for(doc_ids)
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(doc_ids), PAGE):
            part = list(doc_ids[start:start + PAGE])
            params = {"_source_includes": ["doc_id", *fields]} if fields else {}
            found = self._call("document lookup", partial(
                self.client.mget, index=self.chunks,
                body={"ids": [record_doc_id(d) for d in part]}, **params))
            for item in found.get("docs", []):
                gone = missing_index_in(item)
                if gone is not None:  # not "not indexed": the whole index is gone
                    raise self.cluster.missing(gone)
                if item.get("found"):
                    out[item["_source"]["doc_id"]] = item["_source"]
        return out

    def upsert(self, doc: Document, chunks: Sequence[Chunk],
               vectors: npt.NDArray[np.float32], embedder: str, run_id: str) -> None:
        if len(chunks) != len(vectors):
            raise StoreError(f"{doc.doc_id}: {len(chunks)} chunks but {len(vectors)} vectors")
        for vector in vectors:
            if len(vector) != self.dimension:
                raise StoreError(f"{doc.doc_id}: {len(vector)}-d vectors, but {self.chunks} holds "
                                 f"{self.dimension}-d ones; run `clearance reindex` with the new "
                                 "dimension, then a full sync")
        if too_many_gates(doc.acl):
            log.warning("store.acl_too_many_gates", extra={
                "doc": doc.doc_id, "gates": len(doc.acl.gates), "limit": len(gate_fields())})
        with self.batch():
            old = self._records([doc.doc_id], ["document"]).get(doc.doc_id)
            old_ordinals = set(old["document"]["ordinals"]) if old else set()
            acl = acl_fields(doc.acl, doc.connector)
            writes = [self._write("index", chunk_doc_id(doc.doc_id, c.ordinal), doc.doc_id,
                                  self._chunk_source(doc, c, v, embedder, acl))
                      for c, v in zip(chunks, vectors, strict=True)]
            stale = sorted(old_ordinals - {c.ordinal for c in chunks})
            writes += [self._write("delete", chunk_doc_id(doc.doc_id, o), doc.doc_id)
                       for o in stale]
            record = self._write("index", record_doc_id(doc.doc_id), doc.doc_id,
                                 self._record_source(doc, chunks, embedder, run_id, acl))
            self._queue(doc.doc_id, writes, [record])

    def _chunk_source(self, doc: Document, chunk: Chunk, vector: npt.NDArray[np.float32],
                      embedder: str, acl: dict[str, Any]) -> dict[str, Any]:
        source: dict[str, Any] = {
            "kind": "chunk", "chunk_id": chunk_id(doc.doc_id, chunk.ordinal),
            "doc_id": doc.doc_id, "connector": doc.connector, "ordinal": chunk.ordinal,
            "title": doc.title, "headings": list(chunk.headings), "body": chunk.text,
            "url": doc.url, "embedder": embedder, **acl,
        }
        if np.any(vector):  # cosine of a zero vector is undefined; Lucene rejects it
            source["embedding"] = vector_json(vector)
        return source

    def _record_source(self, doc: Document, chunks: Sequence[Chunk], embedder: str,
                       run_id: str, acl: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "document", "doc_id": doc.doc_id, "connector": doc.connector,
            "content_hash": doc.content_hash, "acl_key": stored_acl_key(doc.connector, doc.acl),
            "embedder": embedder,
            "seen_run": run_id, "acl_confirmed_at": self.clock(), "chunks": len(chunks),
            "document": {"title": doc.title, "url": doc.url,
                         "updated": doc.updated.isoformat() if doc.updated else None,
                         "ordinals": [c.ordinal for c in chunks]},
            **acl,
        }

    def update_acl(self, doc_id: str, acl: Acl, run_id: str | None) -> bool:
        """Partial updates of the ACL fields of every chunk, then of the record (no re-embed)."""
        with self.batch():
            old = self._records([doc_id], ["document"]).get(doc_id)
            if old is None:
                return False
            fields = acl_fields(acl, connector_of(doc_id))
            writes = [self._write("update", chunk_doc_id(doc_id, o), doc_id, fields)
                      for o in old["document"]["ordinals"]]
            record: dict[str, Any] = {**fields,
                                      "acl_key": stored_acl_key(connector_of(doc_id), acl),
                                      "acl_confirmed_at": self.clock()}
            if run_id is not None:
                record["seen_run"] = run_id
            self._queue(doc_id, writes,
                        [self._write("update", record_doc_id(doc_id), doc_id, record)])
            return True

    def mark_seen(self, doc_ids: Sequence[str], run_id: str | None) -> None:
        seen: dict[str, Any] = {"acl_confirmed_at": self.clock()}
        if run_id is not None:
            seen["seen_run"] = run_id
        with self.batch():
            for doc_id in doc_ids:
                self._queue(doc_id, [], [self._write("update", record_doc_id(doc_id), doc_id,
                                                     seen, missing_ok=True)])

    def delete_unseen(self, connector: str, run_id: str) -> list[str]:
        with self.batch():
            self._flush(self._batch_state())
            self._refresh()
            query = {"bool": {"filter": [{"term": {"kind": "document"}},
                                         {"term": {"connector": connector}}],
                              "must_not": [{"term": {"seen_run": run_id}}]}}
            gone = [h["_source"]["doc_id"] for h in self.cluster.scan(
                self.chunks, query, [{"doc_id": "asc"}], ["doc_id"])]
            self.delete(gone)
        return gone

    def doc_ids(self, connector: str) -> list[str]:
        with self.batch():
            self._flush(self._batch_state())
            self._refresh()
            query = {"bool": {"filter": [{"term": {"kind": "document"}},
                                         {"term": {"connector": connector}}]}}
            return [h["_source"]["doc_id"] for h in self.cluster.scan(
                self.chunks, query, [{"doc_id": "asc"}], ["doc_id"])]

    def connector_names(self) -> list[str]:
        """Connector names of the document records (finds connectors no longer configured)."""
        with self.batch():
            self._flush(self._batch_state())
            self._refresh()
            body = {"size": 0, "query": {"term": {"kind": "document"}},
                    "aggs": {"connectors": {"terms": {"field": "connector", "size": 10000}}}}
            found = self._call("connector lookup",
                               lambda: self.client.search(index=self.chunks, body=body))
        return sorted(str(b["key"]) for b in found["aggregations"]["connectors"]["buckets"])

    def delete(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        with self.batch():
            self._flush_for(doc_ids)
            self._refresh()  # delete_by_query sees refreshed documents only
            self._delete_by_doc_ids(list(doc_ids))

    def _delete_by_doc_ids(self, doc_ids: Sequence[str]) -> None:
        """Every record of these documents, chunks and orphans included."""
        for start in range(0, len(doc_ids), PAGE):
            body = {"query": {"terms": {"doc_id": sorted(doc_ids[start:start + PAGE])}}}
            result = self._call("delete", partial(
                self.client.delete_by_query, index=self.chunks, body=body, refresh=True,
                conflicts="proceed"))
            if result.get("failures") or result.get("version_conflicts"):
                raise StoreError(f"OpenSearch delete left documents behind: "
                                 f"{result.get('failures') or 'version conflicts'}")

    # -- queries -----------------------------------------------------------------------------
    def lexical(self, query: str, acl: AclFilter, limit: int) -> list[ChunkHit]:
        text = query_text(query)
        if text is None or limit <= 0:
            return []
        body = lexical_body(text, acl, min(limit, MAX_WINDOW))
        found = self._call("lexical search",
                           lambda: self.client.search(index=self.chunks, body=body))
        return [self._hit(h, float(h["_score"])) for h in found["hits"]["hits"]]

    def lexical_ceiling(self, query: str) -> float | None:
        text = query_text(query)
        if text is None:
            return 0.0
        lines = ceiling_searches(text)
        found = self._call("lexical statistics",
                           lambda: self.client.msearch(index=self.chunks, body=lines))
        return ceiling(text, found.get("responses") or [])

    def dense(self, vector: npt.NDArray[np.float32], acl: AclFilter,
              limit: int) -> list[ChunkHit]:
        vector = np.asarray(vector, dtype=np.float32)
        # Only comparable vectors are searched (as in SQLite); a zero vector has no cosine.
        if limit <= 0 or len(vector) != self.dimension or not np.any(vector):
            return []
        body = dense_body(vector, acl, min(limit, MAX_WINDOW))
        found = self._call("k-NN search",
                           lambda: self.client.search(index=self.chunks, body=body))
        return [self._hit(h, cosine_from_score(float(h["_score"])))
                for h in found["hits"]["hits"]]

    @staticmethod
    def _hit(hit: dict[str, Any], score: float) -> ChunkHit:
        s = hit["_source"]
        return ChunkHit(int(s["chunk_id"]), s["doc_id"], int(s["ordinal"]), score,
                        s.get("body", ""), s.get("title", ""), s.get("url", ""),
                        tuple(s.get("headings") or ()))

    def document(self, doc_id: str) -> StoredDocument | None:
        r = self._records([doc_id], []).get(doc_id)
        if r is None:
            return None
        meta = r["document"]
        return StoredDocument(r["doc_id"], r["connector"], meta["title"], meta["url"],
                              r["content_hash"], stored_acl(r["doc_id"], r["acl_key"]),
                              r["embedder"], int(r["chunks"]), meta.get("updated"),
                              float(r["acl_confirmed_at"]))

    def stats(self, connector: str) -> ConnectorStats:
        body = {
            "size": 0, "track_total_hits": True,
            "query": {"bool": {"filter": [{"term": {"kind": "document"}},
                                          {"term": {"connector": connector}}]}},
            "aggs": {"chunks": {"sum": {"field": "chunks"}},
                     "nobody": {"filter": {"term": {"acl_nobody": True}}},
                     "oldest": {"min": {"field": "acl_confirmed_at"}}},
        }
        found = self._call("stats", lambda: self.client.search(index=self.chunks, body=body))
        aggs = found["aggregations"]
        oldest = aggs["oldest"]["value"]
        return ConnectorStats(int(found["hits"]["total"]["value"]), int(aggs["chunks"]["value"]),
                              int(aggs["nobody"]["doc_count"]),
                              float(oldest) if oldest is not None else None)

    def snapshot(self) -> dict[str, Any]:
        """Everything indexed, per document, in a deterministic order (chunk ACL fields too)."""
        self._refresh()
        docs: dict[str, Any] = {}
        for h in self.cluster.scan(self.chunks, {"term": {"kind": "document"}}, [{"doc_id": "asc"}],
                            True):
            r = h["_source"]
            docs[r["doc_id"]] = {"title": r["document"]["title"], "url": r["document"]["url"],
                                 "hash": r["content_hash"],
                                 "acl": acl_key_of(r["doc_id"], r["acl_key"]),
                                 "embedder": r["embedder"], "chunks": []}
        count = 0
        gates = [*gate_fields(), "acl_deny", "acl_nobody"]
        for h in self.cluster.scan(self.chunks, {"term": {"kind": "chunk"}},
                            [{"doc_id": "asc"}, {"ordinal": "asc"}], True):
            c = h["_source"]
            count += 1
            entry = docs.setdefault(c["doc_id"], {"orphan": True, "chunks": []})
            entry["chunks"].append({
                "ordinal": c["ordinal"], "headings": "\x1f".join(c.get("headings") or ()),
                "text": c["body"], "acl_fields": {g: c.get(g) for g in gates},
                "vector": [round(float(x), 5) for x in c.get("embedding") or ()]})
        return {"documents": docs, "chunk_records": count}

    def embedder_names(self) -> list[str]:
        """Embedders the indexed documents were embedded with, most used first."""
        body = {"size": 0, "query": {"term": {"kind": "document"}},
                "aggs": {"embedders": {"terms": {"field": "embedder", "size": 100}}}}
        found = self._call("embedder lookup",
                           lambda: self.client.search(index=self.chunks, body=body))
        buckets = found["aggregations"]["embedders"]["buckets"]
        ranked = sorted(buckets, key=lambda b: (-int(b["doc_count"]), str(b["key"])))
        return [str(b["key"]) for b in ranked]

    # -- reindex -----------------------------------------------------------------------------
    def reindex(self, dimension: int | None = None) -> ReindexResult:
        """Copy the chunks index into `-v<n+1>` built from the committed mapping, then move the
        alias in one `_aliases` call (search is never empty) and delete the old index.

        The old index is write-blocked while it is copied, so a sync running meanwhile fails
        (and retries on its schedule) instead of writing into an index about to be dropped. A
        new `dimension` copies everything but the vectors: the next full sync re-embeds.
        """
        old = self.current_index()
        match = _VERSION.search(old)
        new = f"{self.chunks}-v{int(match.group(1)) + 1 if match else 2}"
        dim = dimension or self.dimension
        if self._call("index lookup", lambda: self.client.indices.exists(index=new)):
            log.warning("store.reindex_leftover", extra={"index": new})
            self._call("delete index", lambda: self.client.indices.delete(index=new))
        self._create(new, chunks_index_body(dim, None))
        self._set_write_block(old, True)
        try:
            # With refresh_interval 30 s, a page sent just before the block is not yet
            # searchable: without this refresh it would be missing from both the copy and the
            # count, then dropped with the old index (an ACL update included: a revocation
            # would revert).
            self._refresh(old)
            copied = self._copy(old, new, vectors=dim == self.dimension)
            if not self._write_blocked(old):
                # A permission pass lifted it to apply revocations (see _send): what it wrote
                # may be missing from the copy. Keep the old index; the next run starts over.
                raise StoreError(f"the write block of {old} was lifted during the copy (a "
                                 "permission sync applied ACL updates); the alias still points "
                                 "at it: run `clearance reindex` again")
            self._call("swap alias", lambda: self.client.indices.update_aliases(body={
                "actions": [{"remove": {"index": old, "alias": self.chunks}},
                            {"add": {"index": new, "alias": self.chunks}}]}))
        except BaseException:
            self._undo_reindex(old, new)
            raise
        try:
            self._call("delete index", lambda: self.client.indices.delete(index=old))
        except StoreError as exc:  # no longer behind the alias: harmless, but say so
            log.warning("store.reindex_old_left", extra={"index": old, "error": str(exc)})
        self.dimension = dim
        return ReindexResult(old, new, copied, dim)

    def _copy(self, old: str, new: str, *, vectors: bool) -> int:
        source: dict[str, Any] = {"index": old}
        if not vectors:
            source["_source"] = {"excludes": ["embedding"]}
        result = self._call("reindex", lambda: self.client.reindex(
            body={"source": source, "dest": {"index": new}}, refresh=True,
            wait_for_completion=True, request_timeout=REINDEX_TIMEOUT), retry=False)
        if result.get("failures"):
            raise StoreError(f"reindex {old} -> {new} failed: {result['failures'][:3]}")
        before, after = (self._call("count", partial(self.client.count, index=i))["count"]
                         for i in (old, new))
        if before != after:
            raise StoreError(f"reindex copied {after} of {before} records from {old}; "
                             "the alias still points at the old index")
        return int(after)

    def _undo_reindex(self, old: str, new: str) -> None:
        """Best effort after a failed copy or swap: the original error is what gets raised."""
        try:
            self._set_write_block(old, False)
            self._call("delete index", lambda: self.client.indices.delete(index=new))
        except StoreError as exc:
            log.error("store.reindex_undo_failed", extra={"index": new, "error": str(exc)})

    def _write_blocked(self, index: str) -> bool:
        found: dict[str, Any] = self._call("index settings", lambda: (
            self.client.indices.get_settings(index=index)))
        first: dict[str, Any] = next(iter(found.values()), {})
        settings: dict[str, Any] = first.get("settings", {})
        blocks = settings.get("index", {}).get("blocks", {})
        return str(blocks.get("write", "false")).lower() == "true"

    def _set_write_block(self, index: str, blocked: bool) -> None:
        self._call("index settings", lambda: self.client.indices.put_settings(
            index=index, body={"index": {"blocks": {"write": blocked}}}))

    # -- identities and sync state (their own indices) --------------------------------------
    def replace_identities(self, source: str, memberships: Iterable[Membership],
                           aliases: Iterable[Alias]) -> None:
        self._rebuild_if_lost()
        self._identities.replace(source, memberships, aliases)

    def groups_of(self, members: Iterable[str], source: str | None = None) -> list[Membership]:
        return self._identities.groups_of(members, source)

    def aliases_of(self, email: str, source: str | None = None) -> list[Alias]:
        return self._identities.aliases_of(email, source)

    def identity_sources(self) -> list[str]:
        return self._identities.sources()

    def identity_version(self) -> int:
        return self._identities.version()

    def get_state(self, key: str) -> Any | None:
        if key.endswith(CHECKPOINT_SUFFIX):  # a content sync starts by reading its checkpoint
            self._rebuild_if_lost()
        return self._state.get(key)

    def set_state(self, key: str, value: Any) -> None:
        self._state.set(key, value)

    def delete_state(self, key: str) -> None:
        self._state.delete(key)
