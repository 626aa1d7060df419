"""The files connector: `.access.json` rules, groups, doc ids, extraction, hidden files, paging."""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auth.identity import resolve
from connectors.base import DocumentPage, Failure
from connectors.files import access
from connectors.files.connector import FilesConnector
from core.acl import Acl
from core.models import Document, Membership
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter

pytestmark = pytest.mark.unit

MakeTree = Callable[..., Path]


def sync_docs(connector: FilesConnector) -> tuple[dict[str, Document], list[Failure]]:
    docs: dict[str, Document] = {}
    failures: list[Failure] = []
    for page in connector.documents():
        for d in page.documents:
            assert d.doc_id not in docs
            docs[d.doc_id] = d
        failures.extend(page.failures)
    return docs, failures


def readable_ids(store: SqliteStore, email: str, query: str) -> set[str]:
    """Documents `email` finds for `query` (every document in these trees holds the query word,
    so BM25 and the k-NN scan, each filtered by the caller's ACL, must agree)."""
    acl = acl_filter(resolve(store, email))
    lexical = {h.doc_id for h in store.lexical(query, acl, 1000)}
    dense = {h.doc_id for h in store.dense(HashingEmbedder().embed([query])[0], acl, 1000)}
    assert lexical == dense
    return lexical


# -- .access.json -----------------------------------------------------------------------------
DEEP_TREE: dict[str, Any] = {
    ".access.json": {"read": ["domain:acme.example"], "deny": ["user:mallory@acme.example"]},
    "top.md": "# Top\nroot level text",
    "eng/.access.json": {"read": ["group:eng", "User:Lead@ACME.example"]},
    "eng/mid.md": "# Mid\nengineering text",
    "eng/design/notes.md": "# Notes\nno access file in this folder",
    "eng/design/secret/.access.json": {"read": ["group:leads", "user:ada@acme.example"],
                                       "deny": ["group:contractors"]},
    "eng/design/secret/deep.md": "# Deep\nthree levels down",
}


def test_gates_are_the_read_lists_from_root_down_and_denies_add_up(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector]) -> None:
    docs, failures = sync_docs(files_connector(make_tree(DEEP_TREE)))
    assert failures == []
    root_gate = {"domain:acme.example"}
    # canonicalised, and groups are this connector's own (namespaced by its name)
    eng_gate = {"group:docs:eng", "user:lead@acme.example"}
    secret_gate = {"group:docs:leads", "user:ada@acme.example"}
    assert docs["docs:top.md"].acl == Acl.of([root_gate], ["user:mallory@acme.example"])
    assert docs["docs:eng/mid.md"].acl == Acl.of([root_gate, eng_gate],
                                                 ["user:mallory@acme.example"])
    # A folder without its own .access.json inherits its parent's gates unchanged.
    assert docs["docs:eng/design/notes.md"].acl == docs["docs:eng/mid.md"].acl
    deep = docs["docs:eng/design/secret/deep.md"].acl
    assert deep.gates == (frozenset(root_gate), frozenset(eng_gate), frozenset(secret_gate))
    assert deep.deny == {"user:mallory@acme.example", "group:docs:contractors"}
    # Who may read the deep document: all three gates, no deny.
    ok = {"user:ada@acme.example", "domain:acme.example", "group:docs:eng", "everyone"}
    assert deep.allows(ok)
    assert not deep.allows(ok - {"group:docs:eng"})  # the middle gate matters
    assert not deep.allows(ok - {"group:docs:eng"} | {"group:eng"})  # un-namespaced: nothing
    assert not deep.allows(ok - {"domain:acme.example"})  # so does the root gate
    assert not deep.allows({"user:bob@acme.example", "domain:acme.example", "group:docs:eng",
                            "everyone"})  # the deepest gate
    assert not deep.allows(ok | {"group:docs:contractors"})  # deny from the deepest folder
    assert not deep.allows(ok | {"user:mallory@acme.example"})  # deny from the root


