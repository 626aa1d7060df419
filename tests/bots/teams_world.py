"""A Teams world for the bot's tests: a synced corpus (everyone at acme reads the leave policy,
only the exec group reads the Nightjar deal), the Bot Framework emulator over TLS (channel
keys, the bot's token endpoint, the Bot Connector with member lists) and activities as Teams
sends them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apps.runtime import Runtime
from core.settings import FileConfig, Settings
from emulators.base import EmulatorServer
from emulators.botframework import BotFrameworkEmulator
from tests.conftest import write_tree

APP_ID = "clearance-bot-app"
APP_PASSWORD = "bot-pa55word-never-logged"
TENANT_ID = "tid-acme"
ADA, BOB, EVE = "ada@acme.com", "bob@acme.com", "eve@acme.com"
TREE: dict[str, Any] = {
    ".access.json": {"read": ["domain:acme.com"]},
    ".groups.json": {"exec": [f"user:{ADA}"]},
    "pub/leave.md": "# Leave\n\nEvery employee receives twenty-eight days of paid annual leave.\n",
    "exec/.access.json": {"read": ["group:exec"]},
    "exec/deal.md": "# Nightjar\n\nAcme plans to acquire Lumen Robotics for forty-two million "
                    "euros in the Nightjar deal.\n",
}
DEAL_Q = "What does Acme plan to acquire in the Nightjar deal?"
LEAVE_Q = "How many days of paid annual leave does every employee receive?"
SECRET_WORDS = ("Lumen", "Nightjar", "forty-two", "deal.md")

PERSONAL_ADA = "a:1personal-ada"
PERSONAL_EVE = "a:1personal-eve"
EXEC_TEAM, EXEC_CHANNEL = "19:exec-team@thread.tacv2", "19:exec-chan@thread.tacv2;messageid=7"
ALL_TEAM, ALL_CHANNEL = "19:all-team@thread.tacv2", "19:all-chan@thread.tacv2;messageid=8"
GUEST_TEAM, GUEST_CHANNEL = "19:guest-team@thread.tacv2", "19:guest-chan@thread.tacv2"
GROUP_CHAT = "19:group-chat@thread.v2"

USERS = [
    {"id": "29:ada", "aadObjectId": "aad-ada", "name": "Ada", "email": ADA,
     "userPrincipalName": ADA, "tenantId": TENANT_ID},
    # no email: the userPrincipalName names her
    {"id": "29:bob", "aadObjectId": "aad-bob", "name": "Bob", "userPrincipalName": BOB,
     "tenantId": TENANT_ID},
    # a display name that looks like Ada's address: never used
    {"id": "29:eve", "aadObjectId": "aad-eve", "name": ADA, "email": EVE,
     "userPrincipalName": EVE, "tenantId": TENANT_ID},
    {"id": "29:guest", "aadObjectId": "aad-guest", "name": "Guest", "tenantId": TENANT_ID},
]
TENANT: dict[str, Any] = {
    "app_id": APP_ID, "app_password": APP_PASSWORD, "tenant_id": TENANT_ID, "page_size": 1,
    "users": USERS,
    "conversations": {
        PERSONAL_ADA: ["29:ada"], PERSONAL_EVE: ["29:eve"],
        EXEC_TEAM: ["29:ada"], EXEC_CHANNEL: ["29:ada"],
        ALL_TEAM: ["29:ada", "29:bob"], ALL_CHANNEL: ["29:ada", "29:bob"],
        GUEST_TEAM: ["29:ada", "29:guest"], GUEST_CHANNEL: ["29:ada", "29:guest"],
        GROUP_CHAT: ["29:ada", "29:bob"],
    },
}


def make_runtime(base: Path, emu: EmulatorServer, web: dict[str, Any] | None = None,
                 **teams: Any) -> Runtime:
    docs = write_tree(base / "docs", TREE)
    section = {"app_id": APP_ID, "app_password_env": "TEAMS_TEST_PASSWORD",
               "openid_metadata_url": f"{emu.base_url}/v1/.well-known/openidconfiguration",
               "oauth_endpoint": emu.base_url, **teams}
    file = FileConfig.model_validate({
        "embedder": {"name": "hashing"}, "web": web or {},
        "teams": {k: v for k, v in section.items() if v is not None},
        "connectors": [{"name": "docs", "kind": "files", "root": str(docs)}]})
    runtime = Runtime(Settings(home=base / "home", config_path=None, file=file))
    [conn] = runtime.connectors()
    assert runtime.pipeline().full_sync(conn).status == "ok"
    return runtime


def start_emulator(monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    emulator = BotFrameworkEmulator(TENANT)
    server = EmulatorServer(emulator, tls=True).start()
    emulator.bind(server.base_url)
    # msal, the key fetch and the Bot Connector client all speak `requests`: trust the test CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle))
    return server


def activity(emu: EmulatorServer, *, conversation: str, kind: str, sender: str | None,
             text: str, team: str | None = None, activity_id: str = "act-1",
             tenant: str = TENANT_ID, value: Any = None, channel: str = "msteams",
             service_url: str | None = None, name: str = "Ada") -> dict[str, Any]:
    """A message activity as Teams posts it (an @mention in a channel carries <at>…</at>)."""
    sender_id = {"aad-ada": "29:ada", "aad-bob": "29:bob", "aad-eve": "29:eve",
                 "aad-guest": "29:guest"}.get(sender or "", "29:unknown")
    body: dict[str, Any] = {
        "type": "message", "id": activity_id, "channelId": channel,
        "serviceUrl": service_url or emu.base_url, "timestamp": "2026-01-01T08:00:00Z",
        "from": {"id": sender_id, "name": name, **({"aadObjectId": sender} if sender else {})},
        "recipient": {"id": f"28:{APP_ID}", "name": "Clearance"},
        "conversation": {"id": conversation, "conversationType": kind, "tenantId": tenant},
        "channelData": {"tenant": {"id": tenant}, **({"team": {"id": team}} if team else {})},
        "text": f"<at>Clearance</at> {text}" if kind != "personal" else text,
    }
    if value is not None:
        body["value"] = value
    return body


def shown(record: dict[str, Any]) -> str:
    """Everything a reply shows (text, card), as one string."""
    return json.dumps(record.get("activity", record))


def card_of(record: dict[str, Any]) -> dict[str, Any]:
    [attachment] = record["activity"]["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content: dict[str, Any] = attachment["content"]
    return content
