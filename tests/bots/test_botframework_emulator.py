"""The Bot Framework emulator refuses what the real service refuses: the bot's token endpoint a
wrong secret or scope, the Bot Connector a missing, forged or expired bearer; the member list
is paged and a member is found by AAD object id."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
import requests

from emulators.base import EmulatorServer
from emulators.botframework import CONNECTOR_AUDIENCE, BotFrameworkEmulator
from tests.bots.teams_world import ALL_TEAM, APP_ID, APP_PASSWORD, TENANT, TENANT_ID

pytestmark = pytest.mark.integration


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    emulator = BotFrameworkEmulator(TENANT)
    with EmulatorServer(emulator, tls=True) as server:
        emulator.bind(server.base_url)
        yield server


def _token(emu: EmulatorServer, secret: str = APP_PASSWORD,
           scope: str = f"{CONNECTOR_AUDIENCE}/.default",
           tenant: str = "botframework.com") -> requests.Response:
    return requests.post(f"{emu.base_url}/{tenant}/oauth2/v2.0/token", verify=emu.ca_bundle,
                         data={"grant_type": "client_credentials", "client_id": APP_ID,
                               "client_secret": secret, "scope": scope}, timeout=10)


def test_the_token_endpoint_checks_secret_scope_and_tenant(emu: EmulatorServer) -> None:
    assert _token(emu).status_code == 200
    assert _token(emu, tenant=TENANT_ID).status_code == 200
    assert _token(emu, secret="wrong").status_code == 401
    assert _token(emu, scope="https://graph.microsoft.com/.default").status_code == 400
    assert _token(emu, tenant="other-tenant").status_code == 400


def test_the_connector_wants_the_bots_own_token(emu: EmulatorServer) -> None:
    url = f"{emu.base_url}/v3/conversations/{ALL_TEAM}/pagedmembers"
    good = _token(emu).json()["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    emulator: BotFrameworkEmulator = emu.emulator  # type: ignore[assignment]
    expired = jwt.encode({**claims, "exp": int(time.time()) - 600}, emulator.login_key,
                         algorithm="RS256")
    forged = emulator.channel_token(emu.base_url)  # a channel token is not the bot's
    for bearer, status in ((None, 401), ("garbage", 401), (expired, 401), (forged, 401),
                           (good, 200)):
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        r = requests.get(url, headers=headers, verify=emu.ca_bundle, timeout=10,
                         params={"pageSize": 1})
        assert r.status_code == status, (bearer, r.text)
    body = r.json()
    assert len(body["members"]) == 1 and body["continuationToken"] == "1"
    r = requests.get(f"{emu.base_url}/v3/conversations/{ALL_TEAM}/members/aad-bob",
                     headers={"Authorization": f"Bearer {good}"}, verify=emu.ca_bundle,
                     timeout=10)
    assert r.json()["userPrincipalName"] == "bob@acme.com" and "email" not in r.json()


def test_a_tenant_with_dangling_members_is_refused() -> None:
    with pytest.raises(ValueError, match="conversations"):
        BotFrameworkEmulator({**TENANT, "conversations": {"c": ["29:nobody"]}})
    with pytest.raises(ValueError, match="duplicate"):
        BotFrameworkEmulator({**TENANT, "users": [TENANT["users"][0], TENANT["users"][0]]})
