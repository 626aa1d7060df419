"""Sync semantics with a real SqliteStore, Pipeline and FilesConnector on a tmp folder tree.

What a user would notice: edited text is findable and the old text is not; a permission change
applies at once (the person who lost access stops getting the document); deleted files leave
the index; a killed or crashed sync resumes to exactly the index a clean sync builds; broken
documents, a vanished root and a wholesale failure never delete what was indexed before.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from auth.identity import CachedResolver, resolve
from connectors.files.connector import FilesConnector
from core.errors import ConfigError, SyncError, SyncLocked
from indexer.locks import connector_lock
from indexer.store.sqlite import SqliteStore
from indexer.sync import ErrorBudget, Pipeline, last_run_key
from retriever.filters import acl_filter
from retriever.hybrid import RetrievalParams, Retriever
from tests.conftest import write_tree
from tests.support import clearance_exe

pytestmark = pytest.mark.integration

ALICE = "alice@acme.com"
BOB = "bob@acme.com"
CAROL = "carol@acme.com"
CHECKPOINT_KEY = "sync:docs:full:checkpoint"


class CountingEmbedder:
    """Wraps an embedder: records every text it embeds; can raise on the Nth embed call."""

    def __init__(self, inner: Any, fail_on_call: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.texts: list[str] = []

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise RuntimeError(f"embedder crashed on call {self.calls}")
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def reset(self) -> None:
        self.calls = 0
        self.texts = []


def base_tree() -> dict[str, Any]:
    return {
        ".access.json": {"read": ["domain:acme.com"]},
        ".groups.json": {"finance": [f"user:{ALICE}"], "legal": [f"user:{BOB}"]},
        "handbook/holidays.md": "# Holidays\n\nEvery employee gets twenty-eight days of "
                                "paid holiday, booked through the quokka portal.\n",
        "handbook/expenses.md": "# Expenses\n\nTaxis after ten at night are reimbursed "
                                "with a receipt from the driver.\n",
        "finance/.access.json": {"read": ["group:finance"]},
        "finance/budget.md": "# Budget\n\nThe marmoset programme receives four million "
                             "euros next year.\n",
        "finance/forecast.md": "# Forecast\n\nRevenue is forecast to grow by nine percent "
                               "in the albatross region.\n",
    }


class Index:
    """One home: store, counting embedder, pipeline, connector; searches as a person."""

    def __init__(self, root: Path, db: Path, embedder: Any, *, page_size: int = 64,
                 fail_on_call: int | None = None, budget: ErrorBudget | None = None) -> None:
        self.root = root
        self.store = SqliteStore(db)
        self.embedder = CountingEmbedder(embedder, fail_on_call)
        self.pipeline = Pipeline(self.store, self.embedder, budget=budget)
        self.connector = FilesConnector("docs", root, page_size=page_size)
        # Queries use the bare embedder so they never count as (re-)embedding.
        self.retriever = Retriever(self.store, embedder, RetrievalParams(k=10))

    def sync(self) -> Any:
        self.embedder.reset()
        return self.pipeline.full_sync(self.connector)

    def search(self, query: str, email: str, k: int = 50) -> list[str]:
        identity = resolve(self.store, email)
        return [h.doc_id for h in self.retriever.search(query, acl_filter(identity), k)]

    def lexical(self, query: str, email: str) -> set[str]:
        """Documents whose text matches `query` for this person (BM25 only, ACL-filtered)."""
        identity = resolve(self.store, email)
        return {h.doc_id for h in self.store.lexical(query, acl_filter(identity), 100)}

    def chunk_texts(self, doc_id: str) -> list[str]:
        return [c["text"] for c in self.store.snapshot()["documents"][doc_id]["chunks"]]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def index(tmp_path: Path, embedder: Any) -> Callable[..., Index]:
    opened: list[Index] = []

    def make(spec: dict[str, Any] | None = None, name: str = "home", *,
             root: Path | None = None, **kw: Any) -> Index:
        """A new home; `root` reuses another home's tree (URLs are part of the index)."""
        if root is None:
            root = write_tree(tmp_path / f"{name}-docs", base_tree() if spec is None else spec)
        idx = Index(root, tmp_path / name / "index.sqlite3", embedder, **kw)
        opened.append(idx)
        return idx

    yield make  # type: ignore[misc]
    for idx in opened:
        idx.close()


