"""`clearance audit --user EMAIL --since WHEN [--json]` through the console script on the
embedded JSONL log: complete ask records (who, principals or their hash, conversation, hits,
each cited document's version and ACL hash, guardrails, provider, tokens, latency), the user
filter's denied side, bad flags as one line (exit 2), corrupt lines reported and skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assistant.audit import acl_hash, principals_hash
from indexer.store.sqlite import SqliteStore
from tests.conftest import write_tree
from tests.e2e.test_cli import Cli, one_error_line, write_config

pytestmark = pytest.mark.e2e
ADA, BOB = "ada@example.org", "bob@example.org"
TREE: dict[str, Any] = {
    ".access.json": {"read": ["domain:example.org"]},
    ".groups.json": {"team": [f"user:{ADA}"]},
    "office.md": "# Office\n\nThe Berlin office opens at seven thirty in the morning.\n",
    "team/.access.json": {"read": ["group:team"]},
    "team/plan.md": "# Plan\n\nThe team ships the lighthouse release in June.\n",
}


def make_cli(tmp_path: Path, extra: str = "") -> Cli:
    docs = write_tree(tmp_path / "docs", TREE)
    config = write_config(tmp_path / "clearance.toml", (
        f'{extra}[guardrails]\npii = {{ email = "redact" }}\n\n'
        f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n'))
    cli = Cli(tmp_path / "home", config, tmp_path)
    cli.ok("sync")
    return cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return make_cli(tmp_path)


def test_an_ask_record_is_complete_and_read_back_for_its_user_only(cli: Cli) -> None:
    cli.ok("ask", "When does the lighthouse release ship? Tell eve@example.org", "--as", ADA,
           "--conversation", "c1")
    cli.ok("ask", "When does the Berlin office open?", "--as", BOB)
    out = cli.json("audit", "--user", ADA.upper(), "--since", "1h")
    assert out["skipped"] == []
    [rec] = out["records"]
    assert rec["email"] == ADA and rec["action"] == "ask" and rec["conversation"] == "c1"
    assert isinstance(rec["at"], float) and rec["latency_ms"] >= 0
    assert f"user:{ADA}" in rec["principals"]
    assert rec["principals_hash"] == principals_hash(rec["principals"])
    assert "docs:team/plan.md" in rec["hits"] and len(rec["hits"]) == len(set(rec["hits"]))
    store = SqliteStore(cli.home / "index.sqlite3")
    doc = store.document("docs:team/plan.md")
    store.close()
    assert doc is not None
    assert rec["cited"] == [{"doc_id": doc.doc_id, "version": doc.content_hash,
                             "acl_hash": acl_hash(doc.acl)}]
    assert {"stage": "question", "action": "redacted", "rule": "pii:email"} in rec["guardrails"]
    assert "eve@example.org" not in json.dumps(rec)
    assert rec["provider"] == "extractive" and "input_tokens" in rec
    # The denied side: Bob's reading of the log has only Bob, never Ada's question.
    bob = cli.json("audit", "--user", BOB)["records"]
    assert [r["email"] for r in bob] == [BOB] and "lighthouse" not in json.dumps(bob)


def test_text_output_is_one_line_per_record(cli: Cli) -> None:
    cli.ok("search", "office", "--as", BOB)
    cli.ok("explain", "docs:team/plan.md", "--as", BOB)
    lines = cli.ok("audit", "--user", BOB).splitlines()
    assert len(lines) == 2
    assert "  search  bob@example.org  'office'  " in lines[0]
    assert lines[1].endswith(" ms") and "docs:team/plan.md: refused" in lines[1]
    assert cli.ok("audit", "--user", "nobody@example.org").strip() == \
        "No audit records of nobody@example.org."


@pytest.mark.parametrize("args,needle", [
    (["--since", "yesterday"], "--since 'yesterday' is neither"),
    (["--since", "2026-02-30"], "--since '2026-02-30' is neither"),
    (["--user", "ada"], "--user needs an email address"),
    (["--user"], "expected one argument"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_flags_are_one_line_exit_2(cli: Cli, args: list[str], needle: str) -> None:
    assert needle in one_error_line(cli("audit", *args), 2)


def test_a_corrupt_line_is_reported_and_skipped_not_fatal(cli: Cli) -> None:
    cli.ok("search", "office", "--as", ADA)
    log = cli.home / "audit.jsonl"
    with open(log, "ab") as f:
        f.write(b'{"half a record\n\xff\n')
    cli.ok("search", "plan", "--as", ADA)
    r = cli("audit", "--user", ADA, "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    assert [rec["question"] for rec in out["records"]] == ["office", "plan"]
    assert out["skipped"] == [{"where": "line 2", "reason": "not JSON"},
                              {"where": "line 3", "reason": "not UTF-8"}]
    assert r.stderr.splitlines() == [
        "clearance: warning: audit log line 2 skipped: not JSON",
        "clearance: warning: audit log line 3 skipped: not UTF-8"]


def test_an_unreadable_log_is_one_line_exit_1(tmp_path: Path) -> None:
    cli = make_cli(tmp_path)
    (cli.home / "audit.jsonl").mkdir(mode=0o700)
    r = cli("audit")
    assert "cannot read the audit log" in one_error_line(r, 1) and r.stdout == ""


def test_principals_can_be_kept_as_a_hash_only(tmp_path: Path) -> None:
    cli = make_cli(tmp_path, '[audit]\nprincipals = "hash"\n\n')
    cli.ok("ask", "When does the lighthouse release ship?", "--as", ADA)
    [rec] = cli.json("audit", "--user", ADA)["records"]
    assert rec["principals"] == [] and len(rec["principals_hash"]) == 64
    assert "group:docs:team" not in (cli.home / "audit.jsonl").read_text()
    bad = write_config(tmp_path / "bad.toml", '[audit]\nprincipals = "md5"\n')
    r = cli.raw("--home", str(cli.home), "audit", "--config", str(bad))
    assert "audit.principals" in one_error_line(r, 2)
