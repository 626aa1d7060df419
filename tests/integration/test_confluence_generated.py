"""A generated tenant (hundreds of pages in deep trees, restrictions at several levels, an
anonymous space, hidden emails, drafts, trash): for every person, what the index lets them find
equals the reference evaluator's space ∩ own ∩ every restricted ancestor; and the requests
made grow with API pages, not with documents (no N+1 where the API expands)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from auth.identity import CachedResolver
from connectors.confluence.client import ConfluenceClient
from connectors.confluence.connector import ConfluenceConnector
from connectors.http import HttpLimits, HttpPolicy
from emulators.base import EmulatorServer
from emulators.confluence import ConfluenceEmulator, generate_tenant
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from tests.integration.test_connector_contract_confluence import ConfluenceTenant

pytestmark = pytest.mark.integration
NAME = "gen"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ConfluenceTenant, SqliteStore, dict[str, int], int]]:
    data = generate_tenant(seed=11)
    emulator = ConfluenceEmulator(data)
    people = [u for u in data["users"] if u.get("accountType") != "app"]
    visible = [u["email"] for u in people if u.get("email")]
    hidden = [u["accountId"] for u in people if not u.get("email")]
    # Half of the hidden-email people are mapped; the others must fail closed.
    mapping = {acc: f"{acc}@mapped.example" for acc in hidden[::2]}
    users = [*visible, *mapping.values(), *(f"{acc}@unmapped.example" for acc in hidden[1::2]),
             "stranger@outside.example"]
    scope = [s["key"] for s in data["spaces"]]
    tenant = ConfluenceTenant(emulator, NAME, scope=scope, mapping=mapping, users=users)
    store = SqliteStore(tmp_path_factory.mktemp("gen") / "index.sqlite3")
    with EmulatorServer(emulator, tls=False) as server:
        policy = HttpPolicy(NAME, HttpLimits(rate=0))
        client = ConfluenceClient(f"{server.base_url}/wiki", policy, auth="basic",
                                  token="generated-token", username="admin@acme.example",
                                  page_size=25)
        conn = ConfluenceConnector(NAME, client, spaces=scope, account_emails=mapping)
        report = Pipeline(store, HashingEmbedder()).full_sync(conn)
        assert report.status == "ok", report.errors
        yield tenant, store, emulator.counters.to_json()["by_path"], report.documents
    store.close()


def test_every_person_finds_exactly_what_the_source_lets_them_open(
        world: tuple[ConfluenceTenant, SqliteStore, dict[str, int], int]) -> None:
    tenant, store, _, _ = world
    truth = tenant.truth()
    resolver = CachedResolver(store, [NAME])
    assert set(store.doc_ids(NAME)) == tenant.doc_ids() and len(tenant.doc_ids()) > 250
    granted = denied = 0
    for email in tenant.users:
        hits = store.lexical(tenant.marker, acl_filter(resolver(email)), 10_000)
        seen = frozenset(h.doc_id for h in hits)
        assert seen == truth[email], (email, sorted(seen ^ truth[email])[:5])
        granted += len(seen)
        denied += len(tenant.doc_ids()) - len(seen)
    assert granted and denied  # both sides are exercised
    for email in tenant.users:
        if email.endswith("@unmapped.example"):
            # A hidden, unmapped person gets what any stranger gets: the anonymous space.
            assert truth[email] == truth["stranger@outside.example"]


def test_requests_grow_with_api_pages_not_with_documents(
        world: tuple[ConfluenceTenant, SqliteStore, dict[str, int], int]) -> None:
    tenant, _, by_path, documents = world
    parents = len({c["parent"] for c in tenant.data["content"] if c.get("parent")})
    search = by_path.get("/wiki/rest/api/content/search", 0)
    one_by_one = sum(n for p, n in by_path.items()
                     if p.startswith("/wiki/rest/api/content/") and p.count("/") == 5
                     and not p.endswith("/search"))
    restrictions = sum(n for p, n in by_path.items() if "/restriction/" in p)
    assert search <= documents // 25 + 2
    assert one_by_one == 0  # never GET /content/{id} per page: the search expands
    # An ancestor met before its own listing is read once for the pass (cached), never per
    # descendant: at most one read per page that has children.
    assert all(n == 1 for p, n in by_path.items() if "/restriction/" in p)
    assert restrictions <= parents
    assert sum(by_path.values()) < documents // 2
