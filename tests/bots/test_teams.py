"""The Teams bot over HTTP: activities posted to POST /api/messages with Bot Framework tokens
from the emulator (real botbuilder adapter, msal for the bot's own token, the Bot Connector
client for member look-ups and replies against the emulator over TLS)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apps.runtime import Runtime
from apps.teams.app import build_router
from apps.teams.bot import NO_CHANNEL_ANSWER, TOO_MANY, UNKNOWN_USER
from emulators.base import EmulatorServer
from emulators.botframework import BotFrameworkEmulator
from tests.bots.teams_world import (
    ADA,
    ALL_CHANNEL,
    ALL_TEAM,
    APP_PASSWORD,
    DEAL_Q,
    EVE,
    EXEC_CHANNEL,
    EXEC_TEAM,
    GROUP_CHAT,
    GUEST_CHANNEL,
    GUEST_TEAM,
    LEAVE_Q,
    PERSONAL_ADA,
    PERSONAL_EVE,
    SECRET_WORDS,
    TENANT_ID,
    activity,
    card_of,
    make_runtime,
    shown,
    start_emulator,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    server = start_emulator(monkeypatch)
    yield server
    server.stop()


class Bot:
    def __init__(self, base: Path, emu: EmulatorServer, password: str = APP_PASSWORD,
                 web: dict[str, Any] | None = None, **teams: Any) -> None:
        self.emu = emu
        self.emulator: BotFrameworkEmulator = emu.emulator  # type: ignore[assignment]
        self.runtime: Runtime = make_runtime(base, emu, web, **teams)
        app = FastAPI()
        app.include_router(build_router(self.runtime, self.runtime.settings,
                                        {"TEAMS_TEST_PASSWORD": password}))
        self.http = TestClient(app)

    def token(self, **overrides: Any) -> str:
        return self.emulator.channel_token(self.emu.base_url, **overrides)

    def post(self, body: dict[str, Any], token: str | None = "default",
             raw: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token == "default":
            token = self.token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post("/api/messages", content=raw if raw is not None
                              else json.dumps(body).encode(), headers=headers)

    def ask(self, **kw: Any) -> dict[str, Any]:
        before = len(self.emulator.sent())
        r = self.post(activity(self.emu, **kw))
        assert r.status_code == 200, r.text
        sent = self.emulator.sent()[before:]
        assert len(sent) == 1, sent
        return sent[0]

    def close(self) -> None:
        self.http.close()
        self.runtime.lanes().close()


@pytest.fixture
def bot(tmp_path: Path, emu: EmulatorServer) -> Iterator[Bot]:
    b = Bot(tmp_path, emu)
    yield b
    b.close()


# -- who is asking, and who reads the reply -----------------------------------------------------

def test_a_personal_chat_answers_with_the_askers_access_and_cites(bot: Bot) -> None:
    reply = bot.ask(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada", text=DEAL_Q)
    assert reply["conversation"] == PERSONAL_ADA and reply["reply_to"] == "act-1"
    assert "Lumen" in reply["activity"]["text"]
    card = card_of(reply)
    texts = [b["text"] for b in card["body"]]
    assert texts[1] == "\\[1\\] Nightjar"  # the numbered title (files have no web link)
    assert "Lumen Robotics" in texts[2] and card["body"][2]["isSubtle"]  # its quote
    assert [a["data"]["vote"] for a in card["actions"]] == ["up", "down"]


def test_a_channel_reply_never_cites_what_a_member_cannot_read(bot: Bot) -> None:
    # Ada alone in the exec team (roster read over pages of one): the deal is answered there
    reply = bot.ask(conversation=EXEC_CHANNEL, kind="channel", sender="aad-ada", text=DEAL_Q,
                    team=EXEC_TEAM)
    assert "Lumen" in shown(reply)
    # denied side: Bob is in the team, so the exec document is never cited in its channel
    reply = bot.ask(conversation=ALL_CHANNEL, kind="channel", sender="aad-ada", text=DEAL_Q,
                    team=ALL_TEAM, activity_id="act-2")
    assert reply["activity"]["text"] == NO_CHANNEL_ANSWER
    assert not any(w in shown(reply) for w in SECRET_WORDS)
    # what everybody there reads is answered, asked by Bob (named by his userPrincipalName)
    reply = bot.ask(conversation=ALL_CHANNEL, kind="channel", sender="aad-bob", text=LEAVE_Q,
                    team=ALL_TEAM, activity_id="act-3", name="Bob")
    assert "twenty-eight" in reply["activity"]["text"]
    assert "leave.md" in shown(reply) or "Leave" in json.dumps(card_of(reply)["body"][1])
    assert bot.emulator.token_requests == 1  # msal's cached token signed all three turns


def test_a_group_chat_follows_the_audience_rule_too(bot: Bot) -> None:
    reply = bot.ask(conversation=GROUP_CHAT, kind="groupChat", sender="aad-ada", text=DEAL_Q)
    assert reply["activity"]["text"] == NO_CHANNEL_ANSWER
    assert not any(w in shown(reply) for w in SECRET_WORDS)


def test_a_member_without_an_address_admits_nothing(bot: Bot) -> None:
    reply = bot.ask(conversation=GUEST_CHANNEL, kind="channel", sender="aad-ada", text=LEAVE_Q,
                    team=GUEST_TEAM)
    assert reply["activity"]["text"] == NO_CHANNEL_ANSWER


def test_an_unreadable_member_list_admits_nothing(bot: Bot) -> None:
    from emulators.base import Fault

    bot.emulator.faults.add(Fault(path="/v3/conversations/*/pagedmembers", status=503,
                                  times=None))
    reply = bot.ask(conversation=EXEC_CHANNEL, kind="channel", sender="aad-ada", text=DEAL_Q,
                    team=EXEC_TEAM)
    assert reply["activity"]["text"] == NO_CHANNEL_ANSWER
    assert not any(w in shown(reply) for w in SECRET_WORDS)


def test_the_display_name_never_names_the_asker(bot: Bot) -> None:
    # Eve's display name is Ada's address: she is still Eve, who does not read the deal
    reply = bot.ask(conversation=PERSONAL_EVE, kind="personal", sender="aad-eve", text=DEAL_Q,
                    name=ADA)
    assert not any(w in shown(reply) for w in SECRET_WORDS)
    record = [json.loads(line) for line in
              (bot.runtime.settings.home / "audit.jsonl").read_text().splitlines()][-1]
    assert record["email"] == EVE


@pytest.mark.parametrize("sender", [None, "aad-nobody"])
def test_an_asker_not_in_the_member_list_is_refused_without_a_search(bot: Bot,
                                                                   sender: str | None) -> None:
    reply = bot.ask(conversation=PERSONAL_ADA, kind="personal", sender=sender, text=DEAL_Q)
    assert reply["activity"]["text"] == UNKNOWN_USER
    assert not (bot.runtime.settings.home / "audit.jsonl").exists()  # nothing was asked


def test_feedback_buttons_land_in_the_audit_log_as_the_clicker(bot: Bot) -> None:
    reply = bot.ask(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada", text=LEAVE_Q)
    data = card_of(reply)["actions"][1]["data"]
    bot.ask(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada", text="", value=data,
            activity_id="act-9")
    record = [json.loads(line) for line in
              (bot.runtime.settings.home / "audit.jsonl").read_text().splitlines()][-1]
    assert record["action"] == "feedback" and record["email"] == ADA
    assert record["feedback"]["vote"] == "down" and record["feedback"]["surface"] == "teams"
    assert record["question"] == LEAVE_Q


# -- the channel's token --------------------------------------------------------------------------

def _forged(emu: BotFrameworkEmulator, claims: dict[str, Any]) -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": emu.kid})


def _hs256_with(emu: BotFrameworkEmulator, claims: dict[str, Any]) -> str:
    """The key-confusion attack: HMAC keyed with the published RSA key's PEM."""
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    pem = emu.key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": emu.kid}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(pem, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


