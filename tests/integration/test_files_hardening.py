"""Attacks on the files connector and the sync pipeline, each through a real FilesConnector,
Pipeline, SqliteStore and retriever search: who must NOT see a document, and what is reported.

Groups are scoped to their connector; control files that are not regular files, unreadable,
duplicated-key or near-miss named fail closed or warn; unreadable folders keep their documents
closed; emptied files lose their text at once; incremental syncs handle moves; a resumed sync
ends with current ACLs; broken group files keep the last good snapshot and close deny documents.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from auth.identity import explain, resolve
from connectors.files.connector import FilesConnector
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import TRANSIENT_KEEP_RUNS, Pipeline, SyncReport
from retriever.filters import acl_filter
from retriever.hybrid import RetrievalParams, Retriever
from tests.conftest import write_tree

pytestmark = pytest.mark.integration

T = TypeVar("T")
WORD = "quokka"  # every document holds it, so a search for it lists all a person may read
HANNA, MALLORY, BOB, CARL = ("hanna@acme.example", "mallory@acme.example", "bob@acme.example",
                             "carl@acme.example")


class Home:
    """One store and pipeline; any number of files connectors synced into it."""

    def __init__(self, db: Path) -> None:
        self.store = SqliteStore(db)
        self.embedder = HashingEmbedder()
        self.pipeline = Pipeline(self.store, self.embedder)
        self.retriever = Retriever(self.store, self.embedder,
                                   RetrievalParams(k=100, candidates=100))

    def sees(self, email: str, query: str = WORD) -> set[str]:
        """What `email` finds: hybrid search, BM25 and k-NN must agree."""
        acl = acl_filter(resolve(self.store, email))
        hybrid = {h.doc_id for h in self.retriever.search(query, acl, 100)}
        lexical = {h.doc_id for h in self.store.lexical(query, acl, 100)}
        dense = {h.doc_id for h in self.store.dense(self.embedder.embed([query])[0], acl, 100)}
        assert lexical == hybrid, (lexical, hybrid)
        assert dense == lexical, (dense, lexical)
        return hybrid


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path / "home" / "index.sqlite3")
    yield h
    h.store.close()


def doc(title: str) -> str:
    return f"# {title}\n\nThe {WORD} memo about {title.lower()}.\n"


# -- 1. groups are scoped to the connector that asserts them ----------------------------------
def test_a_groups_file_of_one_connector_admits_nobody_to_another_connectors_group(
        tmp_path: Path, home: Home) -> None:
    alpha = write_tree(tmp_path / "alpha", {
        ".groups.json": {"hr": [f"user:{HANNA}"]},
        "hr/.access.json": {"read": ["group:hr"]},
        "hr/salaries.md": doc("Salaries"),
    })
    beta = write_tree(tmp_path / "beta", {
        # mallory puts herself in *a* group called hr, directly and through nesting
        ".groups.json": {"hr": [f"user:{MALLORY}", "group:admins"],
                         "admins": [f"user:{BOB}"]},
        "hr/.access.json": {"read": ["group:hr"]},
        "hr/wiki.md": doc("Wiki"),
    })
    for name, root in (("alpha", alpha), ("beta", beta)):
        assert home.pipeline.full_sync(FilesConnector(name, root)).status == "ok"

    assert home.sees(MALLORY) == {"beta:hr/wiki.md"}
    assert home.sees(BOB) == {"beta:hr/wiki.md"}
    assert home.sees(HANNA) == {"alpha:hr/salaries.md"}
    assert home.sees(CARL) == set()
    stored = home.store.document("alpha:hr/salaries.md")
    assert stored is not None and stored.acl.gates == (frozenset({"group:alpha:hr"}),)
    # explain shows the namespaced path, and refuses mallory at alpha
    admitted = explain(stored.acl, resolve(home.store, HANNA))
    assert admitted.allowed and "group:alpha:hr" in admitted.lines()[1]
    assert not explain(stored.acl, resolve(home.store, MALLORY)).allowed


def test_a_deny_group_of_one_connector_is_not_emptied_by_another(
        tmp_path: Path, home: Home) -> None:
    alpha = write_tree(tmp_path / "alpha", {
        ".groups.json": {"contractors": [f"user:{CARL}"]},
        ".access.json": {"read": ["everyone"], "deny": ["group:contractors"]},
        "plan.md": doc("Plan"),
    })
    beta = write_tree(tmp_path / "beta", {".groups.json": {"contractors": []},
                                          ".access.json": {"read": ["everyone"]},
                                          "other.md": doc("Other")})
    for name, root in (("alpha", alpha), ("beta", beta)):
        home.pipeline.full_sync(FilesConnector(name, root))
    assert home.sees(CARL) == {"beta:other.md"}
    assert home.sees(BOB) == {"alpha:plan.md", "beta:other.md"}


# -- smaller: duplicate keys, BOM, near-miss names --------------------------------------------
@pytest.mark.parametrize("text", [
    '{"read": ["user:bob@acme.example"], "read": ["everyone"]}',
    '{"read": ["everyone"], "deny": [], "deny": ["user:carl@acme.example"]}',
], ids=["read-twice", "deny-twice"])
def test_duplicate_keys_in_an_access_file_fail_closed(
        tmp_path: Path, home: Home, text: str) -> None:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["everyone"]},
                                          "open.md": doc("Open"), "sub/.access.json": text,
                                          "sub/x.md": doc("X")})
    report = home.pipeline.full_sync(FilesConnector("docs", root))
    assert report.status == "partial"
    assert any(e.startswith("sub/: ") and "duplicate key" in e for e in report.errors)
    for who in (BOB, CARL):
        assert home.sees(who) == {"docs:open.md"}


def test_utf8_bom_is_accepted_in_control_files(tmp_path: Path, home: Home) -> None:
    root = tmp_path / "docs"
    write_tree(root, {"a.md": doc("A")})
    (root / ".access.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"read": ["group:staff"]}).encode())
    (root / ".groups.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"staff": [f"user:{BOB}"]}).encode())
    report = home.pipeline.full_sync(FilesConnector("docs", root))
    assert report.status == "ok" and report.error_count == 0
    assert home.sees(BOB) == {"docs:a.md"}
    assert home.sees(CARL) == set()


@pytest.mark.parametrize("name", [".Access.json", ".access.json.bak", "access.json",
                                  ".access.JSON", ".acess.json", ".access.json~"])
def test_a_near_miss_access_file_grants_nothing_and_is_a_warning(
        tmp_path: Path, home: Home, name: str) -> None:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": [f"user:{BOB}"]},
                                          "sub/x.md": doc("X"),
                                          f"sub/{name}": {"read": ["everyone"]}})
    report = home.pipeline.full_sync(FilesConnector("docs", root))
    assert report.status == "ok" and report.error_count == 0
    assert report.warning_count == 1
    assert report.warnings[0].startswith(f"sub/{name} is not .access.json")
    assert home.sees(CARL) == set()  # the near miss did not open the folder
    assert home.sees(BOB) == {"docs:sub/x.md"}


def test_near_miss_groups_file_is_a_warning_and_an_ordinary_json_is_not(
        tmp_path: Path, home: Home) -> None:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["everyone"]},
                                          "groups.json": {"x": []}, "data.json": {"a": 1},
                                          "success.json": {}, "a.md": doc("A")})
    report = home.pipeline.full_sync(FilesConnector("docs", root))
    assert report.warnings == ["groups.json is not .groups.json (grants nothing)"]


# -- 8. an .access.json that is not a regular file --------------------------------------------
def make_bad_access(kind: str, folder: Path, outside: Path) -> None:
    target = folder / ".access.json"
    if kind == "directory":
        target.mkdir()
        (target / "read").write_text("everyone")
    elif kind == "dangling-symlink":
        os.symlink(folder / "missing.json", target)
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "char-device":
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
    elif kind == "symlink-outside-root":
        (outside / "open.json").write_text(json.dumps({"read": ["everyone"]}))
        os.symlink(outside / "open.json", target)
    else:
        raise AssertionError(kind)


def sync_in_thread(run: Callable[[], SyncReport]) -> SyncReport:
    """A hang (opening a FIFO) fails the test instead of stopping the suite."""
    out: list[SyncReport] = []
    worker = threading.Thread(target=lambda: out.append(run()), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the sync blocked"
    assert out, "the sync raised"
    return out[0]


@pytest.mark.parametrize("kind", ["directory", "dangling-symlink", "fifo", "char-device",
                                  "symlink-outside-root"])
@pytest.mark.parametrize("mode", ["full", "permissions"])
def test_an_access_file_that_is_not_a_regular_file_closes_its_subtree(
        tmp_path: Path, home: Home, kind: str, mode: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["everyone"]},
        "open.md": doc("Open"),
        "sub/.access.json": {"read": ["everyone"]},
        "sub/x.md": doc("X"),
        "sub/deeper/.access.json": {"read": ["everyone"]},  # cannot reopen the subtree
        "sub/deeper/y.md": doc("Y"),
    })
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    assert home.sees(BOB) == {"docs:open.md", "docs:sub/x.md", "docs:sub/deeper/y.md"}
    (root / "sub/.access.json").unlink()
    make_bad_access(kind, root / "sub", outside)

    run = home.pipeline.full_sync if mode == "full" else home.pipeline.permission_sync
    report = sync_in_thread(lambda: run(connector))
    assert report.status == "partial"
    assert [e.split(":")[0] for e in report.errors] == ["sub/"]
    # Nobody: not the parent's readers, not "everyone" from the deeper file.
    assert home.sees(BOB) == {"docs:open.md"}
    stored = home.store.document("docs:sub/x.md")
    assert stored is not None and not stored.acl.readable_by_somebody
    assert "sub/.access.json" in (stored.acl.nobody_reason or "")


def test_a_symlinked_access_file_inside_the_root_is_followed(
        tmp_path: Path, home: Home) -> None:
    root = write_tree(tmp_path / "docs", {"shared/acl.json": {"read": [f"user:{BOB}"]},
                                          "sub/x.md": doc("X")})
    os.symlink(root / "shared/acl.json", root / "sub/.access.json")
    report = home.pipeline.full_sync(FilesConnector("docs", root))
    assert report.error_count == 0
    assert home.sees(BOB) == {"docs:sub/x.md"}
    assert home.sees(CARL) == set()


# -- 9. an ACL file that cannot be read -------------------------------------------------------
@pytest.fixture
def failing_open(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, int], None]:
    """Make the stdlib's os.open fail for one path with a given errno."""
    real_open = os.open
    failing: dict[str, int] = {}

    def fake_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        code = failing.get(os.fspath(path))
        if code is not None:
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", fake_open)

    def fail(path: Path, code: int) -> None:
        failing[os.fspath(path)] = code

    return fail


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO])
def test_an_unreadable_access_file_closes_its_subtree_and_every_revocation_elsewhere_applies(
        tmp_path: Path, home: Home, failing_open: Callable[[Path, int], None],
        code: int) -> None:
    root = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["everyone"]},
        "a/.access.json": {"read": ["everyone"]}, "a/x.md": doc("X"),
        "b/.access.json": {"read": ["everyone"]}, "b/y.md": doc("Y"),
    })
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    assert home.sees(BOB) == {"docs:a/x.md", "docs:b/y.md"}
    # bob is revoked in b, while a's ACL file becomes unreadable
    (root / "b/.access.json").write_text(json.dumps({"read": ["everyone"],
                                                     "deny": [f"user:{BOB}"]}))
    failing_open(root / "a/.access.json", code)

    for run in (home.pipeline.permission_sync, home.pipeline.full_sync):
        report = run(connector)
        assert report.status == "partial"
        assert len(report.errors) == 1 and report.errors[0].startswith("a/: ")
        assert os.strerror(code) in report.errors[0]
        assert home.sees(BOB) == set()
        assert home.sees(CARL) == {"docs:b/y.md"}
        assert home.store.document("docs:a/x.md") is not None  # kept, closed


