"""The Google emulator answers as the real services do: the JWT-bearer token endpoint refuses
what Google refuses, each call runs as the impersonated user, and errors have Google's shape."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests

from emulators.base import EmulatorServer
from emulators.google import GOOGLE_TOKEN_URI, JWT_BEARER, GoogleEmulator, parse_fields, parse_q
from emulators.google.generate import SCOPES, ServiceAccount, example_tenant

pytestmark = pytest.mark.integration
ANN, BOB, CARL = "ann@acme.example", "bob@acme.example", "carl@acme.example"


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return ServiceAccount.new()


@pytest.fixture
def server(account: ServiceAccount) -> Iterator[EmulatorServer]:
    emulator = GoogleEmulator(example_tenant(account))
    with EmulatorServer(emulator) as srv:
        emulator.bind(srv.base_url)
        yield srv


def assertion(account: ServiceAccount, *, sub: str | None = ANN, aud: str = GOOGLE_TOKEN_URI,
              scopes: tuple[str, ...] = SCOPES, key: str | None = None, lifetime: int = 3600,
              iat: int | None = None, iss: str | None = None) -> str:
    now = int(time.time()) if iat is None else iat
    claims: dict[str, Any] = {"iss": iss or account.client_email, "aud": aud,
                              "scope": " ".join(scopes), "iat": now, "exp": now + lifetime}
    if sub is not None:
        claims["sub"] = sub
    return jwt.encode(claims, key or account.private_key_pem, algorithm="RS256")


def token_call(srv: EmulatorServer, signed: str) -> requests.Response:
    return requests.post(f"{srv.base_url}/token", data={"grant_type": JWT_BEARER,
                                                         "assertion": signed},
                         verify=str(srv.ca_bundle), timeout=10)


def token(srv: EmulatorServer, account: ServiceAccount, sub: str = ANN) -> str:
    answer = token_call(srv, assertion(account, sub=sub))
    assert answer.status_code == 200, answer.text
    value = answer.json()["access_token"]
    assert isinstance(value, str)
    return value


def get(srv: EmulatorServer, path: str, bearer: str, **params: str) -> requests.Response:
    return requests.get(f"{srv.base_url}{path}", params=params, verify=str(srv.ca_bundle),
                        headers={"Authorization": f"Bearer {bearer}"}, timeout=10)


def test_a_correctly_signed_assertion_gets_a_token_for_its_subject(
        server: EmulatorServer, account: ServiceAccount) -> None:
    answer = token_call(server, assertion(account))
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    # the emulator's own token URL is an accepted audience as well
    own = token_call(server, assertion(account, aud=f"{server.base_url}/token"))
    assert own.status_code == 200


@pytest.mark.parametrize("case, error", [
    ("other key", "invalid_grant"), ("wrong aud", "invalid_grant"),
    ("expired", "invalid_grant"), ("too long", "invalid_grant"),
    ("unknown sub", "invalid_grant"), ("suspended sub", "invalid_grant"),
    ("undelegated scope", "unauthorized_client"), ("unknown issuer", "invalid_grant"),
    ("garbage", "invalid_grant"), ("alg none", "invalid_grant")])
def test_the_token_endpoint_refuses_what_google_refuses(
        server: EmulatorServer, account: ServiceAccount, case: str, error: str) -> None:
    makers: dict[str, Any] = {
        "other key": lambda: assertion(account, key=ServiceAccount.new().private_key_pem),
        "wrong aud": lambda: assertion(account, aud="https://evil.example/token"),
        "expired": lambda: assertion(account, iat=int(time.time()) - 7200),
        "too long": lambda: assertion(account, lifetime=7200),
        "unknown sub": lambda: assertion(account, sub="nobody@acme.example"),
        "suspended sub": lambda: assertion(account, sub="sam@acme.example"),
        "undelegated scope": lambda: assertion(
            account, scopes=("https://www.googleapis.com/auth/drive",)),
        "unknown issuer": lambda: assertion(account, iss="other@x.iam.gserviceaccount.com"),
        "garbage": lambda: "not.a.jwt",
        "alg none": lambda: jwt.encode({"iss": account.client_email, "aud": GOOGLE_TOKEN_URI,
                                        "sub": ANN, "scope": SCOPES[0],
                                        "iat": int(time.time()),
                                        "exp": int(time.time()) + 60}, "",
                                       algorithm="none"),
    }
    signed: str = makers[case]()
    answer = token_call(server, signed)
    assert answer.status_code == 400 and answer.json()["error"] == error
    assert "access_token" not in answer.json()


def test_calls_run_as_the_impersonated_user(server: EmulatorServer,
                                            account: ServiceAccount) -> None:
    fields = "files(id)"
    ann = {f["id"] for f in get(server, "/drive/v3/files", token(server, account, ANN),
                                fields=fields).json()["files"]}
    carl = {f["id"] for f in get(server, "/files", token(server, account, CARL),
                                 fields=fields).json()["files"]}
    assert "t-carl" in carl and "t-carl" not in ann
    assert "d-plan" in carl  # shared to eng, which holds leads, which holds carl
    assert "t-eng" not in carl  # a shared-drive item needs the all-drives flags
    # link-only: not listed, but opened by id
    bob = token(server, account, BOB)
    assert "t-link" not in {f["id"] for f in get(server, "/drive/v3/files", bob,
                                                 fields=fields).json()["files"]}
    assert get(server, "/drive/v3/files/t-link", bob).status_code == 200
    assert get(server, "/drive/v3/files/t-carl", bob).status_code == 404


def test_shared_drive_items_have_no_permissions_field_but_details_in_the_list(
        server: EmulatorServer, account: ServiceAccount) -> None:
    ann = token(server, account)
    listed = get(server, "/drive/v3/files", ann, corpora="drive", driveId="0AEng",
                 includeItemsFromAllDrives="true", supportsAllDrives="true",
                 fields="files(id,permissions,permissionIds,driveId)").json()["files"]
    assert listed and all("permissions" not in f and f["permissionIds"] for f in listed)
    perms = get(server, "/drive/v3/files/d-spec/permissions", ann, supportsAllDrives="true",
                fields="permissions(emailAddress,permissionDetails)").json()["permissions"]
    details = {p["emailAddress"]: p["permissionDetails"] for p in perms}
    assert details["dana@acme.example"][0]["inheritedFrom"] == "f-specs"
    assert details["eng@acme.example"][0]["permissionType"] == "member"


def test_permissions_need_a_sharer_and_quota_errors_have_googles_shape(
        server: EmulatorServer, account: ServiceAccount) -> None:
    bob = token(server, account, BOB)
    denied = get(server, "/drive/v3/files/s-budget/permissions", bob)
    assert denied.status_code == 403
    assert denied.json()["error"]["errors"][0]["reason"] == "insufficientFilePermissions"
    emulator = server.emulator
    assert isinstance(emulator, GoogleEmulator)
    emulator.rate_limit("/drive/v3/files", times=1)
    limited = get(server, "/drive/v3/files", bob)
    assert limited.status_code == 403 and "Retry-After" not in limited.headers
    assert limited.json()["error"]["errors"][0]["reason"] == "userRateLimitExceeded"
    assert get(server, "/drive/v3/files", bob).status_code == 200


def test_directory_is_for_admins_and_nested_members_are_derived_on_request(
        server: EmulatorServer, account: ServiceAccount) -> None:
    bob = token(server, account, BOB)
    assert get(server, "/admin/directory/v1/groups", bob,
               customer="my_customer").status_code == 403
    ann = token(server, account)
    direct = get(server, "/admin/directory/v1/groups/eng@acme.example/members", ann).json()
    derived = get(server, "/admin/directory/v1/groups/eng@acme.example/members", ann,
                  includeDerivedMembership="true").json()
    emails = {m.get("email") for m in direct["members"]}
    assert CARL not in emails and "leads@acme.example" in emails
    assert CARL in {m.get("email") for m in derived["members"]}


def test_changes_report_edits_and_removals_and_reject_expired_tokens(
        server: EmulatorServer, account: ServiceAccount) -> None:
    emulator = server.emulator
    assert isinstance(emulator, GoogleEmulator)
    bob = token(server, account, BOB)
    start = get(server, "/drive/v3/changes/startPageToken", bob).json()["startPageToken"]
    emulator.edit("s-budget", content="new")
    emulator.set_permissions("t-bob", [])  # bob owns it: still his
    emulator.remove("b-image")
    changes = get(server, "/drive/v3/changes", bob, pageToken=start, fields="*").json()
    by_id = {c["fileId"]: c for c in changes["changes"]}
    assert not by_id["s-budget"]["removed"] and by_id["b-image"]["removed"]
    assert "newStartPageToken" in changes
    carl = token(server, account, CARL)
    assert "s-budget" not in {c["fileId"] for c in get(
        server, "/drive/v3/changes", carl, pageToken=start).json()["changes"]}
    emulator.expire_page_tokens()
    stale = get(server, "/drive/v3/changes", bob, pageToken=start)
    assert stale.status_code == 400
    assert stale.json()["error"]["errors"][0]["location"] == "pageToken"


def test_a_bad_page_token_query_or_mask_is_a_400_not_a_crash(
        server: EmulatorServer, account: ServiceAccount) -> None:
    ann = token(server, account)
    for params in ({"pageToken": "garbage"}, {"q": "fullText contains 'x'"},
                   {"fields": "files(id"}):
        answer = get(server, "/drive/v3/files", ann, **params)
        assert answer.status_code == 400, params
    assert get(server, "/drive/v3/files", "ya29.forged").status_code == 401
    assert parse_q("trashed = false and 'a' in parents") == [("trashed", "=", "false"),
                                                            ("parents", "in", "a")]
    assert parse_fields("nextPageToken,files(id,owners(emailAddress))") == {
        "nextPageToken": None, "files": {"id": None, "owners": {"emailAddress": None}}}


def ids(answer: requests.Response) -> set[str]:
    return {str(f["id"]) for f in answer.json()["files"]}


def test_queries_corpora_downloads_and_exports_answer_as_drive(
        server: EmulatorServer, account: ServiceAccount) -> None:
    frank = token(server, account, "frank@acme.example")
    mine = ids(get(server, "/drive/v3/files", frank, fields="files(id)"))
    domain = ids(get(server, "/drive/v3/files", frank, corpora="domain", fields="files(id)"))
    assert "p-deck" not in mine and "p-deck" in domain  # discoverable by the domain
    assert "t-link" not in domain  # link-only: never listed
    ann = token(server, account)
    under = ids(get(server, "/drive/v3/files", ann, q="'f-plans' in parents and "
                    "mimeType != 'application/vnd.google-apps.folder'", fields="files(id)"))
    assert under == {"d-plan"}
    later = ids(get(server, "/drive/v3/files", ann, q="modifiedTime > '2030-01-01T00:00:00'",
                    fields="files(id)"))
    assert later == set()
    native = get(server, "/drive/v3/files/d-plan", ann, alt="media")
    assert native.status_code == 403
    assert native.json()["error"]["errors"][0]["reason"] == "fileNotDownloadable"
    assert get(server, "/drive/v3/files/d-plan/export", ann,
               mimeType="text/csv").status_code == 400
    assert b"Roadmap" in get(server, "/drive/v3/files/d-plan/export", ann,
                             mimeType="text/plain").content
    assert get(server, "/drive/v3/files/t-link", ann, alt="media").content.startswith(b"link")
    default = get(server, "/drive/v3/files/t-link", ann).json()
    assert set(default) == {"kind", "id", "name", "mimeType"}  # no fields: Drive's default


def test_shared_drive_and_directory_guards(server: EmulatorServer,
                                           account: ServiceAccount) -> None:
    bob = token(server, account, BOB)
    assert get(server, "/drive/v3/drives", bob, useDomainAdminAccess="true").status_code == 403
    assert {d["id"] for d in get(server, "/drive/v3/drives", bob).json()["drives"]} == {"0AFin"}
    assert get(server, "/drive/v3/files", bob, corpora="drive",
               driveId="0AEng", includeItemsFromAllDrives="true",
               supportsAllDrives="true").status_code == 404  # not a member
    assert get(server, "/drive/v3/files", bob, corpora="drive",
               driveId="0AFin").status_code == 403  # the all-drives flags are required
    assert get(server, "/drive/v3/files", bob, pageSize="zero").status_code == 400
    ann = token(server, account)
    users = get(server, "/admin/directory/v1/users", ann, domain="acme.example").json()
    assert {u["primaryEmail"] for u in users["users"]} >= {ANN, BOB, "sam@acme.example"}
    assert get(server, "/admin/directory/v1/users", ann).status_code == 400  # no customer
    assert get(server, "/admin/directory/v1/groups/nope@acme.example/members",
               ann).status_code == 404
