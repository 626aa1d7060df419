"""A generated tenant (several spaces, hundreds of pages in deep trees, restrictions at several
levels, an anonymous space, flat groups with nested-looking names, hidden emails, blog posts,
drafts, trash, archived pages, attachments): for every person, what the index lets them find
equals the reference evaluator's space ∩ own ∩ every restricted ancestor (attachments: their
page's); and the requests made grow with API pages, not with documents (no N+1 where the API
expands)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
    tenant = ConfluenceTenant(emulator, NAME, scope=scope, mapping=mapping, users=users,
                              attachments=True)
    store = SqliteStore(tmp_path_factory.mktemp("gen") / "index.sqlite3")
    with EmulatorServer(emulator, tls=False) as server:
        policy = HttpPolicy(NAME, HttpLimits(rate=0))
        client = ConfluenceClient(f"{server.base_url}/wiki", policy, auth="basic",
                                  token="generated-token", username="admin@acme.example",
                                  page_size=25)
        conn = ConfluenceConnector(NAME, client, spaces=scope, account_emails=mapping,
                                   include_attachments=True)
        report = Pipeline(store, HashingEmbedder()).full_sync(conn)
        assert report.status == "ok", report.errors
        unmapped = {acc for acc in hidden[1::2]}
        assert any(acc in w for w in report.warnings for acc in unmapped)
        yield tenant, store, emulator.counters.to_json()["by_path"], report.documents
    store.close()


def _depth(by_id: dict[str, dict[str, Any]], item: dict[str, Any]) -> tuple[int, int]:
    """(levels above the page, restricted pages on its chain including itself)."""
    depth = restricted = 0
    node: dict[str, Any] | None = item
    while node is not None:
        read = node.get("restrictions", {}).get("read", {})
        restricted += bool(read.get("users") or read.get("groups"))
        parent = node.get("parent")
        node = by_id[parent] if parent else None
        depth += node is not None
    return depth, restricted


def test_the_generated_tenant_has_what_the_scenario_needs(
        world: tuple[ConfluenceTenant, SqliteStore, dict[str, int], int]) -> None:
    tenant, store, _, _ = world
    data = tenant.data
    content = data["content"]
    by_id = {c["id"]: c for c in content}
    chains = [_depth(by_id, c) for c in content]
    assert len(data["spaces"]) >= 3 and sum(bool(s.get("anonymous")) for s in data["spaces"])
    assert len(content) >= 250 and max(d for d, _ in chains) >= 8
    assert max(r for _, r in chains) >= 3  # restricted page under restricted ancestors
    assert all("/" in g["name"] for g in data["groups"])  # nested-looking, flat
    assert not any(g.startswith("g-") for g in data["groups"] for g in g["members"])
    assert sum("email" not in u for u in data["users"]) >= 3
    statuses = {c.get("status", "current") for c in content}
    assert {"current", "draft", "trashed", "archived"} <= statuses
    indexed = set(store.doc_ids(NAME))
    for c in content:  # drafts, trash and archived content never reach the index
        assert (f"{NAME}:{c['id']}" in indexed) is (c.get("status", "current") == "current")
    posts = [c for c in content if c["type"] == "blogpost" and c["status"] == "current"]
    assert posts and all(f"{NAME}:{c['id']}" in indexed for c in posts)
    attachments = [a for c in content if c["status"] == "current"
                   for a in c.get("attachments", [])]
    assert any(a["title"].endswith(".png") for a in attachments)
    assert {f"{NAME}:{a['id']}" for a in attachments if not a["title"].endswith(".png")} \
        <= indexed
    assert not {f"{NAME}:{a['id']}" for a in attachments if a["title"].endswith(".png")} \
        & indexed
    for c in content:  # an attachment carries exactly its page's access
        for a in c.get("attachments", []):
            page, att = store.document(f"{NAME}:{c['id']}"), store.document(f"{NAME}:{a['id']}")
            if page is not None and att is not None:
                assert att.acl.key() == page.acl.key()


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
    attachments = sum(1 for c in tenant.data["content"] if c["status"] == "current"
                      for a in c.get("attachments", []) if not a["title"].endswith(".png"))
    search = by_path.get("/wiki/rest/api/content/search", 0)
    one_by_one = sum(n for p, n in by_path.items()
                     if p.startswith("/wiki/rest/api/content/") and p.count("/") == 5
                     and not p.endswith("/search"))
    restrictions = sum(n for p, n in by_path.items() if "/restriction/" in p)
    # The scope's listing (pages of 25: pages, blog posts, attachments), plus at most one
    # search for the ancestors each listed page did not carry (`id in (...)`).
    listed = sum(1 for c in tenant.data["content"] if c["status"] == "current"
                 for _ in [c, *c.get("attachments", [])])
    pages = -(-listed // 25)
    assert pages < search <= 2 * pages
    assert one_by_one == 0  # never GET /content/{id} per page: the search expands
    # No restriction is read one by one: every ancestor is current, so the batched search
    # returns it with its restrictions expanded (only drafts, not searchable, would be).
    assert restrictions == 0 and parents > 100
    # Each indexed attachment costs its 302 and its download; nothing else grows per document.
    downloads = sum(n for p, n in by_path.items() if p.startswith(("/wiki/download/",
                                                                    "/wiki/media/")))
    assert downloads == 2 * attachments
    assert sum(by_path.values()) - downloads < documents // 2