# -- a real PermissionError and an unreadable folder, as an unprivileged reader ----------------
def as_nobody(fn: Callable[[], T]) -> T:
    """Run `fn` in a forked child that dropped to uid/gid 65534 (tests run as root, whom
    chmod does not stop); its result comes back pickled."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            out = pickle.dumps(("ok", fn()))
        except BaseException as exc:
            out = pickle.dumps(("error", repr(exc)))
        with os.fdopen(w, "wb") as pipe:
            pipe.write(out)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    assert status == "ok", value
    return value  # type: ignore[no-any-return]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged reader can traverse (pytest's tmp_path is 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix="clearance-files-"))
    path.chmod(0o755)
    yield path
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
    shutil.rmtree(path)


def nobody_sync(db: Path, root: Path, mode: str) -> SyncReport:
    warm_up_imports(root)
    return as_nobody(lambda: _sync(db, root, mode))


def warm_up_imports(root: Path) -> None:
    """The child cannot import what the parent has not (the interpreter lives under /root,
    0700): run the same sync once as root on a scratch copy, so every module and codec the
    sync, the extractors and the store import lazily is loaded before the fork."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "docs"
        shutil.copytree(root, copy, ignore=lambda d, names: [
            n for n in names if not os.access(os.path.join(d, n), os.R_OK)])
        for mode in ("full", "permissions"):
            _sync(Path(scratch) / "index.sqlite3", copy, mode)