def write_access(folder: Path, read: list[str], deny: list[str] | None = None) -> None:
    body: dict[str, list[str]] = {"read": read}
    if deny:
        body["deny"] = deny
    (folder / ".access.json").write_text(json.dumps(body), encoding="utf-8")


def make_pdf(text_lines: list[str]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in text_lines:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


# -- content changes ---------------------------------------------------------------------------

def test_edited_file_is_reindexed_and_only_it_is_reembedded(index: Callable[..., Index]) -> None:
    idx = index()
    first = idx.sync()
    assert first.status == "ok" and first.indexed == 4
    assert idx.lexical("quokka", ALICE) == {"docs:handbook/holidays.md"}

    (idx.root / "handbook/holidays.md").write_text(
        "# Holidays\n\nEvery employee gets thirty days of paid holiday, booked through the "
        "wombat planner.\n", encoding="utf-8")
    report = idx.sync()

    assert (report.indexed, report.unchanged, report.acl_updated) == (1, 3, 0)
    stored = idx.store.document("docs:handbook/holidays.md")
    assert stored is not None
    assert report.chunks_embedded == stored.chunks == len(idx.embedder.texts) > 0
    assert all("wombat" in t for t in idx.embedder.texts), idx.embedder.texts
    # New text is found, old text is gone from the index entirely.
    assert idx.lexical("wombat", ALICE) == {"docs:handbook/holidays.md"}
    assert idx.search("wombat planner", ALICE)[0] == "docs:handbook/holidays.md"
    assert idx.lexical("quokka", ALICE) == set()
    assert not any("quokka" in t for t in idx.chunk_texts("docs:handbook/holidays.md"))


def test_unchanged_second_sync_embeds_nothing(index: Callable[..., Index]) -> None:
    idx = index()
    idx.sync()
    before = idx.store.snapshot()
    report = idx.sync()
    assert report.status == "ok"
    assert (report.indexed, report.chunks_embedded, report.acl_updated, report.deleted) == (
        0, 0, 0, 0)
    assert report.unchanged == report.documents == 4
    assert idx.embedder.texts == []
    assert idx.store.snapshot() == before


def test_deleted_file_leaves_the_index(index: Callable[..., Index]) -> None:
    idx = index()
    idx.sync()
    assert "docs:handbook/expenses.md" in idx.search("taxis receipt driver", ALICE)

    (idx.root / "handbook/expenses.md").unlink()
    report = idx.sync()

    assert report.deleted == 1 and report.status == "ok"
    assert idx.store.document("docs:handbook/expenses.md") is None
    assert "docs:handbook/expenses.md" not in idx.search("taxis receipt driver", ALICE)
    assert idx.lexical("taxis", ALICE) == set()
    assert idx.embedder.texts == []


# -- permission changes ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["full", "permissions"])
def test_acl_only_change_reembeds_nothing_and_applies_at_once(
        index: Callable[..., Index], mode: str) -> None:
    idx = index()
    idx.sync()
    budget = ["docs:finance/budget.md", "docs:finance/forecast.md"]
    assert idx.lexical("marmoset", ALICE) == {budget[0]}
    assert idx.lexical("marmoset", BOB) == set()

    # Finance is handed from the finance group (alice) to the legal group (bob).
    write_access(idx.root / "finance", ["group:legal"])
    idx.embedder.reset()
    report = (idx.pipeline.full_sync(idx.connector) if mode == "full"
              else idx.pipeline.permission_sync(idx.connector))

    assert report.status == "ok"
    assert report.chunks_embedded == 0 and idx.embedder.texts == []
    assert report.acl_updated == 2
    # Denied side: alice no longer gets the documents, by words or by meaning.
    assert idx.lexical("marmoset", ALICE) == set()
    alice_sees = idx.search("marmoset programme budget four million euros", ALICE)
    assert not set(alice_sees) & set(budget), alice_sees
    # Admitted side: bob does.
    assert idx.lexical("marmoset", BOB) == {budget[0]}
    assert idx.search("marmoset programme budget four million euros", BOB)[0] == budget[0]
    # Carol (in neither group) never did.
    assert not set(idx.search("marmoset albatross", CAROL)) & set(budget)

    # The next full sync sees nothing left to do.
    after = idx.sync()
    assert (after.acl_updated, after.chunks_embedded, after.unchanged) == (0, 0, 4)


def test_deny_added_by_permission_sync_removes_access(index: Callable[..., Index]) -> None:
    idx = index()
    idx.sync()
    assert idx.lexical("quokka", BOB) == {"docs:handbook/holidays.md"}
    write_access(idx.root / "handbook", ["everyone"], deny=[f"user:{BOB}"])
    report = idx.pipeline.permission_sync(idx.connector)
    assert report.acl_updated == 2
    assert idx.lexical("quokka", BOB) == set()
    assert "docs:handbook/holidays.md" not in idx.search("quokka holiday portal", BOB)
    assert idx.lexical("quokka", ALICE) == {"docs:handbook/holidays.md"}


@pytest.mark.parametrize("mode", ["permissions", "groups"])
def test_member_removed_from_a_group_loses_access_without_reembedding(
        index: Callable[..., Index], mode: str) -> None:
    idx = index()
    idx.sync()
    resolver = CachedResolver(idx.store)
    assert "group:docs:finance" in resolver(ALICE).principals
    (idx.root / ".groups.json").write_text(
        json.dumps({"finance": [f"user:{CAROL}"], "legal": [f"user:{BOB}"]}), encoding="utf-8")
    idx.embedder.reset()
    run = idx.pipeline.permission_sync if mode == "permissions" else idx.pipeline.group_sync
    assert run(idx.connector).status == "ok"
    assert idx.embedder.texts == []
    assert "group:docs:finance" not in resolver(ALICE).principals  # the cache saw the change
    assert idx.lexical("marmoset", ALICE) == set()
    assert idx.lexical("marmoset", CAROL) == {"docs:finance/budget.md"}


# -- resume after a crash ------------------------------------------------------------------------

def many_docs(n: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        ".access.json": {"read": ["domain:acme.com"]},
        ".groups.json": {"ops": [f"user:{ALICE}"]},
        "ops/.access.json": {"read": ["group:ops"]},
    }
    for i in range(n):
        folder = "ops" if i % 3 == 0 else f"team{i % 7}"
        spec[f"{folder}/note-{i:04d}.md"] = (
            f"# Note {i}\n\nRunbook entry {i} covers the service number {i * 7919 % 1000}. "
            f"Restart the worker pool, then check the queue depth for shard {i % 11}.\n\n"
            f"## Escalation\n\nPage the on-call engineer of rota {i % 5} when the error rate "
            f"stays above {i % 9 + 1} percent for ten minutes.\n")
    return spec


def test_crash_inside_embedder_then_resume_matches_clean_sync(
        index: Callable[..., Index]) -> None:
    spec = many_docs(24)
    crashed = index(spec, "crashed", page_size=4, fail_on_call=4)
    with pytest.raises(RuntimeError, match="embedder crashed"):
        crashed.pipeline.full_sync(crashed.connector)
    last = crashed.store.get_state(last_run_key("docs", "full"))
    assert last["status"] == "failed" and "embedder crashed" in last["error"]
    saved = crashed.store.get_state(CHECKPOINT_KEY)
    assert saved is not None and saved["cursor"] is not None
    done_before = set(crashed.store.snapshot()["documents"])
    assert len(done_before) == 12  # three pages of four were committed

    crashed.embedder.fail_on_call = None
    report = crashed.sync()
    assert report.resumed and report.status == "ok"
    assert report.documents == 24 and report.error_count == 0 and report.deleted == 0
    assert crashed.store.get_state(CHECKPOINT_KEY) is None
    # Committed pages are not embedded again.
    assert not any(f"Note {int(d[-7:-3])}\n" in t for t in crashed.embedder.texts
                   for d in done_before)

    clean = index(name="clean", root=crashed.root, page_size=4)
    clean.sync()
    assert crashed.store.snapshot() == clean.store.snapshot()


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
    env["CLEARANCE_EMBEDDER"] = "hashing"
    return env


def write_config(path: Path, root: Path, page_size: int | None = None) -> Path:
    extra = f"page_size = {page_size}\n" if page_size else ""
    path.write_text(f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{root}"\n{extra}',
                    encoding="utf-8")
    return path


def run_cli(home: Path, config: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([clearance_exe(), "--home", str(home), "sync", "--config", str(config),
                           *args], capture_output=True, text=True, env=cli_env(), cwd=cwd,
                          timeout=600)


def checkpoint_cursor(db: Path, min_documents: int = 0) -> str | None:
    """The saved cursor of the full sync, once it has covered `min_documents`."""
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT value FROM state WHERE key = ?",
                              (CHECKPOINT_KEY,)).fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return None  # schema not created yet
    if row is None:
        return None
    saved = json.loads(row[0])
    return saved["cursor"] if saved["report"]["documents"] >= min_documents else None


@pytest.mark.slow
def test_killed_cli_sync_resumes_to_the_same_index_as_a_clean_sync(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "docs", many_docs(300))
    config = write_config(tmp_path / "clearance.toml", root, page_size=5)
    home = tmp_path / "home"
    db = home / "index.sqlite3"

    proc = subprocess.Popen([clearance_exe(), "--home", str(home), "sync", "--config",
                             str(config)], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    cursor = None
    while cursor is None and proc.poll() is None and time.monotonic() < deadline:
        cursor = checkpoint_cursor(db, min_documents=50)
        if cursor is None:
            time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert cursor is not None, "never saw a checkpoint before the sync ended"
    assert proc.returncode == -signal.SIGKILL, "the sync finished before it could be killed"
    killed = SqliteStore(db)
    try:
        partial = len(killed.snapshot()["documents"])
    finally:
        killed.close()
    assert 50 <= partial < 300, partial

    resumed = run_cli(home, config, "--json", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    (report,) = json.loads(resumed.stdout)["syncs"]
    assert report["resumed"] is True and report["status"] == "ok"
    assert report["documents"] == 300 and report["error_count"] == 0
    assert report["indexed"] + report["unchanged"] == 300

    clean_home = tmp_path / "clean-home"
    clean = run_cli(clean_home, config, "--json", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["syncs"][0]["resumed"] is False

    a, b = SqliteStore(db), SqliteStore(clean_home / "index.sqlite3")
    try:
        snap_a, snap_b = a.snapshot(), b.snapshot()
        assert a.get_state(CHECKPOINT_KEY) is None
    finally:
        a.close()
        b.close()
    assert len(snap_a["documents"]) == 300
    assert snap_a == snap_b


# -- one sync per connector ----------------------------------------------------------------------

def test_second_sync_of_a_connector_gets_sync_locked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with connector_lock(home, "docs"), pytest.raises(SyncLocked), \
            connector_lock(home, "docs"):
        pass
    with connector_lock(home, "other"):
        pass  # a different connector is not blocked
    with connector_lock(home, "docs"):
        pass  # released on exit


@pytest.mark.slow
def test_cli_sync_while_another_sync_holds_the_lock_exits_1(tmp_path: Path) -> None:
    spec = base_tree()
    spec.update({f"scans/scan-{i:02d}.pdf": b"%PDF-1.4 not a pdf" for i in range(25)})
    root = write_tree(tmp_path / "docs", spec)
    config = write_config(tmp_path / "clearance.toml", root)
    home = tmp_path / "home"
    # An earlier run failed (error budget): its report must not pass for the locked-out run's.
    first = run_cli(home, config, "--json", cwd=tmp_path)
    assert first.returncode == 1
    (failed,) = json.loads(first.stdout)["syncs"]
    assert failed["status"] == "failed" and "error budget" in failed["error"]
    store = SqliteStore(home / "index.sqlite3")
    try:
        before = store.snapshot()
        with connector_lock(home, "docs"):
            locked = run_cli(home, config, "--json", cwd=tmp_path)
        assert store.snapshot() == before  # the locked-out run wrote nothing
    finally:
        store.close()
    assert locked.returncode == 1
    assert "Traceback" not in locked.stderr
    lines = locked.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0], locked.stderr
    assert json.loads(locked.stdout) == {"syncs": []}

    shutil.rmtree(root / "scans")
    again = run_cli(home, config, "--json", cwd=tmp_path)  # and the lock was released
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["syncs"][0]["status"] == "ok"


# -- broken documents, vanished roots, wholesale failure ---------------------------------------

def test_corrupt_pdf_is_skipped_and_reported(index: Callable[..., Index]) -> None:
    spec = base_tree()
    spec["handbook/broken.pdf"] = b"%PDF-1.4\n this is not really a pdf \x00\x01\x02"
    idx = index(spec)
    report = idx.sync()
    assert report.status == "ok"
    assert report.error_count == 1 and report.indexed == 4
    assert len(report.errors) == 1 and report.errors[0].startswith("handbook/broken.pdf:")
    assert idx.store.document("docs:handbook/broken.pdf") is None
    assert idx.lexical("quokka", ALICE) == {"docs:handbook/holidays.md"}


def test_unreadable_indexed_document_keeps_content_under_the_new_acl(
        index: Callable[..., Index]) -> None:
    spec = base_tree()
    spec["finance/plan.pdf"] = make_pdf(["Pelican Plan", "The pelican merger closes in May."])
    idx = index(spec)
    idx.sync()
    doc = "docs:finance/plan.pdf"
    assert idx.lexical("pelican", ALICE) == {doc}
    before = idx.chunk_texts(doc)

    (idx.root / "finance/plan.pdf").write_bytes(b"%PDF-1.4 truncated garbage")
    write_access(idx.root / "finance", ["group:legal"])
    report = idx.sync()

    assert report.status == "ok" and report.error_count == 1 and report.deleted == 0
    assert report.errors[0].startswith("finance/plan.pdf:")
    assert "kept its last good text, 1 of 3 runs" in report.errors[0]
    assert report.acl_updated == 3  # budget, forecast (fast path) and the unreadable pdf
    assert idx.chunk_texts(doc) == before  # last good content kept
    stored = idx.store.document(doc)
    assert stored is not None
    assert stored.acl.gates == (frozenset({"domain:acme.com"}), frozenset({"group:docs:legal"}))
    assert idx.lexical("pelican", ALICE) == set()  # ... but not for who lost access
    assert doc not in idx.search("pelican merger closes in May", ALICE)
    assert idx.lexical("pelican", BOB) == {doc}

    # A later sync that still cannot read it keeps it (it is not "vanished").
    again = idx.sync()
    assert again.deleted == 0 and idx.store.document(doc) is not None


def test_vanished_root_fails_clearly_and_deletes_nothing(index: Callable[..., Index]) -> None:
    idx = index()
    idx.sync()
    before = idx.store.snapshot()
    shutil.rmtree(idx.root)

    with pytest.raises(ConfigError, match="root folder not found"):
        idx.sync()

    last = idx.store.get_state(last_run_key("docs", "full"))
    assert last["status"] == "failed" and "root folder not found" in last["error"]
    assert idx.store.snapshot() == before
    assert idx.search("marmoset programme", ALICE)[0] == "docs:finance/budget.md"
    with pytest.raises(ConfigError, match="root folder not found"):
        idx.pipeline.permission_sync(idx.connector)
    assert idx.store.snapshot() == before


def test_error_budget_stops_a_wholesale_failure_and_deletes_nothing(
        index: Callable[..., Index]) -> None:
    idx = index()
    idx.sync()
    before = idx.store.snapshot()
    (idx.root / "handbook/expenses.md").unlink()  # would be deleted by a successful sync
    for i in range(30):
        (idx.root / f"handbook/scan-{i:02d}.pdf").write_bytes(b"%PDF-1.4 not a pdf")

    with pytest.raises(SyncError, match="error budget"):
        idx.sync()

    last = idx.store.get_state(last_run_key("docs", "full"))
    # Stopped at the end of the first page where the budget (>= 20 failures, more than half
    # of what was seen) was spent, before the walk reached its end.
    assert last["status"] == "failed" and 20 <= last["error_count"] <= 30
    assert last["error_count"] > last["documents"]
    assert last["deleted"] == 0
    assert idx.store.snapshot() == before
    assert idx.store.document("docs:handbook/expenses.md") is not None
