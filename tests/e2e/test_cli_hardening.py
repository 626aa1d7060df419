"""Attacks on the CLI as an installed console script: private home folder, bad numbers and
undecodable bytes in arguments, a damaged or unwritable index. Each ends with one line on
stderr, the documented exit code, and no answer from what could not be read.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_tree
from tests.e2e.test_cli import ADA, EVE, TREE, Cli, cli_env, one_error_line, write_config
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_bytes(args: Sequence[str | bytes], cwd: Path, stdin: bytes | None = None
              ) -> subprocess.CompletedProcess[str]:
    """The console script with raw argv bytes (what a shell passes for a non-UTF-8 name)."""
    argv = [os.fsencode(clearance_exe()), *(a if isinstance(a, bytes) else os.fsencode(a)
                                            for a in args)]
    r = subprocess.run(argv, capture_output=True, input=stdin, env=cli_env(), cwd=cwd,
                       timeout=600)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Cli]:
    """A synced home of its own (the tests here damage it)."""
    docs = write_tree(tmp_path / "docs", TREE)
    config = write_config(tmp_path / "clearance.toml",
                          f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n')
    c = Cli(tmp_path / "home", config, tmp_path)
    c.ok("sync")
    yield c


# -- item 7: local file permissions ----------------------------------------------------------

def private_files(home: Path) -> dict[str, int]:
    return {p.relative_to(home).as_posix(): mode(p) for p in [home, *home.rglob("*")]}


def assert_private(home: Path) -> None:
    modes = private_files(home)
    loose = {name: f"{m:04o}" for name, m in modes.items() if m & 0o077}
    assert not loose, loose
    assert modes["."] == 0o700
    for name in ("index.sqlite3", "audit.jsonl"):
        if name in modes:
            assert modes[name] == 0o600, (name, oct(modes[name]))


def test_sync_creates_the_home_0700_and_the_index_and_locks_0600(fresh: Cli) -> None:
    modes = private_files(fresh.home)
    assert modes["."] == 0o700 and modes["index.sqlite3"] == 0o600
    assert modes["locks"] == 0o700 and modes["locks/docs.lock"] == 0o600
    assert_private(fresh.home)


def test_ask_search_and_explain_keep_the_audit_log_and_wal_files_private(fresh: Cli) -> None:
    fresh.ok("ask", "When does the cafeteria open?", "--as", EVE)
    fresh.ok("search", "payroll", "--as", ADA)
    fresh.ok("explain", "docs:team/plan.md", "--as", ADA)
    assert mode(fresh.home / "audit.jsonl") == 0o600
    assert_private(fresh.home)


def test_a_second_process_reading_while_the_wal_is_open_sees_private_wal_files(
        fresh: Cli) -> None:
    from indexer.store.sqlite import SqliteStore

    store = SqliteStore(fresh.home / "index.sqlite3")  # holds -wal/-shm open
    try:
        store.set_state("probe", 1)
        fresh.ok("search", "payroll", "--as", ADA)
        for suffix in ("-wal", "-shm"):
            assert mode(fresh.home / f"index.sqlite3{suffix}") == 0o600, suffix
    finally:
        store.close()


def test_demo_home_is_private(tmp_path: Path) -> None:
    r = subprocess.run([clearance_exe(), "--home", str(tmp_path / "demo"), "demo", "--json"],
                       capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    assert_private(tmp_path / "demo")
    assert mode(tmp_path / "demo" / "clearance.toml") == 0o600


def test_a_loose_existing_home_is_tightened_with_one_warning(fresh: Cli) -> None:
    os.chmod(fresh.home, 0o755)
    os.chmod(fresh.home / "index.sqlite3", 0o644)
    os.chmod(fresh.home / "locks", 0o755)
    os.chmod(fresh.home / "locks" / "docs.lock", 0o644)
    (fresh.home / "audit.jsonl").write_text("")
    os.chmod(fresh.home / "audit.jsonl", 0o666)
    r = fresh("search", "payroll", "--as", ADA, "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("clearance: warning:") and "0755->0700" in lines[0], lines[0]
    assert "index.sqlite3 0644->0600" in lines[0] and "audit.jsonl 0666->0600" in lines[0]
    assert json.loads(r.stdout)["hits"], "a tightened home still answers"
    assert_private(fresh.home)
    again = fresh("search", "payroll", "--as", ADA, "--json")
    assert again.returncode == 0 and again.stderr == "", again.stderr  # warned once only


def test_a_shared_sticky_folder_keeps_its_mode_only_our_files_are_tightened(
        tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    docs = write_tree(tmp_path / "docs", TREE)
    config = write_config(tmp_path / "c.toml",
                          f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n')
    Cli(shared, config, tmp_path).ok("sync")
    assert mode(shared) == 0o1777
    assert mode(shared / "index.sqlite3") == 0o600


# -- item 12: --k, undecodable bytes -----------------------------------------------------------

@pytest.mark.parametrize("command", ["search", "ask"])
@pytest.mark.parametrize("k", ["0", "-1", "1001", "9223372036854775808",
                               "99999999999999999999999999", "1e3", "ten", ""])
def test_k_out_of_range_is_a_usage_error_for_search_and_ask(fresh: Cli, command: str,
                                                            k: str) -> None:
    r = fresh(command, "payroll", "--as", ADA, "--k", k)
    assert "--k" in one_error_line(r, 2)
    assert r.stdout == ""


def audit(home: Path) -> list[dict[str, Any]]:
    path = home / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("k", [1, 2])
def test_ask_k_limits_the_documents_the_answer_is_drawn_from(fresh: Cli, k: int) -> None:
    question = "lighthouse cafeteria payroll release"
    data = json.loads(fresh.ok("ask", question, "--as", ADA, "--json", "--k", str(k)))
    assert len({c["doc_id"] for c in data["citations"]}) <= k
    record = audit(fresh.home)[-1]
    assert record["action"] == "ask" and record["question"] == question
    assert len(set(record["hits"])) == k, record["hits"]
    unlimited = json.loads(fresh.ok("ask", question, "--as", ADA, "--json"))
    assert unlimited and len(set(audit(fresh.home)[-1]["hits"])) > k


@pytest.mark.parametrize(("args", "what"), [
    (["search", "payroll", "--as", b"ada\xff@example.org"], "--as"),
    (["ask", "payroll", "--as", b"\xc3@example.org"], "--as"),
    (["explain", b"docs:team/\xffplan.md", "--as", ADA], "document id"),
    (["search", b"pay\xfe\xferoll", "--as", ADA], "question"),
    (["sync", "--connector", b"do\xffcs"], "--connector"),
])
def test_undecodable_bytes_in_arguments_are_one_usage_line(fresh: Cli, args: list[str | bytes],
                                                          what: str) -> None:
    r = run_bytes(["--home", str(fresh.home), *args, "--config", str(fresh.config)], fresh.cwd)
    line = one_error_line(r, 2)
    assert what in line and "UTF-8" in line, line
    assert r.stdout == ""


def test_undecodable_bytes_on_stdin_are_one_usage_line(fresh: Cli) -> None:
    r = run_bytes(["--home", str(fresh.home), "search", "--as", ADA, "--config",
                   str(fresh.config)], fresh.cwd, stdin=b"pay\xffroll\n")
    assert "UTF-8" in one_error_line(r, 2)


# -- item 12: a damaged index, on every command -------------------------------------------------

def damage(index: Path, how: str) -> None:
    if how == "not a database":
        index.write_text("these are my notes, not an index\n" * 20)
    elif how == "truncated":
        with index.open("r+b") as f:
            f.truncate(index.stat().st_size // 2)
    elif how == "malformed":
        with index.open("r+b") as f:  # the b-tree pages after the schema: garbage
            f.seek(4096 * 2)
            f.write(b"\xff" * 4096 * 12)
    else:
        raise AssertionError(how)


COMMANDS = {
    "search": ["search", "payroll", "--as", ADA],
    "search --json": ["search", "payroll", "--as", ADA, "--json"],
    "ask": ["ask", "When are salaries paid?", "--as", ADA],
    "explain": ["explain", "docs:staff/payroll.md", "--as", ADA],
    "status": ["status"],
    "sync": ["sync"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("how", ["not a database", "truncated", "malformed"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_damaged_index_fails_closed_with_one_line_on_every_command(
        fresh: Cli, how: str, command: str) -> None:
    damage(fresh.home / "index.sqlite3", how)
    r = (fresh.raw("--home", str(fresh.home), "demo") if command == "demo"
         else fresh(*COMMANDS[command]))
    line = one_error_line(r, 1)
    assert "index" in line and "damaged" in line, line
    assert "Salaries" not in r.stdout and "payroll.md" not in r.stdout  # nothing half-read
    if command not in ("sync", "demo"):  # those print what they start before the index fails
        assert r.stdout == ""


def test_an_index_that_is_a_folder_is_one_line(fresh: Cli) -> None:
    index = fresh.home / "index.sqlite3"
    index.unlink()
    index.mkdir(mode=0o700)
    assert "index" in one_error_line(fresh("search", "payroll", "--as", ADA), 1)


# -- item 12: write errors -----------------------------------------------------------------

def test_a_read_only_index_is_one_line_on_sync_and_writes_nothing(
        fresh: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Root writes through any mode bit: open the file read-only the way SQLite would see a
    # read-only mount or another account's file.
    import sqlite3

    from apps.cli.main import main

    real_connect = sqlite3.connect

    def read_only(database: Any, *args: Any, **kw: Any) -> sqlite3.Connection:
        return real_connect(f"file:{os.fsdecode(database)}?mode=ro", *args, uri=True, **kw)

    (fresh.config.parent / "docs" / "new.md").write_text("# New\n\nA new page.\n")
    before = (fresh.home / "index.sqlite3").read_bytes()
    monkeypatch.setattr(sqlite3, "connect", read_only)
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    code = main(["--home", str(fresh.home), "sync", "--config", str(fresh.config)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "cannot be written" in err, err
    assert (fresh.home / "index.sqlite3").read_bytes() == before


def test_a_full_disk_during_sync_is_one_line_and_keeps_the_last_good_index(
        fresh: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    from apps.cli.main import main

    (fresh.config.parent / "docs" / "big.md").write_text(
        "# Big\n\n" + " ".join(f"word{i} lighthouse" for i in range(40000)))
    real_connect = sqlite3.connect

    def tiny(*args: Any, **kw: Any) -> sqlite3.Connection:
        db = real_connect(*args, **kw)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 2}")  # room for a few pages, not a file
        return db

    monkeypatch.setattr(sqlite3, "connect", tiny)
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    code = main(["--home", str(fresh.home), "sync", "--config", str(fresh.config)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "full" in err, err
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    hits = fresh.search("salaries paid", ADA)
    assert "docs:staff/payroll.md" in {h["doc_id"] for h in hits}
    assert "docs:big.md" not in {h["doc_id"] for h in fresh.search("lighthouse word7", ADA)}


def test_the_audit_log_cannot_be_written_so_no_answer_is_given(fresh: Cli) -> None:
    (fresh.home / "audit.jsonl").mkdir(mode=0o700)
    r = fresh("ask", "When are salaries paid?", "--as", ADA)
    assert "audit" in one_error_line(r, 1)
    assert r.stdout == ""
    shutil.rmtree(fresh.home / "audit.jsonl")


# -- text output escapes control characters --------------------------------------------------

SPOOF = "evil\n 2. Payroll  [docs:staff/payroll.md]  relevance 1.00\x1b[2J\u202e.md"
EMPTY_SPOOF = "blank\nclearance: all good\x1b[31m.md"


@pytest.fixture
def spoofing(tmp_path: Path) -> Cli:
    docs = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["everyone"]},
        SPOOF: "# Harbour\x1b]0;owned\x07 notes\n\nThe harbour crane inspection is on "
               "Tuesdays.\x1b[2K\nSecond line\rof the crane notes.\n",
        EMPTY_SPOOF: "",
    })
    config = write_config(tmp_path / "clearance.toml",
                          f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n')
    return Cli(tmp_path / "home", config, tmp_path)


def assert_no_raw_controls(text: str) -> None:
    assert not any(ch in text for ch in "\x1b\x07\r\u202e"), repr(text)


def test_text_output_cannot_forge_lines_or_escape_sequences(spoofing: Cli) -> None:
    synced = spoofing("sync")
    assert synced.returncode == 0, synced.stderr
    assert_no_raw_controls(synced.stdout + synced.stderr)
    assert not any(line.startswith("clearance: all good") for line in synced.stdout.splitlines())
    assert "blank\\nclearance: all good\\x1b[31m.md" in synced.stdout

    hits = spoofing.search("harbour crane inspection", EVE)
    assert [h["doc_id"] for h in hits] == [f"docs:{SPOOF}"]  # JSON stays exact
    text = spoofing.ok("search", "harbour crane inspection", "--as", EVE)
    assert_no_raw_controls(text)
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith(" 1. "), lines  # one hit: two lines, not three
    assert "evil\\n 2. Payroll" in lines[0] and "\\x1b[2J" in lines[0] and "\\u202e" in lines[0]

    answer = spoofing.ok("ask", "When is the harbour crane inspection?", "--as", EVE)
    assert_no_raw_controls(answer)
    assert not any(line.lstrip().startswith("2. Payroll") for line in answer.splitlines())

    explained = spoofing.ok("explain", f"docs:{SPOOF}", "--as", EVE)
    assert_no_raw_controls(explained)
    assert explained.splitlines()[0].startswith("docs:evil\\n 2. Payroll")

    status = spoofing.ok("status")
    assert_no_raw_controls(status)


def test_an_error_naming_a_document_is_escaped_too(spoofing: Cli) -> None:
    spoofing.ok("sync")
    r = spoofing("explain", "docs:nosuch\n\x1b[2Jclearance: fine", "--as", EVE)
    line = one_error_line(r, 1)
    assert "\\x1b" in line or "\\n" in line, line


# -- sections that are parsed but not built yet ------------------------------------------------

UNBUILT = {
    # [web] is built: a plain-http issuer off loopback is still refused at load.
    "[web] http issuer": ('[web]\noidc_issuer = "http://idp.example.com"\n',
                          "web.oidc_issuer: Value error, must be https"),
    # [slack] is built (apps/slack): its keys are checked like every section's.
    "[slack] unknown key": ('[slack]\nbot_tokn_env = "SLACK_BOT_TOKEN"\n',
                            "slack.bot_tokn_env: unknown key"),
    # [teams] is built (apps/teams): its keys are checked, its endpoints https off loopback.
    "[teams] unknown key": ('[teams]\napp_idd = "x"\n', "teams.app_idd: unknown key"),
    "[teams] http oauth_endpoint": ('[teams]\noauth_endpoint = "http://login.example.com"\n',
                                    "teams.oauth_endpoint: Value error, must be https"),
    # provider "openai" is built (assistant/llm/openai_compat.py): without an endpoint it is
    # refused at load, and an unknown provider still is.
    "openai without base_url": ('[llm]\nprovider = "openai"\n',
                                "llm: Value error, provider 'openai' needs base_url and model_id"),
    "openai with credentials in base_url": (
        '[llm]\nprovider = "openai"\nmodel_id = "m"\nbase_url = "https://u:pw@llm.example/v1"\n',
        "llm: Value error, base_url must not carry credentials"),
    "unknown provider": ('[llm]\nprovider = "gpt"\n', "[llm] provider 'gpt' is not supported yet"),
}


@pytest.mark.parametrize("case", sorted(UNBUILT))
@pytest.mark.parametrize("command", [["status"], ["search", "payroll", "--as", ADA], ["sync"]])
def test_unbuilt_sections_are_a_config_error_at_load(tmp_path: Path, case: str,
                                                     command: list[str]) -> None:
    docs = write_tree(tmp_path / "docs", TREE)
    body, expected = UNBUILT[case]
    config = write_config(tmp_path / "clearance.toml",
                          f'{body}\n[[connectors]]\nname = "docs"\nkind = "files"\n'
                          f'root = "{docs}"\n')
    r = Cli(tmp_path / "home", config, tmp_path)(*command)
    assert expected in one_error_line(r, 2)
    assert not (tmp_path / "home" / "index.sqlite3").exists()  # refused before anything ran


def test_the_extractive_provider_is_still_accepted(tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", TREE)
    config = write_config(tmp_path / "clearance.toml",
                          f'[llm]\nprovider = "extractive"\n\n[[connectors]]\nname = "docs"\n'
                          f'kind = "files"\nroot = "{docs}"\n')
    Cli(tmp_path / "home", config, tmp_path).ok("sync")


# -- search and explain are audited like ask ---------------------------------------------------

def test_search_is_audited_with_who_principals_hits_and_latency(fresh: Cli) -> None:
    hits = fresh.search("payroll salaries", ADA)
    record = audit(fresh.home)[-1]
    assert record["action"] == "search" and record["email"] == ADA
    assert record["question"] == "payroll salaries"
    assert "group:docs:team" in record["principals"] and "everyone" in record["principals"]
    assert record["hits"] == [h["doc_id"] for h in hits]
    assert isinstance(record["latency_ms"], float) and record["latency_ms"] >= 0


def test_a_search_that_finds_nothing_readable_is_audited_too(fresh: Cli) -> None:
    hits = fresh.search("team ships release June", EVE)
    assert "docs:team/plan.md" not in {h["doc_id"] for h in hits}
    record = audit(fresh.home)[-1]
    assert record["action"] == "search" and record["email"] == EVE
    assert "docs:team/plan.md" not in record["hits"]  # the audit records only what was shown


def test_batch_search_audits_every_question(fresh: Cli) -> None:
    before = len(audit(fresh.home))
    fresh.ok("search", "--as", ADA, "--json", stdin="payroll\nlighthouse\ncafeteria\n")
    records = audit(fresh.home)[before:]
    assert [r["question"] for r in records] == ["payroll", "lighthouse", "cafeteria"]
    assert {r["action"] for r in records} == {"search"}


@pytest.mark.parametrize(("email", "doc", "allowed"), [
    (ADA, "docs:team/plan.md", True),
    (EVE, "docs:team/plan.md", False),
    (EVE, "docs:no/such.md", None),
])
def test_explain_is_audited_with_the_decision(fresh: Cli, email: str, doc: str,
                                              allowed: bool | None) -> None:
    fresh("explain", doc, "--as", email)
    record = audit(fresh.home)[-1]
    assert record["action"] == "explain" and record["email"] == email
    assert record["doc_id"] == doc and record["allowed"] is allowed
    assert f"user:{email}" in record["principals"]
