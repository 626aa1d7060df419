"""Confluence connector against the emulator: the access rules one by one, both sides (who
sees and who must NOT), fail-closed paths, paging quirks, auth and options."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from auth.identity import CachedResolver
from connectors.base import AclUpdate, Delete, Upsert, parse_options
from connectors.confluence.client import PAGE_EXPAND, ConfluenceClient
from connectors.confluence.connector import ConfluenceConnector, ConfluenceOptions
from connectors.http import HttpLimits, HttpPolicy
from core import principals as P
from core.errors import ConfigError, SourceAuthError, SourceError, SourceUnavailable
from emulators.base import EmulatorServer, Fault
from emulators.confluence import ConfluenceEmulator
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from tests.integration.test_connector_contract_confluence import (
    ADMIN,
    MAPPED,
    MARK,
    SCOPE,
    TOKEN,
    _page,
    tenant_data,
)

pytestmark = pytest.mark.integration
NAME = "wiki"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(ConfluenceEmulator(copy.deepcopy(tenant_data())), tls=False) as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "index.sqlite3")
    yield s
    s.close()


def emu(server: EmulatorServer) -> ConfluenceEmulator:
    assert isinstance(server.emulator, ConfluenceEmulator)
    return server.emulator


def connector(server: EmulatorServer, *, prefix: str = "/wiki", auth: str = "basic",
              token: str = TOKEN, username: str | None = ADMIN,
              mapping: dict[str, str] | None = None, page_size: int = 2,
              attachments: bool = False, perms: str = "v1") -> ConfluenceConnector:
    policy = HttpPolicy(NAME, HttpLimits(rate=0, backoff_base=0.01))
    client = ConfluenceClient(f"{server.base_url}{prefix}", policy, auth=auth,  # type: ignore[arg-type]
                              token=token, username=username, page_size=page_size)
    return ConfluenceConnector(NAME, client, spaces=SCOPE, time_zone="Europe/Berlin",
                               account_emails=MAPPED if mapping is None else mapping,
                               include_attachments=attachments,
                               space_permissions=perms)  # type: ignore[arg-type]


def sees(store: SqliteStore, email: str) -> set[str]:
    resolver = CachedResolver(store, [NAME])
    hits = store.lexical(MARK, acl_filter(resolver(email)), 10_000)
    return {h.doc_id.split(":", 1)[1] for h in hits}


def synced(server: EmulatorServer, store: SqliteStore, **kw: Any) -> Pipeline:
    pipeline = Pipeline(store, HashingEmbedder())
    report = pipeline.full_sync(connector(server, **kw))
    assert report.status in ("ok", "partial"), report.errors
    return pipeline


def test_a_restricted_ancestor_hides_a_child_from_someone_its_own_restriction_names(
        server: EmulatorServer, store: SqliteStore) -> None:
    synced(server, store)
    # 103 names bob and ann; its parent 102 admits g-eng (ann, carl): bob must not see it.
    assert {"103", "104"} <= sees(store, "ann@acme.example")
    assert not {"102", "103", "104"} & sees(store, "bob@acme.example")
    # carl passes 102 but 103 does not name him; 104 inherits both restrictions.
    assert not {"103", "104"} & sees(store, "carl@acme.example")
    doc = store.document(f"{NAME}:104")
    assert doc is not None
    groups = {frozenset(g) for g in doc.acl.gates}
    assert frozenset({"group:confluence:g-staff"}) in groups  # the space
    assert frozenset({P.group("g-eng", source="confluence")}) in groups  # ancestor 102
    assert frozenset({"user:ann@acme.example", "user:bob@acme.example"}) in groups  # 103
    assert len(doc.acl.gates) == 3


def test_every_restriction_intersects_not_only_the_nearest(
        server: EmulatorServer, store: SqliteStore) -> None:
    """Onyx's shortcut (nearest restricted ancestor only) would let bob read 104 after 103
    also names him; the intersection keeps 102's gate."""
    emu(server).restrict("104", users=["acc-bob"])
    synced(server, store)
    assert "104" not in sees(store, "bob@acme.example")
    assert "104" not in sees(store, "ann@acme.example")  # 104's own restriction: bob only


def test_space_permission_is_a_gate_of_its_own(server: EmulatorServer,
                                                store: SqliteStore) -> None:
    synced(server, store)
    # Salaries (HR) is restricted to g-staff; bob is staff but cannot view the HR space.
    assert "202" not in sees(store, "bob@acme.example")
    assert "202" in sees(store, "ann@acme.example")
    # eve administers ENG but holds no read permission: nothing.
    assert sees(store, "eve@acme.example") == set()


def test_an_anonymous_space_reads_as_everyone(server: EmulatorServer,
                                              store: SqliteStore) -> None:
    emu(server).add(_page("302", "PUB", "Public page"))
    synced(server, store)
    for stranger in ("mallory@outside.example", "eve@acme.example"):
        assert sees(store, stranger) == {"302"}
    doc = store.document(f"{NAME}:302")
    assert doc is not None and doc.acl.gates == (frozenset({P.EVERYONE}),)
    assert "301" not in sees(store, "mallory@outside.example")  # restricted still applies


