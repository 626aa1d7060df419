"""The Graph + Entra emulator as a raw HTTP client sees it: the token endpoint, JWT checks,
paging, the 302 download, 410 on a stale delta token, injected 429s and tenant validation."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulators.base import EmulatorServer, Fault, load_tenant
from emulators.graph import GraphEmulator
from emulators.graph.generate import CLIENT_ID, CLIENT_SECRET, TENANT_ID, example_tenant

pytestmark = pytest.mark.integration


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(GraphEmulator(copy.deepcopy(example_tenant()))) as srv:
        yield srv


@pytest.fixture
def http(server: EmulatorServer) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(server.ca_bundle)
    return session


def token(server: EmulatorServer, http: requests.Session, secret: str = CLIENT_SECRET
          ) -> requests.Response:
    return http.post(f"{server.base_url}/{TENANT_ID}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret,
        "scope": "https://graph.microsoft.com/.default"}, timeout=10)


def bearer(server: EmulatorServer, http: requests.Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(server, http).json()['access_token']}"}


def test_client_credentials_give_a_signed_expiring_jwt(server: EmulatorServer,
                                                       http: requests.Session) -> None:
    import jwt

    answer = token(server, http).json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3599
    claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3599 and claims["tid"] == TENANT_ID
    assert jwt.get_unverified_header(answer["access_token"])["alg"] == "RS256"
    bad = token(server, http, "nope")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"


def test_graph_refuses_missing_forged_and_expired_tokens(server: EmulatorServer,
                                                         http: requests.Session) -> None:
    import jwt

    url = f"{server.base_url}/v1.0/sites"
    assert http.get(url, timeout=10).status_code == 401
    forged = jwt.encode({"aud": "https://graph.microsoft.com", "exp": 9999999999}, "k" * 32,
                        algorithm="HS256")
    assert http.get(url, headers={"Authorization": f"Bearer {forged}"},
                    timeout=10).status_code == 401
    assert isinstance(server.emulator, GraphEmulator)
    server.emulator.tenant["token_lifetime"] = -5
    expired = bearer(server, http)
    answer = http.get(url, headers=expired, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_delta_pages_links_and_a_stale_token(server: EmulatorServer,
                                             http: requests.Session) -> None:
    auth = bearer(server, http)
    url: str | None = f"{server.base_url}/v1.0/drives/d-hr/root/delta"
    ids: list[str] = []
    delta = None
    while url:
        page = http.get(url, headers=auth, timeout=10).json()
        ids += [v["id"] for v in page["value"]]
        url = page.get("@odata.nextLink")
        delta = page.get("@odata.deltaLink", delta)
    assert ids == ["root", "i-hb", "i-guest"] and delta
    assert http.get(delta, headers=auth, timeout=10).json()["value"] == []
    assert isinstance(server.emulator, GraphEmulator)
    server.emulator.expire_tokens("d-hr")
    stale = http.get(delta, headers=auth, timeout=10)
    assert stale.status_code == 410 and stale.json()["error"]["code"] == "resyncRequired"


def test_content_is_a_302_to_a_preauthenticated_url(server: EmulatorServer,
                                                    http: requests.Session) -> None:
    url = f"{server.base_url}/v1.0/drives/d-hr/items/i-hb/content"
    first = http.get(url, headers=bearer(server, http), allow_redirects=False, timeout=10)
    assert first.status_code == 302
    body = http.get(first.headers["Location"], timeout=10)  # no Bearer needed
    assert body.status_code == 200 and b"zephyrmarker" in body.content
    assert http.get(first.headers["Location"].split("?")[0], timeout=10).status_code == 401


def test_injected_429_with_retry_after(server: EmulatorServer, http: requests.Session) -> None:
    server.emulator.faults.add(Fault("/v1.0/groups", status=429, retry_after="120"))
    auth = bearer(server, http)
    first = http.get(f"{server.base_url}/v1.0/groups", headers=auth, timeout=10)
    assert first.status_code == 429 and first.headers["Retry-After"] == "120"
    assert http.get(f"{server.base_url}/v1.0/groups", headers=auth,
                    timeout=10).status_code == 200


def test_transitive_members_flatten_nested_groups(server: EmulatorServer,
                                                  http: requests.Session) -> None:
    page = http.get(f"{server.base_url}/v1.0/groups/g-staff/transitiveMembers?$top=999",
                    headers=bearer(server, http), timeout=10).json()
    users = {v["id"] for v in page["value"] if v["@odata.type"] == "#microsoft.graph.user"}
    assert users == {"u-ann", "u-carl", "u-bob", "u-dana"}


def test_the_example_tenant_file_is_the_generator_s(tmp_path: Path) -> None:
    shipped = load_tenant(Path(__file__).parents[2] / "emulators" / "tenants" / "graph.json")
    assert shipped == json.loads(json.dumps(example_tenant()))
    GraphEmulator(shipped)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("sites"), "'sites' is required"),
    (lambda t: t["users"].append({"id": "x"}), "userPrincipalName"),
    (lambda t: t["sites"][0]["drives"][0]["items"].pop(0), "no 'root'"),
    (lambda t: t["sites"][0]["drives"][0]["items"].append({"id": "i-plan"}), "unique"),
    (lambda t: t.update(groups={"g": 1}), "must be a list"),
    (lambda t: t["sites"][0]["drives"][0]["items"][1].update(permissions="all"), "permission"),
    (lambda t: t["sites"][0]["drives"][0]["items"][1].update(parent="nowhere"), "parent"),
    (lambda t: t["users"].append(dict(t["users"][0])), "unique"),
    (lambda t: t["apps"].append("app"), "client_id"),
])
def test_a_bad_tenant_is_refused(change: object, message: str) -> None:
    data = example_tenant()
    change(data)  # type: ignore[operator]
    with pytest.raises(ValueError, match=message):
        GraphEmulator(data)