def test_permissions_pass_reports_the_same_acls_as_documents(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector]) -> None:
    connector = files_connector(make_tree(DEEP_TREE), page_size=2)
    docs, _ = sync_docs(connector)
    acls = dict(a for page in connector.permissions() for a in page.acls)
    assert acls == {doc_id: d.acl for doc_id, d in docs.items()}


def test_folder_without_any_access_file_above_it_is_readable_by_nobody(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector],
        pipeline: Pipeline, store: SqliteStore) -> None:
    root = make_tree({
        "loose.md": "# Loose\nshared keyword quokka",
        "drafts/wip.md": "# WIP\nquokka draft",
        "open/.access.json": {"read": ["everyone"]},
        "open/page.md": "# Page\nquokka for all",
    })
    connector = files_connector(root)
    docs, failures = sync_docs(connector)
    assert failures == []
    for doc_id in ("docs:loose.md", "docs:drafts/wip.md"):
        assert docs[doc_id].acl.gates == ()
        assert docs[doc_id].acl.nobody_reason == "no ACL"
        assert not docs[doc_id].acl.allows({"everyone", "user:ada@acme.example"})
    assert docs["docs:open/page.md"].acl.allows({"everyone"})

    report = pipeline.full_sync(connector)
    assert report.status == "ok"
    assert report.documents == 3
    assert report.readable_by_nobody == 2
    assert store.stats("docs").readable_by_nobody == 2
    assert readable_ids(store, "ada@acme.example", "quokka") == {"docs:open/page.md"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"read": ["everyone"], "writers": ["group:eng"]}), "unknown key 'writers'"),
        (json.dumps({"read": "everyone"}), "'read' must be a list"),
        (json.dumps({"read": ["everyone"], "deny": "group:x"}), "'deny' must be a list"),
        (json.dumps({"read": [1]}), "'read' must be a list"),
        (json.dumps(["everyone"]), "JSON object"),
        (json.dumps({"deny": []}), "missing 'read'"),
    ],
    ids=["bad-json", "unknown-key", "read-not-list", "deny-not-list", "read-not-strings",
         "not-object", "no-read"],
)
def test_malformed_access_file_closes_its_subtree_and_is_reported(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector],
        pipeline: Pipeline, store: SqliteStore, content: str, reason: str) -> None:
    root = make_tree({
        ".access.json": {"read": ["domain:acme.example"]},
        "good/.access.json": {"read": ["everyone"]},
        "good/ok.md": "# OK\nwombat facts",
        "bad/.access.json": content,
        "bad/broken.md": "# Broken\nwombat secrets",
        "bad/inner/.access.json": {"read": ["everyone"]},  # cannot reopen a broken subtree
        "bad/inner/deeper.md": "# Deeper\nwombat deeper",
    })
    connector = files_connector(root)
    docs, failures = sync_docs(connector)
    assert [f.source_id for f in failures] == ["bad/"]  # once, for the subtree
    assert reason in failures[0].reason
    assert "bad/.access.json" in failures[0].reason
    for doc_id in ("docs:bad/broken.md", "docs:bad/inner/deeper.md"):
        acl = docs[doc_id].acl
        assert not acl.readable_by_somebody
        assert "malformed bad/.access.json" in (acl.nobody_reason or "")
        assert not acl.allows({"everyone", "domain:acme.example", "user:ada@acme.example"})
    assert docs["docs:good/ok.md"].acl.allows({"everyone", "domain:acme.example"})

    report = pipeline.full_sync(connector)
    assert report.status == "partial"  # a subtree failed
    assert report.error_count == 1
    assert any(e.startswith("bad/: ") for e in report.errors)
    assert report.readable_by_nobody == 2
    assert readable_ids(store, "ada@acme.example", "wombat") == {"docs:good/ok.md"}
    assert readable_ids(store, "eve@other.example", "wombat") == set()  # root gate: acme only


