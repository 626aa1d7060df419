"""Amazon Bedrock Guardrails through ApplyGuardrail (real boto3 against emulators/bedrock.py):
the question (INPUT) and each answer sentence (OUTPUT) are checked; a block stops the question
before retrieval or withholds the sentence, a mask replaces the text; every intervention is in
the audit log; the person gets a fixed message that neither echoes the guardrail's text nor what
it matched; a failing guardrail fails closed with one clear line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from assistant.answer import Assistant
from assistant.audit import AuditLog
from assistant.guardrails import Guardrails
from assistant.llm.bedrock import BedrockConfig, BedrockProvider
from assistant.llm.bedrock_guardrail import BedrockGuardrail, bedrock_guardrail
from auth.identity import resolve
from connectors.files.connector import FilesConnector
from core.errors import ConfigError, ProviderError
from core.settings import LlmSettings
from emulators.base import EmulatorServer, Fault
from emulators.bedrock import BedrockEmulator, throttling_body
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, Retriever
from tests.conftest import write_tree
from tests.integration.test_answer_bedrock import ADA, TENANT

pytestmark = pytest.mark.integration

MESSAGE = "GUARDRAIL-SECRET-MESSAGE about the forbidden thing"
GUARDRAILS = {"gr-1": {"versions": ["1"], "blocked_words": ["printer", "hamburg"],
                       "anonymize_emails": True, "message": MESSAGE}}


@dataclass
class World:
    emulator: BedrockEmulator
    assistant: Assistant
    audit_path: Path
    store: SqliteStore
    guardrail: BedrockGuardrail

    def audit(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def guard_calls(self) -> list[dict[str, Any]]:
        return [r for r in self.emulator.requests if "guardrail" in r]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    tenant = dict(TENANT)
    # restricted to one person, so the oversharing guard does not keep the email out
    tenant["desk/.access.json"] = {"read": [f"user:{ADA}"]}
    tenant["desk/contacts.md"] = ("# Contacts\n\nThe facilities desk answers at "
                                      "desk@acme.com about the Berlin office keys.\n")
    root = write_tree(tmp_path / "docs", tenant)
    store = SqliteStore(tmp_path / "index.sqlite3")
    embedder = HashingEmbedder()
    assert Pipeline(store, embedder).full_sync(FilesConnector("docs", root)).status == "ok"
    emulator = BedrockEmulator({"chunk_size": 7, "guardrails": GUARDRAILS})
    with EmulatorServer(emulator) as server:
        session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE",
                                        aws_secret_access_key="x", region_name="us-east-1")
        config = BedrockConfig("anthropic.claude-3-haiku-20240307-v1:0", "us-east-1",
                               server.base_url, str(server.ca_bundle), retry_base_seconds=0.0)
        guardrail = BedrockGuardrail("gr-1", "1", config, session=session)
        guard = Guardrails(None, {}, remote=guardrail)
        audit_path = tmp_path / "audit.jsonl"
        assistant = Assistant(Retriever(store, embedder, RetrievalParams()),
                              BedrockProvider(config, session=session),
                              audit=AuditLog(audit_path), guard=guard)
        yield World(emulator, assistant, audit_path, store, guardrail)
    store.close()


def test_a_clean_question_and_answer_pass_both_checks(world: World) -> None:
    answer = world.assistant.ask("When does the Berlin office open?", resolve(world.store, ADA))
    assert not answer.refused and "seven thirty" in answer.answer
    sources = [c["source"] for c in world.guard_calls()]
    assert sources[0] == "INPUT" and "OUTPUT" in sources
    assert world.audit()[-1]["guardrails"] == []


def test_a_blocked_question_never_reaches_retrieval_or_the_model(world: World) -> None:
    answer = world.assistant.ask("Is the Hamburg office open?", resolve(world.store, ADA))
    assert answer.refused and not answer.citations
    assert answer.answer == "This question was stopped by the organisation's guardrail."
    assert MESSAGE not in answer.answer and "amburg" not in answer.answer
    assert not [r for r in world.emulator.requests if "messages" in r]  # no Converse call
    record = world.audit()[-1]
    assert record["guardrails"] == [{"stage": "question", "action": "blocked",
                                     "rule": "bedrock_guardrail:gr-1:1"}]
    assert record["hits"] == [] and "Hamburg" not in json.dumps(record)


def test_a_blocked_answer_sentence_is_withheld_and_audited(world: World) -> None:
    world.emulator.tenant["replies"] = [{"when": "*", "text": (
        "The colour printer on the second floor needs a badge to release print jobs. [1]")}]
    answer = world.assistant.ask("How do I release print jobs on the second floor?",
                                 resolve(world.store, ADA))
    assert "printer" not in answer.answer.lower() and MESSAGE not in answer.answer
    assert answer.refused and not answer.citations
    assert {"stage": "answer", "action": "withheld", "rule": "bedrock_guardrail:gr-1:1"} \
        in world.audit()[-1]["guardrails"]


def test_a_masked_answer_shows_the_masked_text_in_answer_and_quote(world: World) -> None:
    world.emulator.tenant["replies"] = [{"when": "*", "text": (
        "The facilities desk answers at desk@acme.com about the Berlin office keys. [1]")}]
    answer = world.assistant.ask("Who answers about the Berlin office keys?",
                                 resolve(world.store, ADA))
    assert not answer.refused
    assert "{EMAIL}" in answer.answer and "desk@acme.com" not in answer.answer
    assert all("desk@acme.com" not in c.quote for c in answer.citations)
    assert {"stage": "answer", "action": "redacted", "rule": "bedrock_guardrail:gr-1:1"} \
        in world.audit()[-1]["guardrails"]


def test_a_failing_guardrail_fails_closed_with_one_clear_line(world: World) -> None:
    world.emulator.faults.add(Fault("/guardrail/*", status=429, body=throttling_body(),
                                    times=None))
    with pytest.raises(ProviderError, match="throttling") as exc:
        world.assistant.ask("When does the Berlin office open?", resolve(world.store, ADA))
    assert "\n" not in str(exc.value)
    assert not [r for r in world.emulator.requests if "messages" in r]


def test_an_unknown_guardrail_version_is_a_clear_error(world: World) -> None:
    wrong = BedrockGuardrail("gr-1", "7", world.guardrail.config,
                             session=boto3.session.Session(aws_access_key_id="AKIDEXAMPLE",
                                                           aws_secret_access_key="x"))
    with pytest.raises(ProviderError, match="not found"):
        wrong.apply("hello", "INPUT")


@pytest.mark.parametrize("fields,expected", [
    ({"guardrail_id": "gr-1"}, "both guardrail_id and guardrail_version"),
    ({"guardrail_version": "1"}, "both guardrail_id and guardrail_version"),
    ({"guardrail_id": "gr-1", "guardrail_version": "1"}, "need region"),
])
def test_guardrail_config_mistakes(tmp_path: Path, fields: dict[str, str],
                                   expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        bedrock_guardrail(LlmSettings(**fields), tmp_path)
    assert bedrock_guardrail(LlmSettings(), tmp_path) is None
