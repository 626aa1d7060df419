"""The connector protocol: documents page by page with checkpoints, group memberships, and a
permission-only pass that reads ACLs without content.

A connector never writes to the index; the sync pipeline consumes what it yields.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.acl import Acl
from core.models import Alias, Document, Membership


@dataclass(frozen=True)
class Failure:
    """Something the connector could not read: one document, or an ACL for a subtree."""

    source_id: str
    reason: str
    # When the document's content failed but its ACL is known, the pipeline keeps the last
    # indexed content under the *current* ACL instead of deleting it.
    doc_id: str | None = None
    acl: Acl | None = None


@dataclass(frozen=True)
class DocumentPage:
    documents: tuple[Document, ...]
    failures: tuple[Failure, ...] = ()
    # Opaque resume point *after* this page; None on the last page.
    checkpoint: str | None = None


@dataclass(frozen=True)
class PermissionPage:
    acls: tuple[tuple[str, Acl], ...]  # (doc_id, acl)
    failures: tuple[Failure, ...] = ()
    checkpoint: str | None = None


@dataclass(frozen=True)
class IdentitySnapshot:
    """Every group membership and alias the source knows, replacing the previous snapshot."""

    memberships: tuple[Membership, ...] = ()
    aliases: tuple[Alias, ...] = ()
    failures: tuple[Failure, ...] = field(default=())


@runtime_checkable
class Connector(Protocol):
    name: str
    kind: str

    def documents(self, checkpoint: str | None = None) -> Iterator[DocumentPage]:
        """Every document in scope, in a stable order, resuming after `checkpoint`."""
        ...

    def permissions(self, checkpoint: str | None = None) -> Iterator[PermissionPage]:
        """Every document's current ACL without fetching content (the fast permission pass)."""
        ...

    def identities(self) -> IdentitySnapshot:
        """Group memberships (nested allowed) and known aliases of people."""
        ...


def doc_ids(pages: Iterable[DocumentPage]) -> list[str]:
    return [d.doc_id for p in pages for d in p.documents]