def test_a_hidden_email_user_fails_closed_and_is_reported(
        server: EmulatorServer, store: SqliteStore, caplog: pytest.LogCaptureFixture) -> None:
    emu(server).restrict("105", users=["acc-hidden", "acc-bob"])
    pipeline = Pipeline(store, HashingEmbedder())
    report = pipeline.full_sync(connector(server))
    assert any("acc-hidden" in w and "fail closed" in w for w in report.warnings)
    assert "acc-hidden" in caplog.text  # the group pass says so too (its pages carry no text)
    assert "105" in sees(store, "bob@acme.example")  # the rest of the restriction holds
    # The source lets acc-hidden read 102 (g-eng): no address of theirs may find it here.
    for guess in ("hidden@acme.example", "acc-hidden@acme.example"):
        assert sees(store, guess) == set()
    for doc_id in store.doc_ids(NAME):
        doc = store.document(doc_id)
        assert doc is not None
        assert not any("hidden" in p for p in doc.acl.principals())
    # Dana's email is hidden too, but mapped: her own page reaches her and nobody else.
    assert "203" in sees(store, "dana@acme.example")
    assert "203" not in sees(store, "ann@acme.example")


def test_without_the_mapping_a_hidden_email_is_never_widened(server: EmulatorServer,
                                                              store: SqliteStore) -> None:
    synced(server, store, mapping={})
    assert sees(store, "dana@acme.example") == set()
    doc = store.document(f"{NAME}:203")  # restricted to dana only: nobody now
    assert doc is not None and not doc.acl.readable_by_somebody


def test_space_permissions_that_cannot_be_read_close_the_space(server: EmulatorServer,
                                                               store: SqliteStore) -> None:
    emu(server).tenant["credentials"][0]["admin"] = False  # no permissions in the answer
    pipeline = Pipeline(store, HashingEmbedder())
    report = pipeline.full_sync(connector(server))
    assert report.status == "partial"
    assert any("permissions" in str(e) for e in report.errors)
    for doc_id in store.doc_ids(NAME):
        doc = store.document(doc_id)
        assert doc is not None and not doc.acl.readable_by_somebody
    assert sees(store, "ann@acme.example") == set()


def test_an_unreadable_ancestor_restriction_skips_the_page(server: EmulatorServer,
                                                           store: SqliteStore) -> None:
    # A page under someone else's draft: the draft's restriction answers 403 (unknown).
    emu(server).add(_page("111", "ENG", "Under a draft", "108"))
    pipeline = Pipeline(store, HashingEmbedder())
    report = pipeline.full_sync(connector(server))
    assert any(e.startswith("111: skipped") and "108" in e for e in report.errors)
    doc = store.document(f"{NAME}:111")
    assert doc is None or not doc.acl.readable_by_somebody
    for person in ("ann@acme.example", "carl@acme.example", "mallory@outside.example"):
        assert "111" not in sees(store, person)
    assert "101" in sees(store, "ann@acme.example")  # the rest is unaffected


@pytest.mark.parametrize("part", ["content", "restrictions"])
def test_a_403_on_one_page_skips_and_reports_it_closes_its_copy_and_the_rest_goes_on(
        server: EmulatorServer, store: SqliteStore, part: str) -> None:
    e = emu(server)
    pipeline = synced(server, store)
    assert "105" in sees(store, "bob@acme.example")  # 105: restricted to g-ops (bob, carl)
    e.forbid("105", part)
    report = pipeline.full_sync(connector(server))
    assert report.status == "ok"
    assert any(err.startswith("105: skipped") and "403" in err for err in report.errors)
    copy_105 = store.document(f"{NAME}:105")  # never left readable with the old ACL
    assert copy_105 is None or not copy_105.acl.readable_by_somebody
    for person in ("bob@acme.example", "carl@acme.example", "ann@acme.example"):
        assert "105" not in sees(store, person)
    # 106 sits under 105: its ancestor's restriction is unknown too when that is what 403s.
    assert ("106" in sees(store, "carl@acme.example")) is (part == "content")
    assert {"101", "103", "104"} <= sees(store, "ann@acme.example")  # the rest synced
    by_path = e.counters.to_json()["by_path"]
    if part == "content":  # the search left the body out: the one page was asked, and 403
        assert by_path.get("/wiki/rest/api/content/105", 0) >= 1
    else:
        assert by_path.get("/wiki/rest/api/content/105/restriction/byOperation/read", 0) >= 1
    # Readable again, without any edit (lastmodified unchanged): the next incremental pass
    # reads the skipped page again in full.
    e.forbid("105")
    report = pipeline.incremental_sync(connector(server))
    assert report.status == "ok" and not report.errors, report.errors
    assert {"105", "106"} <= sees(store, "carl@acme.example")
    assert "105" in sees(store, "bob@acme.example") and "105" not in sees(
        store, "ann@acme.example")


