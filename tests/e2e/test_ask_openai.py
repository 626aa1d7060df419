"""`clearance ask` with `[llm] provider = "openai"`: the console script against the
OpenAI-compatible emulator over TLS; the DESIGN.md JSON shape, the denied side, and failures as
one line with the right exit code and never the API key."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.base import EmulatorServer, Fault
from emulators.openai_compat import OpenAICompatEmulator, rate_limit_body
from tests.conftest import write_tree
from tests.e2e.test_cli import Cli, cli_env, one_error_line, write_config

pytestmark = pytest.mark.e2e
ADA = "ada@example.org"
KEY = "sk-e2e-0a1b2c3d4e5f6a7b"
TREE: dict[str, Any] = {
    ".access.json": {"read": ["domain:example.org"]},
    "office.md": "# Office\n\nThe Berlin office opens at seven thirty in the morning.\n",
    "secret/.access.json": {"read": ["user:boss@example.org"]},
    "secret/plan.md": "# Plan\n\nThe Berlin office moves to Hamburg next spring.\n",
}


class KeyedCli(Cli):
    key: str | None = KEY

    def raw(self, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> Any:
        extra = {"LLM_API_KEY": self.key} if self.key is not None else {}
        return super().raw(*args, stdin=stdin, env=env or cli_env(**extra))


@pytest.fixture(scope="module")
def emulator() -> OpenAICompatEmulator:
    return OpenAICompatEmulator({"chunk_size": 4, "api_keys": [KEY], "models": ["m-8b"]})


@pytest.fixture(scope="module")
def server(emulator: OpenAICompatEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as s:
        yield s


def config_for(base: Path, server: EmulatorServer, docs: Path, **llm: str) -> Path:
    keys = {"provider": "openai", "model_id": "m-8b", "base_url": server.base_url + "/v1",
            "api_key_env": "LLM_API_KEY", "ca_bundle": str(server.ca_bundle), **llm}
    body = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    return write_config(base / "clearance.toml", (
        f"[llm]\n{body}retry_base_seconds = 0.01\nmax_retries = 1\n\n"
        f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n'))


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, server: EmulatorServer) -> KeyedCli:
    base = tmp_path_factory.mktemp("openai")
    docs = write_tree(base / "docs", TREE)
    c = KeyedCli(base / "home", config_for(base, server, docs), base)
    assert c("sync").returncode == 0
    return c


@pytest.fixture(autouse=True)
def clean(emulator: OpenAICompatEmulator, cli: KeyedCli) -> None:
    emulator.tenant["replies"] = []
    emulator.faults.clear()
    cli.key = KEY


def test_ask_json_keeps_the_design_shape(cli: KeyedCli) -> None:
    r = cli("ask", "When does the Berlin office open?", "--as", ADA, "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert set(answer) == {"answer", "citations", "refused"}
    assert answer["answer"] == "The Berlin office opens at seven thirty in the morning. [1]"
    [c] = answer["citations"]
    assert set(c) == {"n", "doc_id", "title", "url", "quote"} and c["doc_id"] == "docs:office.md"


def test_the_denied_side_through_the_cli(cli: KeyedCli, emulator: OpenAICompatEmulator) -> None:
    emulator.tenant["replies"] = [{"when": "*", "text": "The Berlin office moves to Hamburg "
                                                        "next spring [1][2][3]."}]
    r = cli("ask", "Where does the Berlin office move?", "--as", ADA, "--json")
    answer = json.loads(r.stdout)
    assert answer["refused"] and "Hamburg" not in r.stdout and "secret/plan" not in r.stdout


def test_throttling_past_the_retries_is_one_line_exit_1(cli: KeyedCli,
                                                        emulator: OpenAICompatEmulator) -> None:
    emulator.faults.add(Fault("/v1/*", status=429, body=rate_limit_body(), times=None))
    r = cli("ask", "When does the Berlin office open?", "--as", ADA, "--json")
    line = one_error_line(r, 1)
    assert "rate-limiting" in line and r.stdout == "" and KEY not in r.stderr


def test_a_rejected_key_is_one_line_without_either_key(cli: KeyedCli) -> None:
    cli.key = "sk-stale-ffeeddccbbaa"
    r = cli("ask", "When does the Berlin office open?", "--as", ADA)
    line = one_error_line(r, 1)
    assert "refused the API key" in line and "sk-stale" not in r.stderr + r.stdout


def test_an_unset_key_variable_is_a_config_error(cli: KeyedCli) -> None:
    cli.key = None
    r = cli("ask", "When does the Berlin office open?", "--as", ADA)
    assert "LLM_API_KEY, which is not set" in one_error_line(r, 2)


def test_a_broken_stream_is_one_line(cli: KeyedCli, emulator: OpenAICompatEmulator) -> None:
    emulator.tenant["replies"] = [{"when": "*", "text": "The Berlin office opens at",
                                   "stream": "malformed"}]
    r = cli("ask", "When does the Berlin office open?", "--as", ADA, "--json")
    assert "malformed stream" in one_error_line(r, 1) and r.stdout == ""