def _sync(db: Path, root: Path, mode: str) -> SyncReport:
    store = SqliteStore(db)
    try:
        pipeline = Pipeline(store, HashingEmbedder())
        connector = FilesConnector("docs", root)
        return (pipeline.full_sync(connector) if mode == "full"
                else pipeline.permission_sync(connector))
    finally:
        store.close()


def test_real_permission_errors_on_an_acl_file_and_a_folder_fail_closed_and_keep_documents(
        shared_dir: Path) -> None:
    root = write_tree(shared_dir / "docs", {
        ".access.json": {"read": ["everyone"]},
        "acl/.access.json": {"read": ["everyone"]}, "acl/x.md": doc("X"),
        "hidden/.access.json": {"read": ["everyone"]}, "hidden/y.md": doc("Y"),
        "open/.access.json": {"read": ["everyone"]}, "open/z.md": doc("Z"),
    })
    # Readable by the unprivileged reader whatever the process umask is at this moment (the
    # store tightens it to 077 while it opens a file, and other tests' server threads may be
    # opening one now).
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    db_dir = shared_dir / "home"
    db_dir.mkdir()
    os.chown(db_dir, 65534, 65534)
    db = db_dir / "index.sqlite3"
    first = nobody_sync(db, root, "full")
    assert first.status == "ok", first.errors

    (root / "acl/.access.json").chmod(0)  # exists, cannot be read
    (root / "hidden").chmod(0)  # cannot be listed
    (root / "open/.access.json").write_text(json.dumps({"read": ["everyone"],
                                                        "deny": [f"user:{BOB}"]}))
    for mode in ("full", "permissions"):
        report = nobody_sync(db, root, mode)
        assert report.status == "partial", report
        assert report.deleted == 0
        assert sorted(e.split(":")[0] for e in report.errors) == ["acl/", "hidden/"]
        assert any("Permission denied" in e for e in report.errors)
        home = Home(db)
        try:
            assert home.sees(BOB) == set()  # the revocation in open/ went through
            assert home.sees(CARL) == {"docs:open/z.md"}
            for kept in ("docs:acl/x.md", "docs:hidden/y.md"):
                stored = home.store.document(kept)
                assert stored is not None and not stored.acl.readable_by_somebody
        finally:
            home.store.close()