def test_restrictions_longer_than_the_expansion_are_read_in_full(server: EmulatorServer,
                                                                 store: SqliteStore) -> None:
    emu(server).tenant["restriction_limit"] = 1  # the expansion carries one user of two
    synced(server, store)
    assert "103" in sees(store, "ann@acme.example")  # ann is the second user of 103
    assert "103" not in sees(store, "bob@acme.example")


def test_an_empty_page_with_a_next_link_ends_the_listing(server: EmulatorServer,
                                                         store: SqliteStore) -> None:
    e = emu(server)
    e.tenant["quirk_empty_last_page"] = True  # the last page links to an empty one
    synced(server, store)
    assert "101" in sees(store, "ann@acme.example")
    searches = e.counters.to_json()["by_path"]["/wiki/rest/api/content/search"]
    in_scope = len([c for c in e.tenant["content"] if c["space"] in SCOPE
                    and c.get("status", "current") == "current"])
    pages = -(-in_scope // 2)  # page_size 2
    assert searches == pages + 1  # every page, then the empty one, then nothing more


@pytest.mark.parametrize("pass_", ["content", "permissions", "identities"])
def test_a_next_link_on_every_page_even_empty_ones_stops_at_the_first_empty_page(
        server: EmulatorServer, pass_: str) -> None:
    """Cloud sometimes sends `next` with 0 results; following it would never end here."""
    e = emu(server)
    e.tenant["quirk_next_on_empty"] = True
    conn = connector(server)
    pages = list(getattr(conn, pass_)())
    by_path = e.counters.to_json()["by_path"]
    if pass_ == "identities":
        got = {(m.group, m.member) for p in pages for m in p.memberships}
        assert (P.group("g-ops", source="confluence"), "user:carl@acme.example") in got
        groups = len(e.tenant["groups"])
        assert by_path["/wiki/rest/api/group"] == -(-groups // 2) + 1
        for group in e.tenant["groups"]:  # each member listing: its pages and one empty one
            members = len(group["members"])
            path = f"/wiki/rest/api/group/{group['id']}/membersByGroupId"
            assert by_path[path] == -(-members // 2) + 1
    else:
        in_scope = len([c for c in e.tenant["content"] if c["space"] in SCOPE
                        and c.get("status", "current") == "current"])
        assert by_path["/wiki/rest/api/content/search"] == -(-in_scope // 2) + 1
        assert pages[-1].cursor is None if pass_ == "permissions" else pages[-1].cursor


@pytest.mark.parametrize(("status", "retry_after"), [
    (429, "1"), (503, "1"), (429, "Wed, 02 Dec 2026 06:00:00 GMT"), (503, None)])
def test_throttling_and_unavailability_are_waited_out(server: EmulatorServer,
                                                      store: SqliteStore, status: int,
                                                      retry_after: str | None) -> None:
    e = emu(server)
    e.faults.add(Fault("/wiki/rest/api/content/search", status=status,
                       retry_after=retry_after, times=2))
    e.faults.add(Fault("/wiki/rest/api/group*", status=status, retry_after=retry_after,
                       times=1))
    pipeline = Pipeline(store, HashingEmbedder())
    conn = connector(server)
    report = pipeline.full_sync(conn)
    assert report.status == "ok", report.errors
    assert "103" in sees(store, "ann@acme.example") and "103" not in sees(
        store, "bob@acme.example")
    assert conn.http_stats.retries >= 3 and conn.http_stats.throttled >= 3
    if retry_after == "1":
        assert conn.http_stats.throttled_seconds >= 3  # waited what the source asked


def test_a_throttling_storm_longer_than_the_policy_allows_fails_without_indexing_half(
        server: EmulatorServer, store: SqliteStore) -> None:
    e = emu(server)
    e.faults.add(Fault("/wiki/rest/api/content/search", status=429, retry_after="100000",
                       times=None))
    with pytest.raises(SourceUnavailable, match="asked to wait 100000 s"):
        Pipeline(store, HashingEmbedder()).full_sync(connector(server))
    assert not list(store.doc_ids(NAME))


def test_incremental_finds_edits_in_the_user_time_zone_and_prunes_deletions(
        server: EmulatorServer, store: SqliteStore) -> None:
    pipeline = synced(server, store)
    e = emu(server)
    e.edit("105", body=f"<p>Operations, rewritten with zanzibarword, {MARK}.</p>")
    e.delete("107")  # a hard delete: no feed says so, the ids listing does
    e.trash("201")
    e.restrict("203", users=["acc-ann"])  # no lastmodified change
    ops: list[Any] = []
    conn = connector(server)
    record = pipeline.cursor(NAME, "content")
    assert record is not None and record.next is not None
    for page in conn.content(record.next):
        ops.extend(page.operations)
    upserts = {op.document.doc_id for op in ops if isinstance(op, Upsert)}
    assert upserts == {f"{NAME}:105"}
    assert {op.doc_id for op in ops if isinstance(op, Delete)} == {f"{NAME}:107", f"{NAME}:201"}
    assert {op.doc_id for op in ops if isinstance(op, AclUpdate)} == {f"{NAME}:203"}
    report = pipeline.incremental_sync(connector(server))
    assert report.status == "ok" and report.deleted == 2
    assert "203" in sees(store, "ann@acme.example") and "203" not in sees(
        store, "dana@acme.example")


def test_the_oauth_gateway_path_with_a_bearer_token(server: EmulatorServer,
                                                    store: SqliteStore) -> None:
    e = emu(server)
    e.tenant["credentials"].append({"bearer": "svc-token", "admin": True})
    synced(server, store, prefix="/ex/confluence/cloud-1/wiki", auth="oauth", token="svc-token",
           username=None)
    assert "103" in sees(store, "ann@acme.example")
    with pytest.raises(SourceAuthError) as info:
        list(connector(server, prefix="/ex/confluence/other/wiki", auth="oauth",
                       token="svc-token", username=None).content())
    assert "svc-token" not in str(info.value)


def test_bad_basic_credentials_fail_without_the_token_in_the_message(
        server: EmulatorServer) -> None:
    with pytest.raises(SourceAuthError) as info:
        list(connector(server, token="wrong-secret-token").content())
    assert "wrong-secret-token" not in str(info.value) and "401" in str(info.value)


def test_group_sync_pages_groups_and_members_by_id(server: EmulatorServer) -> None:
    pages = list(connector(server).identities())
    assert len(pages) >= 2 and all(not p.failures for p in pages)
    got = {(m.group, m.member) for p in pages for m in p.memberships}
    assert (P.group("g-staff", source="confluence"), "user:dana@acme.example") in got
    assert (P.group("g-ops", source="confluence"), "user:carl@acme.example") in got
    assert not any("hidden" in m or "bot" in m for _, m in got)


def test_attachments_inherit_their_page_access_and_leave_with_it(
        server: EmulatorServer, store: SqliteStore) -> None:
    e = emu(server)
    e.content_by_id("103")["attachments"] = [  # type: ignore[index]
        {"id": "att-1", "title": "failover.txt", "mediaType": "text/plain", "version": 1,
         "when": "2026-01-01T08:00:00.000Z", "data": f"Failover steps, {MARK}."},
        {"id": "att-2", "title": "diagram.png", "mediaType": "image/png", "data": "PNG"}]
    pipeline = synced(server, store, attachments=True)
    assert "att-1" in sees(store, "ann@acme.example")
    for denied in ("bob@acme.example", "carl@acme.example", "mallory@outside.example"):
        assert "att-1" not in sees(store, denied)
    att, page = store.document(f"{NAME}:att-1"), store.document(f"{NAME}:103")
    assert att is not None and page is not None and att.acl.key() == page.acl.key()
    assert store.document(f"{NAME}:att-2") is None  # not a format the extraction reads
    assert e.counters.to_json()["by_path"].get("/wiki/media/att-1") == 1  # the 302 followed
    conn = connector(server, attachments=True)
    list(conn.content())
    assert conn.http_stats.requests >= e.counters.to_json()["by_path"]["/wiki/media/att-1"]
    e.trash("103")
    report = pipeline.incremental_sync(connector(server, attachments=True))
    assert report.status == "ok"
    assert store.document(f"{NAME}:att-1") is None and store.document(f"{NAME}:103") is None


# -- options ------------------------------------------------------------------------------
def _options(**raw: Any) -> ConfluenceOptions:
    base = {"url": "https://acme.atlassian.net/wiki", "username": ADMIN,
            "token_env": "CONFLUENCE_TOKEN"}
    got = parse_options(ConfluenceConnector, "wiki", "confluence", {**base, **raw})
    assert isinstance(got, ConfluenceOptions)
    return got


def test_options_refuse_inline_secrets_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="token_env"):
        _options(token="abc")
    with pytest.raises(ConfigError, match="unknown key"):
        _options(colour="blue")
    with pytest.raises(ConfigError, match="time zone"):
        _options(timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="credentials"):
        _options(url="https://me:pw@acme.atlassian.net/wiki")
    with pytest.raises(ConfigError, match="email"):
        _options(account_emails={"acc-1": "not-an-email"})
    with pytest.raises(ConfigError, match="space_permissions"):
        _options(space_permissions="v3")
    with pytest.raises(ConfigError, match="page_size"):
        _options(page_size=0)
    with pytest.raises(ConfigError, match="spaces"):
        _options(spaces=["ENG", "bad key!"])
    with pytest.raises(ConfigError, match="api_url"):
        _options(auth="oauth", cloud_id="c-1", api_url="https://u:p@api.example")
    assert _options(spaces=["ENG"], timezone="+05:30").spaces == ["ENG"]
    assert _options(space_permissions="v2").space_permissions == "v2"
    oauth = _options(auth="oauth", cloud_id="c-1", username=None)
    assert oauth.api_base == "https://api.atlassian.com/ex/confluence/c-1/wiki"


def test_from_options_reads_the_token_from_the_named_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CONFLUENCE_TOKEN"):
        ConfluenceConnector.from_options("wiki", _options(), tmp_path, environ={})
    conn = ConfluenceConnector.from_options("wiki", _options(), tmp_path,
                                            environ={"CONFLUENCE_TOKEN": "t"})
    assert conn.kind == "confluence" and conn.capabilities.change_feed


def test_the_entry_points_are_registered() -> None:
    from apps.runtime import connector_class
    from emulators.base import registered

    assert connector_class("confluence") is ConfluenceConnector
    assert registered()["confluence"] is ConfluenceEmulator


def _service_account(server: EmulatorServer, **extra: Any) -> ConfluenceOptions:
    emu(server).tenant["service_accounts"] = [
        {"client_id": "svc-1", "client_secret": "s3cret-value", "token": "minted-bearer",
         "expires_in": 3600}]
    raw = {"url": f"{server.base_url}/wiki", "auth": "oauth", "cloud_id": "cloud-1",
           "api_url": server.base_url, "client_id": "svc-1", "client_secret_env": "SVC_SECRET",
           "spaces": SCOPE, "timezone": "Europe/Berlin", "account_emails": MAPPED,
           "requests_per_second": 0, **extra}
    options = parse_options(ConfluenceConnector, NAME, "confluence", raw)
    assert isinstance(options, ConfluenceOptions)
    return options


def _oauth(options: ConfluenceOptions, secret: str = "s3cret-value") -> ConfluenceConnector:
    return ConfluenceConnector.from_options(NAME, options, Path("."),
                                            environ={"SVC_SECRET": secret})


def test_a_service_account_mints_its_bearer_with_client_credentials(
        server: EmulatorServer, store: SqliteStore) -> None:
    e = emu(server)
    options = _service_account(server)
    report = Pipeline(store, HashingEmbedder()).full_sync(_oauth(options))
    assert report.status == "ok", report.errors
    assert "103" in sees(store, "ann@acme.example")
    assert "103" not in sees(store, "bob@acme.example")
    by_path = e.counters.to_json()["by_path"]
    assert by_path["/oauth/token"] == 1  # minted once, used until a minute before it expires
    # Every API request went through the gateway of the configured cloud id.
    api = [p for p in by_path if p != "/oauth/token"]
    assert api and all(p.startswith("/ex/confluence/cloud-1/wiki/") for p in api)
    doc = store.document(f"{NAME}:103")  # web links point at the site, not the gateway
    assert doc is not None and doc.url.endswith(f":{server.port}/wiki/spaces/ENG/pages/103")


def test_a_bearer_about_to_expire_is_minted_again_before_use(server: EmulatorServer) -> None:
    options = _service_account(server)
    emu(server).tenant["service_accounts"][0]["expires_in"] = 30  # within the minute's margin
    list(_oauth(options).content())
    assert emu(server).counters.to_json()["by_path"]["/oauth/token"] > 1


def test_an_expired_or_revoked_bearer_is_renewed_once(
        server: EmulatorServer, store: SqliteStore, caplog: pytest.LogCaptureFixture) -> None:
    e = emu(server)
    conn = _oauth(_service_account(server))
    pipeline = Pipeline(store, HashingEmbedder())
    assert pipeline.full_sync(conn).status == "ok"
    assert e.counters.to_json()["by_path"]["/oauth/token"] == 1
    e.expire_tokens()  # the site stops honouring the Bearer; the client still thinks it valid
    e.edit("101", body=f"<p>Edited home, {MARK}.</p>")
    caplog.set_level(logging.DEBUG)
    report = pipeline.incremental_sync(conn)
    assert report.status == "ok", report.errors
    assert e.counters.to_json()["by_path"]["/oauth/token"] == 2  # one renewal, not one per call
    assert "minted-bearer" not in caplog.text and "s3cret-value" not in caplog.text


def test_a_bearer_refused_again_after_renewal_is_an_auth_error(server: EmulatorServer) -> None:
    e = emu(server)
    conn = _oauth(_service_account(server))
    e.faults.add(Fault("/ex/confluence/*", status=401, times=None))
    with pytest.raises(SourceAuthError) as info:
        list(conn.content())
    assert e.counters.to_json()["by_path"]["/oauth/token"] == 2  # first mint + one renewal
    assert "s3cret-value" not in str(info.value) and "minted-bearer" not in str(info.value)


def test_a_wrong_client_secret_is_one_line_without_the_secret(
        server: EmulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SourceAuthError) as info:
        list(_oauth(_service_account(server), secret="wrong-secret-4711").content())
    message = str(info.value)
    assert "401" in message and "\n" not in message
    for secret in ("wrong-secret-4711", "s3cret-value"):
        assert secret not in message and secret not in caplog.text


def test_oauth_without_a_cloud_id_or_a_secret_is_a_config_error(server: EmulatorServer) -> None:
    with pytest.raises(ConfigError, match="cloud_id"):
        _service_account(server, cloud_id=None)
    with pytest.raises(ConfigError, match="cloud_id"):
        _service_account(server, cloud_id="../../evil")
    with pytest.raises(ConfigError, match="client_secret_env"):
        ConfluenceConnector.from_options(NAME, _service_account(server), Path("."), environ={})


def test_moving_a_subtree_from_under_a_restriction_reaches_its_descendants_incrementally(
        server: EmulatorServer, store: SqliteStore) -> None:
    pipeline = synced(server, store)
    assert not {"103", "104"} & sees(store, "bob@acme.example")
    emu(server).move("103", parent="101")  # out from under 102 (g-eng); 104 moves with it
    report = pipeline.incremental_sync(connector(server))
    assert report.status == "ok" and report.chunks_embedded == 0  # 103's text is unchanged
    # 103 names bob and ann; 104 inherits 103 only now: bob reads both, carl still neither.
    assert {"103", "104"} <= sees(store, "bob@acme.example")
    assert not {"103", "104"} & sees(store, "carl@acme.example")


def test_a_restriction_cut_at_its_expansion_limit_is_read_in_full(
        server: EmulatorServer, store: SqliteStore) -> None:
    emu(server).tenant["restriction_limit"] = 2  # 103 names exactly two users: at the limit
    emu(server).restrict("103", users=["acc-bob", "acc-ann"])
    synced(server, store)
    by_path = emu(server).counters.to_json()["by_path"]
    assert by_path.get("/wiki/rest/api/content/103/restriction/byOperation/read", 0) >= 1
    assert "103" in sees(store, "ann@acme.example")


@pytest.mark.parametrize(("site_zone", "configured", "found"), [
    ("+05:00", "+05:00", True),   # the account's zone configured: the edit is in the window
    ("-05:00", "-05:00", True),
    ("-05:00", "UTC", False),     # read five hours late at the site: the edit is missed
    ("+05:00", "UTC", True),      # read five hours early: a wider window, nothing missed
])
def test_the_lastmodified_window_is_written_in_the_configured_zone(
        server: EmulatorServer, store: SqliteStore, site_zone: str, configured: str,
        found: bool) -> None:
    e = emu(server)
    e.tenant["timezone"] = site_zone
    pipeline = synced(server, store)
    e.edit("101", body=f"<p>Edited home, {MARK}.</p>")
    policy = HttpPolicy(NAME, HttpLimits(rate=0))
    client = ConfluenceClient(f"{server.base_url}/wiki", policy, auth="basic", token=TOKEN,
                              username=ADMIN, page_size=2)
    conn = ConfluenceConnector(NAME, client, spaces=SCOPE, time_zone=configured,
                               overlap_minutes=1, account_emails=MAPPED)
    record = pipeline.cursor(NAME, "content")
    assert record is not None and record.next is not None
    upserts = {op.document.doc_id for page in conn.content(record.next)
               for op in page.operations if isinstance(op, Upsert)}
    assert (f"{NAME}:101" in upserts) is found


# -- space permissions: v2 assignments, roles, anonymous and unlicensed access -----------
PEOPLE = ("ann@acme.example", "bob@acme.example", "carl@acme.example", "dana@acme.example",
          "eve@acme.example", "mallory@outside.example")


def _with_a_role(server: EmulatorServer) -> None:
    e = emu(server)
    e.tenant["roles"] = [{"id": "r-viewers", "name": "Space viewers"}]
    eng = next(sp for sp in e.tenant["spaces"] if sp["key"] == "ENG")
    eng["permissions"].append({"operation": "read", "roles": ["r-viewers"]})
    e.validate(e.tenant)


def test_v2_space_permissions_grant_users_and_groups_and_never_a_role(
        server: EmulatorServer, tmp_path: Path) -> None:
    _with_a_role(server)
    stores = {}
    for mode in ("v1", "v2"):
        store = SqliteStore(tmp_path / f"{mode}.sqlite3")
        report = Pipeline(store, HashingEmbedder()).full_sync(connector(server, perms=mode))
        assert report.status == "ok", report.errors
        stores[mode] = store
        if mode == "v2":
            assert any("role principal (r-viewers)" in w for w in report.warnings)
            assert any("space PUB" in w and "anonymous" in w for w in report.warnings)
    v2 = stores["v2"]
    # Granted: a group grant (ENG: staff), user grants (HR), a mapped hidden email (dana).
    assert {"101", "103", "104"} <= sees(v2, "ann@acme.example")
    assert {"201", "203"} <= sees(v2, "dana@acme.example")
    assert "201" in sees(v2, "carl@acme.example")
    # Denied: administer is not read; bob holds no HR grant; the role grants nobody; v2 does
    # not show anonymous access, so the public space is not opened to strangers.
    assert sees(v2, "eve@acme.example") == set()
    assert not {"201", "202", "203"} & sees(v2, "bob@acme.example")
    assert sees(v2, "mallory@outside.example") == set()
    doc = v2.document(f"{NAME}:301")
    assert doc is not None and not doc.acl.readable_by_somebody
    # Everything but the anonymous space is the same in both modes, for every person.
    for person in PEOPLE:
        assert sees(v2, person) == sees(stores["v1"], person) - {"301"}, person
    by_path = emu(server).counters.to_json()["by_path"]
    assert by_path["/wiki/api/v2/users-bulk"] == 1  # every user grant resolved in one call
    assert by_path["/wiki/api/v2/spaces"] == 2  # the three keys of the scope, 2 a page
    for store in stores.values():
        store.close()


def test_v2_space_permissions_page_by_cursor_through_the_oauth_gateway(
        server: EmulatorServer, store: SqliteStore) -> None:
    e = emu(server)
    e.tenant["credentials"].append({"bearer": "svc-token", "admin": True})
    eng = next(sp for sp in e.tenant["spaces"] if sp["key"] == "HR")
    assert len(eng["permissions"][0]["users"]) == 3  # more than a page of 2
    synced(server, store, prefix="/ex/confluence/cloud-1/wiki", auth="oauth", token="svc-token",
           username=None, perms="v2")
    assert "201" in sees(store, "carl@acme.example")  # carl is the second page's grant
    assert "201" in sees(store, "dana@acme.example") and "201" not in sees(
        store, "bob@acme.example")
    by_path = e.counters.to_json()["by_path"]
    assert by_path["/ex/confluence/cloud-1/wiki/api/v2/spaces/2/permissions"] == 2


def test_v2_space_permissions_that_cannot_be_read_close_the_space(
        server: EmulatorServer, store: SqliteStore) -> None:
    emu(server).tenant["credentials"][0]["admin"] = False  # 403 on the v2 permissions
    report = Pipeline(store, HashingEmbedder()).full_sync(connector(server, perms="v2"))
    assert report.status == "partial"
    assert any("permissions could not be read" in e and "403" in e for e in report.errors)
    for person in PEOPLE:
        assert sees(store, person) == set()


def test_unlicensed_access_is_reported_and_opens_nothing(server: EmulatorServer,
                                                         store: SqliteStore) -> None:
    next(sp for sp in emu(server).tenant["spaces"] if sp["key"] == "ENG")["unlicensed"] = True
    report = Pipeline(store, HashingEmbedder()).full_sync(connector(server))
    assert report.status == "ok"
    assert any("unlicensed" in w and "ENG" in w for w in report.warnings)
    assert "101" in sees(store, "ann@acme.example")  # the licensed readers still read
    for stranger in ("mallory@outside.example", "eve@acme.example"):
        assert not {"101", "105", "107"} & sees(store, stranger)


def test_an_edit_restriction_does_not_limit_reading(server: EmulatorServer,
                                                    store: SqliteStore) -> None:
    home = emu(server).content_by_id("101")
    assert home is not None
    home["restrictions"]["update"] = {"users": ["acc-ann"]}
    synced(server, store)
    assert {"101", "105"} <= sees(store, "bob@acme.example")  # staff reads ENG's home
    assert "101" not in sees(store, "mallory@outside.example")


# -- answers of the wrong shape ---------------------------------------------------------
def _answer(server: EmulatorServer, path: str, body: Any, times: int | None = None) -> None:
    emu(server).faults.add(Fault(path, status=200, body=body, times=times))


def test_a_malformed_item_is_skipped_closed_and_the_rest_syncs(server: EmulatorServer,
                                                               store: SqliteStore) -> None:
    pipeline = synced(server, store)
    assert "103" in sees(store, "ann@acme.example")
    good = requests.get(f"{server.base_url}/wiki/rest/api/content/search",
                        params={"cql": 'space in ("ENG","HR","PUB") AND type in (page, blogpost)',
                                "expand": PAGE_EXPAND, "limit": "2"},
                        auth=(ADMIN, TOKEN), timeout=10).json()
    assert [r["id"] for r in good["results"]] == ["101", "102"]
    first = copy.deepcopy(good)
    first["results"][1]["restrictions"] = ["not", "an", "object"]  # 102: wrong type
    first["results"][0]["ancestors"] = ["not an ancestor"]  # 101: wrong entry type
    first["results"].append("not an item")
    _answer(server, "/wiki/rest/api/content/search", first, times=1)
    report = pipeline.full_sync(connector(server))
    for cid in ("101", "102"):
        assert any(e.startswith(f"{cid}: skipped") and "malformed" in e
                   for e in report.errors), (report.errors, report.warnings)
    assert any("not a content item" in w for w in report.warnings)
    for cid in ("101", "102"):  # closed to everyone, never left with its old ACL
        doc = store.document(f"{NAME}:{cid}")
        assert doc is None or not doc.acl.readable_by_somebody
        assert cid not in sees(store, "ann@acme.example")
    assert {"105", "106", "201"} <= sees(store, "carl@acme.example")
    assert {"103", "104", "201"} <= sees(store, "ann@acme.example")


@pytest.mark.parametrize(("path", "body"), [
    ("/wiki/rest/api/space/ENG", {"key": "ENG", "permissions": [1, "x"]}),
    ("/wiki/rest/api/space/ENG", {"key": "ENG", "permissions": [{"operation": "read",
                                                                   "subjects": []}]}),
    ("/wiki/rest/api/space/ENG", ["not", "an", "object"]),
])
def test_malformed_space_permissions_close_the_space(server: EmulatorServer, store: SqliteStore,
                                                     path: str, body: Any) -> None:
    _answer(server, path, body)
    report = Pipeline(store, HashingEmbedder()).full_sync(connector(server))
    assert report.status == "partial"
    assert any("space ENG" in e for e in report.errors)
    assert not {"101", "102", "103", "104", "105", "106", "107"} & sees(store, "ann@acme.example")
    assert "201" in sees(store, "ann@acme.example")  # HR is unaffected


def test_a_malformed_restriction_answer_skips_the_page(server: EmulatorServer,
                                                       store: SqliteStore) -> None:
    e = emu(server)
    e.forbid("103")  # make the connector read 103's restriction on its own
    e.tenant["restriction_limit"] = 1
    _answer(server, "/wiki/rest/api/content/103/restriction/byOperation/read",
            {"restrictions": {"user": "nobody", "group": 5}}, times=None)
    report = Pipeline(store, HashingEmbedder()).full_sync(connector(server))
    assert any(err.startswith("103: skipped") and "malformed" in err for err in report.errors)
    assert not {"103", "104"} & sees(store, "ann@acme.example")  # 104 sits under 103
    assert "101" in sees(store, "ann@acme.example")


@pytest.mark.parametrize("body", [{"results": "x"},
                                  {"results": [{"id": "101"}], "_links": {"next": 5}},
                                  {"no": "results"}, ["a list"]])
def test_a_malformed_listing_fails_the_pass_in_one_line_and_prunes_nothing(
        server: EmulatorServer, store: SqliteStore, body: Any) -> None:
    pipeline = synced(server, store)
    before = set(store.doc_ids(NAME))
    _answer(server, "/wiki/rest/api/content/search", body, times=None)
    with pytest.raises(SourceError) as info:
        pipeline.incremental_sync(connector(server))
    assert "\n" not in str(info.value)
    assert set(store.doc_ids(NAME)) == before  # nothing pruned as if deleted
    assert "103" in sees(store, "ann@acme.example")


def test_malformed_group_members_keep_the_last_good_groups(server: EmulatorServer,
                                                           store: SqliteStore) -> None:
    pipeline = synced(server, store)
    assert "105" in sees(store, "carl@acme.example")  # through g-ops
    _answer(server, "/wiki/rest/api/group/g-ops/membersByGroupId",
            {"results": [{"accountId": ["acc-carl"]}, 7]}, times=None)
    report = pipeline.full_sync(connector(server))
    assert report.status == "partial"
    assert any("groups" in e and "malformed" in e for e in report.errors)
    assert "105" in sees(store, "carl@acme.example")  # the last good snapshot holds


def test_a_token_answer_without_a_token_is_an_auth_error(server: EmulatorServer) -> None:
    _answer(server, "/oauth/token", {"token_type": "Bearer"})
    with pytest.raises(SourceAuthError, match="no access token"):
        list(_oauth(_service_account(server)).content())


def test_an_empty_page_in_the_middle_of_the_ids_listing_prunes_nothing(
        server: EmulatorServer, store: SqliteStore) -> None:
    """An empty page with a next link while `start` < `totalSize` is a listing cut short,
    not its end: what it did not reach is not known to be gone."""
    pipeline = synced(server, store)
    before = set(store.doc_ids(NAME))
    e = emu(server)
    e.edit("101", body=f"<p>Edited home, {MARK}.</p>")
    e.trash("107")  # really gone; but listed after the cut, so kept for now
    e.tenant["quirk_empty_page_at"] = 4  # page_size 2: the third page comes back empty
    report = pipeline.incremental_sync(connector(server))
    assert report.status == "ok", report.errors
    assert report.deleted == 0 and set(store.doc_ids(NAME)) == before
    assert any("ended early" in w for w in report.warnings)
    assert report.indexed == 1  # the edit (101) still went in
    del e.tenant["quirk_empty_page_at"]
    report = pipeline.incremental_sync(connector(server))
    assert report.deleted == 1 and f"{NAME}:107" not in store.doc_ids(NAME)


def test_an_empty_page_in_the_middle_of_a_full_listing_fails_the_pass_unpruned(
        server: EmulatorServer, store: SqliteStore) -> None:
    pipeline = synced(server, store)
    before = set(store.doc_ids(NAME))
    emu(server).tenant["quirk_empty_page_at"] = 4
    with pytest.raises(SourceUnavailable, match="empty page that still had a next link"):
        pipeline.full_sync(connector(server))
    assert set(store.doc_ids(NAME)) == before
    assert "201" in sees(store, "ann@acme.example")  # listed after the cut, still there
