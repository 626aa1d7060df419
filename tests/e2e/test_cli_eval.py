"""`clearance eval` through the CLI: the JSON contract, per-connector figures that follow the
labels, --compare and --plot, every malformed question file refused with its line number
(exit 2), and the leak audit: a permission or group change made at the source and not synced
is a leak (exit 1) until the permission or group pass runs, while the denied side never sees
the document at all."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apps.cli.main import main
from tests.conftest import write_tree
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e

ADA = "ada@example.org"   # in group team
BO = "bo@example.org"     # domain member only
KEYS = {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "refusal_rate",
        "citation_precision"}

DOCS: dict[str, Any] = {
    ".access.json": {"read": ["domain:example.org"]},
    ".groups.json": {"team": [f"user:{ADA}"]},
    "welcome.md": "# Welcome\n\nThe cafeteria opens at eight in the morning on weekdays.\n",
    "payroll.md": "# Payroll\n\nSalaries are paid on the twenty-fifth of every month.\n",
    "team/.access.json": {"read": ["group:team"]},
    "team/plan.md": "# Plan\n\nThe team ships the lighthouse release in June.\n",
    "team/budget.md": "# Budget\n\nThe heron survey budget is four thousand euros.\n",
}
WIKI: dict[str, Any] = {
    ".access.json": {"read": ["everyone"]},
    "parking.md": "# Parking\n\nVisitors park in the north lot behind the warehouse.\n",
    "printers.md": "# Printers\n\nThe colour printer on floor two needs a badge swipe.\n",
}


def q(question: str, email: str, relevant: list[str], **extra: str) -> str:
    return json.dumps({"question": question, "as": email, "relevant": relevant, **extra})


QUESTIONS = [
    q("when does the cafeteria open in the morning", ADA, ["docs:welcome.md"],
      answer_contains="eight"),
    q("when are salaries paid every month", BO, ["docs:payroll.md"]),
    q("which month does the team ship the lighthouse release", ADA, ["docs:team/plan.md"]),
    q("where do visitors park", BO, ["wiki:parking.md"]),
    q("colour printer badge swipe floor two", ADA, ["wiki:printers.md"]),
]


@dataclass
class Tenant:
    base: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def docs(self) -> Path:
        return self.base / "docs"

    def run(self, *args: str) -> tuple[int, str, str]:
        code = main(["--home", str(self.base / "home"), *args[:1],
                     "--config", str(self.base / "c.toml"), *args[1:]])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, *args: str) -> str:
        code, out, err = self.run(*args)
        assert code == 0, err
        return out

    def questions(self, lines: list[str], name: str = "q.jsonl") -> Path:
        path = self.base / name
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def eval_json(self, *args: str) -> Any:
        return json.loads(self.ok("eval", *args, "--json"))


@pytest.fixture
def tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Tenant]:
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    for var in ("CLEARANCE_HOME", "CLEARANCE_CONFIG", "CLEARANCE_BROKER_URL"):
        monkeypatch.delenv(var, raising=False)
    write_tree(tmp_path / "docs", DOCS)
    write_tree(tmp_path / "wiki", WIKI)
    (tmp_path / "c.toml").write_text(
        '[[connectors]]\nname = "docs"\nkind = "files"\nroot = "docs"\n\n'
        '[[connectors]]\nname = "wiki"\nkind = "files"\nroot = "wiki"\n', encoding="utf-8")
    t = Tenant(tmp_path, capsys)
    t.ok("sync")
    yield t


# -- the quality report -----------------------------------------------------------------------

def test_json_shape_and_figures_follow_the_labels(tenant: Tenant) -> None:
    good = tenant.eval_json(str(tenant.questions(QUESTIONS)))
    assert set(good) == {"overall", "per_connector", "questions"}
    assert set(good["overall"]) == KEYS
    assert set(good["per_connector"]) == {"docs", "wiki"}
    assert all(set(m) == KEYS for m in good["per_connector"].values())
    rows = good["questions"]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    for row in rows:
        assert row["retrieved"] and len(row["retrieved"]) == len(set(row["retrieved"]))
        # recall@k never falls as k grows, and recall@1 is exactly "the top hit is relevant"
        assert row["recall@1"] <= row["recall@5"] <= row["recall@10"]
        assert row["recall@1"] == float(row["retrieved"][0] in row["relevant"])
    assert rows[0]["answer_contains"] == "eight" and isinstance(rows[0]["answer_ok"], bool)
    assert "answer_ok" not in rows[1]
    # Nobody is shown what they cannot read, not even in an evaluation.
    bo_rows = [r for r in rows if r["as"] == BO]
    assert all(not d.startswith("docs:team/") for r in bo_rows for d in r["retrieved"] + r["cited"])

    # Labels pointing at the wrong documents: the same retrieval scores lower.
    wrong = [q("when does the cafeteria open in the morning", ADA, ["docs:payroll.md"]),
             q("where do visitors park", BO, ["wiki:printers.md"])]
    bad = tenant.eval_json(str(tenant.questions(wrong, "wrong.jsonl")))
    assert bad["overall"]["recall@1"] < good["overall"]["recall@1"]
    assert bad["overall"]["mrr@10"] < 1.0
    assert set(bad["per_connector"]) == {"docs", "wiki"}


def test_a_relevant_document_the_person_cannot_read_scores_zero(tenant: Tenant) -> None:
    data = tenant.eval_json(str(tenant.questions([
        q("which month does the team ship the lighthouse release", BO, ["docs:team/plan.md"])])))
    row = data["questions"][0]
    assert "docs:team/plan.md" not in row["retrieved"] + row["cited"]
    assert row["recall@10"] == 0.0 and row["mrr@10"] == 0.0 and row["ndcg@10"] == 0.0


def test_text_report_has_a_per_question_table(tenant: Tenant) -> None:
    out = tenant.ok("eval", str(tenant.questions(QUESTIONS)))
    lines = out.splitlines()
    assert lines[0].startswith("overall (5 questions): R@1 ")
    assert any(line.startswith("  docs (3 questions)") for line in lines)
    assert any(line.startswith("  wiki (2 questions)") for line in lines)
    table = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(table) == 5 and "cafeteria" in table[0] and ADA in table[0]


def test_compare_runs_each_retriever_alone_and_the_hybrid(tenant: Tenant) -> None:
    path = tenant.questions(QUESTIONS)
    data = tenant.eval_json(str(path), "--compare")
    assert set(data) == {"bm25", "dense", "hybrid"}
    for report in data.values():
        assert set(report["overall"]) == KEYS and len(report["questions"]) == 5
    assert data["hybrid"]["overall"] == tenant.eval_json(str(path))["overall"]
    text = tenant.ok("eval", str(path), "--compare")
    assert {line.split()[0] for line in text.splitlines()[1:]} == {"bm25", "dense", "hybrid"}


def _png_pixels(data: bytes) -> tuple[int, int, set[tuple[int, int, int]]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3 + 1
    assert len(raw) == stride * height
    colours = {tuple(raw[r * stride + 1 + i:r * stride + 4 + i])
               for r in range(0, height, 2) for i in range(0, width * 3, 6)}
    return width, height, colours  # type: ignore[return-value]


def test_plot_is_a_valid_png_with_one_colour_per_series(tenant: Tenant) -> None:
    from apps.cli.plot import COLOURS

    plot = tenant.base / "out" / "recall.png"
    plot.parent.mkdir()
    out = tenant.ok("eval", str(tenant.questions(QUESTIONS)), "--compare", "--plot", str(plot))
    assert str(plot) in out
    width, height, colours = _png_pixels(plot.read_bytes())
    assert (width, height) == (640, 420)
    assert set(COLOURS[:3]) <= colours and COLOURS[3] not in colours  # three series, no fourth
    assert not list(plot.parent.glob(".plot-*"))  # the temporary file was renamed into place


@pytest.mark.parametrize(("where", "message"), [
    ("missing/recall.png", "does not exist"),
    ("recall.txt", "must end in .png"),
    ("adir.png", "is a folder"),
])
def test_a_bad_plot_path_is_refused_before_any_work(tenant: Tenant, where: str,
                                                    message: str) -> None:
    (tenant.base / "adir.png").mkdir()
    code, out, err = tenant.run("eval", str(tenant.questions(QUESTIONS)), "--plot",
                                str(tenant.base / where))
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1


# -- malformed input --------------------------------------------------------------------------

GOOD = q("where do visitors park", BO, ["wiki:parking.md"])


@pytest.mark.parametrize(("lines", "message"), [
    ([GOOD, "{not json"], "line 2: not a JSON object"),
    ([GOOD, "[1, 2]"], "line 2: not a JSON object"),
    ([GOOD, '"just text"'], "line 2: not a JSON object"),
    (['{"question": "a", "question": "b", "as": "bo@example.org", "relevant": ["wiki:x"]}'],
     "line 1: not a JSON object (duplicate key 'question')"),
    ([json.dumps({"question": "parking", "as": BO})], "line 1: missing 'relevant'"),
    ([json.dumps({"as": BO, "relevant": ["wiki:parking.md"]})], "line 1: missing 'question'"),
    ([json.dumps({"question": "p", "as": BO, "relevant": ["wiki:parking.md"], "k": 3})],
     "line 1: unknown key 'k'"),
    ([json.dumps({"question": 7, "as": BO, "relevant": ["wiki:parking.md"]})],
     "line 1: 'question' must be non-empty text"),
    ([json.dumps({"question": "  ", "as": BO, "relevant": ["wiki:parking.md"]})],
     "line 1: 'question' must be non-empty text"),
    ([json.dumps({"question": "p", "as": "bo", "relevant": ["wiki:parking.md"]})],
     "line 1: 'as' must be an email address"),
    ([json.dumps({"question": "p", "as": ["bo@example.org"], "relevant": ["wiki:parking.md"]})],
     "line 1: 'as' must be an email address"),
    ([json.dumps({"question": "p", "as": BO, "relevant": "wiki:parking.md"})],
     "line 1: 'relevant' must be a non-empty list"),
    ([json.dumps({"question": "p", "as": BO, "relevant": []})],
     "line 1: 'relevant' must be a non-empty list"),
    ([json.dumps({"question": "p", "as": BO, "relevant": [3]})], "not a document id"),
    ([json.dumps({"question": "p", "as": BO, "relevant": ["parking.md"]})],
     "not a document id"),
    ([json.dumps({"question": "p", "as": BO, "relevant": ["wiki:parking.md"] * 2})],
     "lists 'wiki:parking.md' twice"),
    ([json.dumps({"question": "p", "as": BO, "relevant": ["wiki:parking.md"],
                  "answer_contains": 5})], "'answer_contains' must be non-empty text"),
    ([GOOD, "", GOOD], "line 3: the same question as the same person as line 1"),
    ([GOOD, json.dumps({"question": "p", "as": BO, "relevant": ["wiki:nope.md"]})],
     "line 2: 'wiki:nope.md' is not in the index"),
    ([json.dumps({"question": "p", "as": BO, "relevant": ["gone:parking.md"]})],
     "line 1: 'gone:parking.md': no connector 'gone' configured"),
    ([json.dumps({"question": "p", "as": "zed@elsewhere.net", "relevant": ["wiki:parking.md"]})],
     "line 1: 'as' 'zed@elsewhere.net' is unknown"),
])
@pytest.mark.parametrize("leaks", [False, True])
def test_malformed_lines_name_the_line_and_exit_2(tenant: Tenant, lines: list[str],
                                                  message: str, leaks: bool) -> None:
    path = tenant.questions(lines)
    code, out, err = tenant.run("eval", str(path), *(["--leaks"] if leaks else []), "--json")
    assert code == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("clearance: ") and message in err, err
    assert str(path) in err


def test_a_known_person_is_anyone_a_group_alias_or_acl_names(tenant: Tenant) -> None:
    # bo is in no group but the root ACL admits his domain; ada is in .groups.json.
    for email in (BO, ADA, "carl@example.org"):
        tenant.eval_json(str(tenant.questions([q("parking", email, ["wiki:parking.md"])])))


def test_bad_bytes_and_files_that_are_not_question_files(tenant: Tenant) -> None:
    bad = tenant.base / "bad.jsonl"
    bad.write_bytes(GOOD.encode() + b"\n" + b'{"question": "\xff"}\n')
    cases = {bad: "line 2: not valid UTF-8"}
    empty = tenant.base / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    cases[empty] = "holds no questions"
    folder = tenant.base / "folder.jsonl"
    folder.mkdir()
    cases[folder] = "is not a regular file"
    fifo = tenant.base / "fifo.jsonl"
    os.mkfifo(fifo)  # opening it would block forever: refused from its stat
    cases[fifo] = "is not a regular file"
    cases[tenant.base / "missing.jsonl"] = "question file not found"
    dangling = tenant.base / "dangling.jsonl"
    dangling.symlink_to(tenant.base / "nowhere")
    cases[dangling] = "question file not found"
    for path, message in cases.items():
        code, out, err = tenant.run("eval", str(path))
        assert (code, out) == (2, ""), (path, err)
        assert message in err and err.count("\n") == 1, (path, err)


def test_leaks_cannot_be_combined_with_compare_or_plot(tenant: Tenant) -> None:
    path = str(tenant.questions([GOOD]))
    for extra in (["--compare"], ["--plot", str(tenant.base / "p.png")]):
        code, _, err = tenant.run("eval", path, "--leaks", *extra)
        assert code == 2 and "--leaks runs the leak audit alone" in err


def test_installed_script_exit_code_and_one_line_error(tenant: Tenant) -> None:
    path = tenant.questions([GOOD, "{"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
    env["CLEARANCE_EMBEDDER"] = "hashing"
    done = subprocess.run([clearance_exe(), "--home", str(tenant.base / "home"), "eval",
                           str(path), "--config", str(tenant.base / "c.toml")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("clearance: ") and done.stderr.count("\n") == 1
    assert "line 2" in done.stderr and "Traceback" not in done.stderr


# -- the leak audit ---------------------------------------------------------------------------

LEAK_QUESTIONS = [
    q("which month does the team ship the lighthouse release", ADA, ["docs:team/plan.md"]),
    q("heron survey budget euros", ADA, ["docs:team/budget.md"]),
    q("when are salaries paid every month", BO, ["docs:payroll.md"]),
]


def _leaks(tenant: Tenant, path: Path) -> tuple[int, list[dict[str, str]]]:
    code, out, err = tenant.run("eval", str(path), "--leaks", "--json")
    assert code in (0, 1), err
    data = json.loads(out)
    assert set(data) == {"leaks"}
    for leak in data["leaks"]:
        assert set(leak) == {"user", "doc_id", "reason"}
    return code, data["leaks"]


def test_no_leak_when_the_index_matches_the_sources(tenant: Tenant) -> None:
    path = tenant.questions(LEAK_QUESTIONS)
    assert _leaks(tenant, path) == (0, [])
    out = tenant.ok("eval", str(path), "--leaks")
    assert out.startswith("no leaks: 3 questions asked as each of 2 people")


def test_a_permission_changed_at_the_source_is_a_leak_until_the_permission_pass(
        tenant: Tenant) -> None:
    path = tenant.questions(LEAK_QUESTIONS)
    # The team folder is restricted further at the source: ada is no longer admitted.
    (tenant.docs / "team" / ".access.json").write_text(
        json.dumps({"read": ["user:bo@example.org"]}), encoding="utf-8")
    code, leaks = _leaks(tenant, path)
    assert code == 1
    assert {(x["user"], x["doc_id"]) for x in leaks} == {
        (ADA, "docs:team/plan.md"), (ADA, "docs:team/budget.md")}
    assert all("older ACL" in x["reason"] and "gate 2" in x["reason"] for x in leaks)
    # The denied side: bo, now admitted at the source but not yet in the index, was shown
    # neither document (a stale ACL leaks one way only) and is never reported.
    assert all(x["user"] != BO for x in leaks)

    code, out, _ = tenant.run("eval", str(path), "--leaks")
    assert code == 1
    assert sorted(line.split()[2] for line in out.splitlines()) == [
        "docs:team/budget.md:", "docs:team/plan.md:"]
    assert all(line.startswith(f"LEAK {ADA} ") for line in out.splitlines())

    # `clearance status` shows the last audit and treats its leaks as a problem.
    code, out, err = tenant.run("status", "--json")
    audit = json.loads(out)["leak_audit"]
    assert code == 1 and "leak audit found 2 document(s)" in err
    assert audit["status"] == "leaks" and audit["trigger"] == "cli"
    assert {x["doc_id"] for x in audit["leaks"]} == {"docs:team/plan.md", "docs:team/budget.md"}

    tenant.ok("sync", "--mode", "permissions")
    assert _leaks(tenant, path) == (0, [])
    code, out, _ = tenant.run("status")
    assert code == 0 and "leak audit: " in out and "0 leaks" in out


def test_a_member_removed_from_a_group_at_the_source_is_a_leak(tenant: Tenant) -> None:
    path = tenant.questions(LEAK_QUESTIONS)
    (tenant.docs / ".groups.json").write_text(json.dumps({"team": []}), encoding="utf-8")
    code, leaks = _leaks(tenant, path)
    assert code == 1 and {x["user"] for x in leaks} == {ADA}
    assert {x["doc_id"] for x in leaks} == {"docs:team/plan.md", "docs:team/budget.md"}
    assert all("groups at the source changed" in x["reason"] for x in leaks)
    tenant.ok("sync", "--mode", "groups")
    assert _leaks(tenant, path) == (0, [])


def test_a_document_deleted_at_the_source_is_a_leak_until_synced(tenant: Tenant) -> None:
    path = tenant.questions(LEAK_QUESTIONS)
    (tenant.docs / "payroll.md").unlink()
    code, leaks = _leaks(tenant, path)
    assert code == 1
    assert {(x["user"], x["doc_id"]) for x in leaks} >= {(BO, "docs:payroll.md")}
    assert all(x["doc_id"] == "docs:payroll.md" for x in leaks)
    assert "no longer at the source" in leaks[0]["reason"]
    tenant.ok("sync")
    # The question's relevant document is gone from the index: the file is now wrong.
    code, _, err = tenant.run("eval", str(path), "--leaks")
    assert code == 2 and "'docs:payroll.md' is not in the index" in err
    assert _leaks(tenant, tenant.questions(LEAK_QUESTIONS[:2], "q2.jsonl")) == (0, [])


def test_a_deny_added_at_the_source_is_a_leak(tenant: Tenant) -> None:
    path = tenant.questions(LEAK_QUESTIONS)
    (tenant.docs / ".access.json").write_text(json.dumps({
        "read": ["domain:example.org"], "deny": [f"user:{BO}"]}), encoding="utf-8")
    code, leaks = _leaks(tenant, path)
    assert code == 1 and {x["user"] for x in leaks} == {BO}
    assert all(f"denied at the source by user:{BO}" in x["reason"] for x in leaks)
    assert not any(x["doc_id"].startswith("docs:team/") for x in leaks)  # never shown to bo


def test_an_unreadable_access_file_at_the_source_fails_the_documents_closed(
        tenant: Tenant) -> None:
    path = tenant.questions(LEAK_QUESTIONS)
    (tenant.docs / "team" / ".access.json").write_text("{broken", encoding="utf-8")
    code, leaks = _leaks(tenant, path)
    assert code == 1
    assert {x["doc_id"] for x in leaks} == {"docs:team/plan.md", "docs:team/budget.md"}
    assert all("could not be read" in x["reason"] for x in leaks)


def test_eval_audits_to_its_own_file_not_the_log_of_peoples_questions(tenant: Tenant) -> None:
    log = tenant.base / "home" / "audit.jsonl"
    before = log.read_text(encoding="utf-8") if log.exists() else ""
    path = tenant.questions(LEAK_QUESTIONS)
    tenant.ok("eval", str(path))
    tenant.ok("eval", str(path), "--leaks")
    assert (log.read_text(encoding="utf-8") if log.exists() else "") == before
    records = [json.loads(line) for line in
               (tenant.base / "home" / "audit-eval.jsonl").read_text().splitlines()]
    # eval: one search and one answer per question; the audit: every question as both people
    assert len(records) == 2 * 3 + 2 * 3 * 2
    assert {r["email"] for r in records} == {ADA, BO}
    assert {r["action"] for r in records} == {"search", "ask"}


def test_when_the_sources_name_nobody_anyone_may_be_asked_as(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    write_tree(tmp_path / "wiki", WIKI)  # everyone may read everything; no groups file
    (tmp_path / "c.toml").write_text('[[connectors]]\nname = "wiki"\nkind = "files"\n'
                                     'root = "wiki"\n', encoding="utf-8")
    t = Tenant(tmp_path, capsys)
    t.ok("sync")
    data = t.eval_json(str(t.questions([q("where do visitors park", "zed@elsewhere.net",
                                          ["wiki:parking.md"])])))
    assert data["questions"][0]["as"] == "zed@elsewhere.net"