BAD_TOKENS = ["missing", "not-a-jwt", "alg-none", "hs256-with-public-key", "forged", "expired",
              "wrong-audience", "wrong-issuer", "other-service-url", "no-service-url",
              "unknown-kid", "key-endorsed-for-another-channel", "not-yet-valid"]


def _bad_token(bot: Bot, case: str) -> str | None:
    emu = bot.emulator
    good = jwt.decode(bot.token(), options={"verify_signature": False})
    if case == "missing":
        return None
    if case == "not-a-jwt":
        return "abc.def"
    if case == "alg-none":
        return emu.sign(good, alg="none")
    if case == "hs256-with-public-key":
        return _hs256_with(emu, good)
    if case == "forged":
        return _forged(emu, good)
    if case == "expired":
        return bot.token(lifetime=-3600)
    if case == "wrong-audience":
        return bot.token(audience="some-other-bot")
    if case == "wrong-issuer":
        return emu.sign({**good, "iss": "https://sts.windows.net/evil/"})
    if case == "other-service-url":
        return emu.channel_token("https://attacker.example")
    if case == "no-service-url":
        return emu.sign({k: v for k, v in good.items() if k != "serviceurl"})
    if case == "unknown-kid":
        return emu.sign(good, kid="no-such-key")
    if case == "key-endorsed-for-another-channel":
        return emu.sign(good, kid=emu.other_kid)
    if case == "not-yet-valid":
        return emu.sign({**good, "nbf": good["nbf"] + 7200})
    raise AssertionError(case)


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_a_bad_token_is_refused_before_anything_is_read(bot: Bot, case: str) -> None:
    token = _bad_token(bot, case)
    bot.emulator.counters.reset()
    r = bot.post(activity(bot.emu, conversation=PERSONAL_ADA, kind="personal",
                          sender="aad-ada", text=DEAL_Q), token=token)
    assert r.status_code == 401, (case, r.text)
    assert r.json()["error"] and (token is None or token not in r.text)
    assert bot.emulator.sent() == []
    touched = bot.emulator.counters.to_json()["by_path"]
    assert not [p for p in touched if p.startswith("/v3/")]  # no member looked up
    assert not (bot.runtime.settings.home / "audit.jsonl").exists()


