"""The Slack bot over HTTP Events: signed events against the Slack API emulator (real
slack-bolt, slack_sdk WebClient, files connector, SqliteStore, extractive answerer)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apps.runtime import Runtime
from apps.slack.app import NO_CHANNEL_ANSWER, UNKNOWN_USER, build_router
from core.errors import ConfigError
from core.settings import FileConfig, Settings
from emulators.base import EmulatorServer
from emulators.slack import SlackEmulator
from tests.conftest import write_tree

pytestmark = pytest.mark.integration

SECRET = "s3cret-signing"
TOKEN = "xoxb-test-token"
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
TENANT = {"token": TOKEN, "bot_user_id": "UBOT", "page_size": 1,
          "users": {"UADA": {"email": ADA}, "UBOB": {"email": BOB}, "UEVE": {"email": EVE},
                    "UNOMAIL": {}, "UOTHERBOT": {"is_bot": True}},
          "channels": {"CEXEC": ["UADA", "UBOT"], "CALL": ["UADA", "UBOB", "UBOT"],
                       "CBOTS": ["UADA", "UOTHERBOT"], "DADA": ["UADA", "UBOT"]}}


class Bot:
    def __init__(self, base: Path, emu: EmulatorServer, replies: str = "audience") -> None:
        docs = write_tree(base / "docs", TREE)
        file = FileConfig.model_validate({
            "embedder": {"name": "hashing"},
            "slack": {"bot_token_env": "SB_TOKEN", "signing_secret_env": "SB_SECRET",
                      "api_url": emu.base_url + "/api/", "channel_replies": replies},
            "connectors": [{"name": "docs", "kind": "files", "root": str(docs)}]})
        self.runtime = Runtime(Settings(home=base / "home", config_path=None, file=file))
        [conn] = self.runtime.connectors()
        assert self.runtime.pipeline().full_sync(conn).status == "ok"
        app = FastAPI()
        app.include_router(build_router(self.runtime, self.runtime.settings,
                                        {"SB_TOKEN": TOKEN, "SB_SECRET": SECRET}))
        self.http = TestClient(app)
        self.emulator: SlackEmulator = emu.emulator  # type: ignore[assignment]

    def send(self, payload: dict[str, Any], *, secret: str = SECRET, age: int = 0,
             form: bool = False) -> int:
        body = (urlencode({"payload": json.dumps(payload)}) if form
                else json.dumps(payload)).encode()
        ts = str(int(time.time()) - age)
        sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + body,
                               hashlib.sha256).hexdigest()
        ctype = "application/x-www-form-urlencoded" if form else "application/json"
        r = self.http.post("/slack/events", content=body, headers={
            "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig, "Content-Type": ctype})
        return r.status_code

    def posted(self, n: int = 1) -> list[dict[str, Any]]:
        for _ in range(400):  # answers are made after the ack, on bolt's worker thread
            with self.emulator.lock:
                got = list(self.emulator.posted)
            if len(got) >= n:
                return got
            time.sleep(0.025)
        return got

    def mention(self, user: str, channel: str, text: str, ts: str = "100.1") -> dict[str, Any]:
        return {"type": "event_callback", "team_id": "T0", "api_app_id": "A0",
                "event_id": f"Ev{ts}", "event_time": 1, "event": {
                    "type": "app_mention", "user": user, "channel": channel,
                    "text": f"<@UBOT> {text}", "ts": ts, "channel_type": "channel"}}


@pytest.fixture
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(SlackEmulator(TENANT), tls=False) as server:
        yield server


def test_a_channel_answer_cites_only_what_every_member_reads(tmp_path: Path,
                                                             emu: EmulatorServer) -> None:
    bot = Bot(tmp_path, emu)
    # Ada alone with the bot (bot excluded, member list read over two pages): she gets the deal
    assert bot.send(bot.mention("UADA", "CEXEC", DEAL_Q)) == 200
    [post] = bot.posted()
    assert post["method"] == "chat.postMessage" and post["thread_ts"] == "100.1"
    assert "Lumen" in post["text"]
    # denied side: Bob is in the channel, so the exec document is never cited there
    emu.emulator.posted.clear()  # type: ignore[attr-defined]
    assert bot.send(bot.mention("UADA", "CALL", DEAL_Q, "101.1")) == 200
    [post] = bot.posted()
    shown = json.dumps(post)
    assert "Lumen" not in shown and "Nightjar" not in shown and "exec" not in shown
    assert post["text"] == NO_CHANNEL_ANSWER
    # what everyone reads is answered in the channel, with citations and feedback buttons
    emu.emulator.posted.clear()  # type: ignore[attr-defined]
    bot.send(bot.mention("UBOB", "CALL", "How many days of annual leave?", "102.1"))
    [post] = bot.posted()
    assert "twenty-eight" in post["text"]
    kinds = [b["type"] for b in post["blocks"]]
    assert "context" in kinds and kinds[-1] == "actions"


def test_another_bot_in_the_channel_admits_nothing(tmp_path: Path, emu: EmulatorServer) -> None:
    bot = Bot(tmp_path, emu)
    bot.send(bot.mention("UADA", "CBOTS", "How many days of annual leave?"))
    [post] = bot.posted()
    assert post["text"] == NO_CHANNEL_ANSWER


def test_ephemeral_mode_answers_the_asker_alone(tmp_path: Path, emu: EmulatorServer) -> None:
    bot = Bot(tmp_path, emu, replies="ephemeral")
    bot.send(bot.mention("UADA", "CALL", DEAL_Q))
    [post] = bot.posted()
    assert post["method"] == "chat.postEphemeral" and post["user"] == "UADA"
    assert "Lumen" in post["text"]


def test_direct_message_uses_the_askers_access(tmp_path: Path, emu: EmulatorServer) -> None:
    bot = Bot(tmp_path, emu)
    dm = {"type": "event_callback", "team_id": "T0", "api_app_id": "A0", "event_id": "Ev9",
          "event_time": 1, "event": {"type": "message", "user": "UBOB", "channel": "DBOB",
                                     "text": DEAL_Q, "ts": "5.1",
                                     "channel_type": "im"}}
    bot.send(dm)
    [post] = bot.posted()
    assert post["method"] == "chat.postMessage" and "Lumen" not in json.dumps(post)
    assert post["text"].startswith("I could not find")


@pytest.mark.parametrize("user", ["UNOMAIL", "UOTHERBOT", "UNKNOWN1"])
def test_unidentified_askers_get_one_refusal_that_names_nothing(
        tmp_path: Path, emu: EmulatorServer, user: str) -> None:
    bot = Bot(tmp_path, emu)
    bot.send(bot.mention(user, "CALL", DEAL_Q))
    [post] = bot.posted()
    assert post["text"] == UNKNOWN_USER and post["method"] == "chat.postEphemeral"
    assert "Lumen" not in json.dumps(post)


@pytest.mark.parametrize("secret,age", [("wrong-secret", 0), (SECRET, 60 * 10)])
def test_badly_signed_or_stale_events_are_refused(tmp_path: Path, emu: EmulatorServer,
                                                 secret: str, age: int) -> None:
    bot = Bot(tmp_path, emu)
    assert bot.send(bot.mention("UADA", "CEXEC", "Which company?"), secret=secret,
                    age=age) == 401
    assert bot.http.post("/slack/events", content=b"{}").status_code == 401  # unsigned
    bot.send(bot.mention("UADA", "CEXEC", "How many days of annual leave?", "7.7"))
    posts = bot.posted()  # the good one is answered; the refused ones never were
    assert len(posts) == 1 and posts[0]["thread_ts"] == "7.7"


def test_feedback_is_stored_in_the_audit_log(tmp_path: Path, emu: EmulatorServer) -> None:
    bot = Bot(tmp_path, emu)
    bot.send(bot.mention("UBOB", "CALL", "How many days of annual leave?"))
    [post] = bot.posted()
    button = post["blocks"][-1]["elements"][1]
    action = {"type": "block_actions", "user": {"id": "UBOB"}, "team": {"id": "T0"},
              "api_app_id": "A0", "token": "x", "trigger_id": "1", "container": {},
              "actions": [{**button, "block_id": "b", "action_ts": "1"}]}
    assert bot.send(action, form=True) == 200
    log = bot.runtime.settings.home / "audit.jsonl"
    for _ in range(400):
        lines = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        if any(x["action"] == "feedback" for x in lines):
            break
        time.sleep(0.025)
    [fb] = [x for x in lines if x["action"] == "feedback"]
    [ask] = [x for x in lines if x["action"] == "ask"]
    assert fb["email"] == BOB and fb["feedback"]["vote"] == "down"
    assert fb["conversation"] == ask["conversation"] and fb["question"] == ask["question"]


def test_missing_secrets_are_a_config_error(tmp_path: Path, emu: EmulatorServer) -> None:
    file = FileConfig.model_validate({"slack": {"bot_token_env": "SB_TOKEN",
                                                "signing_secret_env": "SB_SECRET",
                                                "api_url": emu.base_url + "/api/"}})
    rt = Runtime(Settings(home=tmp_path, config_path=None, file=file))
    with pytest.raises(ConfigError, match="SB_SECRET"):
        build_router(rt, rt.settings, {"SB_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="cannot start") as err:
        build_router(rt, rt.settings, {"SB_TOKEN": "xoxb-wrong", "SB_SECRET": SECRET})
    assert "xoxb-wrong" not in str(err.value)


def test_socket_mode_without_an_app_token_is_exit_2(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from apps.cli.main import main

    config = tmp_path / "clearance.toml"
    config.write_text('[slack]\nbot_token_env = "SB_NO_SUCH_TOKEN"\n'
                      'app_token_env = "SB_NO_SUCH_APP_TOKEN"\n', encoding="utf-8")
    assert main(["--home", str(tmp_path / "home"), "--config", str(config), "slack"]) == 2
    err = capsys.readouterr().err
    assert "SB_NO_SUCH_APP_TOKEN" in err and len(err.strip().splitlines()) == 1
