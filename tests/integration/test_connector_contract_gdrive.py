"""The Google Drive connector passes the connector contract against the Google emulator.

The reference evaluator below reads the tenant dict in the emulator's own format (a file's own
permissions, its folders', a My Drive's owner, a shared drive's members, nested groups with
CUSTOMER and EXTERNAL members, discovery, expiry, deleted grantees) and shares no code with
connectors/gdrive, the emulator's permission rendering or core.acl. Two rules in it are
Clearance's policy, not Drive's: link-only shares (`allowFileDiscovery: false`) grant nothing
by default, and a file carrying a grant of a kind Clearance does not evaluate is readable by
nobody through Clearance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Connector
from connectors.gdrive.client import DriveClient, ServiceAccountKey
from connectors.gdrive.connector import GoogleDriveConnector
from connectors.http import HttpLimits, HttpPolicy
from emulators.base import EmulatorServer, Fault
from emulators.google import GoogleEmulator
from emulators.google.generate import ServiceAccount, example_tenant, file, to_user
from indexer.sync import Pipeline
from tests.contract.connector_contract import (
    ConnectorContract,
    ConnectorHarness,
    Tenant,
    Truth,
)

pytestmark = pytest.mark.integration

ADMIN = "ann@acme.example"
NATIVE_TEXT = ("application/vnd.google-apps.document", "application/vnd.google-apps.spreadsheet",
               "application/vnd.google-apps.presentation")
TEXT_SUFFIXES = (".md", ".txt", ".html", ".htm", ".pdf", ".docx", ".pptx", ".xlsx")
TEXT_MIMES = ("text/plain", "text/markdown", "text/html", "application/pdf")
KNOWN_TYPES = ("user", "group", "domain", "anyone")


class DriveTenant(Tenant):
    def __init__(self, emulator: GoogleEmulator, name: str, *,
                 users: Sequence[str] | None = None, domain_links: bool = False,
                 anyone_links: bool = False) -> None:
        self.emu, self.name = emulator, name
        self._users = users
        self.domain_links, self.anyone_links = domain_links, anyone_links

    @property
    def data(self) -> dict[str, Any]:
        return self.emu.tenant

    @property
    def users(self) -> Sequence[str]:
        if self._users is not None:
            return self._users
        return ("ann@acme.example", "bob@acme.example", "carl@acme.example",
                "dana@acme.example", "eve@acme.example", "frank@acme.example",
                "ext@partner.example", "mallory@outside.example")

    # -- reference evaluator ------------------------------------------------------------------
    def _active(self) -> set[str]:
        return {u["primaryEmail"].lower() for u in self.data["users"] if not u.get("suspended")}

    def _groups_of(self, email: str) -> set[str]:
        internal = email in self._active()
        held: set[str] = set()
        changed = True
        while changed:
            changed = False
            for group in self.data["groups"]:
                if group["email"] in held:
                    continue
                for m in group.get("members", []):
                    kind = m.get("type", "USER")
                    if (kind in ("USER", "EXTERNAL") and m.get("email", "").lower() == email) \
                            or (kind == "CUSTOMER" and internal) \
                            or (kind == "GROUP" and m.get("email", "").lower() in held):
                        held.add(group["email"].lower())
                        changed = True
                        break
        return held

    def _by_id(self) -> dict[str, dict[str, Any]]:
        return {f["id"]: f for f in self.data["files"]}

    def _chain(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """The file and every folder above it."""
        by_id, out, todo = self._by_id(), [], [entry]
        while todo:
            node = todo.pop()
            if node in out:
                continue
            out.append(node)
            todo.extend(by_id[p] for p in node.get("parents", []) if p in by_id)
        return out

    def _stream(self, entry: dict[str, Any]) -> str | None:
        if entry.get("driveId"):
            return f"d:{entry['driveId']}"
        owner = entry["owners"][0].lower()
        return f"u:{owner}" if owner in self._active() else None

    def _is_doc(self, entry: dict[str, Any]) -> bool:
        mime = entry["mimeType"]
        readable = mime in NATIVE_TEXT or (not mime.startswith("application/vnd.google-apps.")
                                           and (entry["name"].lower().endswith(TEXT_SUFFIXES)
                                                or mime in TEXT_MIMES))
        return readable and self._stream(entry) is not None and \
            not any(n.get("trashed") for n in self._chain(entry))

    def doc_id(self, entry: dict[str, Any]) -> str:
        return f"{self.name}:{self._stream(entry)}:{entry['id']}"

    def _admits(self, grant: dict[str, Any], email: str, groups: set[str]) -> bool:
        if grant.get("deleted"):
            return False
        expires = grant.get("expirationTime")
        if expires and datetime.fromisoformat(expires.replace("Z", "+00:00")) <= \
                datetime.now(UTC):
            return False
        kind = grant["type"]
        if kind == "user":
            return str(grant.get("emailAddress", "")).lower() == email
        if kind == "group":
            return str(grant.get("emailAddress", "")).lower() in groups
        discoverable = grant.get("allowFileDiscovery") is True
        if kind == "domain":
            return (discoverable or self.domain_links) and \
                email.rsplit("@", 1)[1] == str(grant.get("domain", "")).lower()
        return kind == "anyone" and (discoverable or self.anyone_links)

    def readable(self, entry: dict[str, Any], email: str) -> bool:
        grants = [g for node in self._chain(entry) for g in node.get("permissions", [])]
        if any(g["type"] not in KNOWN_TYPES for g in grants):
            return False  # Clearance's policy: a grant it cannot evaluate closes the file
        if entry.get("driveId"):
            drive = next(d for d in self.data["drives"] if d["id"] == entry["driveId"])
            grants += drive["members"]
        elif entry["owners"][0].lower() == email:
            return True
        groups = self._groups_of(email)
        return any(self._admits(g, email, groups) for g in grants)

    def truth(self) -> Truth:
        docs = [f for f in self.data["files"] if self._is_doc(f)]
        return {email: frozenset(self.doc_id(f) for f in docs if self.readable(f, email))
                for email in self.users}

    def doc_ids(self) -> frozenset[str]:
        return frozenset(self.doc_id(f) for f in self.data["files"] if self._is_doc(f))

    # -- changes ------------------------------------------------------------------------------
    def edit_content(self) -> None:
        self.emu.edit("d-plan", content="Roadmap\nThe plan was rewritten, zephyrmarker.")
        self.emu.add(file("t-new", "new.txt", owner="bob@acme.example",
                          perms=[to_user("carl@acme.example")]))

    def delete_document(self) -> str:
        self.emu.trash("t-bob")
        return f"{self.name}:u:bob@acme.example:t-bob"

    def move_out_of_scope(self) -> str:
        # ownership moves to a suspended user, whose My Drive the connector cannot read
        self.emu.set_owner("s-budget", "sam@acme.example")
        return f"{self.name}:u:ann@acme.example:s-budget"

    def change_permission(self) -> None:
        # a folder's sharing: dana loses the spec under it, frank gains it (Drive reports
        # the folder alone); a file's own sharing: dana loses expired.txt, carl gains it
        self.emu.set_permissions("f-specs", [to_user("frank@acme.example")])
        self.emu.set_permissions("t-expired", [to_user("carl@acme.example")])

    def change_group(self) -> None:
        self.emu.set_members("leads@acme.example", [])  # carl loses what eng reads

    def add_unmappable_principal(self) -> str:
        self.emu.set_permissions("t-carl", [{"type": "audience", "role": "reader",
                                             "audienceId": "aud-1"}])
        return f"{self.name}:u:carl@acme.example:t-carl"

    def break_identities(self) -> None:
        self.emu.faults.add(Fault("/admin/directory/v1/groups*", status=403, times=None))


def make_client(server: EmulatorServer, account: ServiceAccount, name: str = "src", *,
                page_size: int = 2, policy: HttpPolicy | None = None,
                admin: str = ADMIN) -> DriveClient:
    policy = policy or HttpPolicy(name, HttpLimits(rate=0, backoff_base=0.01),
                                  ca_bundle=str(server.ca_bundle))
    key = ServiceAccountKey.parse(json.dumps(account.key_file(server.base_url)))
    return DriveClient(policy, key, delegated_admin=admin, domain="acme.example",
                       api_endpoint=server.base_url, page_size=page_size)


def make_connector(server: EmulatorServer, account: ServiceAccount, name: str = "src", *,
                   page_size: int = 2, admin: str = ADMIN, policy: HttpPolicy | None = None,
                   **kwargs: Any) -> GoogleDriveConnector:
    client = make_client(server, account, name, page_size=page_size, admin=admin,
                         policy=policy)
    return GoogleDriveConnector(name, client, **kwargs)


class DriveHarness(ConnectorHarness):
    def __init__(self, tenant: DriveTenant, server: EmulatorServer,
                 account: ServiceAccount) -> None:
        super().__init__(tenant)
        self.emu = tenant.emu
        self.server, self.account = server, account

    def connector(self) -> Connector:
        return make_connector(self.server, self.account, self.name)

    def expire_cursor(self, pipeline: Pipeline) -> None:
        self.emu.expire_page_tokens()

    def storm(self, retry_after: float, requests: int) -> None:
        self.emu.faults.add(Fault("/drive/v3/*", status=429, retry_after=str(int(retry_after)),
                                  times=requests))


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return ServiceAccount.new()


@pytest.fixture
def google_server(account: ServiceAccount) -> Iterator[EmulatorServer]:
    emulator = GoogleEmulator(example_tenant(account))
    with EmulatorServer(emulator) as server:
        emulator.bind(server.base_url)
        yield server


class TestGoogleDriveConnectorContract(ConnectorContract):
    @pytest.fixture
    def harness(self, tmp_path: Path, google_server: EmulatorServer,
                account: ServiceAccount) -> ConnectorHarness:
        emulator = google_server.emulator
        assert isinstance(emulator, GoogleEmulator)
        return DriveHarness(DriveTenant(emulator, ConnectorHarness.name), google_server,
                            account)
