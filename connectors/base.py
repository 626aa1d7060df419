"""The connector protocol: documents page by page with checkpoints, group memberships, and a
permission-only pass that reads ACLs without content.

A connector never writes to the index; the sync pipeline consumes what it yields.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from core.acl import Acl
from core.models import Alias, Document, Membership

# What a failure covers: one document's content; a subtree's ACL (its documents are listed,
# readable by nobody); a subtree that could not be listed at all; the source's identities.
Scope = Literal["document", "acl", "listing", "identities"]


@dataclass(frozen=True)
class Failure:
    """Something the connector could not read: one document, an ACL for a subtree, a folder
    listing, or the source's group memberships and aliases."""

    source_id: str
    reason: str
    # The document whose content failed (scope "document"), with the ACL the source has now.
    doc_id: str | None = None
    acl: Acl | None = None
    # True when trying again may succeed (I/O error, timeout, a parser crash): the pipeline
    # keeps the last good content for a bounded number of runs. False (the file is empty, has
    # no text, is not a document any more): the old text leaves the index at once.
    transient: bool = False
    scope: Scope = "document"
    # scope "listing": doc ids starting with this could not be listed; the pipeline keeps their
    # indexed copies, readable by nobody, instead of deleting them as vanished.
    unlisted_prefix: str | None = None

    @property
    def partial(self) -> bool:
        """More than one document is affected: the sync as a whole is incomplete."""
        return self.scope != "document"


@dataclass(frozen=True)
class DocumentPage:
    documents: tuple[Document, ...]
    failures: tuple[Failure, ...] = ()
    # Opaque resume point *after* this page; None on the last page.
    checkpoint: str | None = None
    # Things an administrator should know that grant or deny nothing (a near-miss file name).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PermissionPage:
    acls: tuple[tuple[str, Acl], ...]  # (doc_id, acl)
    failures: tuple[Failure, ...] = ()
    checkpoint: str | None = None
    warnings: tuple[str, ...] = ()


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
    # True when documents()/permissions() list *everything* in scope on every run (a folder
    # walk): an incremental sync may then delete what is not listed. Change-feed sources are
    # False and report removals through their feed.
    complete_listing: bool

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
