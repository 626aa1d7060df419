"""`clearance ask` with `[llm] provider = "bedrock"`: the console script, boto3's standard
credential chain (environment variables here), the emulator on loopback over TLS; the JSON
shape of DESIGN.md, streaming on a terminal, one-line errors with the right exit codes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulators.base import EmulatorServer, Fault
from emulators.bedrock import BedrockEmulator, throttling_body
from tests.conftest import write_tree
from tests.e2e.test_cli import Cli, cli_env, one_error_line, write_config
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e
ADA = "ada@example.org"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
TREE: dict[str, Any] = {
    ".access.json": {"read": ["domain:example.org"]},
    "office.md": "# Office\n\nThe Berlin office opens at seven thirty in the morning.\n",
    "secret/.access.json": {"read": ["user:boss@example.org"]},
    "secret/plan.md": "# Plan\n\nThe Berlin office moves to Hamburg next spring.\n",
}


def aws_env() -> dict[str, str]:
    return cli_env(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY=SECRET,
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                   AWS_EC2_METADATA_DISABLED="true")


class BedrockCli(Cli):
    def raw(self, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return super().raw(*args, stdin=stdin, env=env or aws_env())


@pytest.fixture(scope="module")
def emulator() -> BedrockEmulator:
    return BedrockEmulator({"chunk_size": 4})


@pytest.fixture(scope="module")
def server(emulator: BedrockEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as s:
        yield s


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, server: EmulatorServer) -> BedrockCli:
    base = tmp_path_factory.mktemp("bedrock")
    docs = write_tree(base / "docs", TREE)
    config = write_config(base / "clearance.toml", (
        f'[llm]\nprovider = "bedrock"\nmodel_id = "anthropic.claude-3-haiku-20240307-v1:0"\n'
        f'region = "eu-central-1"\nendpoint_url = "{server.base_url}"\n'
        f'ca_bundle = "{server.ca_bundle}"\nretry_base_seconds = 0.01\nmax_retries = 2\n\n'
        f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n'))
    c = BedrockCli(base / "home", config, base)
    assert c("sync").returncode == 0
    return c


@pytest.fixture(autouse=True)
def clean(emulator: BedrockEmulator) -> None:
    emulator.tenant["replies"] = []
    emulator.faults.clear()


def test_ask_json_keeps_the_design_shape(cli: BedrockCli) -> None:
    r = cli("ask", "When does the Berlin office open?", "--as", ADA, "--json")
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert set(answer) == {"answer", "citations", "refused"}
    assert answer["answer"] == "The Berlin office opens at seven thirty in the morning. [1]"
    [c] = answer["citations"]
    assert set(c) == {"n", "doc_id", "title", "url", "quote"} and c["doc_id"] == "docs:office.md"


def test_the_denied_side_through_the_cli(cli: BedrockCli, emulator: BedrockEmulator) -> None:
    emulator.tenant["replies"] = [{"when": "*", "text": "The Berlin office moves to Hamburg "
                                                        "next spring [1][2][3]."}]
    r = cli("ask", "Where does the Berlin office move?", "--as", ADA, "--json")
    answer = json.loads(r.stdout)
    assert answer["refused"] and "Hamburg" not in r.stdout and "secret/plan" not in r.stdout


def test_ask_streams_on_a_terminal(cli: BedrockCli) -> None:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [clearance_exe(), "--home", str(cli.home), "ask", "When does the Berlin office open?",
             "--as", ADA, "--config", str(cli.config)], stdout=follower,
            stderr=subprocess.PIPE, env=aws_env(), cwd=cli.cwd)
        os.close(follower)
        out = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    text = out.decode().replace("\r\n", "\n")
    assert text.startswith("The Berlin office opens at seven thirty in the morning. [1]\n")
    assert "Sources:\n  [1] Office (docs:office.md)" in text


@pytest.mark.parametrize("setup,code,words", [
    ({"replies": [{"when": "*", "error": "ModelErrorException", "message": "boom"}]}, 1,
     "the Bedrock model failed: boom"),
    ({"fault": True}, 1, "throttling"),
])
def test_provider_failures_are_one_line_exit_1_and_leak_no_secret(
        cli: BedrockCli, emulator: BedrockEmulator, setup: dict[str, Any], code: int,
        words: str) -> None:
    if setup.get("fault"):
        emulator.faults.add(Fault("/model/*", status=429, body=throttling_body(), times=None))
    else:
        emulator.tenant["replies"] = setup["replies"]
    r = cli("ask", "When does the Berlin office open?", "--as", ADA)
    line = one_error_line(r, code)
    assert words in line and SECRET not in r.stderr + r.stdout


@pytest.mark.parametrize("body,expected", [
    ('provider = "bedrock"\nmodel_id = "m"\n', "needs region"),
    ('provider = "bedrock"\nregion = "us-east-1"\n', "needs model_id"),
    ('provider = "bedrock"\nmodel_id = "m"\nregion = "r"\nguardrail_id = "g"\n',
     "need both guardrail_id and guardrail_version"),
    ('provider = "bedrock"\nmodel_id = "m"\nregion = "r"\nca_bundle = "/nonexistent.pem"\n',
     "is not a file"),
    ('provider = "bedrock"\nmodel_id = "m"\nregion = "r"\ntemperature = 3\n', "temperature"),
])
def test_bedrock_config_mistakes_are_exit_2(cli: BedrockCli, tmp_path: Path, body: str,
                                            expected: str) -> None:
    config = write_config(tmp_path / "c.toml", f"[llm]\n{body}\n[[connectors]]\nname = "
                                               f'"docs"\nkind = "files"\nroot = "{tmp_path}"\n')
    r = BedrockCli(cli.home, config, tmp_path)("ask", "office?", "--as", ADA)
    assert expected in one_error_line(r, 2)


def guardrails_cli(cli: BedrockCli, tmp_path: Path, section: str) -> BedrockCli:
    body = cli.config.read_text().replace("[[connectors]]", f"{section}\n[[connectors]]", 1)
    return BedrockCli(cli.home, write_config(tmp_path / "g.toml", body), tmp_path)


def test_guardrails_apply_from_the_config(cli: BedrockCli, tmp_path: Path) -> None:
    g = guardrails_cli(cli, tmp_path, '[guardrails]\nblocked_words = ["Hamburg"]\n'
                                      'pii = { email = "block" }\n')
    r = g("ask", "Is the office moving to Hamburg?", "--as", ADA, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["refused"]
    assert "Hamburg" not in r.stdout
    r = g("ask", "Who is bob@example.org?", "--as", ADA, "--json")
    assert "personal data (email)" in json.loads(r.stdout)["answer"]
    audit = [json.loads(line) for line in (cli.home / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["guardrails"] == [{"stage": "question", "action": "blocked",
                                        "rule": "pii:email"}]
    assert "bob@example.org" not in audit[-1]["question"]


@pytest.mark.parametrize("section", ['[guardrails]\npii = { passport = "redact" }\n',
                                     '[guardrails]\ndenied_topics = [{ name = "x" }]\n',
                                     '[guardrails]\nblock_words = ["x"]\n'])
def test_guardrail_config_mistakes_are_exit_2(cli: BedrockCli, tmp_path: Path,
                                              section: str) -> None:
    r = guardrails_cli(cli, tmp_path, section)("ask", "office?", "--as", ADA)
    assert "guardrails" in one_error_line(r, 2)


def test_a_follow_up_through_the_cli_and_a_bad_conversation_name(
        cli: BedrockCli, emulator: BedrockEmulator) -> None:
    r = cli("ask", "When does the Berlin office open?", "--as", ADA, "--conversation", "t1",
            "--json")
    assert r.returncode == 0, r.stderr
    emulator.requests.clear()
    r = cli("ask", "And is it in the morning?", "--as", ADA, "--conversation", "t1", "--json")
    assert set(json.loads(r.stdout)) == {"answer", "citations", "refused"}
    assert [m["role"] for m in emulator.requests[-1]["messages"]] == ["user", "assistant", "user"]
    bad = cli("ask", "office?", "--as", ADA, "--conversation", "../etc")
    assert "--conversation" in one_error_line(bad, 2)
