"""`clearance ask --conversation NAME` with `[conversations] backend = "dynamodb"`: the console
script, boto3's credential chain (environment variables), moto's server on loopback. A
follow-up is answered from the rewritten standalone query across invocations; every turn is
retrieved with the asker's *current* access (removed from the group between turns: the
follow-up no longer cites the team's document); each person's turns are in their own
partition; an unusable table is one line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from assistant.conversations_remote import DynamoConversations
from tests.conftest import write_tree
from tests.e2e.test_cli import Cli, cli_env, one_error_line, write_config

pytestmark = pytest.mark.e2e
ADA, BOB = "ada@example.org", "bob@example.org"
TREE: dict[str, Any] = {
    ".access.json": {"read": ["domain:example.org"]},
    ".groups.json": {"team": [f"user:{ADA}"]},
    "leave.md": ("# Annual leave\n\nLeave requests are approved by your line manager in the HR "
                 "portal. Every employee receives twenty-eight days of paid annual leave per "
                 "year.\n"),
    "team/.access.json": {"read": ["group:team"]},
    "team/lighthouse.md": ("# Lighthouse\n\nThe lighthouse release ships in June. Its launch "
                           "budget is ninety thousand euros.\n"),
}


def aws_env() -> dict[str, str]:
    return cli_env(AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="not-a-secret",
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                   AWS_EC2_METADATA_DISABLED="true")


class AwsCli(Cli):
    def raw(self, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> Any:
        return super().raw(*args, stdin=stdin, env=env or aws_env())


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def raw_client(url: str) -> Any:
    return boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x",
                                 region_name="eu-west-1").client("dynamodb", endpoint_url=url)


@pytest.fixture
def cli(tmp_path: Path, moto_url: str) -> AwsCli:
    table = f"conv-{tmp_path.name[-20:].replace('_', '-')}"
    DynamoConversations(table, client=raw_client(moto_url)).create_table()
    docs = write_tree(tmp_path / "docs", TREE)
    config = write_config(tmp_path / "clearance.toml", (
        f'[conversations]\nbackend = "dynamodb"\ntable = "{table}"\nregion = "eu-west-1"\n'
        f'endpoint_url = "{moto_url}"\n\n'
        f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n'))
    c = AwsCli(tmp_path / "home", config, tmp_path)
    c.ok("sync")
    c.table = table  # type: ignore[attr-defined]
    return c


def ask(cli: AwsCli, question: str, email: str, conversation: str) -> dict[str, Any]:
    out: dict[str, Any] = cli.json("ask", question, "--as", email, "--conversation",
                                   conversation)
    return out


def test_a_follow_up_is_answered_across_invocations(cli: AwsCli, moto_url: str) -> None:
    first = ask(cli, "Who approves annual leave requests?", ADA, "c1")
    assert [c["doc_id"] for c in first["citations"]] == ["docs:leave.md"]
    follow = ask(cli, "And how many paid days does everyone get?", ADA, "c1")
    assert "twenty-eight days" in follow["answer"]
    ask(cli, "When does the lighthouse release ship?", ADA, "fresh")
    items = raw_client(moto_url).scan(TableName=cli.table)["Items"]  # type: ignore[attr-defined]
    assert {i["owner"]["S"] for i in items} == {ADA}
    assert sorted(i["sk"]["S"].split("#")[0] for i in items) == ["c1", "c1", "fresh"]
    assert all("expires_at" in i for i in items)
    audit = [json.loads(line) for line in (cli.home / "audit.jsonl").read_text().splitlines()]
    assert [r["conversation"] for r in audit if r["action"] == "ask"] == ["c1", "c1", "fresh"]


def test_every_turn_is_retrieved_with_the_current_access(cli: AwsCli, tmp_path: Path) -> None:
    first = ask(cli, "When does the lighthouse release ship?", ADA, "launch")
    assert "docs:team/lighthouse.md" in {c["doc_id"] for c in first["citations"]}
    # Ada leaves the team between the two turns.
    (tmp_path / "docs" / ".groups.json").write_text(json.dumps({"team": []}))
    cli.ok("sync", "--mode", "permissions")
    follow = ask(cli, "And what is its budget?", ADA, "launch")
    shown = json.dumps(follow)
    assert "docs:team/lighthouse.md" not in shown and "ninety thousand" not in shown


def test_another_persons_conversation_id_is_their_own_empty_one(cli: AwsCli,
                                                                moto_url: str) -> None:
    ask(cli, "When does the lighthouse release ship?", ADA, "launch")
    bob = ask(cli, "And what is its budget?", BOB, "launch")
    shown = json.dumps(bob)
    assert "lighthouse" not in shown.lower() and "ninety thousand" not in shown
    items = raw_client(moto_url).scan(TableName=cli.table)["Items"]  # type: ignore[attr-defined]
    by_owner = {o: [i["question"]["S"] for i in items if i["owner"]["S"] == o]
                for o in (ADA, BOB)}
    assert by_owner == {ADA: ["When does the lighthouse release ship?"],
                        BOB: ["And what is its budget?"]}


def test_a_missing_table_is_one_line(cli: AwsCli, tmp_path: Path) -> None:
    config = cli.config.read_text().replace(f'table = "{cli.table}"',  # type: ignore[attr-defined]
                                            'table = "no-such-table"')
    cli.config.write_text(config)
    r = cli("ask", "Who approves annual leave requests?", "--as", ADA, "--conversation", "c1")
    line = one_error_line(r, 1)
    assert "'no-such-table': the table does not exist" in line and r.stdout == ""
    # Without --conversation the table is never needed.
    cli.ok("ask", "Who approves annual leave requests?", "--as", ADA)


def test_redis_conversations_through_the_cli_fall_back_to_the_broker_url(tmp_path: Path) -> None:
    from indexer.jobs.testing import RedisServer

    docs = write_tree(tmp_path / "docs", TREE)
    with RedisServer(tmp_path / "redis") as server:
        config = write_config(tmp_path / "clearance.toml", (
            f'[jobs]\nbroker_url = "{server.url}"\n\n[conversations]\nbackend = "redis"\n\n'
            f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n'))
        cli = AwsCli(tmp_path / "home", config, tmp_path)
        cli.ok("sync")
        ask(cli, "Who approves annual leave requests?", ADA, "c1")
        follow = ask(cli, "And how many paid days does everyone get?", ADA, "c1")
        assert "twenty-eight days" in follow["answer"]
        assert not (tmp_path / "home" / "conversations.sqlite3").exists()
        import redis

        client = redis.Redis.from_url(server.url)
        keys = [k.decode() for k in client.keys("clearance:conv:*")]
        assert len(keys) == 1 and client.llen(keys[0]) == 2
        client.close()