# -- 11. an unreadable subfolder --------------------------------------------------------------
@pytest.fixture
def unlistable(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Make the stdlib's os.scandir (what os.walk lists with) fail for one folder."""
    real_scandir = os.scandir
    blocked: set[str] = set()

    def fake_scandir(path: Any = ".") -> Any:
        if os.fspath(path) in blocked:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    return lambda path: blocked.add(os.fspath(path))


@pytest.mark.parametrize("mode", ["full", "incremental", "permissions", "prune"])
def test_an_unlistable_folder_keeps_its_documents_closed_and_is_an_error(
        tmp_path: Path, home: Home, unlistable: Callable[[Path], None], mode: str) -> None:
    root = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["everyone"]},
        "open.md": doc("Open"),
        "team/a.md": doc("A"), "team/sub/b.md": doc("B"),
        "teammates.md": doc("Teammates"),  # shares the folder's name as a prefix
    })
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    everything = {"docs:open.md", "docs:team/a.md", "docs:team/sub/b.md", "docs:teammates.md"}
    assert home.sees(BOB) == everything
    unlistable(root / "team")

    report = getattr(home.pipeline, {"full": "full_sync", "incremental": "incremental_sync",
                                     "permissions": "permission_sync",
                                     "prune": "prune"}[mode])(connector)
    assert report.status == "partial"
    assert report.deleted == 0 and report.error_count >= 1
    assert any(e.startswith("team/: could not list") for e in report.errors)
    for kept in ("docs:team/a.md", "docs:team/sub/b.md"):
        stored = home.store.document(kept)
        assert stored is not None and not stored.acl.readable_by_somebody
    assert home.sees(BOB) == {"docs:open.md", "docs:teammates.md"}
    # A later full sync that still cannot list keeps them; the deletion pass spares them.
    again = home.pipeline.full_sync(connector)
    assert again.deleted == 0 and home.store.document("docs:team/a.md") is not None


