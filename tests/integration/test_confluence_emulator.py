"""The Confluence emulator serves the real v1 shapes: auth, CQL, paging, hidden emails, admin."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.base import EmulatorServer, load_tenant
from emulators.cli import example_tenant
from emulators.confluence import ConfluenceEmulator, generate_tenant, parse_cql, validate_tenant

pytestmark = pytest.mark.integration

BASIC = "Basic " + base64.b64encode(b"admin@acme.example:demo-api-token").decode()


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    tenant = load_tenant(example_tenant("confluence"))
    with EmulatorServer(ConfluenceEmulator(tenant), tls=False) as s:
        yield s


def get(server: EmulatorServer, path: str, auth: str = BASIC, **params: str) -> Any:
    answer = requests.get(f"{server.base_url}{path}", params=params,
                          headers={"Authorization": auth}, timeout=10)
    return answer.status_code, answer.json()


def emu(server: EmulatorServer) -> ConfluenceEmulator:
    assert isinstance(server.emulator, ConfluenceEmulator)
    return server.emulator


def item(server: EmulatorServer, cid: str) -> dict[str, Any]:
    got = emu(server).content_by_id(cid)
    assert got is not None
    return got


def test_bad_or_missing_credentials_answer_401(server: EmulatorServer) -> None:
    bad = "Basic " + base64.b64encode(b"admin@acme.example:nope").decode()
    assert get(server, "/wiki/rest/api/space", auth=bad)[0] == 401
    assert get(server, "/wiki/rest/api/space", auth="")[0] == 401
    # A Bearer token is for the OAuth gateway path, with the tenant's cloud id.
    bearer = "Bearer demo-service-account-token"
    assert get(server, "/wiki/rest/api/space", auth=bearer)[0] == 401
    assert get(server, "/ex/confluence/demo-cloud/wiki/rest/api/space", auth=bearer)[0] == 200
    assert get(server, "/ex/confluence/other/wiki/rest/api/space", auth=bearer)[0] == 401


def test_search_pages_through_an_opaque_cursor_and_skips_drafts(server: EmulatorServer) -> None:
    ids: list[str] = []
    status, page = get(server, "/wiki/rest/api/content/search", limit="2",
                       cql='space in ("ENG","PUB") AND type in (page, blogpost)')
    while True:
        assert status == 200
        ids += [r["id"] for r in page["results"]]
        nxt = page["_links"].get("next")
        if not nxt:
            break
        assert nxt.startswith("/rest/api/content/search?") and "cursor=" in nxt
        status, page = get(server, "/wiki" + nxt)
    assert ids == ["1001", "1002", "1003", "2001"]  # 1004 is a draft
    assert get(server, "/wiki/rest/api/content/search", cql="type=page", cursor="forged")[0] \
        == 400


def test_lastmodified_is_read_in_the_user_time_zone_at_minute_resolution(
        server: EmulatorServer) -> None:
    emu(server).tenant["timezone"] = "+02:00"
    cql = 'type=page AND lastmodified >= "2026-11-03 11:00"'  # 09:00 UTC is 11:00 at +02:00
    assert [r["id"] for r in get(server, "/wiki/rest/api/content/search", cql=cql)[1]
            ["results"]] == ["1003"]
    cql = 'type=page AND lastmodified > "2026-11-03 11:00"'
    assert get(server, "/wiki/rest/api/content/search", cql=cql)[1]["results"] == []
    assert get(server, "/wiki/rest/api/content/search", cql="type ~ page")[0] == 400


def test_expand_gives_ancestors_root_first_restrictions_and_hidden_emails(
        server: EmulatorServer) -> None:
    _, page = get(server, "/wiki/rest/api/content/search", cql="id=1003",
                  expand="ancestors,version,body.storage,restrictions.read.restrictions.user,"
                         "restrictions.read.restrictions.group,space")
    item = page["results"][0]
    assert [a["id"] for a in item["ancestors"]] == ["1001", "1002"]
    assert item["space"]["key"] == "ENG" and "<table>" in item["body"]["storage"]["value"]
    users = item["restrictions"]["read"]["restrictions"]["user"]["results"]
    assert {u["accountId"] for u in users} == {"acc-ann", "acc-bob"}
    _, members = get(server, "/wiki/rest/api/group/g-eng/membersByGroupId")
    hidden = next(m for m in members["results"] if m["accountId"] == "acc-hidden")
    assert "email" not in hidden


def test_space_permissions_need_an_admin_and_mark_anonymous_access(
        server: EmulatorServer) -> None:
    _, space = get(server, "/wiki/rest/api/space/PUB", expand="permissions")
    assert any(p.get("anonymousAccess") for p in space["permissions"])
    _, eng = get(server, "/wiki/rest/api/space/ENG", expand="permissions")
    reads = [p for p in eng["permissions"] if p["operation"]["operation"] == "read"]
    assert reads[0]["subjects"]["group"]["results"][0]["id"] == "g-staff"
    emu(server).tenant["credentials"][0]["admin"] = False
    assert "permissions" not in get(server, "/wiki/rest/api/space/ENG", expand="permissions")[1]


def test_groups_and_members_page_by_start_and_next_link(server: EmulatorServer) -> None:
    _, page = get(server, "/wiki/rest/api/group", limit="1")
    assert len(page["results"]) == 1 and "start=1" in page["_links"]["next"]
    _, by_name = get(server, "/wiki/rest/api/group/member", name="staff")
    assert {m["accountId"] for m in by_name["results"]} == {"acc-ann", "acc-bob"}


def test_drafts_answer_403_and_trash_404(server: EmulatorServer) -> None:
    assert get(server, "/wiki/rest/api/content/1004")[0] == 403
    assert get(server, "/wiki/rest/api/content/1004/restriction/byOperation/read")[0] == 403
    emu(server).trash("1003")
    assert get(server, "/wiki/rest/api/content/1003")[0] == 404
    assert get(server, "/wiki/rest/api/content", status="trashed")[1]["results"][0]["id"] \
        == "1003"


def test_a_forbidden_page_answers_403_and_its_search_hit_leaves_the_expansion_out(
        server: EmulatorServer) -> None:
    expand = "body.storage,restrictions.read.restrictions.user,restrictions.read.restrictions.group"
    emu(server).forbid("1003", "content")
    assert get(server, "/wiki/rest/api/content/1003")[0] == 403
    assert get(server, "/wiki/rest/api/content/1003/child/attachment")[0] == 403
    assert get(server, "/wiki/rest/api/content/1003/restriction/byOperation/read")[0] == 200
    hit = get(server, "/wiki/rest/api/content/search", cql="id=1003", expand=expand)[1]
    assert "body" not in hit["results"][0] and "body" in hit["results"][0]["_expandable"]
    assert "restrictions" in hit["results"][0]
    requests.post(f"{server.base_url}/_admin/content/1003/forbid",
                  json={"parts": ["restrictions"]}, timeout=10).raise_for_status()
    assert get(server, "/wiki/rest/api/content/1003/restriction/byOperation/read")[0] == 403
    assert get(server, "/wiki/rest/api/content/1003")[0] == 200
    hit = get(server, "/wiki/rest/api/content/search", cql="id=1003", expand=expand)[1]
    assert "restrictions" not in hit["results"][0] and "body" in hit["results"][0]
    assert get(server, "/wiki/rest/api/content/1002/restriction/byOperation/read")[0] == 200
    with pytest.raises(ValueError, match="forbidden"):
        emu(server).forbid("1003", "everything")


def test_admin_routes_restrict_move_trash_delete_and_change_members(
        server: EmulatorServer) -> None:
    def admin(method: str, path: str, body: Any = None) -> int:
        return requests.request(method, f"{server.base_url}/_admin/{path}", json=body,
                                timeout=10).status_code

    assert admin("POST", "content/1001/restrict", {"users": ["acc-bob"]}) == 200
    assert item(server, "1001")["restrictions"]["read"]["users"] == ["acc-bob"]
    assert admin("POST", "content/2001/move", {"space": "ENG"}) == 200
    assert item(server, "2001")["space"] == "ENG"
    assert admin("POST", "content/1003/trash") == 200
    assert admin("DELETE", "content/1002") == 200
    assert item(server, "1003")["parent"] == "1001"  # children move up
    assert admin("PUT", "groups/g-eng/members", ["acc-bob"]) == 200
    assert admin("PUT", "groups/g-eng/members", ["acc-nobody"]) == 400
    assert admin("POST", "content/1001/move", {"space": "NOPE"}) == 400


def test_a_bad_tenant_is_refused() -> None:
    tenant = json.loads(example_tenant("confluence").read_text())
    tenant["content"][1]["parent"] = "missing"
    with pytest.raises(ValueError, match="unknown parent"):
        ConfluenceEmulator(tenant)
    assert parse_cql('space = "ENG" AND type in (page) ORDER BY lastmodified DESC')[1] == \
        ("lastmodified", True)


def test_clearance_emulate_serves_the_confluence_tenant(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "clearance"
    proc = subprocess.Popen([str(exe), "emulate", "confluence", "--plain-http"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        answer = requests.get(f"{base}/wiki/rest/api/space", headers={"Authorization": BASIC},
                              timeout=10)
        assert answer.status_code == 200 and answer.json()["results"][0]["key"] == "ENG"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


# -- tenant files ---------------------------------------------------------------------------
def _example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(example_tenant("confluence").read_text())
    return data


def _broken(change: str) -> dict[str, Any]:
    t = _example()
    if change == "duplicate content id":
        t["content"][1]["id"] = t["content"][0]["id"]
    elif change == "attachment reuses a page id":
        t["content"][0]["attachments"] = [{"id": "1002", "title": "x.txt"}]
    elif change == "dangling parent":
        t["content"][1]["parent"] = "9999"
    elif change == "parent chain loops":
        t["content"][0]["parent"] = "1003"
    elif change == "parent in another space":
        t["content"][4]["type"] = "page"
        t["content"][4]["parent"] = "1001"
    elif change == "content is not a list":
        t["content"] = {"1001": {}}
    elif change == "content entry is not an object":
        t["content"].append("1005")
    elif change == "id of the wrong type":
        t["content"][0]["id"] = 1001
    elif change == "unknown space":
        t["content"][0]["space"] = "NOPE"
    elif change == "unknown group member":
        t["groups"][0]["members"].append("acc-ghost")
    elif change == "restriction names an unknown group":
        t["content"][1]["restrictions"]["read"]["groups"] = ["g-ghost"]
    elif change == "duplicate group name":
        t["groups"][1]["name"] = t["groups"][0]["name"]
    elif change == "duplicate space key":
        t["spaces"][1]["key"] = "ENG"
    elif change == "bad status":
        t["content"][0]["status"] = "deleted"
    elif change == "bad time":
        t["content"][0]["when"] = "yesterday"
    elif change == "unknown key":
        t["content"][0]["colour"] = "blue"
    elif change == "bad time zone":
        t["timezone"] = "Mars/Olympus"
    elif change == "boolean where a number goes":
        t["page_size"] = True
    return t


BROKEN = ["duplicate content id", "attachment reuses a page id", "dangling parent",
          "parent chain loops", "parent in another space", "content is not a list",
          "content entry is not an object", "id of the wrong type", "unknown space",
          "unknown group member", "restriction names an unknown group", "duplicate group name",
          "duplicate space key", "bad status", "bad time", "unknown key", "bad time zone",
          "boolean where a number goes"]


EXPECTED = dict(zip(BROKEN, [
    "duplicate id '1001'", "duplicate id '1002'", "unknown parent '9999'", "loops",
    "is not a page of space 'PUB'", "'content' must be list", "content[5]: an object",
    "'id' must be str", "unknown space 'NOPE'", "unknown user 'acc-ghost'",
    "unknown group 'g-ghost'", "duplicate group name", "duplicate space key", "'status' one of",
    "not an ISO 8601 time", "unknown key 'colour'", "unknown time zone", "must be int, not bool",
], strict=True))


@pytest.mark.parametrize("change", BROKEN)
def test_a_malformed_tenant_is_refused_in_one_line(change: str) -> None:
    with pytest.raises(ValueError) as info:
        ConfluenceEmulator(_broken(change))
    message = str(info.value)
    assert message.startswith("confluence tenant: ") and "\n" not in message
    assert EXPECTED[change] in message


def test_the_example_and_generated_tenants_are_valid() -> None:
    validate_tenant(_example())
    validate_tenant(generate_tenant(seed=5))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("change", ["duplicate content id", "dangling parent", "not json",
                                    "duplicate key", "not an object"])
def test_clearance_emulate_refuses_a_bad_tenant_file_with_exit_2(tmp_path: Path,
                                                                  change: str) -> None:
    path = tmp_path / "tenant.json"
    if change == "not json":
        path.write_text('{"content": [1,')
    elif change == "duplicate key":
        path.write_text('{"timezone": "UTC", "timezone": "Europe/Berlin"}')
    elif change == "not an object":
        path.write_text('[{"id": "1"}]')
    else:
        path.write_text(json.dumps(_broken(change)))
    exe = Path(sys.executable).parent / "clearance"
    done = subprocess.run([str(exe), "emulate", "confluence", "--tenant", str(path),
                           "--port", str(_free_port()), "--plain-http"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "tenant" in done.stderr


def test_clearance_emulate_serves_any_tenant_file_on_the_port_asked(tmp_path: Path) -> None:
    data = generate_tenant(seed=2, spaces=2, pages=40)
    path = tmp_path / "generated.json"
    path.write_text(json.dumps(data))
    port = _free_port()
    exe = Path(sys.executable).parent / "clearance"
    proc = subprocess.Popen([str(exe), "emulate", "confluence", "--tenant", str(path),
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        ca = proc.stdout.readline().strip().removeprefix("ca_bundle ")
        assert base == f"https://127.0.0.1:{port}"
        auth = "Basic " + base64.b64encode(b"admin@acme.example:generated-token").decode()
        answer = requests.get(f"{base}/wiki/rest/api/space", headers={"Authorization": auth},
                              timeout=10, verify=ca)
        assert answer.status_code == 200
        assert [s["key"] for s in answer.json()["results"]] == ["S0", "S1"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


def test_v2_spaces_permissions_and_users_bulk_have_the_real_shapes(
        server: EmulatorServer) -> None:
    status, spaces = get(server, "/wiki/api/v2/spaces", keys="ENG,PUB", limit="1")
    assert status == 200 and spaces["results"][0] == {
        "id": "101", "key": "ENG", "name": "Engineering", "type": "global",
        "status": "current", "_links": {"webui": "/spaces/ENG"}}
    assert spaces["_links"]["next"].startswith("/wiki/api/v2/spaces?")  # site-relative
    following = requests.get(f"{server.base_url}{spaces['_links']['next']}",
                             headers={"Authorization": BASIC}, timeout=10)
    assert [s["key"] for s in following.json()["results"]] == ["PUB"]
    assert "next" not in following.json()["_links"]
    _, perms = get(server, "/wiki/api/v2/spaces/101/permissions")
    assert {(p["principal"]["type"], p["principal"]["id"], p["operation"]["key"])
            for p in perms["results"]} == {("group", "g-staff", "read"),
                                           ("user", "acc-ann", "administer")}
    assert get(server, "/wiki/api/v2/spaces/101/permissions", cursor="forged")[0] == 400
    answer = requests.post(f"{server.base_url}/wiki/api/v2/users-bulk",
                           json={"accountIds": ["acc-ann", "acc-hidden", "acc-ghost"]},
                           headers={"Authorization": BASIC}, timeout=10)
    users = {u["accountId"]: u for u in answer.json()["results"]}
    assert set(users) == {"acc-ann", "acc-hidden"} and "email" not in users["acc-hidden"]
    bads: list[Any] = [{"accountIds": []}, {"accountIds": "acc-ann"}, [], None]
    for bad in bads:
        assert requests.post(f"{server.base_url}/wiki/api/v2/users-bulk", json=bad,
                             headers={"Authorization": BASIC}, timeout=10).status_code == 400
    emu(server).tenant["credentials"][0]["admin"] = False
    assert get(server, "/wiki/api/v2/spaces/101/permissions")[0] == 403


def test_restrictions_by_operation_keep_read_and_update_apart(server: EmulatorServer) -> None:
    page = emu(server).content_by_id("1003")
    assert page is not None
    page["restrictions"]["update"] = {"users": ["acc-ann"]}
    _, both = get(server, "/wiki/rest/api/content/1003/restriction/byOperation")
    assert set(both) == {"read", "update"}
    assert [u["accountId"] for u in both["update"]["restrictions"]["user"]["results"]] == \
        ["acc-ann"]
    assert {u["accountId"] for u in both["read"]["restrictions"]["user"]["results"]} == \
        {"acc-ann", "acc-bob"}
    _, update = get(server, "/wiki/rest/api/content/1003/restriction/byOperation/update")
    assert update["operation"] == "update"
    assert get(server, "/wiki/rest/api/content/1003/restriction/byOperation/delete")[0] == 400
    assert get(server, "/wiki/rest/api/content/1003/restriction/byOperation/read",
               start="x")[0] == 400
    assert get(server, "/wiki/rest/api/content/1004/restriction/byOperation")[0] == 403


def test_a_change_that_would_break_the_tenant_is_undone_whole(server: EmulatorServer) -> None:
    e = emu(server)
    before = json.dumps(e.tenant, sort_keys=True)
    with pytest.raises(ValueError, match="unknown user 'acc-ghost'"):
        e.restrict("1001", users=["acc-bob", "acc-ghost"])
    with pytest.raises(ValueError, match="unknown parent"):
        e.move("1002", parent="9999")
    with pytest.raises(ValueError, match="duplicate id"):
        e.add({"id": "1001", "space": "ENG"})
    assert requests.put(f"{server.base_url}/_admin/groups/g-eng/members", json=["acc-x"],
                        timeout=10).status_code == 400
    assert json.dumps(e.tenant, sort_keys=True) == before
    e.move("1002", space="PUB")  # a valid move carries the subtree: 1003 goes along
    assert item(server, "1003")["space"] == "PUB"


def test_clearance_emulate_on_a_port_in_use_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        exe = Path(sys.executable).parent / "clearance"
        done = subprocess.run([str(exe), "emulate", "confluence", "--port", str(port),
                               "--plain-http"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and str(port) in done.stderr


def test_clearance_emulate_refuses_a_missing_unreadable_or_undecodable_tenant_file(
        tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "clearance"
    unreadable = tmp_path / "locked.json"
    unreadable.write_text("{}")
    unreadable.chmod(0)
    undecodable = tmp_path / "bytes.json"
    undecodable.write_bytes(b'{"users": ["\xff\xfe"]}')
    paths = [tmp_path / "missing.json", tmp_path, undecodable]  # a directory is no file
    if not os.access(unreadable, os.R_OK):  # as root every file is readable
        paths.append(unreadable)
    for path in paths:
        done = subprocess.run([str(exe), "emulate", "confluence", "--tenant", str(path),
                               "--plain-http"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (path, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "tenant file" in done.stderr
