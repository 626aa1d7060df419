"""SharePoint connector against the Graph + Entra emulator: delta (edit, delete, move out of
scope, permission-only change, stale token), the requests it makes (permission calls only where
sharing changed, one token), link settings, and sign-in failures in one line without a secret."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.base import AclUpdate, ContentPage, Delete, Upsert
from connectors.sharepoint.connector import SharePointConnector, SharePointOptions, email_of
from core.errors import ConfigError, CursorExpired, SourceAuthError
from emulators.base import EmulatorServer, Fault
from emulators.graph import GraphEmulator
from emulators.graph.generate import CLIENT_ID, CLIENT_SECRET, TENANT_ID, example_tenant
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from tests.contract.connector_contract import ConnectorContract
from tests.integration.test_connector_contract_sharepoint import (
    GraphHarness,
    GraphTenant,
    make_connector,
)
from tests.support import clearance_exe

pytestmark = pytest.mark.integration
NAME = "sp"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(GraphEmulator(copy.deepcopy(example_tenant()))) as srv:
        yield srv


def emu(server: EmulatorServer) -> GraphEmulator:
    assert isinstance(server.emulator, GraphEmulator)
    return server.emulator


def run(conn: SharePointConnector, cursor: str | None = None) -> tuple[list[ContentPage], str]:
    pages = list(conn.content(cursor))
    last = pages[-1].cursor
    assert last is not None
    return pages, last


def ops(pages: list[ContentPage]) -> list[object]:
    return [op for p in pages for op in p.operations]


def calls(server: EmulatorServer, word: str) -> int:
    return sum(n for p, n in emu(server).counters.to_json()["by_path"].items() if word in p)


def test_an_edit_is_reindexed_without_reading_its_permissions(server: EmulatorServer) -> None:
    _, cursor = run(make_connector(NAME, server))
    emu(server).edit("d-eng", "i-plan", content="A new plan, zephyrmarker.")
    emu(server).counters.reset()
    conn = make_connector(NAME, server)
    pages, _ = run(conn, cursor)
    upserts = [op for op in ops(pages) if isinstance(op, Upsert)]
    assert [u.document.doc_id for u in upserts] == [f"{NAME}:d-eng:i-plan"]
    assert "A new plan" in upserts[0].document.sections[0].text
    assert calls(server, "/permissions") == 0 and conn.permission_calls == 0
    assert calls(server, "/content") == 1


def test_delete_and_move_out_of_scope_are_deletions(server: EmulatorServer) -> None:
    _, cursor = run(make_connector(NAME, server))
    emu(server).delete("d-eng", "f-plans")  # a folder: both files under it go
    emu(server).move("d-hr", "i-hb", to_drive="d-arch")
    pages, _ = run(make_connector(NAME, server), cursor)
    deleted = sorted(op.doc_id for op in ops(pages) if isinstance(op, Delete))
    assert deleted == [f"{NAME}:d-eng:i-budget", f"{NAME}:d-eng:i-plan", f"{NAME}:d-hr:i-hb"]
    assert not [op for op in ops(pages) if isinstance(op, Upsert)]


def test_a_deleted_folder_takes_its_files_along_even_when_only_it_is_reported(
        server: EmulatorServer) -> None:
    _, cursor = run(make_connector(NAME, server))
    emu(server).delete("d-eng", "f-secret", report_children=False)
    pages, _ = run(make_connector(NAME, server), cursor)
    deleted = sorted(op.doc_id for op in ops(pages) if isinstance(op, Delete))
    assert deleted == [f"{NAME}:d-eng:i-keys", f"{NAME}:d-eng:i-limited"]


def test_a_malformed_permission_answer_closes_the_file(server: EmulatorServer) -> None:
    emu(server).faults.add(Fault("/v1.0/drives/d-hr/items/i-hb/permissions", status=200,
                                 body={"value": "not a list"}, times=None))
    pages, _ = run(make_connector(NAME, server))
    docs = {op.document.doc_id: op.document for op in ops(pages) if isinstance(op, Upsert)}
    assert not docs[f"{NAME}:d-hr:i-hb"].acl.readable_by_somebody
    assert docs[f"{NAME}:d-hr:i-guest"].acl.readable_by_somebody
    assert any(f.scope == "acl" for p in pages for f in p.failures)


def test_a_permission_only_change_is_an_acl_update_without_download(
        server: EmulatorServer) -> None:
    _, cursor = run(make_connector(NAME, server))
    emu(server).set_permissions("d-eng", "f-secret", [{"roles": ["read"], "grantedToV2": {
        "user": {"id": "u-dana"}}}])
    emu(server).counters.reset()
    conn = make_connector(NAME, server)
    pages, _ = run(conn, cursor)
    updates = {op.doc_id: op.acl for op in ops(pages) if isinstance(op, AclUpdate)}
    assert set(updates) == {f"{NAME}:d-eng:i-keys", f"{NAME}:d-eng:i-limited"}
    for acl in updates.values():
        assert acl.allows({"user:dana@contoso.example"})
        assert not acl.allows({"user:carl@contoso.example"})  # the old owner lost it
    # limited.txt's own Limited Access grant still admits nobody.
    assert not updates[f"{NAME}:d-eng:i-limited"].allows({"user:bob@contoso.example"})
    assert calls(server, "/content") == 0
    # The folder and the two files under it were re-read; nothing else.
    assert calls(server, "/permissions") == 2


def test_a_moved_file_takes_the_sharing_of_its_new_folder(server: EmulatorServer) -> None:
    _, cursor = run(make_connector(NAME, server))
    emu(server).move("d-eng", "i-plan", parent="f-secret")
    pages, _ = run(make_connector(NAME, server), cursor)
    got = [op for op in ops(pages) if isinstance(op, Upsert | AclUpdate)]
    assert len(got) == 1
    acl = got[0].document.acl if isinstance(got[0], Upsert) else got[0].acl
    assert acl.allows({"user:carl@contoso.example"})
    assert not acl.allows({"user:ann@contoso.example", "group:entra:g-eng"})


def test_a_stale_delta_token_raises_cursor_expired(server: EmulatorServer) -> None:
    _, cursor = run(make_connector(NAME, server))
    emu(server).expire_tokens("d-hr")
    with pytest.raises(CursorExpired):
        run(make_connector(NAME, server), cursor)
    with pytest.raises(CursorExpired):
        list(make_connector(NAME, server).content('{"v": 99}'))


def test_one_token_serves_a_whole_sync(server: EmulatorServer) -> None:
    conn = make_connector(NAME, server)
    run(conn)
    list(conn.permissions())
    list(conn.identities())
    assert calls(server, "/oauth2/v2.0/token") == 1
    assert emu(server).counters.to_json()["requests"] > 20


def test_a_short_lived_token_is_renewed_before_it_expires(server: EmulatorServer) -> None:
    emu(server).tenant["token_lifetime"] = 120  # less than the 5-minute margin
    conn = make_connector(NAME, server)
    run(conn)
    assert conn.client.token_requests > 1  # never sent a token about to expire


def test_a_revoked_token_is_renewed_once_and_the_sync_goes_on(server: EmulatorServer) -> None:
    conn = make_connector(NAME, server)
    _, cursor = run(conn)
    assert conn.client.token_requests == 1
    emu(server).rotate_signing_key()
    emu(server).edit("d-hr", "i-hb", content="Edited handbook, zephyrmarker.")
    pages, _ = run(conn, cursor)
    assert [op.document.doc_id for op in ops(pages) if isinstance(op, Upsert)] == \
        [f"{NAME}:d-hr:i-hb"]
    assert conn.client.token_requests == 2


def test_a_file_over_the_size_limit_is_reported_not_downloaded(server: EmulatorServer) -> None:
    from connectors.extract.limits import Limits

    conn = make_connector(NAME, server, limits=Limits(max_bytes=30))
    pages, _ = run(conn)
    too_big = [f for p in pages for f in p.failures if "more than the 30" in f.reason]
    assert too_big and all(f.acl is not None for f in too_big)
    assert calls(server, "/content") < len(GraphTenant(emu(server), NAME).doc_ids())


def test_link_settings_map_organization_and_anonymous_links(server: EmulatorServer,
                                                            tmp_path: Path) -> None:
    tenant = GraphTenant(emu(server), NAME, organization_domain=True, anonymous_everyone=True)

    class Wider(GraphHarness):
        def connector(self) -> SharePointConnector:
            return make_connector(NAME, server, organization_links="domain",
                                  anonymous_links="everyone")

    harness = Wider(tenant, server)
    harness.name = NAME
    store = SqliteStore(tmp_path / "i.sqlite3")
    try:
        assert Pipeline(store, HashingEmbedder()).full_sync(harness.connector()).status == "ok"
        ConnectorContract().assert_matches_truth(store, harness)
        truth = tenant.truth()
        assert f"{NAME}:d-eng:i-anon" in truth["mallory@outside.example"]
        assert f"{NAME}:d-eng:i-org" in truth["dana@contoso.example"]
        assert f"{NAME}:d-eng:i-org" not in truth["gus@gmail.example"]
    finally:
        store.close()


def test_by_default_links_that_need_the_url_grant_nothing(server: EmulatorServer,
                                                          tmp_path: Path) -> None:
    tenant = GraphTenant(emu(server), NAME)
    truth = tenant.truth()
    assert truth["mallory@outside.example"] == frozenset()
    # anon.md: only the site admin; expired.md: dana's link expired; visitors.md: a site group.
    for doc in ("i-anon", "i-exp", "i-sg", "i-limited"):
        readers = {e for e, docs in truth.items() if f"{NAME}:d-eng:{doc}" in docs}
        assert readers <= {"eve@contoso.example", "carl@contoso.example"}, (doc, readers)
    conn = make_connector(NAME, server)
    pages, _ = run(conn)
    acls = {op.document.doc_id: op.document.acl for op in ops(pages) if isinstance(op, Upsert)}
    assert not acls[f"{NAME}:d-eng:i-exp"].allows({"user:dana@contoso.example", "everyone"})
    assert acls[f"{NAME}:d-eng:i-all"].allows({"domain:contoso.example"})
    assert not acls[f"{NAME}:d-eng:i-all"].allows({"user:gus@gmail.example", "everyone",
                                                   "domain:gmail.example"})
    assert any("site group" in w for p in pages for w in p.warnings)


def test_guest_addresses_come_from_mail_never_from_an_ext_upn() -> None:
    assert email_of({"userPrincipalName": "g_x.example#EXT#@t.onmicrosoft.example",
                     "mail": "G@x.example", "userType": "Guest"}) == "g@x.example"
    assert email_of({"userPrincipalName": "g_x.example#EXT#@t.onmicrosoft.example",
                     "mail": None, "userType": "Guest"}) is None
    assert email_of({"userPrincipalName": "ann@contoso.example", "mail": None}) == \
        "ann@contoso.example"


def test_a_bad_secret_is_one_line_without_the_secret(server: EmulatorServer) -> None:
    wrong = "not-the-secret-4711"
    conn = make_connector(NAME, server, secret=wrong)
    with pytest.raises(SourceAuthError) as caught:
        run(conn)
    message = str(caught.value)
    assert "invalid_client" in message and "\n" not in message
    assert wrong not in message and CLIENT_SECRET not in message


def options(server: EmulatorServer, **extra: object) -> SharePointOptions:
    return SharePointOptions.model_validate({
        "tenant_id": TENANT_ID, "client_id": CLIENT_ID, "client_secret_env": "SP_SECRET",
        "authority_host": server.base_url, "graph_url": f"{server.base_url}/v1.0",
        "ca_bundle": str(server.ca_bundle), "sites": ["site-hr"], **extra})


def test_from_options_reads_the_secret_from_the_environment(server: EmulatorServer,
                                                           tmp_path: Path) -> None:
    conn = SharePointConnector.from_options(NAME, options(server), tmp_path,
                                            environ={"SP_SECRET": CLIENT_SECRET})
    pages, _ = run(conn)
    assert sorted(op.document.doc_id for op in ops(pages) if isinstance(op, Upsert)) == \
        [f"{NAME}:d-hr:i-guest", f"{NAME}:d-hr:i-hb"]
    with pytest.raises(ConfigError, match="SP_SECRET"):
        SharePointConnector.from_options(NAME, options(server), tmp_path, environ={})
    with pytest.raises(ValueError, match="https"):
        options(server, graph_url="http://127.0.0.1:1/v1.0")
    with pytest.raises(ValueError, match="secret"):
        SharePointOptions.model_validate({"tenant_id": "t", "client_id": "c",
                                          "client_secret": "inline"})


def test_clearance_emulate_graph_serves_the_tenant_file(tmp_path: Path) -> None:
    data = tmp_path / "tenant.json"
    data.write_text(json.dumps(example_tenant()))
    env = {k: v for k, v in os.environ.items() if k not in ("CLEARANCE_CONFIG", "CLEARANCE_HOME")}
    proc = subprocess.Popen([clearance_exe(), "--home", str(tmp_path / "home"), "emulate",
                             "graph", "--tenant", str(data), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        ca_bundle = proc.stdout.readline().strip().removeprefix("ca_bundle ")
        assert base_url.startswith("https://127.0.0.1:")
        srv = type("S", (), {"base_url": base_url, "ca_bundle": ca_bundle})()
        conn = SharePointConnector.from_options(NAME, options(srv), tmp_path,  # type: ignore[arg-type]
                                                environ={"SP_SECRET": CLIENT_SECRET})
        pages, _ = run(conn)
        assert len([op for op in ops(pages) if isinstance(op, Upsert)]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def app_certificate() -> tuple[str, str, str]:
    """(private key PEM, SHA-1 thumbprint hex, certificate PEM) of a throwaway app cert."""
    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    issued = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert(
        "clearance-app.example", key_type=trustme.KeyType.RSA)
    cert_pem = issued.cert_chain_pems[0].bytes()
    thumb = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA1()).hex()
    return issued.private_key_pem.bytes().decode(), thumb, cert_pem.decode()


def test_with_a_certificate_site_groups_grant_their_members(tmp_path: Path) -> None:
    key, thumb, cert = app_certificate()
    data = example_tenant()
    data["apps"][0]["certificate_pem"] = cert
    with EmulatorServer(GraphEmulator(data)) as srv:
        tenant = GraphTenant(emu(srv), NAME, site_groups=True)

        class WithCertificate(GraphHarness):
            def connector(self) -> SharePointConnector:
                return make_connector(NAME, srv, secret=None, certificate=(key, thumb))

        harness = WithCertificate(tenant, srv)
        harness.name = NAME
        store = SqliteStore(tmp_path / "i.sqlite3")
        try:
            pipeline = Pipeline(store, HashingEmbedder())
            assert pipeline.full_sync(harness.connector()).status == "ok"
            ConnectorContract().assert_matches_truth(store, harness)
            truth = tenant.truth()
            # Eng Visitors (site group 4, bob) reads the library; Eng Members (3, ann) visitors.md.
            assert f"{NAME}:d-eng:i-plan" in truth["bob@contoso.example"]
            assert f"{NAME}:d-eng:i-sg" in truth["ann@contoso.example"]
            assert f"{NAME}:d-eng:i-sg" not in truth["bob@contoso.example"]
            assert calls(srv, "/_api/web/sitegroups") >= 1
        finally:
            store.close()
        # A wrong certificate is refused in one line.
        other_key, other_thumb, _ = app_certificate()
        with pytest.raises(SourceAuthError, match="invalid_client"):
            run(make_connector(NAME, srv, secret=None, certificate=(other_key, other_thumb)))


def test_a_secret_token_cannot_read_site_groups(server: EmulatorServer) -> None:
    conn = make_connector(NAME, server)
    with pytest.raises(SourceAuthError):
        conn.client.site_groups("https://contoso.sharepoint.example/sites/eng")


def test_without_a_site_list_every_site_is_discovered_and_onedrives_only_when_asked(
        server: EmulatorServer) -> None:
    conn = make_connector(NAME, server, onedrive=False)
    conn.sites = None
    pages, _ = run(conn)
    drives = {op.document.doc_id.split(":")[1] for op in ops(pages) if isinstance(op, Upsert)}
    assert drives == {"d-eng", "d-hr", "d-arch"}
    conn = make_connector(NAME, server, onedrive=True)
    conn.sites = None
    pages, _ = run(conn)
    drives = {op.document.doc_id.split(":")[1] for op in ops(pages) if isinstance(op, Upsert)}
    assert drives == {"d-eng", "d-hr", "d-arch", "d-od-ann"}


def test_a_file_whose_listing_understates_its_size_is_reported_once_not_retried(
        server: EmulatorServer) -> None:
    """The listing says 10 bytes, the download runs past the limit: the download is cut off and
    the file reported as too large (not transient: the same bytes would fail again), with its
    ACL so it leaves the index closed; the other files still sync."""
    from connectors.extract.limits import Limits

    emu(server).edit("d-eng", "i-plan", content="x" * 5000, size=10)
    conn = make_connector(NAME, server, limits=Limits(max_bytes=1000))
    pages, _ = run(conn)
    failures = {f.source_id: f for p in pages for f in p.failures}
    assert "i-plan" in failures
    failure = failures["i-plan"]
    assert "more than the 1000 bytes" in failure.reason
    assert not failure.transient and failure.acl is not None
    upserted = {op.document.doc_id for op in ops(pages) if isinstance(op, Upsert)}
    assert f"{NAME}:d-eng:i-plan" not in upserted and upserted