def test_an_unlistable_root_keeps_every_document_closed(
        tmp_path: Path, home: Home, unlistable: Callable[[Path], None]) -> None:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["everyone"]},
                                          "a.md": doc("A"), "team/b.md": doc("B")})
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    unlistable(root)
    for run in (home.pipeline.full_sync, home.pipeline.incremental_sync, home.pipeline.prune):
        report = run(connector)
        assert report.status == "partial" and report.deleted == 0
        assert home.sees(BOB) == set()
        assert home.store.doc_ids("docs") == ["docs:a.md", "docs:team/b.md"]


def test_an_unlistable_folder_reopens_when_it_can_be_listed_again(
        tmp_path: Path, home: Home, monkeypatch: pytest.MonkeyPatch,
        unlistable: Callable[[Path], None]) -> None:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["everyone"]},
                                          "team/a.md": doc("A")})
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    unlistable(root / "team")
    home.pipeline.full_sync(connector)
    assert home.sees(BOB) == set()
    monkeypatch.undo()
    assert home.pipeline.full_sync(connector).status == "ok"
    assert home.sees(BOB) == {"docs:team/a.md"}


# -- 3. emptied files lose their text; transient failures keep it for a bounded time ----------
@pytest.mark.parametrize("mode", ["full", "incremental"])
@pytest.mark.parametrize("content", ["", "   \n\n", "\x00\x01binary"],
                         ids=["empty", "blank", "binary"])
def test_an_emptied_document_loses_its_old_text_at_once(
        tmp_path: Path, home: Home, mode: str, content: str) -> None:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["everyone"]},
                                          "secret.md": doc("Secret"), "other.md": doc("Other")})
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    assert home.sees(BOB) == {"docs:secret.md", "docs:other.md"}
    (root / "secret.md").write_text(content)  # emptied or redacted on purpose

    run = home.pipeline.full_sync if mode == "full" else home.pipeline.incremental_sync
    report = run(connector)
    assert report.deleted == 1
    assert any(e.startswith("secret.md:") and "removed from the index" in e
               for e in report.errors)
    assert home.store.document("docs:secret.md") is None
    assert home.sees(BOB) == {"docs:other.md"}


def test_a_transient_failure_keeps_the_last_text_for_a_bounded_number_of_runs(
        tmp_path: Path, home: Home) -> None:
    from tests.integration.test_sync import make_pdf

    good = make_pdf(["Quokka Plan", f"The {WORD} merger closes in May."])
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["everyone"]},
                                          "plan.pdf": good})
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    assert home.sees(BOB) == {"docs:plan.pdf"}

    def break_it() -> None:
        (root / "plan.pdf").write_bytes(b"%PDF-1.4 truncated garbage")  # a parser crash

    # Two failing runs, then a good one: the count starts again.
    break_it()
    for _ in range(2):
        home.pipeline.full_sync(connector)
    (root / "plan.pdf").write_bytes(good)
    assert home.pipeline.full_sync(connector).error_count == 0
    break_it()
    for n in range(1, TRANSIENT_KEEP_RUNS + 1):
        report = home.pipeline.full_sync(connector)
        assert report.deleted == 0
        assert f"{n} of {TRANSIENT_KEEP_RUNS} runs" in report.errors[0]
        assert home.store.get_state("sync:docs:transient") == {"runs": {"docs:plan.pdf": n}}
        assert home.sees(BOB) == {"docs:plan.pdf"}
    report = home.pipeline.full_sync(connector)
    assert report.deleted == 1
    assert "removed from the index" in report.errors[0]
    assert home.sees(BOB) == set()
    assert home.store.document("docs:plan.pdf") is None
    assert home.store.get_state("sync:docs:transient") == {"runs": {}}


