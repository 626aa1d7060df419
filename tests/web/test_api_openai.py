"""The web API with `[llm] provider = "openai"` (the OpenAI-compatible emulator over TLS): a
cited answer, the conversation's history sent as chat messages only for its starter (another
person's conversation_id is their own, empty one), and a failing endpoint as a 503 whose
response and logs never hold the API key or the model's error text."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest

from emulators.base import EmulatorServer, Fault
from emulators.openai_compat import OpenAICompatEmulator, rate_limit_body
from tests.web.conftest import Web
from tests.web.corpus import ADA, CEO, SECRET_DOC, SECRET_WORDS

pytestmark = pytest.mark.integration
KEY = "sk-web-77aa66bb55cc44dd"


@pytest.fixture
def llm() -> Iterator[tuple[OpenAICompatEmulator, EmulatorServer]]:
    emulator = OpenAICompatEmulator({"api_keys": [KEY], "chunk_size": 6})
    with EmulatorServer(emulator) as server:
        yield emulator, server


@pytest.fixture
def web(make_web: Callable[..., Web], llm: tuple[OpenAICompatEmulator, EmulatorServer],
        monkeypatch: pytest.MonkeyPatch) -> Web:
    monkeypatch.setenv("WEB_LLM_KEY", KEY)
    _, server = llm
    return make_web(
        f'\n[llm]\nprovider = "openai"\nmodel_id = "m"\nbase_url = "{server.base_url}/v1"\n'
        f'api_key_env = "WEB_LLM_KEY"\nca_bundle = "{server.ca_bundle}"\n'
        "max_retries = 1\nretry_base_seconds = 0.01\n")


def ask(web: Web, email: str, question: str, conversation: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"question": question}
    if conversation is not None:
        body["conversation_id"] = conversation
    r = web.api("/api/ask", body, web.token(email))
    assert r.status_code == 200, r.text
    out: dict[str, object] = r.json()
    return out


def test_a_cited_answer_and_a_history_only_for_its_starter(
        web: Web, llm: tuple[OpenAICompatEmulator, EmulatorServer]) -> None:
    emulator, _ = llm
    first = ask(web, CEO, "Which company is Acme planning to acquire?", "deal")
    assert SECRET_DOC in json.dumps(first["citations"])
    ask(web, CEO, "And when does the board vote?", "deal")
    assert [m["role"] for m in emulator.requests[-1]["messages"]] == [
        "system", "user", "assistant", "user"]
    emulator.requests.clear()
    # Ada holding the CEO's conversation id: her own, empty conversation.
    ada = ask(web, ADA, "And for how much?", "deal")
    shown = json.dumps(ada)
    assert SECRET_DOC not in shown and not any(w in shown for w in SECRET_WORDS)
    sent = json.dumps(emulator.requests)
    assert all(len(r["messages"]) == 2 for r in emulator.requests)
    assert not any(w in sent for w in SECRET_WORDS)


def test_a_failing_endpoint_is_a_503_without_the_key_anywhere(
        web: Web, llm: tuple[OpenAICompatEmulator, EmulatorServer],
        caplog: pytest.LogCaptureFixture) -> None:
    emulator, _ = llm
    emulator.faults.add(Fault("/v1/*", status=429, body=rate_limit_body(), times=None))
    with caplog.at_level(logging.INFO, logger="clearance"):
        r = web.api("/api/ask", {"question": "How many days of annual leave?"},
                    web.token(ADA))
    assert r.status_code == 503 and r.json() == {"error": "the assistant is unavailable right now"}
    logged = "\n".join(rec.getMessage() + json.dumps(rec.__dict__, default=str)
                       for rec in caplog.records)
    assert "rate-limiting" in logged  # the operator sees why...
    assert KEY not in logged and KEY not in r.text  # ...and never the key
