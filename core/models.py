"""Data passed between stages: small frozen models with no hidden behaviour."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.acl import Acl


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (e.g. ("Leave", "Parental leave"))."""

    text: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    """One readable item at a source, with who may read it.

    `doc_id` is `<connector name>:<source id>`; `content_hash` covers title and text only,
    so a change of ACL alone does not look like a change of content.
    """

    doc_id: str
    title: str
    url: str
    sections: tuple[Section, ...]
    acl: Acl
    updated: datetime | None = None
    content_hash: str = ""
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def connector(self) -> str:
        return self.doc_id.split(":", 1)[0]

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


def content_hash(title: str, sections: Sequence[Section]) -> str:
    h = hashlib.sha256()
    h.update(title.encode())
    for s in sections:
        h.update(b"\x00" + "\x1f".join(s.headings).encode() + b"\x00" + s.text.encode())
    return h.hexdigest()


def make_document(
    doc_id: str,
    title: str,
    url: str,
    sections: Sequence[Section],
    acl: Acl,
    updated: datetime | None = None,
    metadata: dict[str, str] | None = None,
) -> Document:
    return Document(
        doc_id=doc_id,
        title=title,
        url=url,
        sections=tuple(sections),
        acl=acl,
        updated=updated,
        content_hash=content_hash(title, sections),
        metadata=dict(metadata or {}),
    )


@dataclass(frozen=True)
class Membership:
    """`member` (a user or group principal) belongs to `group` (a group principal)."""

    group: str
    member: str


@dataclass(frozen=True)
class Alias:
    """Another address of the same person (e.g. an Entra UPN beside the primary mail)."""

    alias: str
    primary: str


def ambiguous_aliases(aliases: Iterable[Alias]) -> dict[str, list[str]]:
    """Addresses one source lists for two or more people (or for a person other than the
    address's own primary): {address: [claimants]}. They grant nothing; the sync reports them."""
    aliases = list(aliases)
    primaries = {a.primary for a in aliases}
    claims: dict[str, set[str]] = {}
    for a in aliases:
        if a.alias != a.primary:
            claims.setdefault(a.alias, set()).add(a.primary)
    for address, people in claims.items():
        if address in primaries:
            people.add(address)
    return {address: sorted(people) for address, people in sorted(claims.items())
            if len(people) > 1}


@dataclass(frozen=True)
class Chunk:
    """A passage of a document as indexed: text to embed, with its heading context."""

    doc_id: str
    ordinal: int
    text: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """A document found for a caller, best passage first."""

    doc_id: str
    title: str
    url: str
    score: float
    snippet: str
    chunk_text: str = ""
    chunk_ordinal: int = 0
    passages: tuple[str, ...] = ()