# -- 5. incremental syncs handle moves and deletions ------------------------------------------
def test_incremental_sync_handles_a_move_into_a_restricted_folder(
        tmp_path: Path, home: Home) -> None:
    root = write_tree(tmp_path / "docs", {
        ".groups.json": {"board": [f"user:{HANNA}"]},
        "public/.access.json": {"read": ["everyone"]},
        "public/falcon.md": doc("Falcon"), "public/lunch.md": doc("Lunch"),
        "board/.access.json": {"read": ["group:board"]},
    })
    connector = FilesConnector("docs", root)
    home.pipeline.full_sync(connector)
    assert "docs:public/falcon.md" in home.sees(BOB)
    (root / "public/falcon.md").rename(root / "board/falcon.md")
    (root / "public/lunch.md").unlink()

    report = home.pipeline.incremental_sync(connector)
    assert report.status == "ok" and report.deleted == 2
    assert home.store.document("docs:public/falcon.md") is None
    assert home.store.document("docs:public/lunch.md") is None
    assert home.sees(BOB) == set()  # the outsider sees neither the old nor the new id
    assert home.sees(HANNA) == {"docs:board/falcon.md"}


# -- 6. a resumed sync re-checks the ACLs of what it did before it was killed -------------------
class Killed(Exception):
    pass


def test_a_resumed_sync_ends_with_every_acl_current(tmp_path: Path, home: Home) -> None:
    spec: dict[str, Any] = {".access.json": {"read": ["everyone"]},
                            "a/.access.json": {"read": ["everyone"]}}
    for i in range(4):
        spec[f"a/n{i}.md"] = doc(f"Note {i}")
        spec[f"b/m{i}.md"] = doc(f"Memo {i}")
    root = write_tree(tmp_path / "docs", spec)
    connector = FilesConnector("docs", root, page_size=4)

    def kill_after_first_page(report: SyncReport) -> None:
        raise Killed("killed after page 1")

    killed = Pipeline(home.store, home.embedder, progress=kill_after_first_page)
    with pytest.raises(Killed):
        killed.full_sync(connector)
    assert home.sees(BOB) == {f"docs:a/n{i}.md" for i in range(4)}  # page 1 committed
    # bob is revoked on page 1's folder before the resume
    (root / "a/.access.json").write_text(json.dumps({"read": ["everyone"],
                                                     "deny": [f"user:{BOB}"]}))
    report = home.pipeline.full_sync(connector)
    assert report.resumed and report.status == "ok"
    assert home.sees(BOB) == {f"docs:b/m{i}.md" for i in range(4)}
    assert home.sees(CARL) == {f"docs:a/n{i}.md" for i in range(4)} | home.sees(BOB)
    last = home.store.get_state("sync:docs:full:last")
    assert last["resumed"] is True and last["status"] == "ok"


# -- 10. broken group files keep the last good snapshot; unknown deny groups close ----------------
def break_groups(root: Path, how: str) -> None:
    path = root / ".groups.json"
    path.unlink(missing_ok=True)
    if how == "malformed":
        path.write_text('{"contractors": ["user:carl@acme.example"')
    elif how == "dangling-symlink":
        os.symlink(root / "nowhere.json", path)
    elif how == "duplicate-keys":
        path.write_text('{"contractors": ["user:carl@acme.example"], "contractors": []}')
    elif how == "partly-valid":
        path.write_text(json.dumps({"staff": [f"user:{BOB}"], "contractors": ["carl"]}))
    elif how == "directory":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "symlink-outside-root":
        outside = root.parent / "outside-groups.json"
        outside.write_text(json.dumps({"contractors": []}))
        os.symlink(outside, path)
    else:
        raise AssertionError(how)


BROKEN = ["malformed", "dangling-symlink", "duplicate-keys", "partly-valid", "directory", "fifo",
          "symlink-outside-root"]


