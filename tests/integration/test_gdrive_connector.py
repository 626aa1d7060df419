"""The Google Drive connector against the emulator, beyond the contract: the changes feed for
edits, trash, permission changes (a file's and a folder's) and removals; an invalid page token
told by status and `reason`; quota 403/429 retried, a real 403 not; unreadable permissions
closing a file; Docs exported with headings; bad key files, wrong signatures and unset
variables failing in one line without key material."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auth.identity import CachedResolver
from connectors.base import AclUpdate, Delete, Upsert, parse_options
from connectors.gdrive.connector import GoogleDriveConnector, GoogleDriveOptions
from connectors.http import HttpLimits, HttpPolicy
from core.errors import ConfigError, CursorExpired, SourceAuthError
from emulators.base import EmulatorServer, Fault
from emulators.google import GoogleEmulator, google_error
from emulators.google.generate import ServiceAccount, example_tenant, to_user
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from tests.integration.test_connector_contract_gdrive import DriveTenant, make_connector

pytestmark = pytest.mark.integration
ANN, BOB, CARL, DANA, FRANK = (f"{n}@acme.example" for n in ("ann", "bob", "carl", "dana",
                                                              "frank"))


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return ServiceAccount.new()


@pytest.fixture
def server(account: ServiceAccount) -> Iterator[EmulatorServer]:
    emulator = GoogleEmulator(example_tenant(account))
    with EmulatorServer(emulator) as srv:
        emulator.bind(srv.base_url)
        yield srv


def emu(server: EmulatorServer) -> GoogleEmulator:
    emulator = server.emulator
    assert isinstance(emulator, GoogleEmulator)
    return emulator


def feed_after_full(connector: GoogleDriveConnector) -> str:
    pages = list(connector.content())
    cursor = pages[-1].cursor
    assert cursor is not None
    return cursor


def ops_of(connector: GoogleDriveConnector, cursor: str) -> list[Any]:
    return [op for page in connector.content(cursor) for op in page.operations]


def sees(store: SqliteStore, email: str, name: str = "src") -> set[str]:
    resolver = CachedResolver(store, [name])
    return {h.doc_id.rsplit(":", 1)[1]
            for h in store.lexical("zephyrmarker", acl_filter(resolver(email)), 1000)}


def test_the_changes_feed_reports_edits_trash_permission_changes_and_removals(
        server: EmulatorServer, account: ServiceAccount) -> None:
    connector = make_connector(server, account, page_size=50)
    cursor = feed_after_full(connector)
    e = emu(server)
    e.edit("d-plan", content="Roadmap\nrewritten zephyrmarker")
    e.trash("t-bob")
    e.set_permissions("t-expired", [to_user(CARL)])
    e.remove("t-partners")
    e.counters.reset()
    ops = ops_of(make_connector(server, account, page_size=50), cursor)
    upserts = {op.document.doc_id for op in ops if isinstance(op, Upsert)}
    deletes = {op.doc_id for op in ops if isinstance(op, Delete)}
    updates = {op.doc_id: op.acl for op in ops if isinstance(op, AclUpdate)}
    assert upserts == {"src:u:ann@acme.example:d-plan"}
    assert deletes == {"src:u:bob@acme.example:t-bob", "src:u:bob@acme.example:t-partners"}
    assert list(updates) == ["src:u:ann@acme.example:t-expired"]
    acl = updates["src:u:ann@acme.example:t-expired"]
    assert acl.allows({f"user:{CARL}"}) and not acl.allows({f"user:{DANA}"})
    # the permission-only change downloaded nothing: one export (the edited Doc), no media
    by_path = e.counters.to_json()["by_path"]
    assert by_path.get("/drive/v3/files/d-plan/export") == 1
    assert "/drive/v3/files/t-expired" not in by_path


def test_a_folder_sharing_change_reaches_the_files_under_it(
        server: EmulatorServer, account: ServiceAccount, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "i.sqlite3")
    pipeline = Pipeline(store, HashingEmbedder())
    assert pipeline.full_sync(make_connector(server, account)).status == "ok"
    assert "d-plan" in sees(store, CARL) and "d-plan" not in sees(store, FRANK)
    # My Drive: Drive reports the folder alone, the Doc under it changes access silently
    emu(server).set_permissions("f-plans", [to_user(FRANK)])
    report = pipeline.incremental_sync(make_connector(server, account))
    assert report.status == "ok" and report.acl_updated >= 1 and report.chunks_embedded == 0
    assert "d-plan" in sees(store, FRANK) and "d-plan" not in sees(store, CARL)
    store.close()


def test_an_invalid_page_token_is_cursor_expired_and_another_400_is_not(
        server: EmulatorServer, account: ServiceAccount) -> None:
    connector = make_connector(server, account, page_size=50)
    cursor = feed_after_full(connector)
    emu(server).expire_page_tokens()
    with pytest.raises(CursorExpired, match=r"pageToken|invalid"):
        ops_of(connector, cursor)
    fresh = feed_after_full(connector)
    bad = google_error(400, "invalidParameter", "Invalid field selection", location="fields")
    emu(server).faults.add(Fault("/drive/v3/changes", status=400, body=json.loads(bad.body)))
    with pytest.raises(Exception) as caught:
        ops_of(connector, fresh)
    assert not isinstance(caught.value, CursorExpired)
    with pytest.raises(CursorExpired):
        list(connector.content("not json"))


def test_quota_errors_are_retried_and_a_real_403_closes_the_file(
        server: EmulatorServer, account: ServiceAccount, tmp_path: Path) -> None:
    e = emu(server)
    e.rate_limit("/drive/v3/files", times=2, reason="userRateLimitExceeded")
    e.rate_limit("/drive/v3/changes/startPageToken", times=1, reason="rateLimitExceeded")
    e.rate_limit("/admin/directory/v1/groups", times=1, status=429,
                 reason="rateLimitExceeded")
    denied = google_error(403, "insufficientFilePermissions", "The user does not have "
                          "sufficient permissions for this file.")
    e.faults.add(Fault("/drive/v3/files/t-bob/permissions", status=403, times=None,
                       body=json.loads(denied.body)))
    policy = HttpPolicy("src", HttpLimits(rate=0, backoff_base=0.01),
                        ca_bundle=str(server.ca_bundle))
    store = SqliteStore(tmp_path / "i.sqlite3")
    report = Pipeline(store, HashingEmbedder()).full_sync(
        make_connector(server, account, policy=policy))
    assert report.status == "partial"  # one file's ACL is unknown: reported, not hidden
    assert policy.stats.throttled >= 4 and policy.stats.retries >= 4
    assert e.counters.to_json()["by_path"]["/drive/v3/files/t-bob/permissions"] == 1
    doc = store.document("src:u:bob@acme.example:t-bob")
    assert doc is not None and not doc.acl.readable_by_somebody
    assert any("t-bob" in err and "insufficientFilePermissions" in err
               for err in report.errors), report.errors
    tenant = DriveTenant(e, "src")
    truth = tenant.truth()
    for email in tenant.users:  # nothing else was closed or opened by the faults
        want = {d.rsplit(":", 1)[1] for d in truth[email]} - {"t-bob"}
        assert sees(store, email) == want, email
    store.close()


def test_docs_keep_their_headings_sheets_come_as_csv_and_links_cite_drive(
        server: EmulatorServer, account: ServiceAccount) -> None:
    connector = make_connector(server, account, page_size=50)
    docs = {op.document.doc_id.rsplit(":", 1)[1]: op.document
            for page in connector.content() for op in page.operations
            if isinstance(op, Upsert)}
    plan, sheet = docs["d-plan"], docs["s-budget"]
    assert plan.url == "https://docs.google.com/document/d/d-plan/edit"
    assert any("Plan" in s.headings for s in plan.sections), plan.sections
    assert "servers,100" in " ".join(s.text for s in sheet.sections)
    # shortcuts, folders, trashed files, images and suspended owners' files are not indexed
    assert not set(docs) & {"k-short", "f-plans", "t-trash", "b-image", "t-public"}
    assert {"d-spec", "s-fin", "t-eng", "p-deck", "t-partners"} <= set(docs)


# -- configuration and sign-in -------------------------------------------------------------------
def options(**extra: Any) -> GoogleDriveOptions:
    raw = {"delegated_admin": ANN, "domain": "acme.example", **extra}
    got = parse_options(GoogleDriveConnector, "g", "gdrive", raw)
    assert isinstance(got, GoogleDriveOptions)
    return got


@pytest.mark.parametrize("content, expected", [
    (None, "cannot be read"), ("{not json", "not JSON"), ("[]", "not a JSON object"),
    ('{"type": "authorized_user"}', "not a service account"),
    ("KEYLESS", "'private_key' is missing"), ("GARBLED", "cannot be loaded")])
def test_a_bad_key_file_is_one_config_line_without_key_material(
        tmp_path: Path, account: ServiceAccount, content: str | None, expected: str) -> None:
    path = tmp_path / "sa.json"
    info = account.key_file("https://127.0.0.1:1")
    if content == "KEYLESS":
        content = json.dumps({k: v for k, v in info.items() if k != "private_key"})
    elif content == "GARBLED":
        cut = info["private_key"][:200] + "\n-----END PRIVATE KEY-----"
        content = json.dumps({**info, "private_key": cut})
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        GoogleDriveConnector.from_options("g", options(service_account_file="sa.json"),
                                          tmp_path)
    message = str(caught.value)
    assert expected in message and len(message.splitlines()) == 1
    assert "PRIVATE KEY" not in message and info["private_key"][40:80] not in message


def test_key_from_an_environment_variable_and_an_unset_one(
        tmp_path: Path, account: ServiceAccount) -> None:
    opts = options(service_account_json_env="GDRIVE_KEY")
    with pytest.raises(ConfigError, match="GDRIVE_KEY, which is not set"):
        GoogleDriveConnector.from_options("g", opts, tmp_path, environ={})
    connector = GoogleDriveConnector.from_options(
        "g", opts, tmp_path, environ={"GDRIVE_KEY": json.dumps(account.key_file("https://x"))})
    assert connector.client.key.client_email == account.client_email
    with pytest.raises(ConfigError, match="exactly one"):
        GoogleDriveConnector.from_options("g", options(), tmp_path, environ={})


@pytest.mark.parametrize("raw, expected", [
    ({"service_account_file": "sa.json", "sharepoint_sites": []}, "unknown key"),
    ({"service_account_file": "sa.json", "private_key": "x"}, "looks like a secret"),
    ({"service_account_file": "sa.json", "my_drives": ["not-an-email"]}, "email"),
    ({"service_account_file": "sa.json", "api_endpoint": "http://x"}, "https"),
    ({"service_account_file": "sa.json", "domain_links": "yes"}, "domain_links"),
])
def test_bad_options_are_one_config_line(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_options(GoogleDriveConnector, "g", "gdrive",
                      {"delegated_admin": ANN, "domain": "acme.example", **raw})


def test_a_key_the_service_does_not_know_is_refused_in_one_line(
        server: EmulatorServer, account: ServiceAccount) -> None:
    stranger = ServiceAccount.new(client_email=account.client_email)  # same name, other key
    connector = make_connector(server, stranger)
    with pytest.raises(SourceAuthError) as caught:
        list(connector.content())
    message = str(caught.value)
    assert "invalid_grant" in message and "Invalid JWT Signature" in message
    assert len(message.splitlines()) == 1 and "PRIVATE KEY" not in message
    assert stranger.private_key_pem[40:80] not in message


def test_requests_share_connections(server: EmulatorServer, account: ServiceAccount,
                                    caplog: pytest.LogCaptureFixture) -> None:
    # google-auth's Request closes the session it wraps when collected: PolicyHttp keeps one,
    # so the pool survives token checks and every call of a user reuses its connection.
    connector = make_connector(server, account, page_size=1)
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        list(connector.content())
    opened = sum("Starting new HTTPS connection" in r.getMessage() for r in caplog.records)
    calls = emu(server).counters.to_json()["requests"]
    subjects = len(connector.client._services)
    assert calls > 40 and opened <= 2 * subjects + 1, (opened, calls, subjects)


@pytest.mark.parametrize("cursor", [
    "[]", '{"v": 99}', '{"v": 1, "phase": "feed"}',
    '{"v": 1, "phase": "feed", "todo": null, "at": null, "how": null, "start": null, '
    '"tokens": {}, "old": {}, "items": {"x": "not a pair"}, "acls": {}}',
    '{"v": 1, "phase": "inc", "todo": [3], "at": null, "how": null, "start": null, '
    '"tokens": {}, "old": {}, "items": {}, "acls": {}}',
    '{"v": 1, "phase": "inc", "todo": ["u:x@acme.example"], "at": "5", "how": "changes", '
    '"start": null, "tokens": {}, "old": {}, "items": {}, "acls": {}}'])
def test_a_cursor_that_is_not_ours_is_cursor_expired(
        server: EmulatorServer, account: ServiceAccount, cursor: str) -> None:
    with pytest.raises(CursorExpired):
        list(make_connector(server, account).content(cursor))
    with pytest.raises(CursorExpired):
        list(make_connector(server, account).permissions(cursor))


def test_group_sync_expands_nested_customer_and_external_members(
        server: EmulatorServer, account: ServiceAccount) -> None:
    pages = list(make_connector(server, account).identities())
    assert not [f for p in pages for f in p.failures]
    members = {(m.group, m.member) for p in pages for m in p.memberships}
    assert ("group:google:eng@acme.example", "group:google:leads@acme.example") in members
    assert ("group:google:leads@acme.example", f"user:{CARL}") in members
    assert ("group:google:partners@acme.example", "user:ext@partner.example") in members
    staff = {m for g, m in members if g == "group:google:staff@acme.example"}
    assert f"user:{FRANK}" in staff and "user:sam@acme.example" not in staff  # suspended
    assert not any(m.startswith("user:ext@") for m in staff)


def test_a_shared_drive_nobody_of_the_domain_can_be_impersonated_for_is_reported(
        server: EmulatorServer, account: ServiceAccount, tmp_path: Path) -> None:
    e = emu(server)
    e.tenant["drives"].append({"id": "0AOdd", "name": "Odd", "members": [
        {"type": "group", "role": "organizer", "emailAddress": "eng@acme.example"},
        {"type": "user", "role": "organizer", "emailAddress": "ext@partner.example"}]})
    store = SqliteStore(tmp_path / "i.sqlite3")
    report = Pipeline(store, HashingEmbedder()).full_sync(make_connector(server, account))
    assert report.status == "partial"
    assert any("0AOdd" in err and "no member of the domain" in err for err in report.errors)
    store.close()


def test_size_limits_report_big_files_without_downloading_them(
        server: EmulatorServer, account: ServiceAccount, tmp_path: Path) -> None:
    from connectors.extract.limits import Limits

    e = emu(server)
    e.edit("t-eng", content="big " * 200 + "zephyrmarker")  # 800 bytes, binary
    e.edit("d-spec", content="big " * 200 + "zephyrmarker")  # a Doc: export refused
    e.tenant["export_limit_bytes"] = 500
    store = SqliteStore(tmp_path / "i.sqlite3")
    connector = make_connector(server, account, limits=Limits(max_bytes=600))
    report = Pipeline(store, HashingEmbedder()).full_sync(connector)
    by_path = e.counters.to_json()["by_path"]
    assert "/drive/v3/files/t-eng" not in by_path  # its size said no: never downloaded
    assert any("t-eng" in err and "600 allowed" in err for err in report.errors), report.errors
    assert any("exportSizeLimitExceeded" in err for err in report.errors), report.errors
    assert "src:d:0AEng:t-eng" not in store.doc_ids("src")
    assert "src:u:ann@acme.example:d-plan" in store.doc_ids("src")
    assert repr(connector.client.key).count("PRIVATE") == 0
    store.close()


def test_a_revoked_token_is_replaced_once_per_user(
        server: EmulatorServer, account: ServiceAccount) -> None:
    connector = make_connector(server, account, page_size=50)
    cursor = feed_after_full(connector)
    e = emu(server)
    e.edit("d-plan", content="again zephyrmarker")
    before = e.counters.to_json()["by_path"]["/token"]
    e.tokens.clear()  # every token issued so far is now refused (401 authError)
    ops = ops_of(connector, cursor)
    assert {op.document.doc_id for op in ops if isinstance(op, Upsert)} == {
        "src:u:ann@acme.example:d-plan"}
    renewed = e.counters.to_json()["by_path"]["/token"] - before
    assert 1 <= renewed <= len(connector.client._credentials)


def test_a_new_owner_or_a_move_into_a_shared_drive_moves_the_document(
        server: EmulatorServer, account: ServiceAccount) -> None:
    connector = make_connector(server, account, page_size=50)
    cursor = feed_after_full(connector)
    e = emu(server)
    e.set_owner("t-bob", ANN)  # bob keeps writer access: still in his view, not his stream
    e.move("t-link", ["0AEng"], drive_id="0AEng")
    ops = ops_of(make_connector(server, account, page_size=50), cursor)
    upserts = {op.document.doc_id for op in ops if isinstance(op, Upsert)}
    deletes = {op.doc_id for op in ops if isinstance(op, Delete)}
    assert deletes == {"src:u:bob@acme.example:t-bob", "src:u:ann@acme.example:t-link"}
    assert upserts == {"src:u:ann@acme.example:t-bob", "src:d:0AEng:t-link"}
    moved = next(op.document for op in ops if isinstance(op, Upsert)
                 and op.document.doc_id == "src:d:0AEng:t-link")
    assert moved.acl.allows({"user:carl@acme.example", "group:google:eng@acme.example"})
    assert not moved.acl.allows({"user:frank@acme.example", "domain:acme.example"})


def test_a_connector_built_again_in_the_same_process_reuses_the_tokens(
        server: EmulatorServer, account: ServiceAccount) -> None:
    e = emu(server)
    list(make_connector(server, account, page_size=50).content())
    first = e.counters.to_json()["by_path"]["/token"]
    assert first >= 5  # one per impersonated user and API
    list(make_connector(server, account, page_size=50).content())
    assert e.counters.to_json()["by_path"]["/token"] == first
    # another key (even under the same service account name) signs in for itself
    stranger = ServiceAccount.new(client_email=account.client_email)
    with pytest.raises(SourceAuthError):
        list(make_connector(server, stranger).content())
