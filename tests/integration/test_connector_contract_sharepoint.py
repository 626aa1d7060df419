"""The SharePoint connector passes the connector contract against the Graph + Entra emulator.

The reference evaluator below reads the tenant dict in the emulator's own format (permissions
up the folder chain to the nearest broken inheritance, site admins, a OneDrive's owner, link
scopes, expiry, Limited Access, nested groups) and shares no code with connectors/sharepoint,
the emulator's permission rendering or core.acl.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Connector
from connectors.http import HttpLimits, HttpPolicy
from connectors.sharepoint.client import Credential, GraphClient
from connectors.sharepoint.connector import SharePointConnector
from emulators.base import EmulatorServer, Fault
from emulators.graph import GraphEmulator
from emulators.graph.generate import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT_ID,
    example_tenant,
    grant_user,
    item,
)
from indexer.sync import Pipeline
from tests.contract.connector_contract import (
    ConnectorContract,
    ConnectorHarness,
    Tenant,
    Truth,
)

pytestmark = pytest.mark.integration

SCOPE = ["site-eng", "site-hr"]
TEXT_SUFFIXES = (".md", ".txt", ".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx")


class GraphTenant(Tenant):
    def __init__(self, emulator: GraphEmulator, name: str, *, scope: Sequence[str] = SCOPE,
                 onedrive: bool = True, users: Sequence[str] | None = None,
                 organization_domain: bool = False, anonymous_everyone: bool = False,
                 site_groups: bool = False) -> None:
        self.site_groups = site_groups
        self.emu, self.name = emulator, name
        self.scope = list(scope)
        self.onedrive = onedrive
        self._users = users
        self.organization_domain = organization_domain
        self.anonymous_everyone = anonymous_everyone

    @property
    def data(self) -> dict[str, Any]:
        return self.emu.tenant

    @property
    def users(self) -> Sequence[str]:
        if self._users is not None:
            return self._users
        return ("ann@contoso.example", "bob@contoso.example", "carl@contoso.example",
                "dana@contoso.example", "eve@contoso.example", "gus@gmail.example",
                "ext@partner.example", "mallory@outside.example")

    # -- reference evaluator ------------------------------------------------------------------
    def _person(self, email: str) -> dict[str, Any] | None:
        for person in self.data["users"]:
            addresses = [person.get("mail"), *person.get("otherMails", [])]
            if person.get("userType") != "Guest" and "#EXT#" not in person["userPrincipalName"]:
                addresses.append(person["userPrincipalName"] if not person.get("mail") else None)
            if email in [a.lower() for a in addresses if a]:
                return person
        return None

    def _groups_of(self, uid: str) -> set[str]:
        held: set[str] = set()
        changed = True
        while changed:
            changed = False
            for group in self.data["groups"]:
                if group["id"] not in held and (uid in group["members"]
                                                or held & set(group["members"])):
                    held.add(group["id"])
                    changed = True
        return held

    def _drives(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for site in self.data["sites"]:
            wanted = site["id"] in self.scope or (self.onedrive and site.get("personal"))
            if wanted:
                out.extend((site, d) for d in site["drives"])
        return out

    @staticmethod
    def _is_doc(entry: dict[str, Any]) -> bool:
        return not entry.get("folder") and entry["id"] != "root" and not entry.get("deleted") \
            and entry.get("name", "").lower().endswith(TEXT_SUFFIXES)

    def _grants(self, drive: dict[str, Any], entry: dict[str, Any]) -> list[dict[str, Any]]:
        by_id = {i["id"]: i for i in drive["items"]}
        grants: list[dict[str, Any]] = []
        node: dict[str, Any] | None = entry
        while node is not None:
            grants += node.get("permissions", [])
            if node.get("inheritanceBroken") or node["id"] == "root":
                break
            node = by_id.get(node.get("parent", "root"))
        return grants

    def _admits(self, grant: dict[str, Any], email: str, person: dict[str, Any] | None,
                groups: set[str], site: dict[str, Any]) -> bool:
        roles = {r.lower() for r in grant.get("roles", [])}
        if not roles or roles <= {"limited access"}:
            return False
        expires = grant.get("expirationDateTime", "0001")
        if not expires.startswith("0001") and datetime.fromisoformat(
                expires.replace("Z", "+00:00")) <= datetime.now(UTC):
            return False
        uid = person["id"] if person else None
        internal = email.rsplit("@", 1)[1] in self.data["domains"]
        if "link" in grant:
            scope = grant["link"]["scope"]
            if scope == "users":
                return any(i.get("user", {}).get("id") == uid and uid is not None
                           for i in grant.get("grantedToIdentitiesV2", []))
            if scope == "organization":
                return self.organization_domain and internal
            if scope == "anonymous":
                return self.anonymous_everyone
            return False
        if "invitation" in grant:
            return grant["invitation"]["email"] == email
        to = grant.get("grantedToV2", {})
        if "user" in to:
            return uid is not None and to["user"]["id"] == uid
        if "group" in to:
            return to["group"]["id"] in groups
        if "siteGroup" in to:  # readable through SharePoint REST with a certificate only
            members = next((g["members"] for g in site.get("siteGroups", [])
                            if g["id"] == to["siteGroup"]["id"]), [])
            return self.site_groups and (uid in members or bool(groups & set(members)))
        login = to.get("siteUser", {}).get("loginName", "")
        if "spo-grid-all-users" in login:
            return internal
        # site groups (secret-only app), applications, the unknown: nothing
        return login == "c:0(.s|true"

    def readable(self, site: dict[str, Any], drive: dict[str, Any], entry: dict[str, Any],
                 email: str) -> bool:
        person = self._person(email)
        uid = person["id"] if person else None
        if uid is not None and (uid in site.get("admins", []) or drive.get("owner") == uid):
            return True
        groups = self._groups_of(uid) if uid else set()
        return any(self._admits(g, email, person, groups, site)
                   for g in self._grants(drive, entry))

    def truth(self) -> Truth:
        out = {}
        for email in self.users:
            out[email] = frozenset(f"{self.name}:{d['id']}:{e['id']}"
                                   for s, d in self._drives() for e in d["items"]
                                   if self._is_doc(e) and self.readable(s, d, e, email))
        return out

    def doc_ids(self) -> frozenset[str]:
        return frozenset(f"{self.name}:{d['id']}:{e['id']}" for _, d in self._drives()
                         for e in d["items"] if self._is_doc(e))

    # -- changes ------------------------------------------------------------------------------
    def edit_content(self) -> None:
        self.emu.edit("d-eng", "i-plan", content="The plan was rewritten, zephyrmarker.")
        self.emu.add("d-eng", item("i-new", "new.md", "f-plans"))

    def delete_document(self) -> str:
        self.emu.delete("d-eng", "i-org")
        return f"{self.name}:d-eng:i-org"

    def move_out_of_scope(self) -> str:
        self.emu.move("d-hr", "i-hb", to_drive="d-arch")
        return f"{self.name}:d-hr:i-hb"

    def change_permission(self) -> None:
        # carl loses the Secret folder (and keys.txt under it), bob gains it.
        self.emu.set_permissions("d-eng", "f-secret", [grant_user("u-bob", "owner")])
        # budget.txt's link now names dana instead of bob.
        self.emu.set_permissions("d-eng", "i-budget", [{
            "roles": ["read"], "link": {"scope": "users", "type": "view"},
            "grantedToIdentitiesV2": [{"user": {"id": "u-dana"}}]}])

    def change_group(self) -> None:
        self.emu.set_members("g-eng", ["u-ann"])  # carl loses what Engineering reads

    def add_unmappable_principal(self) -> str:
        self.emu.set_permissions("d-hr", "i-hb", [grant_user("u-not-in-directory")],
                                 broken=True)
        return f"{self.name}:d-hr:i-hb"

    def break_identities(self) -> None:
        self.emu.faults.add(Fault("/v1.0/groups*", status=403, times=None))


def make_connector(name: str, server: EmulatorServer, *, sites: list[str] | None = None,
                   page_size: int = 2, secret: str | None = CLIENT_SECRET,
                   onedrive: bool = True, certificate: tuple[str, str] | None = None,
                   **kwargs: Any) -> SharePointConnector:
    policy = HttpPolicy(name, HttpLimits(rate=0, backoff_base=0.01),
                        ca_bundle=str(server.ca_bundle))
    credential = Credential(TENANT_ID, CLIENT_ID, secret) if certificate is None else \
        Credential(TENANT_ID, CLIENT_ID, None, certificate[0], certificate[1])
    client = GraphClient(policy, credential, authority_host=server.base_url,
                         graph_url=f"{server.base_url}/v1.0", page_size=page_size,
                         sharepoint_url=server.base_url)
    return SharePointConnector(name, client, sites=SCOPE if sites is None else sites,
                               include_onedrive=onedrive, **kwargs)


class GraphHarness(ConnectorHarness):
    def __init__(self, tenant: GraphTenant, server: EmulatorServer) -> None:
        super().__init__(tenant)
        self.emu = tenant.emu
        self.server = server

    def connector(self) -> Connector:
        return make_connector(self.name, self.server)

    def expire_cursor(self, pipeline: Pipeline) -> None:
        self.emu.expire_tokens()

    def storm(self, retry_after: float, requests: int) -> None:
        self.emu.faults.add(Fault("/v1.0/*", status=429, retry_after=str(int(retry_after)),
                                  times=requests))


@pytest.fixture
def graph_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(GraphEmulator(copy.deepcopy(example_tenant()))) as server:
        yield server


class TestSharePointConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path, graph_server: EmulatorServer) -> ConnectorHarness:
        emulator = graph_server.emulator
        assert isinstance(emulator, GraphEmulator)
        return GraphHarness(GraphTenant(emulator, ConnectorHarness.name), graph_server)