def deny_tree(root: Path) -> FilesConnector:
    write_tree(root, {".access.json": {"read": ["everyone"], "deny": ["group:contractors"]},
                      "plan.md": doc("Plan"),
                      "open/.access.json": {"read": ["everyone"]}})
    return FilesConnector("docs", root)


@pytest.mark.parametrize("how", BROKEN)
def test_a_deny_group_whose_file_was_never_readable_closes_the_document(
        tmp_path: Path, home: Home, how: str) -> None:
    root = tmp_path / "docs"
    connector = deny_tree(root)
    break_groups(root, how)
    for run in (home.pipeline.full_sync, home.pipeline.permission_sync):
        report = sync_in_thread(lambda run=run: run(connector))  # type: ignore[misc]
        assert report.status == "partial"
        assert any(e.startswith(".groups.json:") for e in report.errors)
        assert home.sees(CARL) == set()
        assert home.sees(BOB) == set()  # nobody is provably outside the deny group
        stored = home.store.document("docs:plan.md")
        assert stored is not None and "not known yet" in (stored.acl.nobody_reason or "")
    # Once the file is good, the document opens to everyone outside the group.
    if (root / ".groups.json").is_dir() and not (root / ".groups.json").is_symlink():
        shutil.rmtree(root / ".groups.json")
    else:
        (root / ".groups.json").unlink()
    (root / ".groups.json").write_text(json.dumps({"contractors": [f"user:{CARL}"]}))
    assert home.pipeline.full_sync(connector).status == "ok"
    assert home.sees(BOB) == {"docs:plan.md"}
    assert home.sees(CARL) == set()


@pytest.mark.parametrize("how", BROKEN)
@pytest.mark.parametrize("mode", ["full", "permissions", "groups"])
def test_a_broken_groups_file_keeps_the_last_good_snapshot_and_still_denies(
        tmp_path: Path, home: Home, how: str, mode: str) -> None:
    root = tmp_path / "docs"
    connector = deny_tree(root)
    (root / ".groups.json").write_text(json.dumps({"contractors": [f"user:{CARL}"]}))
    assert home.pipeline.full_sync(connector).status == "ok"
    assert home.sees(CARL) == set() and home.sees(BOB) == {"docs:plan.md"}

    break_groups(root, how)
    run = {"full": home.pipeline.full_sync, "permissions": home.pipeline.permission_sync,
           "groups": home.pipeline.group_sync}[mode]
    report = sync_in_thread(lambda: run(connector))
    assert report.status == "partial" and report.error_count == 1
    assert report.errors[0].startswith(".groups.json:")
    assert home.sees(CARL) == set()  # the last good snapshot still denies
    assert home.sees(BOB) == {"docs:plan.md"}


def test_a_broken_aliases_file_is_reported_and_replaces_nothing(
        tmp_path: Path, home: Home) -> None:
    root = tmp_path / "docs"
    connector = deny_tree(root)
    (root / ".groups.json").write_text(json.dumps({"contractors": [f"user:{CARL}"]}))
    home.pipeline.full_sync(connector)
    (root / ".aliases.json").write_text('{"bob@acme.example": ["b@x.example"], '
                                        '"bob@acme.example": []}')
    report = home.pipeline.full_sync(connector)
    assert report.status == "partial"
    assert report.errors[0].startswith(".aliases.json:") and "duplicate key" in report.errors[0]
    assert home.sees(CARL) == set()


# -- 4. connectors removed from the configuration -------------------------------------------
def test_documents_of_a_connector_no_longer_configured_are_deleted(
        tmp_path: Path, home: Home) -> None:
    for name in ("kept", "gone"):
        root = write_tree(tmp_path / name, {".access.json": {"read": ["everyone"]},
                                            "a.md": doc("A"), "b.md": doc("B")})
        home.pipeline.full_sync(FilesConnector(name, root))
    assert home.store.connector_names() == ["gone", "kept"]
    assert home.pipeline.orphaned(["kept"]) == {"gone": 2}
    assert home.pipeline.prune_orphans(["kept"], only=["other"]) == {}
    assert home.pipeline.prune_orphans(["kept"]) == {"gone": 2}
    assert home.store.connector_names() == ["kept"]
    assert home.sees(BOB) == {"kept:a.md", "kept:b.md"}
    assert home.pipeline.orphaned(["kept"]) == {}