def test_malformed_root_access_file_closes_everything(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector]) -> None:
    root = make_tree({".access.json": "[", "a.md": "# A\ntext", "sub/.access.json":
                      {"read": ["everyone"]}, "sub/b.md": "# B\ntext"})
    docs, failures = sync_docs(files_connector(root))
    assert [f.source_id for f in failures] == ["/"]
    assert all(not d.acl.readable_by_somebody for d in docs.values())
    assert len(docs) == 2


def test_empty_read_list_and_unknown_principals_fail_closed(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector]) -> None:
    root = make_tree({
        "empty/.access.json": {"read": []},
        "empty/a.md": "# A\ntext",
        "role/.access.json": {"read": ["role:admin", "everyone"]},
        "role/b.md": "# B\ntext",
        "denyrole/.access.json": {"read": ["everyone"], "deny": ["role:intern"]},
        "denyrole/c.md": "# C\ntext",
        "nomail/.access.json": {"read": ["user:"]},
        "nomail/d.md": "# D\ntext",
    })
    docs, _ = sync_docs(files_connector(root))
    assert len(docs) == 4
    for d in docs.values():
        assert not d.acl.readable_by_somebody, d.doc_id
        assert not d.acl.allows({"everyone", "role:admin", "role:intern", "user:"})


# -- .groups.json -----------------------------------------------------------------------------
def test_groups_file_is_parsed_with_nesting(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector],
        pipeline: Pipeline, store: SqliteStore) -> None:
    root = make_tree({
        ".groups.json": {"eng": ["group:platform", "User:Ann@ACME.example"],
                         "platform": ["user:bob@acme.example", "group:eng"]},
        ".access.json": {"read": ["group:eng"]},
        "x.md": "# X\nplatypus",
    })
    connector = files_connector(root)
    snap = next(connector.identities())  # one page: the root's control files
    assert snap.failures == ()
    assert set(snap.memberships) == {
        Membership("group:docs:eng", "group:docs:platform"),
        Membership("group:docs:eng", "user:ann@acme.example"),
        Membership("group:docs:platform", "user:bob@acme.example"),
        Membership("group:docs:platform", "group:docs:eng"),
    }
    pipeline.full_sync(connector)
    bob = resolve(store, "bob@acme.example")
    assert {"group:docs:platform", "group:docs:eng"} <= bob.principals
    assert readable_ids(store, "bob@acme.example", "platypus") == {"docs:x.md"}
    assert readable_ids(store, "ann@acme.example", "platypus") == {"docs:x.md"}
    assert readable_ids(store, "cy@acme.example", "platypus") == set()


def test_malformed_groups_file_is_reported_and_keeps_the_previous_memberships(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector],
        pipeline: Pipeline, store: SqliteStore) -> None:
    root = make_tree({".groups.json": {"eng": ["user:bob@acme.example"]},
                      ".access.json": {"read": ["everyone"], "deny": ["group:eng"]},
                      "x.md": "# X\nnarwhal"})
    connector = files_connector(root)
    pipeline.full_sync(connector)
    assert readable_ids(store, "bob@acme.example", "narwhal") == set()
    (root / ".groups.json").write_text('{"eng": "user:bob@acme.example"}')
    snap = next(connector.identities())  # one page: the root's control files
    assert len(snap.failures) == 1 and snap.failures[0].source_id == ".groups.json"
    report = pipeline.full_sync(connector)
    assert report.error_count == 1 and report.status == "partial"
    # Dropping bob from a deny group because the file broke would widen access.
    assert readable_ids(store, "bob@acme.example", "narwhal") == set()


# -- mapping and extraction -------------------------------------------------------------------
def make_docx(path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("Travel Policy", level=1)
    d.add_paragraph("Book flights through the portal.")
    d.add_heading("Per diem", level=2)
    d.add_paragraph("Meals are covered up to a daily limit.")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Region"
    table.rows[0].cells[1].text = "Limit"
    path.parent.mkdir(parents=True, exist_ok=True)
    d.save(str(path))


def make_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, "Quarterly Report", new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 10, "Revenue grew in the third quarter.")
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))


