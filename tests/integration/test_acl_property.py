"""Property: search returns exactly what a person may read — never one more, never one fewer.

Random folder trees with random `.access.json`, `.groups.json` (nested, cycles allowed) and
`.aliases.json` are synced with the real FilesConnector, Pipeline, SqliteStore and hashing
embedder. For every person, hybrid search, BM25 and k-NN must each return exactly the documents
that an independent reference evaluator (written below from the DESIGN rules, sharing no code
with `core.acl`, `core.principals`, `auth.identity` or `connectors.files.access`) admits.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth.identity import resolve
from connectors.files.connector import FilesConnector
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from retriever.hybrid import RetrievalParams, Retriever

pytestmark = pytest.mark.integration

KEYWORD = "zanzibar"
CONNECTOR = "kb"

# People. u0 also has an alias address in another domain when the tree has `.aliases.json`.
USERS = ("u0@acme.example", "u1@acme.example", "u2@acme.example", "x0@other.example")
ALIAS = "u0.alt@corp.example"
ALIAS_PRIMARY = "u0@acme.example"
STRANGERS = ("stranger@acme.example", "out@nowhere.example")
ASKERS = (*USERS, ALIAS, "U1@ACME.EXAMPLE", *STRANGERS)
GROUPS = ("g0", "g1", "g2", "g3")

# What may appear in an `.access.json`, and what it means: the canonical principal, or None when
# the shape is unknown (which must make the document readable by nobody). Written out by hand so
# that the reference does not depend on the product's parser.
POOL: dict[str, str | None] = {
    "user:u0@acme.example": "user:u0@acme.example",
    "user:u1@acme.example": "user:u1@acme.example",
    "user:u2@acme.example": "user:u2@acme.example",
    "User:U2@Acme.Example": "user:u2@acme.example",
    "user:x0@other.example": "user:x0@other.example",
    "user:u0.alt@corp.example": "user:u0.alt@corp.example",
    "user:stranger@acme.example": "user:stranger@acme.example",
    # A files connector's groups are its own: `group:g0` in connector kb is `group:kb:g0`.
    "group:g0": f"group:{CONNECTOR}:g0",
    "group:g1": f"group:{CONNECTOR}:g1",
    "group:g2": f"group:{CONNECTOR}:g2",
    "group:g3": f"group:{CONNECTOR}:g3",
    "domain:acme.example": "domain:acme.example",
    "domain:other.example": "domain:other.example",
    "Domain:CORP.example": "domain:corp.example",
    "everyone": "everyone",
}
UNKNOWN = ("role:admin", "user:", "user:nobody", "group:")  # fail closed wherever they appear
COMMON = ("everyone", "domain:acme.example", "domain:other.example", "group:g0", "group:g1",
          "user:u0@acme.example", "user:u1@acme.example", "user:x0@other.example")

# Members a group may list: users (some in odd case) and groups.
MEMBERS: dict[str, str] = {
    "user:u0@acme.example": "user:u0@acme.example",
    "user:u1@acme.example": "user:u1@acme.example",
    "USER:U2@acme.example": "user:u2@acme.example",
    "user:x0@other.example": "user:x0@other.example",
    "user:u0.alt@corp.example": "user:u0.alt@corp.example",
    **{f"group:{g}": f"group:{CONNECTOR}:{g}" for g in GROUPS},
}

MALFORMED = ('{"read": ["everyone"]', '{"read": "everyone"}',
             '{"read": ["everyone"], "owner": "group:g0"}', '[]', '{"deny": []}',
             '{"read": ["everyone"], "deny": [7]}')


@dataclass(frozen=True)
class Access:
    read: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    malformed: str | None = None

    def text(self) -> str:
        if self.malformed is not None:
            return self.malformed
        data: dict[str, Any] = {"read": list(self.read)}
        if self.deny:
            data["deny"] = list(self.deny)
        return json.dumps(data)


@dataclass
class Tree:
    folders: list[str]  # "" is the root; every other entry is a POSIX path, parents first
    access: dict[str, Access | None]
    docs: dict[str, str]  # relative path -> folder
    groups: dict[str, list[str]] | None
    aliases: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for folder in self.folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
            self.write_access(root, folder)
        for n, rel in enumerate(sorted(self.docs)):
            path = root / rel
            if rel.endswith(".md"):
                path.write_text(f"# Note {n}\n\nThe {KEYWORD} memo number {n}.\n")
            else:
                path.write_text(f"{KEYWORD} plain memo number {n}\n")
        if self.groups is not None:
            (root / ".groups.json").write_text(json.dumps(self.groups))
        if self.aliases:
            (root / ".aliases.json").write_text(json.dumps({ALIAS_PRIMARY: [ALIAS]}))

    def write_access(self, root: Path, folder: str) -> None:
        path = root / folder / ".access.json"
        spec = self.access.get(folder)
        if spec is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(spec.text())


# -- strategies -------------------------------------------------------------------------------
@st.composite
def principals(draw: st.DrawFn, min_size: int, max_size: int) -> tuple[str, ...]:
    """Mostly common principals, sometimes any known one, rarely an unknown shape."""
    out = []
    for _ in range(draw(st.integers(min_value=min_size, max_value=max_size))):
        roll = draw(st.integers(min_value=0, max_value=19))
        pool = COMMON if roll < 12 else sorted(POOL) if roll < 19 else UNKNOWN
        out.append(draw(st.sampled_from(pool)))
    return tuple(out)


@st.composite
def access_specs(draw: st.DrawFn, root: bool = False) -> Access | None:
    """No `.access.json` (common below the root), a valid one, or now and then a broken one."""
    roll = draw(st.integers(min_value=0, max_value=19))
    if roll == 0:
        return Access(malformed=draw(st.sampled_from(MALFORMED)))
    if roll < (3 if root else 9):
        return None
    empty_read = draw(st.integers(min_value=0, max_value=14)) == 0
    read = () if empty_read else draw(principals(1, 3))
    deny = draw(principals(1, 2)) if draw(st.integers(0, 3)) == 0 else ()
    return Access(read=read, deny=deny)


_group_map = st.dictionaries(
    st.sampled_from(GROUPS), st.lists(st.sampled_from(sorted(MEMBERS)), max_size=3), max_size=4)
groups_files = st.one_of(st.none(), _group_map, _group_map, _group_map)


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    folders = [""]
    n_folders = draw(st.integers(min_value=0, max_value=4))
    for i in range(n_folders):
        # depth of "" is 0, of "f0" 1, of "f0/f1" 2: children only under depth < 3
        parent = draw(st.sampled_from([f for f in folders if not f or f.count("/") < 2]))
        folders.append(f"{parent}/f{i}" if parent else f"f{i}")
    access = {f: draw(access_specs(root=not f)) for f in folders}
    docs: dict[str, str] = {}
    for n, folder in enumerate(folders):
        for j in range(draw(st.integers(min_value=0 if folder else 1, max_value=2))):
            ext = draw(st.sampled_from([".md", ".txt"]))
            rel = f"{folder}/d{n}_{j}{ext}" if folder else f"d{n}_{j}{ext}"
            docs[rel] = folder
    groups = draw(groups_files)
    aliases = draw(st.booleans())
    return Tree(folders, access, docs, groups, aliases)


# -- the reference evaluator (from DESIGN "The access model" and the files contract) ----------
def ancestors(folder: str) -> list[str]:
    """The folders from the root down to `folder`, inclusive."""
    out = [""]
    parts = folder.split("/") if folder else []
    for i in range(len(parts)):
        out.append("/".join(parts[:i + 1]))
    return out


def reference_principals(tree: Tree, email: str) -> set[str]:
    email = email.strip().lower()
    addresses = {email}
    if tree.aliases and email == ALIAS_PRIMARY:  # one way: the alias never becomes its primary
        addresses = {ALIAS, ALIAS_PRIMARY}
    held = {f"user:{a}" for a in addresses}
    held |= {"domain:" + a.rsplit("@", 1)[1] for a in addresses}
    held.add("everyone")
    edges = [(f"group:{CONNECTOR}:{g}", MEMBERS[m])
             for g, ms in (tree.groups or {}).items() for m in ms]
    changed = True
    while changed:  # transitive closure; cycles just stop adding
        changed = False
        for group, member in edges:
            if member in held and group not in held:
                held.add(group)
                changed = True
    return held


def reference_acl(tree: Tree, doc: str) -> tuple[list[list[str | None]], list[str | None]] | None:
    """(gates, deny) as canonical principals (None = unknown shape), or None when broken."""
    gates: list[list[str | None]] = []
    deny: list[str | None] = []
    for folder in ancestors(tree.docs[doc]):
        spec = tree.access.get(folder)
        if spec is None:
            continue
        if spec.malformed is not None:
            return None
        gates.append([POOL.get(p) for p in spec.read])
        deny.extend(POOL.get(p) for p in spec.deny)
    return gates, deny


def readable_by_nobody(tree: Tree, doc: str) -> bool:
    acl = reference_acl(tree, doc)
    if acl is None:
        return True
    gates, deny = acl
    if not gates or any(not g for g in gates):
        return True
    return any(p is None for g in gates for p in g) or any(p is None for p in deny)


def reference_may_read(tree: Tree, email: str, doc: str) -> bool:
    if readable_by_nobody(tree, doc):
        return False
    acl = reference_acl(tree, doc)
    assert acl is not None
    gates, deny = acl
    held = reference_principals(tree, email)
    if any(p in held for p in deny):
        return False
    return all(any(p in held for p in gate) for gate in gates)


def expected(tree: Tree, email: str) -> set[str]:
    return {f"{CONNECTOR}:{d}" for d in tree.docs if reference_may_read(tree, email, d)}


# -- harness ----------------------------------------------------------------------------------
class CountingEmbedder:
    """Wraps the hashing embedder and counts the texts the pipeline asks it to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))


