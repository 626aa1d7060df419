"""The Teams bot's conversation logic under botbuilder's TestAdapter: replies are captured by
the adapter, while member look-ups go through a real Bot Connector client (msal-signed) to the
Bot Framework emulator, as in production."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botbuilder.core import BotAdapter, TurnContext
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity
from botframework.connector.aio import ConnectorClient

from apps.runtime import Runtime
from apps.teams.auth import MsalCredentials, authority
from apps.teams.bot import EMPTY, NO_CHANNEL_ANSWER, UNKNOWN_USER, TeamsBot
from emulators.base import EmulatorServer
from tests.bots.teams_world import (
    ALL_CHANNEL,
    ALL_TEAM,
    APP_ID,
    APP_PASSWORD,
    DEAL_Q,
    EXEC_CHANNEL,
    EXEC_TEAM,
    LEAVE_Q,
    PERSONAL_ADA,
    SECRET_WORDS,
    activity,
    make_runtime,
    start_emulator,
)

pytestmark = pytest.mark.integration


class ConnectorMiddleware:
    """Puts a Bot Connector client for the emulator in the turn, as the cloud adapter does."""

    def __init__(self, client: ConnectorClient) -> None:
        self.client = client

    async def on_turn(self, context: TurnContext,
                      logic: Callable[[], Awaitable[None]]) -> None:
        context.turn_state[BotAdapter.BOT_CONNECTOR_CLIENT_KEY] = self.client
        await logic()


class World:
    def __init__(self, base: Path, emu: EmulatorServer) -> None:
        self.emu = emu
        self.runtime: Runtime = make_runtime(base, emu)
        self.bot = TeamsBot(self.runtime.lanes(2), self.runtime.audit)
        creds = MsalCredentials(APP_ID, APP_PASSWORD, authority(emu.base_url, None))
        self.client = ConnectorClient(creds, base_url=emu.base_url)

    def turn(self, **kw: Any) -> list[Activity]:
        """One incoming activity through a TestAdapter; the bot's replies, in order."""
        body = activity(self.emu, **kw)
        template = Activity().deserialize(body)
        adapter = TestAdapter(self.bot.on_turn, template)
        adapter.use(ConnectorMiddleware(self.client))

        async def go() -> None:
            await adapter.receive_activity(Activity(type="message", text=template.text,
                                                    value=template.value))
        asyncio.run(go())
        return list(adapter.activity_buffer)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    emu = start_emulator(monkeypatch)
    w = World(tmp_path, emu)
    yield w
    w.runtime.lanes().close()
    emu.stop()


def _shown(replies: list[Activity]) -> str:
    return json.dumps([r.serialize() for r in replies])


def test_the_mention_is_not_part_of_the_question(world: World) -> None:
    [reply] = world.turn(conversation=EXEC_CHANNEL, kind="channel", sender="aad-ada",
                         text=DEAL_Q, team=EXEC_TEAM)
    assert "Lumen" in reply.text
    audit = (world.runtime.settings.home / "audit.jsonl").read_text().splitlines()
    assert json.loads(audit[-1])["question"] == DEAL_Q  # "<at>Clearance</at>" stripped


def test_a_mention_with_no_question_asks_for_one(world: World) -> None:
    [reply] = world.turn(conversation=ALL_CHANNEL, kind="channel", sender="aad-ada", text="  ",
                         team=ALL_TEAM)
    assert reply.text == EMPTY


def test_an_unknown_conversation_kind_is_treated_as_shared(world: World) -> None:
    """Only "personal" is the asker's own: a kind the bot does not know follows the audience
    rule (here Bob shares the conversation, so the exec deal is not cited)."""
    [reply] = world.turn(conversation=ALL_CHANNEL, kind="meeting", sender="aad-ada",
                         text=DEAL_Q, team=ALL_TEAM)
    assert reply.text == NO_CHANNEL_ANSWER
    assert not any(w in _shown([reply]) for w in SECRET_WORDS)


def test_a_follow_up_in_a_personal_chat_sees_the_conversation(world: World) -> None:
    [first] = world.turn(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                         text=LEAVE_Q)
    [second] = world.turn(conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                          text=DEAL_Q, activity_id="act-2")
    assert "twenty-eight" in first.text and "Lumen" in second.text
    records = [json.loads(line) for line in
               (world.runtime.settings.home / "audit.jsonl").read_text().splitlines()]
    assert records[-1]["conversation"] == records[-2]["conversation"]  # one conversation


def test_without_a_connector_nobody_can_be_named(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A turn whose member list cannot be reached names nobody: the refusal, no search."""
    emu = start_emulator(monkeypatch)
    try:
        runtime = make_runtime(tmp_path, emu)
        bot = TeamsBot(runtime.lanes(1), runtime.audit)
        template = Activity().deserialize(activity(emu, conversation=PERSONAL_ADA,
                                                   kind="personal", sender="aad-ada",
                                                   text=DEAL_Q))
        adapter = TestAdapter(bot.on_turn, template)
        asyncio.run(adapter.receive_activity(Activity(type="message", text=DEAL_Q)))
        [reply] = adapter.activity_buffer
        assert reply.text == UNKNOWN_USER
        assert not (runtime.settings.home / "audit.jsonl").exists()
        runtime.lanes().close()
    finally:
        emu.stop()
