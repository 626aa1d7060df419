"""The emulator toolkit: TLS with a throwaway CA, faults per route, the admin API, tenants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulators.base import Emulator, EmulatorServer, Fault, load_tenant, merge_patch, registered
from emulators.httpfiles import HttpFilesEmulator
from tests.support_http import TOKEN, tenant

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(HttpFilesEmulator(tenant())) as srv:
        yield srv


class Client:
    def __init__(self, server: EmulatorServer) -> None:
        self.base = server.base_url
        self.session = requests.Session()
        self.session.verify = str(server.ca_bundle)
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify

    def get(self, path: str, **kw: object) -> requests.Response:
        return self.session.get(self.base + path, headers=AUTH, **kw)  # type: ignore[arg-type]

    def admin(self, method: str, path: str, body: object = None) -> requests.Response:
        return self.session.request(method, f"{self.base}/_admin/{path}",
                                    data=None if body is None else json.dumps(body))


@pytest.fixture
def client(server: EmulatorServer) -> Client:
    return Client(server)


# -- TLS ------------------------------------------------------------------------------------
def test_tls_is_verified_with_the_throwaway_ca(server, client):
    assert server.base_url.startswith("https://127.0.0.1:")
    assert client.get("/api/documents").json()["items"][0]["id"] == "doc0.md"


def test_tls_is_refused_without_the_ca(server):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.base_url + "/api/documents", headers=AUTH, timeout=5)


def test_the_ca_file_is_removed_when_the_server_stops():
    srv = EmulatorServer(HttpFilesEmulator(tenant())).start()
    assert srv.ca_bundle is not None and srv.ca_bundle.is_file()
    srv.stop()
    assert not srv.ca_bundle.exists()


def test_plain_http_when_asked():
    with EmulatorServer(HttpFilesEmulator(tenant()), tls=False) as srv:
        assert srv.ca_bundle is None
        assert requests.get(srv.base_url + "/api/groups", headers=AUTH, timeout=5).ok


# -- faults -----------------------------------------------------------------------------------
def test_a_fault_hits_its_route_only_and_only_its_times(server, client):
    response = client.admin("POST", "faults", {"path": "/api/groups", "status": 429,
                                               "retry_after": 30, "times": 2})
    assert response.status_code == 201
    assert client.get("/api/documents").status_code == 200
    first, second, third = (client.get("/api/groups") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "30"
    assert client.admin("GET", "faults").json()["faults"] == []


def test_faults_by_method_and_glob(server, client):
    server.emulator.faults.add(Fault("/api/documents/*/content", method="GET", status=503,
                                     times=None))
    assert client.get("/api/documents/doc1.md/content").status_code == 503
    assert client.get("/api/documents/doc1.md/content").status_code == 503
    assert client.get("/api/documents/doc1.md").status_code == 200
    client.admin("DELETE", "faults")
    assert client.get("/api/documents/doc1.md/content").content == b"# Doc 1\nbody 1"


def test_a_dropped_connection_is_a_reset_not_an_answer(server, client):
    server.emulator.faults.add(Fault("/api/groups", drop=True))
    with pytest.raises(requests.ConnectionError):
        client.get("/api/groups")
    assert client.get("/api/groups").status_code == 200


def test_latency_makes_a_short_timeout_expire(server, client):
    server.emulator.faults.add(Fault("/api/groups", latency=1.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.get("/api/groups", timeout=0.2)


def test_a_bad_fault_is_refused(server, client):
    assert client.admin("POST", "faults", {"path": "/x", "colour": "red"}).status_code == 400
    assert client.admin("POST", "faults", {"status": 500}).status_code == 400


def test_the_server_counts_what_it_saw(server, client):
    client.get("/api/groups")
    client.get("/api/groups")
    stats = client.admin("GET", "stats").json()
    assert stats["requests"] == 2 and stats["by_path"] == {"/api/groups": 2}
    assert stats["max_in_flight"] >= 1 and stats["user_agents"][0].startswith("python-requests")
    assert client.admin("DELETE", "stats").json()["requests"] == 0


# -- the admin API changes what the next request sees -------------------------------
def test_admin_changes_content_permissions_and_groups_between_syncs(server, client):
    cursor = client.get("/api/documents").json()["cursor"]
    new = {"title": "New", "content": "fresh", "read": ["group:hr"], "deny": ["user:bo@x.com"]}
    assert client.admin("PUT", "documents/new.md", new).ok
    assert client.get("/api/documents/new.md/content").content == b"fresh"
    assert client.get("/api/documents/new.md/permissions").json() == {
        "read": ["group:hr"], "deny": ["user:bo@x.com"]}
    assert client.admin("PUT", "groups/hr", {"members": ["user:zed@x.com"]}).ok
    groups = client.get("/api/groups").json()["items"]
    assert {"id": "hr", "members": ["user:zed@x.com"]} in groups
    assert client.admin("DELETE", "documents/doc0.md").ok
    assert client.get("/api/documents/doc0.md").status_code == 404
    changes = client.get(f"/api/changes?cursor={cursor}").json()["changes"]
    assert changes == [{"id": "new.md", "deleted": False}, {"id": "doc0.md", "deleted": True}]


def test_a_tenant_merge_patch_changes_permissions_in_place(server, client):
    patch = {"documents": {"doc1.md": {"read": ["user:eve@example.com"]}, "doc2.md": None}}
    assert client.admin("PATCH", "tenant", patch).ok
    assert client.get("/api/documents/doc1.md/permissions").json()["read"] == [
        "user:eve@example.com"]
    assert client.get("/api/documents/doc1.md/content").content == b"# Doc 1\nbody 1"
    assert client.get("/api/documents/doc2.md").status_code == 404


def test_a_bad_tenant_change_is_refused_and_changes_nothing(server, client):
    before = client.admin("GET", "tenant").json()
    bad = client.admin("PATCH", "tenant", {"documents": {"doc1.md": {"read": "everyone"}}})
    assert bad.status_code == 400 and "list of principals" in bad.json()["error"]["message"]
    assert client.admin("PUT", "tenant", {"colour": 1}).status_code == 400
    assert client.admin("GET", "tenant").json() == before


def test_expired_cursors_answer_410_resync_required(server, client):
    cursor = client.get("/api/documents").json()["cursor"]
    client.admin("POST", "expire-cursors")
    gone = client.get(f"/api/changes?cursor={cursor}")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "resyncRequired"


def test_the_api_wants_a_token(server, client):
    assert client.session.get(server.base_url + "/api/documents").status_code == 401
    wrong = client.session.get(server.base_url + "/api/documents",
                               headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_paging_follows_next_page_tokens(server, client):
    ids, token = [], None
    while True:
        page = client.get("/api/documents" + (f"?page_token={token}" if token else "")).json()
        ids += [i["id"] for i in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert ids == ["doc0.md", "doc1.md", "doc2.md"]


# -- tenant files ---------------------------------------------------------------------------
def test_the_example_tenant_loads():
    path = Path(__file__).parents[2] / "emulators" / "tenants" / "httpfiles.json"
    emulator = HttpFilesEmulator.from_file(path)
    assert "hr/salaries.md" in emulator.tenant["documents"]


@pytest.mark.parametrize(("text", "message"), [
    ('{"tokens": [], "tokens": ["x"]}', "duplicate key"),
    ("[1, 2]", "not a JSON object"),
    ("{not json", "tenant file"),
])
def test_a_bad_tenant_file_is_refused(tmp_path, text, message):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_tenant(path)


def test_an_unknown_tenant_key_is_refused():
    with pytest.raises(ValueError, match="unknown tenant key"):
        HttpFilesEmulator({"documents": {}, "colour": "red"})


def test_merge_patch_follows_rfc_7386():
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": None, "e": 4}, "d": [1]}) \
        == {"a": {"c": 2, "e": 4}, "d": [1]}


def test_emulators_are_found_by_entry_point():
    found = registered()
    assert found["httpfiles"] is HttpFilesEmulator and issubclass(found["httpfiles"], Emulator)
