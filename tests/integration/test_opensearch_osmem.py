"""OpenSearchStore against osmem-server (PyPI): an in-memory, OpenSearch-compatible server.

osmem runs index creation with the committed mapping, aliases, `_bulk`, BM25 queries with the
ACL `bool.filter`, `_mget`, `delete_by_query`, `_reindex`, `_aliases`, index blocks and
optimistic concurrency, so everything but k-NN runs here for real: the whole store contract
with `supports_knn = False`, plus what only this backend has (the gate limit, reindex,
per-document bulk errors). osmem has no k-NN and makes writes visible without a refresh; the
k-NN filter and the refresh policy are pinned by tests/unit/test_opensearch_golden.py, and the
full contract runs on a real cluster in test_store_opensearch_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch
from osmem_server import OsmemError, OsmemServer

from core.acl import Acl, AclFilter
from core.errors import StoreError, SyncError
from core.models import Chunk
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.opensearch import OpenSearchStore
from indexer.store.opensearch_query import gate_fields
from tests.contract.store_contract import (
    EVERYONE,
    KEYWORD,
    StoreContract,
    StoreFactory,
    caller,
    index,
    make_doc,
)
from tests.support import unavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def osmem() -> Iterator[OsmemServer]:
    try:
        server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    except OsmemError as exc:
        unavailable(f"osmem-server could not start here: {exc}")
    yield server
    server.close()


@pytest.fixture
def cluster(osmem: OsmemServer) -> Iterator[str]:
    """A fresh copy-on-write clone of the empty server for one test, on its own port."""
    with osmem.clone() as clone:
        yield clone.url


@pytest.fixture
def make_store(cluster: str) -> Iterator[StoreFactory]:
    made: list[OpenSearchStore] = []

    def make() -> OpenSearchStore:
        client = OpenSearch(hosts=[cluster], max_retries=0)
        made.append(OpenSearchStore.open(client, f"t{len(made)}", HashingEmbedder().dim))
        return made[-1]

    yield make
    for store in made:
        store.close()


class TestOsmemStoreContract(StoreContract):
    supports_knn = False
    no_knn_reason = "osmem-server has no k-NN search; the real-cluster contract covers it"

    @pytest.fixture
    def make_store(self, make_store: StoreFactory) -> StoreFactory:
        return make_store


@pytest.fixture
def store(make_store: StoreFactory) -> OpenSearchStore:
    made = make_store()
    assert isinstance(made, OpenSearchStore)
    return made


def committed_chunks_mapping() -> dict[str, object]:
    text = resources.files("indexer.store").joinpath("opensearch_mappings.json").read_text()
    mapping: dict[str, object] = json.loads(text)["chunks"]["mappings"]
    return mapping


def test_open_creates_a_versioned_index_behind_the_alias(store: OpenSearchStore,
                                                         cluster: str) -> None:
    client = store.client
    assert client.indices.get_alias(name="t0-chunks") == {"t0-chunks-v1": {
        "aliases": {"t0-chunks": {}}}}
    props = client.indices.get_mapping(index="t0-chunks-v1")["t0-chunks-v1"]["mappings"][
        "properties"]
    expected = committed_chunks_mapping()["properties"]
    assert isinstance(expected, dict)
    assert set(props) == set(expected)
    assert props["embedding"]["dimension"] == 256
    assert props["body"]["analyzer"] == "english"
    assert client.indices.exists(index="t0-identities")
    assert client.indices.exists(index="t0-state")
    # Opening again (another worker) creates nothing and reads the index's dimension.
    again = OpenSearchStore.open(OpenSearch(hosts=[cluster]), "t0", 384)
    assert again.dimension == 256 and again.current_index() == "t0-chunks-v1"


def test_an_acl_with_more_gates_than_fields_fails_closed(store: OpenSearchStore,
                                                         embedder: HashingEmbedder) -> None:
    limit = len(gate_fields())
    groups = [f"group:g{i}" for i in range(limit + 1)]
    at_limit = make_doc("at-limit.md", f"{KEYWORD} at the limit",
                        acl=Acl.of([[g] for g in groups[:limit]]))
    over = make_doc("over.md", f"{KEYWORD} one gate too many", acl=Acl.of([[g] for g in groups]))
    index(store, embedder, at_limit, over)
    holds_everything = caller(*groups)
    assert over.acl.allows(holds_everything.held("kb"))  # readable by the rules...
    found = {h.doc_id for h in store.lexical(KEYWORD, holds_everything, 10)}
    assert found == {at_limit.doc_id}  # ...but not storable: nobody, not a dropped gate
    assert {h.doc_id for h in store.lexical(KEYWORD, caller(*groups[:limit]), 10)} == {
        at_limit.doc_id}
    assert store.stats("kb").readable_by_nobody == 1


def test_reindex_swaps_the_alias_and_keeps_every_result(store: OpenSearchStore,
                                                        embedder: HashingEmbedder) -> None:
    docs = [make_doc(f"d{i}.md", f"{KEYWORD} memo {i}", f"part two of {i}",
                     acl=Acl.single(["group:eng" if i % 2 else EVERYONE])) for i in range(6)]
    index(store, embedder, *docs)
    store.replace_identities("kb", [], [])
    store.set_state("sync:kb:full:last", {"status": "ok"})
    before = store.snapshot()
    eng = caller("group:eng")
    hits_before = store.lexical(KEYWORD, eng, 10)

    result = store.reindex()

    assert (result.old_index, result.new_index, result.records) == (
        "t0-chunks-v1", "t0-chunks-v2", 6 + 12)
    assert store.client.indices.get_alias(name="t0-chunks") == {"t0-chunks-v2": {
        "aliases": {"t0-chunks": {}}}}
    assert not store.client.indices.exists(index="t0-chunks-v1")
    assert store.snapshot() == before
    assert store.lexical(KEYWORD, eng, 10) == hits_before
    assert store.get_state("sync:kb:full:last") == {"status": "ok"}
    # The new index takes writes (the old one's write block went with it).
    index(store, embedder, make_doc("new.md", f"{KEYWORD} after", acl=Acl.single([EVERYONE])))
    assert "kb:new.md" in {h.doc_id for h in store.lexical(KEYWORD, caller(), 20)}
    assert store.reindex().new_index == "t0-chunks-v3"


def test_reindex_to_a_new_dimension_keeps_text_and_drops_vectors(
        store: OpenSearchStore, embedder: HashingEmbedder) -> None:
    doc = make_doc("a.md", f"{KEYWORD} text", acl=Acl.single([EVERYONE]))
    index(store, embedder, doc)
    assert store.reindex(dimension=8).dimension == 8
    assert store.dimension == 8
    assert store.snapshot()["documents"][doc.doc_id]["chunks"][0]["vector"] == []
    assert [h.doc_id for h in store.lexical(KEYWORD, caller(), 10)] == [doc.doc_id]
    with pytest.raises(StoreError, match="reindex"):
        index(store, embedder, doc)  # 256-d vectors into an 8-d index
    assert store.document(doc.doc_id) is not None


def test_a_document_the_cluster_rejects_is_named_and_removed(
        store: OpenSearchStore, embedder: HashingEmbedder) -> None:
    rejected = make_doc("rejected.md", f"{KEYWORD} v1", "more", acl=Acl.single(["group:eng"]))
    fine = make_doc("fine.md", "...", acl=Acl.single([EVERYONE]), title="...")
    index(store, embedder, rejected)
    store.dimension = 3  # the store now disagrees with the index (256-d) about vectors
    with pytest.raises(StoreError) as failure, store.batch():
        chunk = Chunk(rejected.doc_id, 0, f"{KEYWORD} v2")
        store.upsert(rejected, [chunk], np.ones((1, 3), dtype=np.float32), "x", "run-2")
        store.upsert(fine, [Chunk(fine.doc_id, 0, "...")], np.zeros((1, 3), dtype=np.float32),
                     "x", "run-2")
    message = str(failure.value)
    assert "kb:rejected.md" in message and "kb:fine.md" not in message
    assert "dimension" in message and "removed from the index" in message
    # Neither the old nor the half-written new version stays searchable.
    assert store.document(rejected.doc_id) is None
    assert store.lexical(KEYWORD, caller("group:eng"), 10) == []
    assert store.snapshot()["chunk_records"] == 1
    assert store.document(fine.doc_id) is not None


def test_a_write_blocked_index_fails_content_writes_with_the_document_ids(
        store: OpenSearchStore, embedder: HashingEmbedder) -> None:
    kept = make_doc("kept.md", f"{KEYWORD} kept", acl=Acl.single(["group:eng"]))
    index(store, embedder, kept)
    store.client.indices.put_settings(index="t0-chunks-v1",
                                      body={"index": {"blocks": {"write": True}}})
    changed = make_doc("kept.md", f"{KEYWORD} kept, v2", acl=Acl.single(["group:ops"]))
    with pytest.raises(StoreError) as failure:
        index(store, embedder, changed)
    message = str(failure.value)
    assert "kb:kept.md" in message and "reindex may be running" in message
    assert "removed" not in message  # a blocked index wrote nothing: nothing to undo
    # Nothing was half-applied: the old ACL still holds on every chunk.
    assert {h.doc_id for h in store.lexical(KEYWORD, caller("group:eng"), 10)} == {kept.doc_id}
    assert store.lexical(KEYWORD, caller("group:ops"), 10) == []


def test_a_killed_reindex_does_not_hold_back_a_revocation(
        store: OpenSearchStore, cluster: str, make_tree: Any, files_connector: Any,
        embedder: HashingEmbedder) -> None:
    from indexer.sync import Pipeline

    root = make_tree(ACME_TREE)
    connector = files_connector(root)
    Pipeline(store, embedder).full_sync(connector)
    assert "finance/budget.md" in visible(store)["alice@acme.com"]
    # What a reindex killed after blocking writes and starting the copy leaves behind.
    store.client.indices.put_settings(index="t0-chunks-v1",
                                      body={"index": {"blocks": {"write": True}}})
    store.client.indices.create(index="t0-chunks-v2", body={"mappings": {"properties": {}}})
    assert reader(cluster).problems() == [
        "a reindex was interrupted: t0-chunks-v1 is write-blocked; run `clearance reindex` again"]

    (root / "finance" / ".access.json").write_text(json.dumps({"read": ["user:bob@acme.com"]}))
    report = Pipeline(store, embedder).permission_sync(connector)
    assert (report.status, report.acl_updated) == ("ok", 2)
    now = visible(store)
    assert "finance/budget.md" not in now["alice@acme.com"]  # revoked, not waiting
    assert "finance/budget.md" in now["bob@acme.com"]
    assert reader(cluster).problems() == []
    # The next reindex starts over (the leftover copy goes) and keeps the revocation.
    assert store.reindex().new_index == "t0-chunks-v2"
    assert visible(store) == now


def test_identity_version_survives_a_second_store_writing(
        store: OpenSearchStore, cluster: str) -> None:
    other = OpenSearchStore.open(OpenSearch(hosts=[cluster]), "t0", 256)
    store.replace_identities("a", [], [])
    other.replace_identities("b", [], [])
    store.replace_identities("a", [], [])
    assert store.identity_version() == other.identity_version() == 3


def test_a_caller_filter_reaches_the_cluster_unchanged(store: OpenSearchStore,
                                                       embedder: HashingEmbedder) -> None:
    # A principal with characters a query parser would treat specially is a plain term here.
    odd = "group:kb:R&D (EMEA) \"core\""
    doc = make_doc("odd.md", f"{KEYWORD} odd", acl=Acl.single([odd]))
    index(store, embedder, doc)
    assert [h.doc_id for h in store.lexical(KEYWORD, AclFilter({"kb": {odd, EVERYONE}}),
                                            10)] == [doc.doc_id]
    assert store.lexical(KEYWORD, caller("group:kb:r&d (emea) \"core\""), 10) == []


ACME_TREE: dict[str, object] = {
    ".access.json": {"read": ["domain:acme.com"]},
    ".groups.json": {"finance": ["user:alice@acme.com"], "leads": ["group:finance"],
                     "contractors": ["user:carl@acme.com"]},
    "public.md": f"# Public\n\n{KEYWORD} office address.\n",
    "handbook/.access.json": {"read": ["everyone"], "deny": ["group:contractors"]},
    "handbook/holidays.md": f"# Holidays\n\n{KEYWORD} twenty-eight days.\n",
    "finance/.access.json": {"read": ["group:finance"]},
    "finance/budget.md": f"# Budget\n\n{KEYWORD} four million.\n",
    "finance/board/.access.json": {"read": ["group:leads"]},
    "finance/board/minutes.md": f"# Minutes\n\n{KEYWORD} acquisition.\n",
    "drafts/.access.json": {"read": []},
    "drafts/idea.md": f"# Idea\n\n{KEYWORD} price rise.\n",
}
PEOPLE = ("alice@acme.com", "bob@acme.com", "carl@acme.com", "eve@other.org")


def test_pipeline_syncs_into_opensearch_exactly_as_into_sqlite(
        store: OpenSearchStore, tmp_path: Path, make_tree: Any, files_connector: Any,
        embedder: HashingEmbedder) -> None:
    """Full sync in pages of two, a permission-only change, a deletion: after each, every
    person finds the same documents in both stores."""
    from auth.identity import resolve
    from indexer.store.sqlite import SqliteStore
    from indexer.sync import Pipeline
    from retriever.filters import acl_filter

    root = make_tree(ACME_TREE)
    sqlite = SqliteStore(tmp_path / "index.sqlite3")
    stores = {"sqlite": sqlite, "opensearch": store}
    connector = files_connector(root, page_size=2)

    def sync(mode: str = "full") -> dict[str, dict[str, set[str]]]:
        seen: dict[str, dict[str, set[str]]] = {}
        for name, s in stores.items():
            pipeline = Pipeline(s, embedder)
            report = (pipeline.full_sync(connector) if mode == "full"
                      else pipeline.permission_sync(connector))
            assert report.status == "ok", (name, report.error)
            seen[name] = {p: {h.doc_id.removeprefix("docs:") for h in s.lexical(
                KEYWORD, acl_filter(resolve(s, p)), 50)} for p in PEOPLE}
        assert seen["opensearch"] == seen["sqlite"]
        return seen

    first = sync()["opensearch"]
    assert first["alice@acme.com"] == {"public.md", "handbook/holidays.md", "finance/budget.md",
                                       "finance/board/minutes.md"}
    assert first["carl@acme.com"] == {"public.md"}
    assert first["eve@other.org"] == set()
    assert store.stats("docs").readable_by_nobody == 1  # drafts/idea.md

    (root / "finance" / ".access.json").write_text(json.dumps({"read": ["user:bob@acme.com"]}))
    moved = sync("permissions")["opensearch"]
    assert "finance/budget.md" in moved["bob@acme.com"]
    assert "finance/budget.md" not in moved["alice@acme.com"]

    (root / "public.md").unlink()
    gone = sync()["opensearch"]
    assert "public.md" not in gone["bob@acme.com"]
    assert store.document("docs:public.md") is None
    assert sorted(store.snapshot()["documents"]) == sorted(sqlite.snapshot()["documents"])
    sqlite.close()


def test_a_reindex_killed_midway_is_completed_by_the_next_one(
        store: OpenSearchStore, embedder: HashingEmbedder) -> None:
    doc = make_doc("a.md", f"{KEYWORD} text", acl=Acl.single([EVERYONE]))
    index(store, embedder, doc)
    # What a reindex killed after blocking writes and starting the copy leaves behind.
    store.client.indices.put_settings(index="t0-chunks-v1",
                                      body={"index": {"blocks": {"write": True}}})
    store.client.indices.create(index="t0-chunks-v2", body={"mappings": {"properties": {}}})
    with pytest.raises(StoreError, match="read-only, a reindex may be running"):
        index(store, embedder, doc)
    assert [h.doc_id for h in store.lexical(KEYWORD, caller(), 10)] == [doc.doc_id]

    assert store.reindex().new_index == "t0-chunks-v2"
    index(store, embedder, make_doc("b.md", f"{KEYWORD} more", acl=Acl.single([EVERYONE])))
    assert {h.doc_id for h in store.lexical(KEYWORD, caller(), 10)} == {doc.doc_id, "kb:b.md"}


# -- a lost index: never re-created implicitly, reported, rebuilt by the next sync -----------
MISSING_CHUNKS = ("index t0-chunks is missing (cluster restarted empty or index deleted): "
                  "the next sync rebuilds it")


def visible(store: Any) -> dict[str, set[str]]:
    """Who finds which document, through the same resolution and filter as `search`."""
    from auth.identity import resolve
    from retriever.filters import acl_filter

    return {p: {h.doc_id.removeprefix("docs:") for h in store.lexical(
        KEYWORD, acl_filter(resolve(store, p)), 50)} for p in PEOPLE}


def reader(cluster: str) -> OpenSearchStore:
    """What `search`, `ask`, `explain` and `status` open: the same indices, creating none."""
    return OpenSearchStore.open(OpenSearch(hosts=[cluster], max_retries=0), "t0",
                                HashingEmbedder().dim, create=False)


def test_an_index_deleted_mid_sync_stops_it_with_one_line_and_the_next_sync_rebuilds(
        store: OpenSearchStore, cluster: str, make_tree: Any, files_connector: Any,
        embedder: HashingEmbedder, tmp_path: Path) -> None:
    from indexer.store.sqlite import SqliteStore
    from indexer.sync import Pipeline, SyncReport

    root = make_tree(ACME_TREE)
    connector = files_connector(root, page_size=2)
    client = store.client

    def delete_after_first_page(report: SyncReport) -> None:
        if client.indices.exists(index="t0-chunks-v1"):
            client.indices.delete(index="t0-chunks-v1")

    with pytest.raises(StoreError) as failure:
        Pipeline(store, embedder, progress=delete_after_first_page).full_sync(connector)
    assert str(failure.value) == MISSING_CHUNKS
    # The writes after the deletion created nothing: no plain, dynamically mapped index named
    # like the alias (require_alias), so nothing shadows the alias the next sync creates.
    assert not client.indices.exists(index="t0-chunks")
    # Readers fail closed with the same line (not invalid_alias_name_exception), create nothing.
    read = reader(cluster)
    assert read.get_state("sync:docs:full:last")["status"] == "failed"
    assert read.get_state("sync:docs:full:checkpoint") is not None  # page one's resume point
    with pytest.raises(StoreError) as search:
        read.lexical(KEYWORD, caller(), 10)
    assert str(search.value) == MISSING_CHUNKS
    with pytest.raises(StoreError, match=r"^index t0-chunks is missing"):
        read.stats("docs")
    assert MISSING_CHUNKS in read.problems()
    assert not client.indices.exists(index="t0-chunks")

    # The next sync (a write command) rebuilds a versioned index, discards the checkpoint that
    # points past documents that are gone, and indexes everything again.
    again = OpenSearchStore.open(OpenSearch(hosts=[cluster], max_retries=0), "t0", embedder.dim)
    assert again.current_index() == "t0-chunks-v1"
    props = client.indices.get_mapping(index="t0-chunks-v1")["t0-chunks-v1"]["mappings"]
    assert props["properties"]["acl_deny"] == {"type": "keyword"}
    assert again.get_state("sync:docs:full:checkpoint") is None
    report = Pipeline(again, embedder).full_sync(connector)
    assert (report.status, report.resumed, report.indexed) == ("ok", False, 5)
    assert read.problems() == []

    sqlite = SqliteStore(tmp_path / "index.sqlite3")
    Pipeline(sqlite, embedder).full_sync(connector)
    expected = visible(sqlite)
    assert visible(read) == expected
    assert expected["carl@acme.com"] == {"public.md"}  # the deny group still denies
    sqlite.close()


def test_writes_to_a_deleted_index_fail_without_creating_one(
        store: OpenSearchStore, embedder: HashingEmbedder) -> None:
    doc = make_doc("a.md", f"{KEYWORD} text", acl=Acl.single(["group:eng"]))
    index(store, embedder, doc)
    store.client.indices.delete(index="t0-chunks-v1")
    for write in (lambda: index(store, embedder, doc),
                  lambda: store.update_acl(doc.doc_id, Acl.single(["group:ops"]), None),
                  lambda: store.mark_seen([doc.doc_id], "run-2"),
                  lambda: store.delete([doc.doc_id])):
        with pytest.raises(StoreError) as failure:
            write()
        assert str(failure.value) == MISSING_CHUNKS
        assert not store.client.indices.exists(index="t0-chunks")


DENIED = ("carl@acme.com", "handbook/holidays.md")  # carl is in group:contractors, denied


def test_a_lost_identities_index_fails_every_read_closed_until_groups_are_synced(
        store: OpenSearchStore, cluster: str, make_tree: Any, files_connector: Any,
        embedder: HashingEmbedder) -> None:
    from auth.identity import CachedResolver, explain
    from indexer.sync import Pipeline

    root = make_tree(ACME_TREE)
    connector = files_connector(root)
    Pipeline(store, embedder).full_sync(connector)
    person, denied_doc = DENIED
    assert denied_doc not in visible(store)[person]
    store.client.indices.delete(index="t0-identities")

    read = reader(cluster)
    message = ("identity store t0-identities is missing (cluster restarted empty or index "
               "deleted): every search fails closed until `clearance sync --mode groups` (or a "
               "full sync) rebuilds it")
    with pytest.raises(StoreError) as failure:
        CachedResolver(read)(person)  # what search, ask and explain resolve first
    assert str(failure.value) == message
    assert message in read.problems()
    assert not read.client.indices.exists(index="t0-identities")  # reads create nothing

    # A write command re-creates it, but marked pending for every connector with documents:
    # until their snapshots are back, a deny group with no members would deny nobody.
    other = make_tree({".access.json": {"read": ["everyone"]}, "x.md": f"{KEYWORD} x"}, "other")
    writer = OpenSearchStore.open(OpenSearch(hosts=[cluster], max_retries=0), "t0", embedder.dim)
    Pipeline(writer, embedder).group_sync(files_connector(other, name="other"))
    pending = ("identity store t0-identities was rebuilt and has no group snapshot yet from "
               "docs: every search fails closed until `clearance sync --mode groups` (or a full "
               "sync) of that connector succeeds")
    with pytest.raises(StoreError) as still:
        CachedResolver(read)(person)
    assert str(still.value) == pending
    assert read.problems() == [pending]

    assert Pipeline(writer, embedder).group_sync(connector).status == "ok"
    assert read.problems() == []
    identity = CachedResolver(read)(person)
    assert denied_doc not in visible(read)[person]
    decision = explain(read.document(f"docs:{denied_doc}").acl, identity)
    assert "no deny applies" not in "\n".join(decision.lines())
    assert decision.to_json()["allowed"] is False


def test_a_permission_pass_on_an_emptied_cluster_fails_instead_of_reporting_ok(
        store: OpenSearchStore, cluster: str, make_tree: Any, files_connector: Any,
        embedder: HashingEmbedder) -> None:
    from indexer.sync import Pipeline

    connector = files_connector(make_tree(ACME_TREE))
    Pipeline(store, embedder).full_sync(connector)
    for name in ("t0-chunks-v1", "t0-identities", "t0-state"):  # restarted empty
        store.client.indices.delete(index=name)
    writer = OpenSearchStore.open(OpenSearch(hosts=[cluster], max_retries=0), "t0", embedder.dim)
    with pytest.raises(SyncError) as failure:
        Pipeline(writer, embedder).permission_sync(connector)
    assert str(failure.value) == ("index empty or missing: 5 documents at the source; a full "
                                  "sync indexes them again")
    assert writer.get_state("sync:docs:permissions:last")["status"] == "failed"
    assert Pipeline(writer, embedder).full_sync(connector).indexed == 5
    assert Pipeline(writer, embedder).permission_sync(connector).status == "ok"


def test_a_plain_index_named_like_the_alias_is_named_not_used(cluster: str) -> None:
    # What a write without require_alias left behind after the index was lost.
    client = OpenSearch(hosts=[cluster], max_retries=0)
    client.index(index="t0-chunks", id="x", body={"acl_deny": "user:mallory@acme.com"})
    message = ("t0-chunks is a plain index, not the alias of t0-chunks-v<n> (created "
               "implicitly, with a dynamic mapping, after the cluster lost its index): delete it "
               "(DELETE /t0-chunks) and run `clearance sync`")
    with pytest.raises(StoreError) as failure:
        OpenSearchStore.open(client, "t0", HashingEmbedder().dim)
    assert str(failure.value) == message
    with pytest.raises(StoreError) as read:
        reader(cluster)  # search, ask, explain, status: the deny there no longer matches
    assert str(read.value) == message
    assert client.indices.exists(index="t0-chunks")  # nothing deleted behind the operator


def test_a_worker_that_lost_its_index_rebuilds_it_at_its_next_sync_not_during_the_failing_one(
        store: OpenSearchStore, make_tree: Any, files_connector: Any,
        embedder: HashingEmbedder) -> None:
    """A worker keeps one store for its whole life: its next task must rebuild what the cluster
    lost, and must not resume from a checkpoint that points past documents that are gone."""
    from indexer.sync import Pipeline, SyncReport

    connector = files_connector(make_tree(ACME_TREE), page_size=2)
    client = store.client

    def restart_empty(report: SyncReport) -> None:
        for name in ("t0-chunks-v1", "t0-identities", "t0-state"):
            if client.indices.exists(index=name):
                client.indices.delete(index=name)

    with pytest.raises(StoreError) as failure:
        Pipeline(store, embedder, progress=restart_empty).full_sync(connector)
    assert str(failure.value) == MISSING_CHUNKS  # the sync's own error, not the report's
    # The failing sync rebuilt nothing (its report could not be saved either).
    assert not client.indices.exists(index="t0-chunks-v1")
    assert not client.indices.exists(index="t0-state")

    report = Pipeline(store, embedder).full_sync(connector)  # the worker's next task
    assert (report.status, report.resumed, report.indexed) == ("ok", False, 5)
    assert store.current_index() == "t0-chunks-v1"
    assert visible(store)["carl@acme.com"] == {"public.md"}  # deny group back in force


def test_a_worker_permission_pass_after_a_lost_index_rebuilds_and_reports_the_gap(
        store: OpenSearchStore, make_tree: Any, files_connector: Any,
        embedder: HashingEmbedder) -> None:
    from indexer.sync import Pipeline

    connector = files_connector(make_tree(ACME_TREE))
    Pipeline(store, embedder).full_sync(connector)
    store.client.indices.delete(index="t0-chunks-v1")
    with pytest.raises(StoreError):
        store.document_states(["docs:public.md"])  # what the worker's running pass met
    with pytest.raises(SyncError, match=r"^index empty or missing: 5 documents at the source"):
        Pipeline(store, embedder).permission_sync(connector)
    assert store.current_index() == "t0-chunks-v1"