def hashing_embedder() -> Any:
    from indexer.embedding.hashing import HashingEmbedder

    return HashingEmbedder()


def assert_exact(tree: Tree, store: SqliteStore, query_embedder: Any) -> None:
    retriever = Retriever(store, query_embedder, RetrievalParams(k=1000, candidates=1000))
    query_vector = query_embedder.embed([KEYWORD])[0]
    for email in ASKERS:
        want = expected(tree, email)
        acl = acl_filter(resolve(store, email))
        hits = retriever.search(KEYWORD, acl, k=1000)
        got = [h.doc_id for h in hits]
        assert len(got) == len(set(got)), f"{email}: a document listed twice: {got}"
        lexical = {h.doc_id for h in store.lexical(KEYWORD, acl, 1000)}
        dense = {h.doc_id for h in store.dense(query_vector, acl, 1000)}
        for how, found in (("search", set(got)), ("lexical", lexical), ("dense", dense)):
            assert found == want, (
                f"{how} as {email}: leaked {sorted(found - want)}, "
                f"missed {sorted(want - found)}\n"
                f"held={sorted(reference_principals(tree, email))}\ntree={tree}")


def expected_status(tree: Tree) -> str:
    """A broken `.access.json` anywhere makes the sync partial (its subtree failed)."""
    return "partial" if any(a and a.malformed for a in tree.access.values()) else "ok"