def test_doc_ids_urls_titles_and_text_for_every_format(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector]) -> None:
    root = make_tree({
        ".access.json": {"read": ["everyone"]},
        "guides/Onboarding Guide.md": (
            "Intro line before the heading.\n\n# Welcome aboard\n\nFirst day steps.\n\n"
            "## Laptop\n\nCollect it from IT.\n"),
        "team-notes_v2.txt": "Plain notes\n\nsecond paragraph",
        "web/page.html": (
            "<html><head><title>Tab title</title><style>.x{}</style></head><body>"
            "<h1>Expenses</h1><p>Submit receipts &amp; invoices.</p>"
            "<script>var leak = 1;</script><h2>Limits</h2><p>Fifty euros.</p></body></html>"),
        "web/untitled.htm": "<html><head><title>Only Tab</title></head><body><p>Body</p></body>",
    })
    make_docx(root / "policies" / "travel.docx")
    make_pdf(root / "reports" / "q3.pdf")
    docs, failures = sync_docs(files_connector(root, name="kb"))
    assert failures == []
    assert set(docs) == {
        "kb:guides/Onboarding Guide.md", "kb:team-notes_v2.txt", "kb:web/page.html",
        "kb:web/untitled.htm", "kb:policies/travel.docx", "kb:reports/q3.pdf"}
    for doc_id, d in docs.items():
        rel = doc_id.split(":", 1)[1]
        assert d.url == (root / rel).as_uri()
        assert d.url.startswith("file:///")
        assert d.connector == "kb"
        assert d.content_hash and d.updated is not None
        assert all(s.text.strip() for s in d.sections)

    md = docs["kb:guides/Onboarding Guide.md"]
    assert md.url.endswith("/guides/Onboarding%20Guide.md")
    assert md.title == "Welcome aboard"
    assert [(s.headings, s.text) for s in md.sections] == [
        ((), "Intro line before the heading."),
        (("Welcome aboard",), "First day steps."),
        (("Welcome aboard", "Laptop"), "Collect it from IT."),
    ]

    txt = docs["kb:team-notes_v2.txt"]
    assert txt.title == "Team notes v2"
    assert txt.text == "Plain notes\n\nsecond paragraph"

    page = docs["kb:web/page.html"]
    assert page.title == "Expenses"
    assert "Submit receipts & invoices." in page.text
    assert "Fifty euros." in page.text
    assert "leak" not in page.text and ".x{}" not in page.text
    assert page.sections[-1].headings == ("Expenses", "Limits")
    assert docs["kb:web/untitled.htm"].title == "Only Tab"

    word = docs["kb:policies/travel.docx"]
    assert word.title == "Travel Policy"
    assert "Book flights through the portal." in word.text
    assert "Meals are covered up to a daily limit." in word.text
    assert "Region | Limit" in word.text
    assert ("Travel Policy", "Per diem") in [s.headings for s in word.sections]

    pdf = docs["kb:reports/q3.pdf"]
    assert pdf.title == "Quarterly Report"
    assert "Revenue grew in the third quarter." in pdf.text


def test_corrupt_pdf_is_skipped_and_reported_not_fatal(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector],
        pipeline: Pipeline, store: SqliteStore) -> None:
    root = make_tree({
        ".access.json": {"read": ["everyone"]},
        "a.md": "# A\nkiwi",
        "broken.pdf": b"%PDF-1.4\n1 0 obj<<>>garbage\x00\x01",
        "empty.md": "   \n\n",
        "z.md": "# Z\nkiwi",
    })
    connector = files_connector(root)
    docs, failures = sync_docs(connector)
    assert set(docs) == {"docs:a.md", "docs:z.md"}
    by_source = {f.source_id: f for f in failures}
    assert set(by_source) == {"broken.pdf", "empty.md"}
    assert by_source["broken.pdf"].doc_id == "docs:broken.pdf"
    report = pipeline.full_sync(connector)
    assert report.status == "ok"
    assert report.error_count == 2
    assert report.indexed == 2
    assert any(e.startswith("broken.pdf: ") for e in report.errors)
    assert store.document("docs:broken.pdf") is None
    assert readable_ids(store, "ada@acme.example", "kiwi") == {"docs:a.md", "docs:z.md"}


