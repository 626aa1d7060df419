"""The Confluence connector passes the connector contract against the Confluence emulator.

The tenant is a dict in the emulator's own format; the reference evaluator below reads that
dict (space read permission, then every read restriction on the page and its ancestors, each
of which must admit the person) and shares no code with connectors/confluence or core.acl.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Connector
from connectors.confluence.client import ConfluenceClient
from connectors.confluence.connector import ConfluenceConnector
from connectors.http import HttpLimits, HttpPolicy
from emulators.base import EmulatorServer, Fault
from emulators.confluence import ConfluenceEmulator
from indexer.sync import Pipeline, cursor_key
from tests.contract.connector_contract import (
    ConnectorContract,
    ConnectorHarness,
    Tenant,
    Truth,
)

pytestmark = pytest.mark.integration

ADMIN, TOKEN = "admin@acme.example", "api-token-for-tests"
MARK = Tenant.marker
OLD = "2026-01-01T08:00:00.000Z"
SCOPE = ["ENG", "HR", "PUB"]
MAPPED = {"acc-dana": "dana@acme.example"}  # a hidden email, mapped by the configuration
READABLE = (".pdf", ".docx", ".pptx", ".xlsx", ".txt", ".md", ".html")  # extraction formats


def _page(cid: str, space: str, title: str, parent: str | None = None,
          users: Sequence[str] = (), groups: Sequence[str] = (), kind: str = "page",
          status: str = "current") -> dict[str, Any]:
    return {"id": cid, "type": kind, "space": space, "title": title, "parent": parent,
            "status": status, "when": OLD, "created": OLD, "author": "acc-ann",
            "body": f"<h1>{title}</h1><p>{title} text, {MARK}.</p>",
            "restrictions": {"read": {"users": list(users), "groups": list(groups)}}}


def tenant_data() -> dict[str, Any]:
    users = [
        {"accountId": "acc-ann", "email": "ann@acme.example", "displayName": "Ann"},
        {"accountId": "acc-bob", "email": "bob@acme.example", "displayName": "Bob"},
        {"accountId": "acc-carl", "email": "carl@acme.example", "displayName": "Carl"},
        {"accountId": "acc-dana", "displayName": "Dana (email hidden, mapped)"},
        {"accountId": "acc-eve", "email": "eve@acme.example", "displayName": "Eve"},
        {"accountId": "acc-hidden", "displayName": "Hidden (email hidden, not mapped)"},
        {"accountId": "acc-bot", "accountType": "app", "displayName": "Automation"},
    ]
    groups = [
        {"id": "g-staff", "name": "staff",
         "members": ["acc-ann", "acc-bob", "acc-carl", "acc-dana", "acc-hidden", "acc-bot"]},
        {"id": "g-eng", "name": "engineering", "members": ["acc-ann", "acc-carl", "acc-hidden"]},
        {"id": "g-ops", "name": "operations", "members": ["acc-bob", "acc-carl"]},
    ]
    spaces = [
        {"id": 1, "key": "ENG", "permissions": [{"operation": "read", "groups": ["g-staff"]},
                                                {"operation": "administer",
                                                 "users": ["acc-eve"]}]},
        {"id": 2, "key": "HR", "permissions": [{"operation": "read",
                                                "users": ["acc-ann", "acc-carl", "acc-dana"]}]},
        {"id": 3, "key": "PUB", "anonymous": True, "permissions": []},
        {"id": 4, "key": "ARCH", "permissions": [{"operation": "read", "groups": ["g-staff"]}]},
    ]
    content = [
        _page("101", "ENG", "Engineering home"),
        _page("102", "ENG", "Platform", "101", groups=["g-eng"]),
        # Bob is named here, but the restricted ancestor (g-eng) hides it from him.
        _page("103", "ENG", "Platform secrets", "102", users=["acc-bob", "acc-ann"]),
        _page("104", "ENG", "Platform secret runbook", "103"),
        _page("105", "ENG", "Operations", "101", groups=["g-ops"]),
        _page("106", "ENG", "Operations pager", "105", users=["acc-dana", "acc-carl"]),
        _page("107", "ENG", "Release notes", kind="blogpost"),
        _page("108", "ENG", "Half written", status="draft"),
        _page("109", "ENG", "Old stuff", status="trashed"),
        _page("201", "HR", "People handbook"),
        _page("202", "HR", "Salaries", groups=["g-staff"]),
        _page("203", "HR", "Dana's review", users=["acc-dana"]),
        # Public space, but the page's restriction still applies to everyone.
        _page("301", "PUB", "Press kit", groups=["g-staff"]),
        _page("401", "ARCH", "Archive index"),
    ]
    return {"cloud_id": "cloud-1", "timezone": "Europe/Berlin", "page_size": 2,
            "credentials": [{"email": ADMIN, "token": TOKEN, "admin": True}],
            "users": users, "groups": groups, "spaces": spaces, "content": content}


class ConfluenceTenant(Tenant):
    def __init__(self, emulator: ConfluenceEmulator, name: str, *,
                 scope: Sequence[str] = SCOPE, mapping: dict[str, str] | None = None,
                 users: Sequence[str] | None = None, attachments: bool = False) -> None:
        self.emu, self.name = emulator, name
        self.attachments = attachments  # the connector indexes attachments too
        self.scope = list(scope)
        self.mapping = MAPPED if mapping is None else mapping
        self._users = users

    @property
    def data(self) -> dict[str, Any]:
        return self.emu.tenant

    # -- reference evaluator ------------------------------------------------------------------
    @property
    def users(self) -> Sequence[str]:
        if self._users is not None:
            return self._users
        return ("ann@acme.example", "bob@acme.example", "carl@acme.example",
                "dana@acme.example", "eve@acme.example", "mallory@outside.example")

    def _account(self, email: str) -> str | None:
        for user in self.data["users"]:
            if user.get("email") == email or self.mapping.get(user["accountId"]) == email:
                return str(user["accountId"])
        return None

    def _admits(self, account: str | None, users: list[str], groups: list[str]) -> bool:
        if account is None:
            return False
        held = {g["id"] for g in self.data["groups"] if account in g["members"]}
        return account in users or bool(held & set(groups))

    def _readable(self, item: dict[str, Any], account: str | None) -> bool:
        space = next(s for s in self.data["spaces"] if s["key"] == item["space"])
        in_space = bool(space.get("anonymous")) or any(
            self._admits(account, p.get("users", []), p.get("groups", []))
            for p in space["permissions"] if p["operation"] == "read")
        if not in_space:
            return False
        by_id = {c["id"]: c for c in self.data["content"]}
        node: dict[str, Any] | None = item
        while node is not None:  # the page itself, then every ancestor: all must admit
            read = node.get("restrictions", {}).get("read", {})
            if (read.get("users") or read.get("groups")) and not self._admits(
                    account, read.get("users", []), read.get("groups", [])):
                return False
            node = by_id.get(node["parent"]) if node.get("parent") else None
        return True

    def _in_scope(self) -> list[dict[str, Any]]:
        return [c for c in self.data["content"]
                if c["space"] in self.scope and c.get("status", "current") == "current"]

    def _ids(self, item: dict[str, Any]) -> list[str]:
        """The documents of one content item: itself, then (when indexed) its attachments in
        a format the extraction reads; they have no access of their own."""
        ids = [f"{self.name}:{item['id']}"]
        if self.attachments:
            ids += [f"{self.name}:{a['id']}" for a in item.get("attachments", [])
                    if a["title"].lower().endswith(READABLE)]
        return ids

    def truth(self) -> Truth:
        out = {}
        for email in self.users:
            account = self._account(email)
            out[email] = frozenset(d for c in self._in_scope() if self._readable(c, account)
                                   for d in self._ids(c))
        return out

    def doc_ids(self) -> frozenset[str]:
        return frozenset(d for c in self._in_scope() for d in self._ids(c))

    # -- changes between syncs ----------------------------------------------------------------
    def edit_content(self) -> None:
        self.emu.edit("101", body=f"<h1>Home</h1><p>Rewritten home, {MARK}.</p>")
        new = _page("110", "ENG", "New platform page", "102")
        new.pop("when")
        new.pop("created")
        self.emu.add(new)

    def delete_document(self) -> str:
        self.emu.trash("107")
        return f"{self.name}:107"

    def move_out_of_scope(self) -> str:
        self.emu.move("202", space="ARCH")
        return f"{self.name}:202"

    def change_permission(self) -> None:
        self.emu.restrict("201", users=["acc-carl"])  # ann and dana lose the handbook
        self.emu.restrict("103")  # carl gains 103 and 104 (still gated by g-eng)

    def change_group(self) -> None:
        self.emu.set_members("g-ops", ["acc-bob"])  # carl loses 105 and 106

    def add_unmappable_principal(self) -> str:
        self.emu.restrict("201", users=["acc-hidden"])
        return f"{self.name}:201"

    def break_identities(self) -> None:
        self.emu.faults.add(Fault("/wiki/rest/api/group*", status=403, times=None))


class ConfluenceHarness(ConnectorHarness):
    def __init__(self, tenant: ConfluenceTenant, server: EmulatorServer) -> None:
        super().__init__(tenant)
        self.emu = tenant.emu
        self.server = server

    def connector(self) -> Connector:
        policy = HttpPolicy(self.name, HttpLimits(rate=0, backoff_base=0.01),
                            ca_bundle=str(self.server.ca_bundle))
        client = ConfluenceClient(f"{self.server.base_url}/wiki", policy, auth="basic",
                                  token=TOKEN, username=ADMIN, page_size=2)
        return ConfluenceConnector(self.name, client, spaces=SCOPE, time_zone="Europe/Berlin",
                                   account_emails=MAPPED)

    def expire_cursor(self, pipeline: Pipeline) -> None:
        record = pipeline.cursor(self.name, "content")
        assert record is not None and record.next is not None
        pipeline.store.set_state(cursor_key(self.name, "content"), record.model_copy(
            update={"next": '{"v": 0}'}).model_dump(mode="json"))

    def storm(self, retry_after: float, requests: int) -> None:
        self.emu.faults.add(Fault("/wiki/rest/api/*", status=429,
                                  retry_after=str(int(retry_after)), times=requests))


@pytest.fixture
def confluence_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(ConfluenceEmulator(copy.deepcopy(tenant_data()))) as server:
        yield server


class TestConfluenceConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path, confluence_server: EmulatorServer) -> ConnectorHarness:
        emulator = confluence_server.emulator
        assert isinstance(emulator, ConfluenceEmulator)
        return ConfluenceHarness(ConfluenceTenant(emulator, ConnectorHarness.name),
                                 confluence_server)