# -- through the console script: partial, orphaned connectors, resumed runs --------------------
def clearance(home_dir: Path, config: Path, *args: str) -> Any:
    import subprocess

    from tests.integration.test_sync import cli_env
    from tests.support import clearance_exe

    return subprocess.run([clearance_exe(), "--home", str(home_dir), *args, "--config",
                           str(config)], capture_output=True, text=True, env=cli_env(),
                          cwd=config.parent, timeout=600)


def connectors_config(path: Path, roots: dict[str, Path]) -> Path:
    path.write_text("".join(f'[[connectors]]\nname = "{n}"\nkind = "files"\nroot = "{r}"\n'
                            "page_size = 2\n" for n, r in roots.items()), encoding="utf-8")
    return path


def test_cli_reports_partial_lists_orphans_until_a_sync_deletes_them_and_shows_resumed(
        tmp_path: Path) -> None:
    roots = {name: write_tree(tmp_path / name, {".access.json": {"read": ["everyone"]},
                                                "a.md": doc("A"), "b.md": doc("B"),
                                                "c.md": doc("C"),
                                                "bad/.access.json": "{",
                                                "bad/x.md": doc("X")})
             for name in ("kept", "gone")}
    home_dir = tmp_path / "home"
    config = connectors_config(tmp_path / "clearance.toml", roots)
    first = clearance(home_dir, config, "sync")
    assert first.returncode == 0, first.stderr
    assert "full sync partial" in first.stdout and "PARTIAL" in first.stdout
    assert "skipped bad/: malformed bad/.access.json" in first.stdout

    connectors_config(config, {"kept": roots["kept"]})  # "gone" removed from the config
    status = json.loads(clearance(home_dir, config, "status", "--json").stdout)
    assert status["orphaned"] == [{"connector": "gone", "documents": 4}]
    assert [r["connector"] for r in status["connectors"]] == ["kept"]
    text = clearance(home_dir, config, "status").stdout
    assert "gone: NOT CONFIGURED, 4 documents still indexed" in text

    # Interrupt a sync of "kept" after its first page; the CLI run resumes it.
    store = SqliteStore(home_dir / "index.sqlite3")
    try:
        (roots["kept"] / "a.md").write_text(doc("A changed"))

        def killed(report: SyncReport) -> None:
            raise Killed("killed")

        with pytest.raises(Killed):
            Pipeline(store, HashingEmbedder(), progress=killed).full_sync(
                FilesConnector("kept", roots["kept"], page_size=2))
    finally:
        store.close()
    synced = clearance(home_dir, config, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    out = json.loads(synced.stdout)
    assert out["orphans_deleted"] == [{"connector": "gone", "documents": 4}]
    assert out["syncs"][0]["resumed"] is True and out["syncs"][0]["status"] == "partial"
    status = json.loads(clearance(home_dir, config, "status", "--json").stdout)
    assert status["orphaned"] == []
    assert status["connectors"][0]["last_run"]["resumed"] is True
    assert "interrupted and resumed" in clearance(home_dir, config, "status").stdout
    search = clearance(home_dir, config, "search", WORD, "--as", BOB, "--json")
    assert {h["doc_id"] for h in json.loads(search.stdout)["hits"]} == {
        "kept:a.md", "kept:b.md", "kept:c.md"}


def test_a_fifo_or_device_named_like_a_document_is_not_read(tmp_path: Path, home: Home) -> None:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["everyone"]},
                                          "a.md": doc("A")})
    os.mkfifo(root / "pipe.md")
    os.mknod(root / "zero.txt", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: endless
    connector = FilesConnector("docs", root)
    for run in (home.pipeline.full_sync, home.pipeline.permission_sync):
        report = sync_in_thread(lambda run=run: run(connector))  # type: ignore[misc]
        assert report.status == "ok" and report.documents == 1
        assert sorted(report.warnings) == ["pipe.md is not a regular file (not indexed)",
                                           "zero.txt is not a regular file (not indexed)"]
    assert home.sees(BOB) == {"docs:a.md"}
