"""Cited answers through the OpenAI-compatible provider (real requests, emulators/openai_compat,
files connector, SQLite store): citation validation applies as for every provider — an invented
source number, an unsupported claim and a document the asker cannot read never reach them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assistant.answer import AnswerDelta, AnswerDone, Assistant
from assistant.audit import AuditLog
from assistant.conversations import ConversationStore
from assistant.llm.openai_compat import OpenAICompatProvider, OpenAIConfig
from auth.identity import resolve
from connectors.files.connector import FilesConnector
from emulators.base import EmulatorServer
from emulators.openai_compat import OpenAICompatEmulator
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, Retriever
from tests.conftest import write_tree
from tests.integration.test_answer_bedrock import (
    ADA,
    CEO,
    EVERY_MARKER,
    EXEC_DOC,
    EXEC_WORDS,
    TENANT,
)

pytestmark = pytest.mark.integration


@dataclass
class World:
    store: SqliteStore
    emulator: OpenAICompatEmulator
    assistant: Assistant
    audit_path: Path

    def ask(self, question: str, email: str, **kw: Any) -> Any:
        return self.assistant.ask(question, resolve(self.store, email), **kw)

    def reply(self, text: str) -> None:
        self.emulator.tenant["replies"] = [{"when": "*", "text": text}]

    def prompts(self) -> list[str]:
        return [str(m["content"]) for r in self.emulator.requests for m in r["messages"]]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = write_tree(tmp_path / "docs", TENANT)
    store = SqliteStore(tmp_path / "index.sqlite3")
    embedder = HashingEmbedder()
    assert Pipeline(store, embedder).full_sync(FilesConnector("docs", root)).status == "ok"
    emulator = OpenAICompatEmulator({"chunk_size": 7, "api_keys": ["k-123"]})
    with EmulatorServer(emulator) as server:
        provider = OpenAICompatProvider(OpenAIConfig(
            base_url=server.base_url + "/v1", model="m", api_key="k-123",
            ca_bundle=str(server.ca_bundle)))
        audit_path = tmp_path / "audit.jsonl"
        assistant = Assistant(Retriever(store, embedder, RetrievalParams()), provider,
                              audit=AuditLog(audit_path),
                              conversations=ConversationStore(tmp_path / "conv.sqlite3"))
        yield World(store, emulator, assistant, audit_path)
    store.close()


def test_a_proper_answer_is_cited_with_a_verbatim_quote(world: World) -> None:
    answer = world.ask("When does the Berlin office open?", ADA)
    assert not answer.refused
    [c] = answer.citations
    assert (c.n, c.doc_id, c.title) == (1, "docs:handbook/office.md", "Office")
    texts = [ch["text"] for ch in world.store.snapshot()["documents"][c.doc_id]["chunks"]]
    assert any(c.quote in t for t in texts)


def test_an_invented_source_and_an_unsupported_claim_are_removed(world: World) -> None:
    world.reply("The Berlin office opens at seven thirty [1]. Staff get free lunches on "
                "Fridays [9]. The Berlin office serves free champagne on Sundays [1].")
    answer = world.ask("When does the Berlin office open?", ADA)
    assert answer.answer == "The Berlin office opens at seven thirty [1]."
    shown = json.dumps(answer.to_json())
    assert "[9]" not in shown and "lunches" not in shown and "champagne" not in shown
    record = json.loads(world.audit_path.read_text().splitlines()[-1])
    assert record["provider"] == "openai" and record["dropped_claims"] == 2
    assert record["input_tokens"] > 0 and record["output_tokens"] > 0
    assert record["stop_reason"] == "end_turn"


def test_no_citation_from_a_document_the_asker_cannot_read(world: World) -> None:
    question = "Which company is Acme planning to acquire?"
    assert EXEC_DOC in {c.doc_id for c in world.ask(question, CEO).citations}  # allowed side
    world.reply(f"Acme plans to acquire Lumen Robotics for forty-two million euros "
                f"{EVERY_MARKER}.")
    world.emulator.requests.clear()
    ada = world.ask(question, ADA)
    shown = json.dumps(ada.to_json())
    assert ada.refused and EXEC_DOC not in shown and not any(w in shown for w in EXEC_WORDS)
    assert world.prompts() and not any(w in p for p in world.prompts() for w in EXEC_WORDS)


def test_the_stream_gives_checked_sentences_then_the_citations(world: World) -> None:
    world.reply("The Berlin office opens at seven thirty [1]. Staff get free lunches [9]. "
                "Visitors sign in at the front desk [1].")
    events = list(world.assistant.ask_stream("When does the Berlin office open?",
                                             resolve(world.store, ADA)))
    assert [e.text for e in events if isinstance(e, AnswerDelta)] == [
        "The Berlin office opens at seven thirty [1].", " Visitors sign in at the front desk [1]."]
    done = events[-1]
    assert isinstance(done, AnswerDone) and done.usage.output_tokens > 0
    assert [c.doc_id for c in done.answer.citations] == ["docs:handbook/office.md"]


def test_a_follow_up_sends_the_history_as_chat_messages(world: World) -> None:
    first = world.ask("Who approves annual leave requests?", ADA, conversation="c1")
    world.emulator.requests.clear()
    follow = world.ask("And how many days do employees get?", ADA, conversation="c1")
    assert "twenty-eight days" in follow.answer
    [sent] = world.emulator.requests
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][2]["content"] == first.answer
