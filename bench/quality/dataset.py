"""A labelled question set for retrieval quality, from Debian's man pages (see README.md).

    from bench.quality.dataset import load_dataset, assign_acls, bench_users, acl_cases

    ds = load_dataset()                       # "manpages-name": NAME one-liners as questions
    ds = load_dataset("manpages-desc")        # first DESCRIPTION sentence as questions
    for doc_id, title, text in ds.documents: ...
    for qid, question, relevant in ds.questions: ...

    acls = assign_acls(ds, seed=0)            # doc_id -> {"gates": [[...], ...], "deny": [...]}
    for case in acl_cases(ds, acls, seed=0):  # who asks each question, with and without access
        ...

Everything is read from data/manpages.jsonl.gz (made by extract.py from the installed Debian
packages, committed so CI needs no extra package) and is deterministic: documents sorted by id,
questions by qid, ACLs and askers chosen by a seeded hash.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "data" / "manpages.jsonl.gz"
DATASETS = ("manpages-name", "manpages-desc")
DEFAULT_DATASET = "manpages-name"

Document = tuple[str, str, str]  # doc_id, title, text
Question = tuple[str, str, set[str]]  # qid, question, relevant doc ids
AclJson = dict[str, list[list[str]] | list[str]]  # {"gates": [[p, ...], ...], "deny": [p, ...]}


@dataclass
class Dataset:
    name: str
    source: str  # packages, versions and licences the text comes from
    documents: list[Document]
    questions: list[Question]
    licenses: dict[str, str] = field(default_factory=dict)  # doc_id -> SPDX id
    packages: dict[str, str] = field(default_factory=dict)  # doc_id -> Debian package


@lru_cache(maxsize=1)
def _rows(path: Path = DATA_FILE) -> tuple[dict[str, object], ...]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


def _source(meta: dict[str, object], licenses: dict[str, str]) -> str:
    versions = meta.get("packages", {})
    assert isinstance(versions, dict)
    pkgs = ", ".join(f"{p} {v}" for p, v in sorted(versions.items()))
    counts: dict[str, int] = {}
    for lic in licenses.values():
        counts[lic] = counts.get(lic, 0) + 1
    lic_text = ", ".join(f"{k} ({n})" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    distro = meta.get("distribution", "Debian")
    return (
        f"{distro} packages {pkgs}: man page text (NAME section removed), "
        f"redistributable under the pages' own licences: {lic_text}"
    )


def _cut(text: str, span: list[int] | None) -> str:
    """Remove text[start:end], leaving one space or the surrounding paragraph breaks."""
    if not span:
        return text
    head, tail = text[: span[0]].rstrip(" "), text[span[1] :].lstrip(" ")
    if not head or head.endswith("\n") or not tail or tail.startswith("\n"):
        joined = head.rstrip("\n") + "\n\n" + tail.lstrip("\n")
        return joined.strip("\n") if not head or not tail else joined
    return f"{head} {tail}"


def load_dataset(name: str | None = None) -> Dataset:
    """Load one variant: "manpages-name" (default) or "manpages-desc"."""
    name = name or DEFAULT_DATASET
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    rows = _rows()
    meta = next(r for r in rows if r["type"] == "meta")
    documents: list[Document] = []
    licenses: dict[str, str] = {}
    packages: dict[str, str] = {}
    for r in rows:
        if r["type"] != "doc":
            continue
        doc_id, text = str(r["id"]), str(r["text"])
        if name == "manpages-desc":
            span = r.get("desc_span")
            text = _cut(text, span if isinstance(span, list) else None)
        documents.append((doc_id, str(r["title"]), text))
        licenses[doc_id] = str(r["license"])
        packages[doc_id] = str(r["package"])
    documents.sort(key=lambda d: d[0])
    questions: list[Question] = []
    for r in rows:
        if r["type"] == "question" and r["dataset"] == name:
            relevant = r["relevant"]
            assert isinstance(relevant, list)
            questions.append((str(r["qid"]), str(r["question"]), {str(x) for x in relevant}))
    questions.sort(key=lambda q: q[0])
    return Dataset(
        name=name,
        source=_source(meta, licenses),
        documents=documents,
        questions=questions,
        licenses=licenses,
        packages=packages,
    )


# --- ACLs -------------------------------------------------------------------------------------
# The shapes follow core.acl.Acl.to_json(): a reader needs one principal of *every* gate and
# none of `deny`. Principals: "everyone", "user:<email>", "domain:<dns>", "group:bench:<name>".

EVERYONE = "everyone"


def _group(name: str) -> str:
    return f"group:bench:{name}"


@dataclass(frozen=True)
class BenchUser:
    email: str
    groups: tuple[str, ...]  # group principals, e.g. "group:bench:eng"

    @property
    def principals(self) -> frozenset[str]:
        """What this user holds: themselves, their domain, `everyone` and their groups."""
        domain = self.email.rpartition("@")[2]
        return frozenset({f"user:{self.email}", f"domain:{domain}", EVERYONE, *self.groups})


_USERS = (
    BenchUser("alice@example.com", (_group("eng"), _group("legal"))),
    BenchUser("bob@example.com", (_group("eng"),)),
    BenchUser("carol@example.com", (_group("sales"), _group("hr"))),
    BenchUser("dave@example.com", (_group("legal"), _group("hr"), _group("contractors"))),
    BenchUser("erin@example.com", (_group("eng"), _group("sales"), _group("contractors"))),
    BenchUser("frank@partner.org", ()),  # an outsider: everyone + own user/domain only
)

# Each shape is readable by at least one bench user and unreadable by at least one.
_GROUPS = ("eng", "sales", "legal", "hr")
_TWO_GATES = (("eng", "legal"), ("sales", "hr"), ("legal", "hr"), ("eng", "sales"))
_SHAPES = (  # (name, weight out of 100)
    ("public", 25),  # {"gates": [["everyone"]]}
    ("group", 25),  # {"gates": [["group:bench:eng"]]}
    ("group-or-user", 10),  # {"gates": [["group:bench:hr", "user:bob@example.com"]]}
    ("two-gate", 15),  # {"gates": [["group:bench:eng"], ["group:bench:legal"]]}
    ("deny", 15),  # {"gates": [["domain:example.com"]], "deny": ["group:bench:contractors"]}
    ("user", 10),  # {"gates": [["user:carol@example.com"]]}
)


def bench_users() -> list[BenchUser]:
    """The test users, sorted by email."""
    return sorted(_USERS, key=lambda u: u.email)


def _h(*parts: object) -> int:
    return int(hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:16], 16)


def can_read(acl: AclJson, principals: Iterable[str]) -> bool:
    """core.acl semantics: every gate shares a principal with the reader, deny shares none."""
    held = frozenset(principals)
    gates = acl.get("gates") or []
    deny = acl.get("deny") or []
    if not gates or any(not gate for gate in gates):
        return False
    if any(p in held for p in deny):
        return False
    return all(any(p in held for p in gate) for gate in gates)


def _shape_acl(shape: str, r: int) -> AclJson:
    emails = [u.email for u in bench_users()]
    if shape == "public":
        return {"gates": [[EVERYONE]], "deny": []}
    if shape == "group":
        return {"gates": [[_group(_GROUPS[r % len(_GROUPS)])]], "deny": []}
    if shape == "group-or-user":
        g = _GROUPS[r % len(_GROUPS)]
        email = emails[(r // 7) % len(emails)]
        return {"gates": [sorted([_group(g), f"user:{email}"])], "deny": []}
    if shape == "two-gate":
        a, b = _TWO_GATES[r % len(_TWO_GATES)]
        return {"gates": [[_group(a)], [_group(b)]], "deny": []}
    if shape == "deny":
        if r % 2:
            return {"gates": [["domain:example.com"]], "deny": [_group("contractors")]}
        g = _GROUPS[(r // 2) % len(_GROUPS)]
        return {"gates": [[_group(g)]], "deny": [_group("contractors")]}
    if shape == "user":
        return {"gates": [[f"user:{emails[r % len(emails)]}"]], "deny": []}
    raise ValueError(shape)


def _pick_shape(bucket: int) -> str:
    for shape, weight in _SHAPES:
        if bucket < weight:
            return shape
        bucket -= weight
    return _SHAPES[-1][0]


def assign_acls(dataset: Dataset, seed: int = 0) -> dict[str, AclJson]:
    """Give every document one ACL (core.acl JSON shape), chosen by hash(seed, doc_id)."""
    out: dict[str, AclJson] = {}
    users = bench_users()
    for doc_id, _title, _text in dataset.documents:
        r = _h("acl", seed, doc_id)
        acl = _shape_acl(_pick_shape(r % 100), r // 100)
        assert any(can_read(acl, u.principals) for u in users), (doc_id, acl)
        out[doc_id] = acl
    return out


@dataclass(frozen=True)
class AclCase:
    qid: str
    reader: str  # email of a user who can read at least one relevant document
    reader_relevant: frozenset[str]  # the relevant documents that reader can read
    outsider: str | None  # email of a user who can read none of them (None: all users can)


def acl_cases(dataset: Dataset, acls: dict[str, AclJson], seed: int = 0) -> list[AclCase]:
    """For each question, a reader (scores recall on `reader_relevant`) and an outsider (must
    never be shown any relevant document), both picked by hash(seed, qid) among eligible users.
    """
    users = bench_users()
    cases = []
    for qid, _question, relevant in dataset.questions:
        readable = {
            u.email: frozenset(d for d in relevant if can_read(acls[d], u.principals))
            for u in users
        }
        readers = [u.email for u in users if readable[u.email]]
        outsiders = [u.email for u in users if not readable[u.email]]
        reader = readers[_h("reader", seed, qid) % len(readers)]
        outsider = outsiders[_h("outsider", seed, qid) % len(outsiders)] if outsiders else None
        cases.append(AclCase(qid, reader, readable[reader], outsider))
    return cases


def principals_of(email: str) -> frozenset[str]:
    """The principals a bench user holds (for building the retriever's ACL filter)."""
    for u in _USERS:
        if u.email == email:
            return u.principals
    raise KeyError(email)
