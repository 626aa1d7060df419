"""A generated domain (My Drives with folders, shared drives, nested groups with CUSTOMER and
EXTERNAL members, grants to users, groups, the domain and anyone with and without discovery,
expired and deleted grants, trashed files, shortcuts, Google-native documents): for every
person, what the index lets them find equals the reference evaluator, granted and denied side;
permissions are read once per file, and an incremental pass with no change reads none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from auth.identity import CachedResolver
from emulators.base import EmulatorServer
from emulators.google import GoogleEmulator
from emulators.google.generate import ServiceAccount, generate_tenant
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from tests.integration.test_connector_contract_gdrive import DriveTenant, make_connector

pytestmark = pytest.mark.integration
NAME = "gen"
ADMIN = "user000@acme.example"
World = tuple[DriveTenant, SqliteStore, EmulatorServer, Pipeline, ServiceAccount]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    account = ServiceAccount.new()
    data = generate_tenant(account, seed=11)
    emulator = GoogleEmulator(data)
    users = [*(u["primaryEmail"] for u in data["users"]), "guest1@partner.example",
             "outsider@partner.example", "stranger@outside.example", "intruder@acme.example"]
    tenant = DriveTenant(emulator, NAME, users=users)
    store = SqliteStore(tmp_path_factory.mktemp("gen") / "index.sqlite3")
    with EmulatorServer(emulator) as server:
        emulator.bind(server.base_url)
        pipeline = Pipeline(store, HashingEmbedder())
        report = pipeline.full_sync(make_connector(server, account, NAME, page_size=50,
                                                   admin=ADMIN))
        assert report.status == "ok", report.errors
        yield tenant, store, server, pipeline, account
    store.close()


def test_every_person_finds_exactly_what_the_source_lets_them_open(world: World) -> None:
    tenant, store, _, _, _ = world
    truth = tenant.truth()
    resolver = CachedResolver(store, [NAME])
    assert set(store.doc_ids(NAME)) == tenant.doc_ids() and len(tenant.doc_ids()) > 200
    granted = denied = 0
    for email in tenant.users:
        hits = store.lexical(tenant.marker, acl_filter(resolver(email)), 10_000)
        seen = frozenset(h.doc_id for h in hits)
        assert seen == truth[email], (email, sorted(seen ^ truth[email])[:5])
        granted += len(seen)
        denied += len(tenant.doc_ids()) - len(seen)
    assert granted and denied
    assert all(docs < tenant.doc_ids() for docs in truth.values())
    # the rules the generated domain exercises are all present
    kinds = {(p["type"], p.get("allowFileDiscovery")) for f in tenant.data["files"]
             for p in f.get("permissions", [])}
    assert {("domain", True), ("domain", False), ("anyone", True), ("anyone", False),
            ("user", None), ("group", None)} <= kinds


def test_link_only_shares_grant_when_configured_so(world: World, tmp_path_factory:
                                                   pytest.TempPathFactory) -> None:
    tenant, _, server, _, account = world
    emulator = server.emulator
    assert isinstance(emulator, GoogleEmulator)
    linked = DriveTenant(emulator, "links", users=tenant.users, domain_links=True,
                         anyone_links=True)
    store = SqliteStore(tmp_path_factory.mktemp("links") / "index.sqlite3")
    try:
        report = Pipeline(store, HashingEmbedder()).full_sync(make_connector(
            server, account, "links", page_size=100, admin=ADMIN, domain_links="domain",
            anyone_links="everyone"))
        assert report.status == "ok"
        resolver = CachedResolver(store, ["links"])
        truth = linked.truth()
        assert truth != DriveTenant(emulator, "links", users=tenant.users).truth()
        for email in linked.users:
            hits = store.lexical(linked.marker, acl_filter(resolver(email)), 10_000)
            assert frozenset(h.doc_id for h in hits) == truth[email], email
    finally:
        store.close()


def test_permissions_are_read_once_per_file_and_not_again_when_nothing_changed(
        world: World) -> None:
    _, _, server, pipeline, account = world
    server.emulator.counters.reset()
    report = pipeline.incremental_sync(make_connector(server, account, NAME, page_size=50,
                                                      admin=ADMIN))
    assert report.status == "ok" and report.indexed == 0
    by_path = server.emulator.counters.to_json()["by_path"]
    assert not [p for p in by_path if p.endswith("/export") or
                (p.endswith("/permissions") and "/files/0A" not in p)]
    assert by_path.get("/drive/v3/changes", 0) >= 1