def test_hidden_files_symlinks_and_unknown_types_are_not_indexed(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector],
        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "private").mkdir(parents=True)
    (outside / "private" / "payroll.md").write_text("# Payroll\nsalaries")
    (outside / "secret.md").write_text("# Secret\noutside the root")
    root = make_tree({
        ".access.json": {"read": ["everyone"]},
        "visible.md": "# Visible\ntext",
        ".hidden.md": "# Hidden\ntext",
        ".git/config.md": "# Git\ntext",
        "sub/.draft.txt": "draft",
        "sub/real.txt": "real",
        "image.png": b"\x89PNG\r\n",
        "notes.rtf": "{\\rtf1 hi}",
    })
    os.symlink(outside / "secret.md", root / "link.md")
    os.symlink(outside / "private", root / "linked-dir", target_is_directory=True)
    os.symlink(root / "visible.md", root / "sub" / "alias.md")
    docs, failures = sync_docs(files_connector(root))
    assert set(docs) == {"docs:visible.md", "docs:sub/real.txt"}
    assert failures == []


# -- paging -----------------------------------------------------------------------------------
def test_paging_yields_every_document_once_and_resumes_after_a_checkpoint(
        make_tree: MakeTree, files_connector: Callable[..., FilesConnector]) -> None:
    spec: dict[str, Any] = {".access.json": {"read": ["everyone"]}}
    names = ["a.md", "b/c.md", "b/d.txt", "b/e/f.md", "g.md", "h.txt", "z/y.md"]
    for n in names:
        spec[n] = f"# {n}\ntext of {n}"
    connector = files_connector(make_tree(spec), page_size=2)
    pages = list(connector.documents())
    assert [len(p.documents) for p in pages] == [2, 2, 2, 1]
    assert [p.checkpoint is None for p in pages] == [False, False, False, True]
    seen = [d.doc_id for p in pages for d in p.documents]
    assert sorted(seen) == sorted(f"docs:{n}" for n in names)
    assert len(seen) == len(set(seen))

    for i, page in enumerate(pages[:-1]):
        rest: list[DocumentPage] = list(connector.documents(page.checkpoint))
        resumed = [d.doc_id for p in rest for d in p.documents]
        expected = [d.doc_id for p in pages[i + 1:] for d in p.documents]
        assert resumed == expected
        assert rest[-1].checkpoint is None

    perm_pages = list(connector.permissions())
    assert [len(p.acls) for p in perm_pages] == [2, 2, 2, 1]
    resumed_acls = [a for p in connector.permissions(perm_pages[1].checkpoint) for a, _ in p.acls]
    assert resumed_acls == seen[4:]


@given(st.lists(st.text(alphabet=".acesjonrgupilx-_ACEJ0123456789", max_size=16), max_size=30))
@settings(max_examples=300, deadline=None)
def test_near_misses_match_the_plain_similarity_rule(names: list[str]) -> None:
    """The cheap bounds in front of SequenceMatcher.ratio() flag exactly the names the plain
    rule (equal, prefixed, or ratio >= 0.9 to a control file's bare name) flags."""
    expected = []
    for name in names:
        if name in access.CONTROL_FILES:
            continue
        folded = name.lower().lstrip(".")
        for wanted in access.CONTROL_FILES:
            bare = wanted.lstrip(".")
            if (folded == bare or folded.startswith(bare)
                    or difflib.SequenceMatcher(None, folded, bare).ratio() >= 0.9):
                expected.append(f"{name} is not {wanted} (grants nothing)")
                break
    assert access.near_misses(names) == expected


def test_near_misses_flag_lookalikes_and_pass_ordinary_names() -> None:
    got = access.near_misses([".acess.json", "Access.json", "doc-00017.md", "notes.txt",
                              ".access.json"])
    assert got == [".acess.json is not .access.json (grants nothing)",
                   "Access.json is not .access.json (grants nothing)"]
