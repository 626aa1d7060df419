"""A generated tenant (sites, OneDrives, folders with broken inheritance, every link type,
Limited Access, site groups, nested Entra groups, #EXT# guests, deleted items): for every
person, what the index lets them find equals the reference evaluator, granted and denied side;
permission reads are one per file, and an incremental pass with no change reads none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from auth.identity import CachedResolver
from emulators.base import EmulatorServer
from emulators.graph import GraphEmulator
from emulators.graph.generate import generate_tenant
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from tests.integration.test_connector_contract_sharepoint import GraphTenant, make_connector

pytestmark = pytest.mark.integration
NAME = "gen"
World = tuple[GraphTenant, SqliteStore, EmulatorServer, Pipeline]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data = generate_tenant(seed=11)
    emulator = GraphEmulator(data)
    addresses = [u["mail"] for u in data["users"] if u.get("mail")]
    users = [*addresses, "invitee0@partner0.example", "invitee1@partner0.example",
             "stranger@outside.example", "intruder@contoso.example"]
    scope = [s["id"] for s in data["sites"] if not s.get("personal")]
    tenant = GraphTenant(emulator, NAME, scope=scope, users=users)
    store = SqliteStore(tmp_path_factory.mktemp("gen") / "index.sqlite3")
    with EmulatorServer(emulator) as server:
        pipeline = Pipeline(store, HashingEmbedder())
        report = pipeline.full_sync(make_connector(NAME, server, sites=scope, page_size=50))
        assert report.status == "ok", report.errors
        pipeline.group_sync(make_connector(NAME, server, sites=scope))
        yield tenant, store, server, pipeline
    store.close()


def test_every_person_finds_exactly_what_the_source_lets_them_open(world: World) -> None:
    tenant, store, _, _ = world
    truth = tenant.truth()
    resolver = CachedResolver(store, [NAME])
    assert set(store.doc_ids(NAME)) == tenant.doc_ids() and len(tenant.doc_ids()) > 150
    granted = denied = 0
    for email in tenant.users:
        hits = store.lexical(tenant.marker, acl_filter(resolver(email)), 10_000)
        seen = frozenset(h.doc_id for h in hits)
        assert seen == truth[email], (email, sorted(seen ^ truth[email])[:5])
        granted += len(seen)
        denied += len(tenant.doc_ids()) - len(seen)
    assert granted and denied
    # Nobody reads everything; a stranger reads only what "Everyone" grants.
    assert all(docs < tenant.doc_ids() for docs in truth.values())


def test_permissions_are_read_once_per_file_and_not_again_when_nothing_changed(
        world: World) -> None:
    tenant, _, server, pipeline = world
    by_path = server.emulator.counters.to_json()["by_path"]
    perm_calls = sum(n for p, n in by_path.items() if p.endswith("/permissions"))
    assert perm_calls == len(tenant.doc_ids())
    server.emulator.counters.reset()
    scope = tenant.scope
    report = pipeline.incremental_sync(make_connector(NAME, server, sites=scope, page_size=50))
    assert report.status == "ok" and report.indexed == 0
    by_path = server.emulator.counters.to_json()["by_path"]
    assert not [p for p in by_path if p.endswith("/permissions") or p.endswith("/content")]
