"""Golden request bodies of the OpenSearch store, captured at the transport.

A `opensearchpy.Connection` subclass stands in for the cluster: it records every request the
real client sends (method, path, query parameters, decoded body) and answers like a small
cluster would. Nothing of the store is mocked. The bodies are compared with JSON files under
tests/fixtures/opensearch/, so a change that drops or loosens the ACL filter, the mapping or a
bulk line fails here with a line diff. After an intended change, regenerate them with
`CLEARANCE_UPDATE_GOLDENS=1 pytest tests/unit/test_opensearch_golden.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
from opensearchpy import Connection, OpenSearch

from core.acl import Acl, AclFilter
from core.errors import StoreError
from core.models import Chunk, Section, make_document
from indexer.store.opensearch import OpenSearchStore, reindex
from indexer.store.opensearch_client import Backoff, Cluster
from indexer.store.opensearch_query import (
    acl_fields,
    chunk_doc_id,
    gate_fields,
    index_definition,
    record_doc_id,
)

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "opensearch"
NOW = 1767225600.0  # 2026-01-01T00:00:00Z
# Alice's principals for the "kb" connector's documents, and for a second connector's.
ALICE = AclFilter({"kb": {"user:alice@acme.com", "group:kb:eng", "domain:acme.com", "everyone"},
                   "wiki": {"user:alice@acme.com", "domain:acme.com", "everyone"}})


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    body: Any


@dataclass
class FakeCluster:
    """Answers like a one-node cluster that holds what the test seeds; records every request."""

    requests: list[Request] = field(default_factory=list)
    indices: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # _id -> _source
    hits: list[dict[str, Any]] = field(default_factory=list)
    # Scripted failures, consumed in order: (method, path regex, status, error type).
    errors: list[tuple[str, str, int, str]] = field(default_factory=list)
    # Per bulk request, {_id: (status, error type)} for items to fail.
    item_errors: list[dict[str, tuple[int, str]]] = field(default_factory=list)
    write_blocked: set[str] = field(default_factory=set)  # index.blocks.write per index
    on_reindex: Callable[[], None] = lambda: None  # what happens while _reindex copies

    def handle(self, method: str, path: str, params: dict[str, Any],
               body: Any) -> tuple[int, Any]:
        self.requests.append(Request(method, path, params, body))
        for i, (m, pattern, status, kind) in enumerate(self.errors):
            if m == method and re.fullmatch(pattern, path):
                del self.errors[i]
                return status, {"error": {"type": kind, "reason": f"scripted {kind}"},
                                "status": status}
        parts = [p for p in path.split("/") if p]
        if method == "HEAD":
            name = parts[-1]
            known = name in self.aliases if parts[0] == "_alias" else (
                name in self.indices or name in self.aliases)
            return (200 if known else 404), None
        if method == "PUT" and len(parts) == 1:
            self.indices[parts[0]] = body
            for alias in body.get("aliases", {}):
                self.aliases[alias] = parts[0]
            return 200, {"acknowledged": True, "index": parts[0]}
        if method == "DELETE" and len(parts) == 1:
            self.indices.pop(parts[0], None)
            return 200, {"acknowledged": True}
        if parts == ["_bulk"]:
            return 200, self._bulk(body)
        if parts == ["_aliases"]:
            for action in body["actions"]:
                (op, spec), = action.items()
                if op == "add":
                    self.aliases[spec["alias"]] = spec["index"]
            return 200, {"acknowledged": True}
        if parts[0] == "_alias":
            return 200, {self.aliases[parts[1]]: {"aliases": {parts[1]: {}}}}
        if parts[-1] == "_msearch":
            return 200, {"responses": [{"hits": {"total": {"value": 3, "relation": "eq"},
                                                 "hits": []}} for _ in body[1::2]]}
        if parts == ["_reindex"]:
            self.on_reindex()
            return 200, {"total": 3, "created": 3, "failures": []}
        return self._index_api(method, parts, body)

    def _index_api(self, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
        index, api = parts[0], parts[1]
        concrete = self.aliases.get(index, index)
        if api == "_settings":
            if method == "PUT":
                blocked = body["index"]["blocks"]["write"]
                (self.write_blocked.add if blocked else self.write_blocked.discard)(concrete)
                return 200, {"acknowledged": True}
            write = "true" if concrete in self.write_blocked else "false"
            return 200, {concrete: {"settings": {"index": {"blocks": {"write": write}}}}}
        if api == "_mapping":
            return 200, {concrete: {"mappings": self.indices[concrete]["mappings"]}}
        if api == "_mget":
            return 200, {"docs": [{"_id": i, "found": i in self.docs,
                                   **({"_source": self.docs[i]} if i in self.docs else {})}
                                  for i in body["ids"]]}
        if api == "_doc":
            if parts[2] in self.docs:
                return 200, {"_id": parts[2], "found": True, "_source": self.docs[parts[2]],
                             "_seq_no": 1, "_primary_term": 1}
            if method == "GET":
                return 404, {"_id": parts[2], "found": False}
            return 201, {"result": "created"}
        if api == "_search":
            return 200, {"hits": {"total": {"value": len(self.hits)}, "hits": self.hits}}
        if api == "_count":
            return 200, {"count": 3}
        if api == "_delete_by_query":
            return 200, {"deleted": 1, "failures": [], "version_conflicts": 0}
        return 200, {"acknowledged": True}

    def _bulk(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        failing = self.item_errors.pop(0) if self.item_errors else {}
        items = []
        i = 0
        while i < len(lines):
            (op, meta), = lines[i].items()
            i += 1 if op == "delete" else 2
            if meta["_id"] in failing:
                status, kind = failing[meta["_id"]]
                items.append({op: {"_id": meta["_id"], "status": status,
                                   "error": {"type": kind, "reason": f"scripted {kind}",
                                             "index": meta["_index"]}}})
            else:
                items.append({op: {"_id": meta["_id"], "status": 200, "result": "updated"}})
        return {"errors": bool(failing), "items": items}

    def bodies(self, method: str, pattern: str) -> list[Any]:
        return [r.body for r in self.requests
                if r.method == method and re.fullmatch(pattern, r.path)]

    def calls(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]


def connection_for(fake: FakeCluster) -> type[Connection]:
    class Recording(Connection):
        def perform_request(self, method: str, url: str, params: Any = None, body: Any = None,
                            timeout: Any = None, ignore: Any = (), headers: Any = None) -> Any:
            query = {k: v.decode() if isinstance(v, bytes) else v
                     for k, v in (params or {}).items()}
            status, payload = fake.handle(method, unquote(url), query, _decode(body))
            raw = json.dumps(payload) if payload is not None else ""
            if not 200 <= status < 300 and status not in ignore:
                self._raise_error(status, raw, "application/json")
            return status, {"content-type": "application/json"}, raw

    return Recording


def _decode(body: bytes | str | None) -> Any:
    if body is None:
        return None
    text = body.decode() if isinstance(body, bytes) else body
    lines = [line for line in text.split("\n") if line]
    if len(lines) > 1 or text.endswith("\n"):  # ndjson (_bulk)
        return [json.loads(line) for line in lines]
    return json.loads(text)


@pytest.fixture
def fake() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_store(fake: FakeCluster, sleeps: list[float]) -> Callable[[], OpenSearchStore]:
    def make() -> OpenSearchStore:
        client = OpenSearch(hosts=[{"host": "golden.invalid", "port": 9200}],
                            connection_class=connection_for(fake), max_retries=0)
        cluster = Cluster(client, Backoff(attempts=4, base=0.5, cap=2.0), sleeps.append)
        store = OpenSearchStore(cluster, "clearance", clock=lambda: NOW)
        store.create_indices(4)
        return store

    return make


@pytest.fixture
def store(make_store: Callable[[], OpenSearchStore], fake: FakeCluster) -> OpenSearchStore:
    made = make_store()
    fake.requests.clear()
    return made


def assert_golden(name: str, actual: Any) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(actual, indent=2, sort_keys=True) + "\n"
    if os.environ.get("CLEARANCE_UPDATE_GOLDENS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden {path}; run with CLEARANCE_UPDATE_GOLDENS=1 and review"
    assert text == path.read_text(), f"request body differs from {path}"


def leave_doc(acl: Acl) -> Any:
    return make_document("kb:handbook/leave.md", "Leave policy",
                         "https://kb.example/handbook/leave.md",
                         [Section("Parental leave lasts sixteen weeks.", ("Leave", "Parental")),
                          Section("Holidays accrue monthly.")], acl)


def seed_record(fake: FakeCluster, doc_id: str, ordinals: list[int]) -> None:
    fake.docs[record_doc_id(doc_id)] = {
        "kind": "document", "doc_id": doc_id, "connector": "kb", "content_hash": "old",
        "acl_key": Acl.single(["everyone"]).key(), "embedder": "hashing-4",
        "chunks": len(ordinals), "acl_confirmed_at": NOW - 60,
        "document": {"title": "Leave policy", "url": "u", "updated": None,
                     "ordinals": ordinals}}


# -- index definitions ------------------------------------------------------------------------
def test_index_creation_bodies(make_store: Callable[[], OpenSearchStore],
                               fake: FakeCluster) -> None:
    make_store()
    created = {r.path: r.body for r in fake.requests if r.method == "PUT"}
    # State first: a rebuilt identities index is marked pending there before it exists.
    assert list(created) == ["/clearance-chunks-v1", "/clearance-state", "/clearance-identities"]
    assert_golden("create_indices", created)
    # A second worker opening the same cluster creates nothing.
    fake.requests.clear()
    assert make_store().dimension == 4
    assert [r for r in fake.requests if r.method == "PUT"] == []


def test_the_committed_mapping_declares_numbered_gates_and_filtered_knn() -> None:
    props = index_definition("chunks")["mappings"]["properties"]
    gates = gate_fields()
    assert gates == tuple(f"acl_gate_{i}" for i in range(8))
    assert all(props[g] == {"type": "keyword"} for g in gates)
    assert props["embedding"]["method"]["engine"] == "lucene"  # filters inside the k-NN walk
    assert {props[f]["analyzer"] for f in ("title", "headings", "body")} == {"english"}
    assert index_definition("chunks")["mappings"]["dynamic"] == "strict"


# -- queries ---------------------------------------------------------------------------------
def test_knn_query_carries_the_acl_filter_inside_the_knn_clause(store: OpenSearchStore,
                                                                fake: FakeCluster) -> None:
    store.dense(np.array([0.5, -0.25, 0.75, 0.0], dtype=np.float32), ALICE, 10)
    (body,) = fake.bodies("POST", "/clearance-chunks/_search")
    assert "post_filter" not in body
    assert_golden("knn_query", body)


def test_bm25_query_carries_the_acl_filter_in_bool_filter(store: OpenSearchStore,
                                                          fake: FakeCluster) -> None:
    store.lexical("How long is parental leave?", ALICE, 25)
    (body,) = fake.bodies("POST", "/clearance-chunks/_search")
    assert "post_filter" not in body
    assert_golden("bm25_query", body)


def test_the_lexical_ceiling_counts_term_statistics_only(store: OpenSearchStore,
                                                         fake: FakeCluster) -> None:
    # Counts of chunks per field and per word: no hit, no text, the same for every caller.
    assert store.lexical_ceiling("How long is parental leave?") is not None
    (lines,) = fake.bodies("POST", "/clearance-chunks/_msearch")
    assert all(line == {} or line["size"] == 0 for line in lines)
    assert_golden("bm25_ceiling_msearch", lines)
    assert store.lexical_ceiling("?!") == 0.0 and len(fake.requests) == 1


def test_scores_come_back_as_cosine_and_hits_as_chunks(store: OpenSearchStore,
                                                       fake: FakeCluster) -> None:
    fake.hits = [{"_score": 0.9, "_source": {
        "chunk_id": 7, "doc_id": "kb:a", "ordinal": 2, "title": "A", "url": "u",
        "body": "text", "headings": ["H"]}}]
    (hit,) = store.dense(np.array([1, 0, 0, 0], dtype=np.float32), ALICE, 1)
    assert (hit.chunk_id, hit.doc_id, hit.ordinal, hit.text, hit.headings) == (
        7, "kb:a", 2, "text", ("H",))
    assert hit.score == pytest.approx(0.8)  # Lucene's (1 + cos) / 2 = 0.9


def test_a_question_without_words_or_a_zero_vector_sends_nothing(store: OpenSearchStore,
                                                                 fake: FakeCluster) -> None:
    assert store.lexical("?!", ALICE, 10) == []
    assert store.dense(np.zeros(4, dtype=np.float32), ALICE, 10) == []
    assert store.dense(np.ones(3, dtype=np.float32), ALICE, 10) == []  # another model's size
    assert fake.requests == []


# -- ACL fields ------------------------------------------------------------------------------
def test_unused_gates_hold_everyone_and_nobody_documents_hold_nothing() -> None:
    two = acl_fields(Acl.of([["group:kb:eng", "user:zed@acme.com"], ["group:kb:managers"]],
                            deny=["user:mallory@acme.com"]), "kb")
    # Every stored principal is scoped by the document's connector ("kb|..."), filler included.
    assert two["acl_gate_0"] == ["kb|group:kb:eng", "kb|user:zed@acme.com"]
    assert two["acl_gate_1"] == ["kb|group:kb:managers"]
    assert [two[f"acl_gate_{i}"] for i in range(2, 8)] == [["kb|everyone"]] * 6
    assert (two["acl_deny"], two["acl_nobody"]) == (["kb|user:mallory@acme.com"], False)
    other = acl_fields(Acl.single(["user:zed@acme.com"]), "wiki")
    assert other["acl_gate_0"] == ["wiki|user:zed@acme.com"]
    for nobody in (Acl(), Acl.of([["group:eng"], []]), Acl.single(["robot:x"]),
                   Acl.nobody("fetch failed"), Acl.of([[f"group:g{i}"] for i in range(9)])):
        fields = acl_fields(nobody, "kb")
        assert fields["acl_nobody"] is True
        assert all(fields[g] == [] for g in gate_fields()), nobody


# -- writes ----------------------------------------------------------------------------------
def test_upsert_bulk_lines_index_chunks_delete_stale_ones_then_the_record(
        store: OpenSearchStore, fake: FakeCluster) -> None:
    doc = leave_doc(Acl.of([["group:kb:eng", "user:zed@acme.com"], ["domain:acme.com"]],
                           deny=["user:mallory@acme.com"]))
    seed_record(fake, doc.doc_id, [0, 1, 2])  # the previous version had three chunks
    chunks = [Chunk(doc.doc_id, 0, doc.sections[0].text, doc.sections[0].headings),
              Chunk(doc.doc_id, 1, doc.sections[1].text)]
    vectors = np.array([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    store.upsert(doc, chunks, vectors, "hashing-4", "run-7")
    bulks = fake.bodies("POST", "/_bulk")
    assert len(bulks) == 2  # chunks first; the record only once they all succeeded
    assert_golden("bulk_upsert", bulks)
    assert fake.calls()[-1] == "POST /clearance-chunks/_refresh"


def test_acl_only_update_is_partial_updates_of_every_chunk_then_the_record(
        store: OpenSearchStore, fake: FakeCluster) -> None:
    doc_id = "kb:handbook/leave.md"
    seed_record(fake, doc_id, [0, 1])
    assert store.update_acl(doc_id, Acl.single(["group:kb:hr"]), None) is True
    bulks = fake.bodies("POST", "/_bulk")
    assert_golden("bulk_acl_update", bulks)
    # Every gate is rewritten, so a gate of the old ACL cannot survive the update.
    for line in bulks[0][1::2]:
        assert set(line["doc"]) == {*gate_fields(), "acl_deny", "acl_nobody"}


def test_mark_seen_and_delete_bodies(store: OpenSearchStore, fake: FakeCluster) -> None:
    store.mark_seen(["kb:a.md", "kb:b.md"], "run-8")
    store.delete(["kb:b.md", "kb:a.md"])
    assert_golden("mark_seen_and_delete", {
        "bulk": fake.bodies("POST", "/_bulk"),
        "delete_by_query": [(r.params, r.body) for r in fake.requests
                            if r.path.endswith("/_delete_by_query")]})
    # delete_by_query sees refreshed documents only: refresh comes first.
    assert fake.calls()[-2:] == ["POST /clearance-chunks/_refresh",
                                 "POST /clearance-chunks/_delete_by_query"]


def test_a_sync_page_is_sent_at_its_end_with_one_refresh(store: OpenSearchStore,
                                                 fake: FakeCluster) -> None:
    with store.batch():
        for i in range(5):
            doc = make_document(f"kb:{i}.md", f"Doc {i}", "u", [Section("text")],
                                Acl.single(["everyone"]))
            store.upsert(doc, [Chunk(doc.doc_id, 0, "text")],
                         np.ones((1, 4), dtype=np.float32), "hashing-4", "run-1")
            store.mark_seen([f"kb:old-{i}.md"], "run-1")
    calls = [c for c in fake.calls() if not c.endswith("/_mget")]
    assert calls == ["POST /_bulk", "POST /_bulk", "POST /clearance-chunks/_refresh"]


def test_batches_are_capped_at_max_actions(store: OpenSearchStore, fake: FakeCluster) -> None:
    store.max_actions = 4
    with store.batch():
        store.mark_seen([f"kb:{i}.md" for i in range(10)], "run-1")
    sizes = [len(b) // 2 for b in fake.bodies("POST", "/_bulk")]
    assert sizes == [4, 4, 2]


def test_every_write_against_the_chunks_alias_requires_the_alias(store: OpenSearchStore,
                                                                  fake: FakeCluster) -> None:
    doc = leave_doc(Acl.single(["everyone"]))
    seed_record(fake, doc.doc_id, [0, 1, 2])
    store.upsert(doc, [Chunk(doc.doc_id, 0, "x")], np.ones((1, 4), dtype=np.float32),
                 "hashing-4", "run-1")
    store.update_acl(doc.doc_id, Acl.single(["group:kb:hr"]), None)
    store.mark_seen([doc.doc_id], "run-1")
    heads = [line for body in fake.bodies("POST", "/_bulk") for line in body
             if set(line) <= {"index", "update", "delete"}]
    ops = {op for line in heads for op in line}
    assert ops == {"index", "update", "delete"}
    for line in heads:
        ((op, meta),) = line.items()
        # A delete never creates an index (and takes no require_alias); every other write would.
        assert meta.get("require_alias") is (None if op == "delete" else True), line


def test_a_bulk_into_a_missing_index_fails_with_one_line_and_removes_nothing(
        store: OpenSearchStore, fake: FakeCluster) -> None:
    from core.errors import IndexMissing

    fake.item_errors = [{record_doc_id("kb:a.md"): (404, "index_not_found_exception")}]
    with pytest.raises(IndexMissing) as failure:
        store.mark_seen(["kb:a.md"], "run-1")
    assert str(failure.value) == ("index clearance-chunks is missing (cluster restarted empty or "
                                  "index deleted): the next sync rebuilds it")
    assert not [r for r in fake.requests if r.path.endswith("/_delete_by_query")]


# -- retries and errors ----------------------------------------------------------------------
def test_throttled_items_are_retried_alone_with_back_off(store: OpenSearchStore,
                                                         fake: FakeCluster,
                                                         sleeps: list[float]) -> None:
    throttled = record_doc_id("kb:b.md")
    fake.item_errors = [{throttled: (429, "es_rejected_execution_exception")},
                        {throttled: (503, "unavailable_shards_exception")}]
    store.mark_seen(["kb:a.md", "kb:b.md"], "run-1")
    bulks = fake.bodies("POST", "/_bulk")
    assert [[line["update"]["_id"] for line in b[::2]] for b in bulks] == [
        [record_doc_id("kb:a.md"), throttled], [throttled], [throttled]]
    assert sleeps == [0.5, 1.0]


def test_a_throttled_cluster_is_retried_then_reported(store: OpenSearchStore,
                                                      fake: FakeCluster,
                                                      sleeps: list[float]) -> None:
    fake.errors = [("POST", "/_bulk", 429, "too_many_requests")] * 2
    store.mark_seen(["kb:a.md"], "run-1")
    assert sleeps == [0.5, 1.0] and len(fake.bodies("POST", "/_bulk")) == 3

    sleeps.clear()
    fake.errors = [("POST", "/clearance-chunks/_search", 503, "unavailable")] * 4
    with pytest.raises(StoreError, match=r"lexical search failed: 503"):
        store.lexical("leave", ALICE, 10)
    assert sleeps == [0.5, 1.0, 2.0]  # bounded: 4 attempts, capped at 2 s


def test_a_rejected_document_is_named_removed_and_its_record_not_written(
        store: OpenSearchStore, fake: FakeCluster) -> None:
    good = leave_doc(Acl.single(["everyone"]))
    bad = make_document("kb:bad.md", "Bad", "u", [Section("x")], Acl.single(["everyone"]))
    fake.item_errors = [{chunk_doc_id(bad.doc_id, 0): (400, "mapper_parsing_exception")}]
    with pytest.raises(StoreError) as failure, store.batch():
        for doc in (good, bad):
            store.upsert(doc, [Chunk(doc.doc_id, 0, "x")], np.ones((1, 4), dtype=np.float32),
                         "hashing-4", "run-1")
    assert str(failure.value) == (
        "OpenSearch could not write 1 document(s): kb:bad.md (mapper_parsing_exception: "
        "scripted mapper_parsing_exception); removed from the index until the next sync")
    record_lines = fake.bodies("POST", "/_bulk")[1]
    assert [line["index"]["_id"] for line in record_lines[::2]] == [record_doc_id(good.doc_id)]
    (cleanup,) = [r.body for r in fake.requests if r.path.endswith("/_delete_by_query")]
    assert cleanup == {"query": {"terms": {"doc_id": ["kb:bad.md"]}}}


def test_client_errors_become_store_errors(store: OpenSearchStore, fake: FakeCluster) -> None:
    fake.errors = [("GET", "/clearance-state/_doc/.*", 401, "security_exception")]
    with pytest.raises(StoreError, match="refused the credentials"):
        store.get_state("sync:kb:full:last")
    fake.errors = [("PUT", "/clearance-state/_doc/.*", 400, "mapper_parsing_exception")]
    with pytest.raises(StoreError, match="state write failed: 400"):
        store.set_state("k", 1)


# -- reindex ---------------------------------------------------------------------------------
def test_reindex_copies_blocks_writes_and_swaps_the_alias_in_one_call(
        store: OpenSearchStore, fake: FakeCluster) -> None:
    result = reindex(store)
    assert (result.old_index, result.new_index) == ("clearance-chunks-v1", "clearance-chunks-v2")
    sent = [{"request": f"{r.method} {r.path}", "params": r.params, "body": r.body}
            for r in fake.requests if r.method != "HEAD"]
    assert_golden("reindex_requests", sent)
    calls = fake.calls()
    swap = calls.index("POST /_aliases")
    assert calls.index("POST /_reindex") < swap < calls.index("DELETE /clearance-chunks-v1")
    # Block, then refresh: the last page sent before the block is in the copy and the count.
    block = calls.index("PUT /clearance-chunks-v1/_settings")
    refresh = calls.index("POST /clearance-chunks-v1/_refresh")
    count = calls.index("POST /clearance-chunks-v1/_count")
    assert block < refresh < calls.index("POST /_reindex") < count
    (aliases,) = fake.bodies("POST", "/_aliases")
    assert aliases == {"actions": [
        {"remove": {"index": "clearance-chunks-v1", "alias": "clearance-chunks"}},
        {"add": {"index": "clearance-chunks-v2", "alias": "clearance-chunks"}}]}


def test_a_failed_copy_leaves_the_alias_and_unblocks_writes(store: OpenSearchStore,
                                                            fake: FakeCluster) -> None:
    fake.errors = [("POST", "/_reindex", 500, "search_phase_execution_exception")]
    with pytest.raises(StoreError, match="reindex failed"):
        store.reindex()
    assert fake.aliases["clearance-chunks"] == "clearance-chunks-v1"
    assert "POST /_aliases" not in fake.calls()
    assert fake.calls()[-2:] == ["PUT /clearance-chunks-v1/_settings",
                                 "DELETE /clearance-chunks-v2"]
    assert fake.requests[-2].body == {"index": {"blocks": {"write": False}}}


def test_a_block_lifted_during_the_copy_keeps_the_alias_on_the_old_index(
        store: OpenSearchStore, fake: FakeCluster) -> None:
    # What a permission pass does when it meets the block of a killed reindex (see _send).
    fake.on_reindex = lambda: fake.write_blocked.discard("clearance-chunks-v1")
    with pytest.raises(StoreError, match="write block of clearance-chunks-v1 was lifted"):
        store.reindex()
    assert fake.aliases["clearance-chunks"] == "clearance-chunks-v1"
    assert "POST /_aliases" not in fake.calls()
    assert fake.calls()[-1] == "DELETE /clearance-chunks-v2"


def test_reindex_is_refused_for_the_sqlite_store(tmp_path: Path) -> None:
    from core.errors import ConfigError
    from indexer.store.sqlite import SqliteStore

    with pytest.raises(ConfigError, match='kind = "opensearch"'):
        reindex(SqliteStore(tmp_path / "index.sqlite3"))