def test_a_token_for_the_activity_of_another_channel_is_refused(bot: Bot) -> None:
    r = bot.post(activity(bot.emu, conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                          text=DEAL_Q, channel="webchat"))
    assert r.status_code == 401 and bot.emulator.sent() == []


def test_an_activity_pointing_the_bot_elsewhere_is_refused(bot: Bot) -> None:
    """The token names the emulator's service URL; the activity another: the bot's own token is
    never sent where the channel did not say."""
    r = bot.post(activity(bot.emu, conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                          text=DEAL_Q, service_url="https://127.0.0.1:9"))
    assert r.status_code == 401 and "service URL" in r.json()["error"]


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"type": 5}', b"{}",
                                 b'{"type": "message", "from": 5}', b"\xff\xfe"])
def test_a_malformed_activity_is_a_400(bot: Bot, raw: bytes) -> None:
    r = bot.post({}, raw=raw)
    assert r.status_code == 400, r.text
    assert bot.emulator.sent() == []


def test_an_oversized_activity_is_refused(bot: Bot) -> None:
    body = activity(bot.emu, conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                    text="x" * 300_000)
    assert bot.post(body).status_code == 413


def test_a_single_tenant_bot_refuses_other_tenants(tmp_path: Path, emu: EmulatorServer) -> None:
    b = Bot(tmp_path, emu, app_tenant_id=TENANT_ID)
    try:
        r = b.post(activity(emu, conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                            text=DEAL_Q, tenant="tid-other"))
        assert r.status_code == 403 and b.emulator.sent() == []
        # its own tenant is answered, with a token from the tenant's authority
        reply = b.ask(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada", text=DEAL_Q)
        assert "Lumen" in shown(reply)
    finally:
        b.close()


def test_a_wrong_app_password_sends_nothing_and_logs_no_secret(
        tmp_path: Path, emu: EmulatorServer, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-pa55word-also-secret"
    b = Bot(tmp_path, emu, password=wrong)
    try:
        with caplog.at_level(logging.DEBUG):
            r = b.post(activity(emu, conversation=PERSONAL_ADA, kind="personal",
                                sender="aad-ada", text=DEAL_Q))
        assert r.status_code == 200  # the channel's delivery worked; the reply could not go
        assert b.emulator.sent() == []
        assert "teams" in caplog.text
        assert wrong not in caplog.text and APP_PASSWORD not in caplog.text
    finally:
        b.close()



def test_asking_is_rate_limited_per_person(tmp_path: Path, emu: EmulatorServer) -> None:
    b = Bot(tmp_path, emu, web={"asks_per_minute": 1})
    try:
        first = b.ask(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada", text=LEAVE_Q)
        second = b.ask(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                       text=DEAL_Q, activity_id="act-2")
        assert "twenty-eight" in first["activity"]["text"]
        assert second["activity"]["text"] == TOO_MANY and "Lumen" not in shown(second)
        # another person has a budget of their own
        third = b.ask(conversation=PERSONAL_EVE, kind="personal", sender="aad-eve",
                      text=LEAVE_Q, activity_id="act-3")
        assert "twenty-eight" in third["activity"]["text"]
    finally:
        b.close()


def test_a_slow_turn_is_acknowledged_and_still_answered(bot: Bot,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel gives up after 15 s: a turn past the acknowledgement delay goes on, and its
    reply arrives after the delivery was acknowledged with 202."""
    import apps.teams.app as teams_app
    from emulators.base import Fault

    monkeypatch.setattr(teams_app, "ACK_AFTER_SECONDS", 0.05)
    bot.emulator.faults.add(Fault(path="/v3/conversations/*/activities/*", latency=0.5))
    r = bot.post(activity(bot.emu, conversation=PERSONAL_ADA, kind="personal",
                          sender="aad-ada", text=LEAVE_Q))
    assert r.status_code == 202
    for _ in range(400):
        if bot.emulator.sent():
            break
        threading.Event().wait(0.025)
    [reply] = bot.emulator.sent()
    assert "twenty-eight" in reply["activity"]["text"]


def test_concurrent_askers_each_get_their_own_answer(tmp_path: Path,
                                                     emu: EmulatorServer) -> None:
    """Twelve deliveries at once on a real server (uvicorn): every one answered, each in its
    own conversation with its own asker's access (Eve never gets Ada's deal)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.web.conftest import free_socket, serve

    b = Bot(tmp_path, emu)
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/messages"
    stop = serve(b.http.app, sock)
    try:
        jobs = [(PERSONAL_ADA if i % 2 == 0 else PERSONAL_EVE,
                 "aad-ada" if i % 2 == 0 else "aad-eve", f"act-{i}") for i in range(12)]

        def deliver(job: tuple[str, str, str]) -> int:
            conversation, sender, activity_id = job
            body = activity(b.emu, conversation=conversation, kind="personal", sender=sender,
                            text=DEAL_Q, activity_id=activity_id)
            return requests.post(url, json=body, timeout=60, headers={
                "Authorization": f"Bearer {b.token()}"}).status_code

        with ThreadPoolExecutor(12) as pool:
            assert list(pool.map(deliver, jobs)) == [200] * 12
        sent = b.emulator.sent()
        assert sorted(s["reply_to"] for s in sent) == sorted(j[2] for j in jobs)
        for s in sent:
            if s["conversation"] == PERSONAL_ADA:
                assert "Lumen" in s["activity"]["text"]
            else:
                assert s["conversation"] == PERSONAL_EVE
                assert not any(w in shown(s) for w in SECRET_WORDS)
    finally:
        stop()
        b.close()


def test_a_connection_dropped_midway_fails_closed(bot: Bot) -> None:
    """The member look-up's connection reset: nobody is named, the refusal goes out. The
    reply's connection reset: the delivery is still acknowledged, nothing half-sent."""
    from emulators.base import Fault

    bot.emulator.faults.add(Fault(path="/v3/conversations/*/members/*", drop=True, times=None))
    reply = bot.ask(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada", text=DEAL_Q)
    assert reply["activity"]["text"] == UNKNOWN_USER
    bot.emulator.faults.clear()
    bot.emulator.faults.add(Fault(path="/v3/conversations/*/activities/*", drop=True,
                                  times=None))
    r = bot.post(activity(bot.emu, conversation=PERSONAL_ADA, kind="personal",
                          sender="aad-ada", text=DEAL_Q, activity_id="act-2"))
    assert r.status_code == 200
    assert len(bot.emulator.sent()) == 1  # only the first refusal ever arrived


def test_a_member_list_that_never_ends_admits_nothing(bot: Bot) -> None:
    from emulators.base import Fault

    bot.emulator.faults.add(Fault(path="/v3/conversations/*/pagedmembers", status=200,
                                  body={"members": [], "continuationToken": "again"},
                                  times=None))
    reply = bot.ask(conversation=EXEC_CHANNEL, kind="channel", sender="aad-ada", text=DEAL_Q,
                    team=EXEC_TEAM)
    assert reply["activity"]["text"] == NO_CHANNEL_ANSWER