def full_sync(tree: Tree, root: Path, store: SqliteStore, embedder: Any) -> FilesConnector:
    tree.write(root)
    connector = FilesConnector(CONNECTOR, root, page_size=3)
    report = Pipeline(store, embedder).full_sync(connector)
    assert report.status == expected_status(tree)
    assert report.documents == len(tree.docs)
    assert report.readable_by_nobody == sum(readable_by_nobody(tree, d) for d in tree.docs)
    return connector


# A fresh store per example: on tmpfs when there is one (SQLite commits are the slow part).
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(tree=trees())
def test_search_returns_exactly_what_each_person_may_read(tree: Tree) -> None:
    embedder = hashing_embedder()
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        try:
            full_sync(tree, Path(tmp) / "docs", store, embedder)
            assert_exact(tree, store, embedder)
        finally:
            store.close()


@st.composite
def permission_changes(draw: st.DrawFn) -> tuple[Tree, Tree]:
    before = draw(trees())
    folder = draw(st.sampled_from(before.folders))
    new_spec = draw(access_specs(root=not folder))
    after = Tree(before.folders, {**before.access, folder: new_spec}, before.docs,
                 before.groups, before.aliases)
    if draw(st.booleans()):  # sometimes a group sync lands in the same pass
        after.groups = draw(groups_files)
    after.extra["changed"] = folder
    return before, after


@SETTINGS
@given(change=permission_changes())
def test_permission_only_change_is_exact_and_embeds_nothing(change: tuple[Tree, Tree]) -> None:
    before, after = change
    query_embedder = hashing_embedder()
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = Path(tmp) / "docs"
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        try:
            embedder = CountingEmbedder(hashing_embedder())
            connector = full_sync(before, root, store, embedder)
            assert_exact(before, store, query_embedder)

            after.write_access(root, after.extra["changed"])
            groups_file = root / ".groups.json"
            if after.groups is None:
                groups_file.unlink(missing_ok=True)
            else:
                groups_file.write_text(json.dumps(after.groups))
            embedder.embedded = 0
            pipeline = Pipeline(store, embedder)
            report = pipeline.permission_sync(connector)
            assert report.status == expected_status(after)
            assert report.chunks_embedded == 0
            assert embedder.embedded == 0
            assert report.readable_by_nobody == sum(
                readable_by_nobody(after, d) for d in after.docs)
            assert_exact(after, store, query_embedder)

            # The content did not change: a following full sync re-embeds nothing either.
            again = pipeline.full_sync(connector)
            assert again.chunks_embedded == 0
            assert again.indexed == 0
            assert again.acl_updated == 0
            assert embedder.embedded == 0
            assert_exact(after, store, query_embedder)
        finally:
            store.close()
