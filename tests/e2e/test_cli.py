"""The public CLI contract (shared/DESIGN.md "Public contracts") through the installed console
script: JSON shapes, stdin batch mode, explain/status, exit codes and one-line errors, and who
sees what. Runs with the deterministic hashing embedder (env CLEARANCE_EMBEDDER=hashing) except
one slow test that uses the real default (MiniLM, int8 on ONNX Runtime).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from indexer.store.sqlite import SqliteStore
from tests.conftest import write_tree
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e

ADA = "ada@example.org"    # domain member, in group team
BO = "bo@example.org"      # domain member only
EVE = "eve@other.net"      # nobody we know: holds only user:, domain:other.net and everyone
CONTRACT = Path("/work/shared/contract/check_cli.py")

GUIDE = "\n\n".join(
    f"## Part {i}\n\nThe lighthouse keeper logbook entry {i} records the lamp hours, the fog "
    f"signal tests and the weather seen from the gallery on day {i} of the season, together "
    f"with notes on the lens cleaning, the stair lighting and the supply boat schedule."
    for i in range(40))

TREE: dict[str, Any] = {
    ".access.json": {"read": ["everyone"]},
    ".groups.json": {"team": [f"user:{ADA}"]},
    "welcome.md": "# Welcome\n\nThe cafeteria opens at eight in the morning on weekdays.\n",
    "guide.md": f"# Lighthouse guide\n\n{GUIDE}\n",
    "staff/.access.json": {"read": ["domain:example.org"]},
    "staff/payroll.md": "# Payroll\n\nSalaries are paid on the twenty-fifth of every month.\n",
    "team/.access.json": {"read": ["group:team"]},
    "team/plan.md": "# Plan\n\nThe team ships the lighthouse release in June.\n",
}
LOOSE: dict[str, Any] = {  # a second connector whose root has no .access.json at all
    "orphan.md": "# Orphan\n\nNotes about the heron colony by the old canal.\n",
}
EVERYONE_DOCS = {"docs:welcome.md", "docs:guide.md"}
DOMAIN_DOCS = EVERYONE_DOCS | {"docs:staff/payroll.md"}
TEAM_DOCS = DOMAIN_DOCS | {"docs:team/plan.md"}


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
    env["CLEARANCE_EMBEDDER"] = "hashing"
    env.update(extra)
    return env


@dataclass
class Cli:
    home: Path
    config: Path
    cwd: Path

    def raw(self, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([clearance_exe(), *args], input=stdin, capture_output=True,
                              text=True, env=env or cli_env(), cwd=self.cwd, timeout=600)

    def __call__(self, command: str, *args: str, stdin: str | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return self.raw("--home", str(self.home), command, *args, "--config", str(self.config),
                        stdin=stdin)

    def ok(self, command: str, *args: str, stdin: str | None = None) -> str:
        r = self(command, *args, stdin=stdin)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        return r.stdout

    def json(self, command: str, *args: str) -> Any:
        return json.loads(self.ok(command, *args, "--json"))

    def search(self, query: str, email: str, *args: str) -> list[dict[str, Any]]:
        hits: list[dict[str, Any]] = self.json("search", query, "--as", email, *args)["hits"]
        return hits


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def connectors_toml(docs: Path, loose: Path) -> str:
    return (f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n\n'
            f'[[connectors]]\nname = "loose"\nkind = "files"\nroot = "{loose}"\n')


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    base = tmp_path_factory.mktemp("cli")
    docs = write_tree(base / "docs", TREE)
    loose = write_tree(base / "loose", LOOSE)
    config = write_config(base / "tenant.toml", connectors_toml(docs, loose))
    cwd = base / "cwd"
    cwd.mkdir()
    c = Cli(base / "home", config, cwd)
    report = c.json("sync")
    assert [(s["connector"], s["status"]) for s in report["syncs"]] == [
        ("docs", "ok"), ("loose", "ok")]
    yield c


def one_error_line(r: subprocess.CompletedProcess[str], code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("clearance:"), lines[0]
    return lines[0]


# -- search -----------------------------------------------------------------------------------

def test_search_json_shape_one_hit_per_document_best_first(cli: Cli) -> None:
    store = SqliteStore(cli.home / "index.sqlite3")
    try:
        guide = store.document("docs:guide.md")
        assert guide is not None and guide.chunks > 1  # or one-hit-per-document is untested
    finally:
        store.close()

    out = cli.ok("search", "lighthouse keeper lamp", "--as", ADA, "--json")
    assert out.endswith("\n") and len(out.strip().splitlines()) == 1
    data = json.loads(out)
    assert set(data) == {"hits"}
    hits = data["hits"]
    assert hits and hits[0]["doc_id"] == "docs:guide.md"
    for h in hits:
        assert set(h) == {"doc_id", "title", "url", "score", "snippet"}
        assert isinstance(h["doc_id"], str) and isinstance(h["title"], str)
        assert isinstance(h["url"], str) and h["url"].startswith("file://")
        assert isinstance(h["score"], float) and isinstance(h["snippet"], str)
    ids = [h["doc_id"] for h in hits]
    assert len(ids) == len(set(ids))
    assert set(ids) == TEAM_DOCS  # default k (10) is more than ada can read: all of it
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert hits[0]["title"] == "Lighthouse guide" and "lighthouse" in hits[0]["snippet"]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_search_k_limits_documents(cli: Cli, k: int) -> None:
    hits = cli.search("lighthouse cafeteria payroll", ADA, "--k", str(k))
    assert len(hits) == k
    assert len({h["doc_id"] for h in hits}) == k


def test_search_k_below_one_is_a_usage_error(cli: Cli) -> None:
    one_error_line(cli("search", "lighthouse", "--as", ADA, "--k", "0"), 2)


def test_search_stdin_batch_prints_one_json_line_per_question_in_order(cli: Cli) -> None:
    questions = ["cafeteria opens weekdays", "salaries paid twenty-fifth",
                 "team ships release June", "lighthouse keeper logbook"]
    out = cli.ok("search", "--as", ADA, "--json", "--k", "2",
                 stdin="\n".join(questions) + "\n\n")
    lines = out.splitlines()
    assert len(lines) == len(questions)
    tops = [json.loads(line)["hits"][0]["doc_id"] for line in lines]
    assert tops == ["docs:welcome.md", "docs:staff/payroll.md", "docs:team/plan.md",
                    "docs:guide.md"]
    assert all(len(json.loads(line)["hits"]) == 2 for line in lines)


def test_search_stdin_batch_respects_access_per_line(cli: Cli) -> None:
    out = cli.ok("search", "--as", EVE, "--json", stdin="salaries payroll\nteam release\n")
    for line in out.splitlines():
        assert {h["doc_id"] for h in json.loads(line)["hits"]} <= EVERYONE_DOCS


# -- who sees what ----------------------------------------------------------------------------

@pytest.mark.parametrize(("email", "readable"), [
    (ADA, TEAM_DOCS), (BO, DOMAIN_DOCS), (EVE, EVERYONE_DOCS), ("EVE@Other.NET", EVERYONE_DOCS)])
def test_each_person_finds_exactly_what_they_may_read(cli: Cli, email: str,
                                                      readable: set[str]) -> None:
    hits = cli.search("lighthouse release payroll cafeteria heron", email, "--k", "50")
    assert {h["doc_id"] for h in hits} == readable  # never loose:orphan.md (no ACL)


def test_unknown_user_gets_nothing_restricted_even_by_exact_words(cli: Cli) -> None:
    for query in ("salaries paid on the twenty-fifth of every month",
                  "The team ships the lighthouse release in June",
                  "heron colony old canal"):
        hits = cli.search(query, EVE, "--k", "50")
        assert {h["doc_id"] for h in hits} <= EVERYONE_DOCS, (query, hits)
        assert not any("twenty-fifth" in h["snippet"] or "June" in h["snippet"] for h in hits)


# -- ask --------------------------------------------------------------------------------------

def test_ask_json_shape_with_citations(cli: Cli) -> None:
    out = cli.ok("ask", "When does the cafeteria open?", "--as", EVE, "--json")
    assert len(out.strip().splitlines()) == 1
    data = json.loads(out)
    assert set(data) == {"answer", "citations", "refused"}
    assert data["refused"] is False and isinstance(data["answer"], str)
    assert data["citations"], data
    for c in data["citations"]:
        assert set(c) == {"n", "doc_id", "title", "url", "quote"}
        assert isinstance(c["n"], int) and f"[{c['n']}]" in data["answer"]
        assert c["doc_id"] in EVERYONE_DOCS
    assert data["citations"][0]["doc_id"] == "docs:welcome.md"
    assert "eight in the morning" in data["citations"][0]["quote"]


def test_ask_json_refusal_shape(cli: Cli) -> None:
    data = cli.json("ask", "Who won the football world cup in 1954?", "--as", EVE)
    assert data == {"answer": "I could not find this in documents you can access.",
                    "citations": [], "refused": True}


def test_ask_stdin_batch(cli: Cli) -> None:
    out = cli.ok("ask", "--as", ADA, "--json",
                 stdin="When does the cafeteria open?\nWhen does the team ship the release?\n")
    answers = [json.loads(line) for line in out.splitlines()]
    assert len(answers) == 2
    assert answers[0]["citations"][0]["doc_id"] == "docs:welcome.md"
    assert answers[1]["citations"][0]["doc_id"] == "docs:team/plan.md"


# -- explain ----------------------------------------------------------------------------------

def test_explain_allowed(cli: Cli) -> None:
    text = cli.ok("explain", "docs:team/plan.md", "--as", ADA)
    lines = text.strip().splitlines()
    assert lines[0] == f"docs:team/plan.md (Plan) for {ADA}:"
    assert lines[1].startswith("yes:")
    assert any("admitted by group:docs:team <- user:ada@example.org" in ln for ln in lines)

    data = cli.json("explain", "docs:team/plan.md", "--as", ADA)
    assert data["doc_id"] == "docs:team/plan.md" and data["email"] == ADA
    assert data["allowed"] is True and data["denied_by"] is None
    assert [(g["gate"], g["admitted_by"]) for g in data["gates"]] == [
        (0, "everyone"), (1, "group:docs:team")]
    assert data["gates"][1]["path"] == ["group:docs:team", f"user:{ADA}"]


def test_explain_denied_gate_not_met(cli: Cli) -> None:
    text = cli.ok("explain", "docs:team/plan.md", "--as", BO)
    assert text.splitlines()[1].startswith("no: gate 1 is not met")
    assert "gate 1: not met; needs one of group:docs:team" in text

    data = cli.json("explain", "docs:team/plan.md", "--as", BO)
    assert data["allowed"] is False
    assert [g["admitted_by"] for g in data["gates"]] == ["everyone", None]
    assert data["gates"][1]["members"] == ["group:docs:team"]


def test_explain_no_acl_document(cli: Cli) -> None:
    text = cli.ok("explain", "loose:orphan.md", "--as", ADA)
    assert text.splitlines()[1] == "no: no ACL: readable by nobody"
    data = cli.json("explain", "loose:orphan.md", "--as", ADA)
    assert data["allowed"] is False and data["gates"] == []
    assert "nobody" in data["reason"]


def test_explain_unknown_document_is_one_line(cli: Cli) -> None:
    line = one_error_line(cli("explain", "docs:nope.md", "--as", ADA), 1)
    assert "docs:nope.md" in line


# -- status -----------------------------------------------------------------------------------

def test_status_json(cli: Cli) -> None:
    rows = {r["connector"]: r for r in cli.json("status")["connectors"]}
    assert set(rows) == {"docs", "loose"}
    docs, loose = rows["docs"], rows["loose"]
    assert (docs["documents"], docs["readable_by_nobody"]) == (4, 0)
    assert (loose["documents"], loose["readable_by_nobody"]) == (1, 1)
    assert docs["chunks"] > docs["documents"]  # the guide spans several chunks
    for row in rows.values():
        assert row["kind"] == "files"
        fresh = row["permission_freshness_seconds"]
        assert isinstance(fresh, int | float) and 0 <= fresh < 3600
        assert row["last_run"]["status"] == "ok" and row["last_run"]["mode"] == "full"
        assert row["last_run"]["errors"] == 0


def test_status_text(cli: Cli) -> None:
    text = cli.ok("status")
    assert "docs (files): last sync" in text and "loose (files): last sync" in text
    assert "4 documents" in text and "0 readable by nobody" in text
    assert "1 documents" in text and "1 readable by nobody" in text
    assert text.count("permission freshness: oldest ACL confirmed") == 2
    assert "n/a" not in text


# -- argument order ---------------------------------------------------------------------------

def test_global_flags_before_and_after_the_command(cli: Cli) -> None:
    home, config = str(cli.home), str(cli.config)
    variants = [
        ["--home", home, "search", "payroll", "--as", BO, "--json", "--config", config],
        ["--home", home, "--config", config, "--json", "search", "payroll", "--as", BO],
        ["search", "payroll", "--home", home, "--as", BO, "--config", config, "--json"],
    ]
    outputs = []
    for args in variants:
        r = cli.raw(*args)
        assert r.returncode == 0, (args, r.stderr)
        outputs.append(json.loads(r.stdout))
    assert outputs[0]["hits"][0]["doc_id"] == "docs:staff/payroll.md"
    assert outputs[1:] == outputs[:1] * 2


def test_home_and_config_from_the_environment(cli: Cli) -> None:
    r = cli.raw("search", "payroll", "--as", BO, "--json",
                env=cli_env(CLEARANCE_HOME=str(cli.home), CLEARANCE_CONFIG=str(cli.config)))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hits"][0]["doc_id"] == "docs:staff/payroll.md"


# -- errors: exit 2, one line, no traceback -----------------------------------------------------

BAD_CONFIGS = {
    "bad TOML": "[[connectors]]\nname = \n",
    "unknown top-level key": '[storage]\nkind = "sqlite"\n',
    "unknown key in a section": '[store]\nkind = "sqlite"\ncolour = "blue"\n',
    "unknown connector key": '[[connectors]]\nname = "docs"\nkind = "files"\nroot = "."\n'
                             'rooot = "x"\n',
    "unknown connector kind": '[[connectors]]\nname = "docs"\nkind = "dropbox"\nroot = "."\n',
    "missing root folder": '[[connectors]]\nname = "docs"\nkind = "files"\n'
                           'root = "no/such/folder"\n',
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    config = write_config(tmp_path / "clearance.toml", BAD_CONFIGS[case])
    c = Cli(tmp_path / "home", config, tmp_path)
    line = one_error_line(c("sync"), 2)
    expected = {"bad TOML": "not valid TOML", "unknown top-level key": "storage",
                "unknown key in a section": "colour", "unknown connector key": "rooot",
                "unknown connector kind": "dropbox", "missing root folder": "root folder"}[case]
    assert expected in line, line


def test_bad_config_is_found_in_cwd_too(tmp_path: Path) -> None:
    write_config(tmp_path / "clearance.toml", BAD_CONFIGS["bad TOML"])
    r = Cli(tmp_path / "home", tmp_path / "unused", tmp_path).raw(
        "--home", str(tmp_path / "home"), "status")
    assert "not valid TOML" in one_error_line(r, 2)


def test_config_file_not_found_exits_2(tmp_path: Path) -> None:
    c = Cli(tmp_path / "home", tmp_path / "missing.toml", tmp_path)
    assert "not found" in one_error_line(c("status"), 2)


@pytest.mark.parametrize(("args", "expected"), [
    (["search", "payroll"], "--as"),
    (["ask", "payroll"], "--as"),
    (["search", "payroll", "--as", "bob"], "email"),
    (["search", "payroll", "--as", "bob smith@example.org"], "email"),
    (["ask", "payroll", "--as", "example.org"], "email"),
    (["explain", "docs:welcome.md", "--as", "bob"], "email"),
    (["search", "   ", "--as", ADA], "empty"),
    (["frobnicate"], "frobnicate"),
    (["search", "payroll", "--as", ADA, "--k", "many"], "--k"),
])
def test_usage_errors_exit_2_with_one_line(cli: Cli, args: list[str], expected: str) -> None:
    line = one_error_line(cli.raw("--home", str(cli.home), *args, "--config", str(cli.config)), 2)
    assert expected in line, line


# -- the shared contract checker, and the real embedder ---------------------------------------

@pytest.mark.slow
def test_shared_contract_checker_passes(tmp_path: Path) -> None:
    assert CONTRACT.is_file(), CONTRACT
    r = subprocess.run([sys.executable, str(CONTRACT), "--exe", clearance_exe()],
                       capture_output=True, text=True, cwd=tmp_path, timeout=1800,
                       env=cli_env(TMPDIR=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all checks pass" in r.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_sync_and_ask_with_the_default_minilm_embedder(tmp_path: Path) -> None:
    """No embedder configured: int8 MiniLM, its graph built on first use without a word."""
    docs = write_tree(tmp_path / "docs", TREE)
    loose = write_tree(tmp_path / "loose", LOOSE)
    c = Cli(tmp_path / "home", write_config(tmp_path / "c.toml", connectors_toml(docs, loose)),
            tmp_path)
    env = {k: v for k, v in cli_env().items() if k != "CLEARANCE_EMBEDDER"}

    def run(*args: str) -> Any:
        r = c.raw("--home", str(c.home), *args, "--config", str(c.config), "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
        return json.loads(r.stdout)

    assert all(s["status"] == "ok" for s in run("sync")["syncs"])
    store = SqliteStore(c.home / "index.sqlite3")
    try:
        stored = store.document("docs:team/plan.md")
        assert stored is not None and stored.embedder == "all-MiniLM-L6-v2-onnx-int8"
    finally:
        store.close()
    ada = run("ask", "When does the team ship the lighthouse release?", "--as", ADA)
    assert not ada["refused"]
    assert ada["citations"][0]["doc_id"] == "docs:team/plan.md"
    assert "June" in ada["answer"]
    bo = run("ask", "When does the team ship the lighthouse release?", "--as", BO)
    assert "docs:team/plan.md" not in {c["doc_id"] for c in bo["citations"]}
    assert "June" not in bo["answer"]
