"""Store protocols: chunks with ACL fields, identities, and sync state.

Every backend satisfies the same protocols and passes the same contract tests
(tests/contract/store_contract.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from core import principals as P
from core.acl import Acl, AclFilter
from core.models import Alias, Chunk, Document, Membership

# Per-field BM25 weights of the lexical query, the same in every store (SQLite FTS5 bm25()
# column weights, OpenSearch multi_match boosts) and in the benchmarks that replay it.
LEXICAL_WEIGHTS: tuple[tuple[str, float], ...] = (("title", 3.0), ("headings", 2.0),
                                                  ("body", 1.0))


# -- the stored ACL key -----------------------------------------------------------------------
# Stored ACLs are per connector: the key is "<connector>|<Acl.key()>" and the stored principals
# are scoped by the connector (core.principals.scope), so a caller's per-connector principals
# (AclFilter.terms) match only that connector's documents. A key written before scoping differs
# from every current key (see acl_key_of), so the next sync rewrites it without re-embedding;
# until then it matches no caller.
def connector_of(doc_id: str) -> str:
    return doc_id.split(":", 1)[0]


def stored_acl_key(connector: str, acl: Acl) -> str:
    return f"{connector}{P.SCOPE_SEPARATOR}{acl.key()}"


def acl_key_of(doc_id: str, stored: str) -> str:
    """The document's `Acl.key()`; a row not scoped to its connector (written before scoping)
    yields a key no current ACL has, so the next sync rewrites it."""
    prefix = f"{connector_of(doc_id)}{P.SCOPE_SEPARATOR}"
    return stored[len(prefix):] if stored.startswith(prefix) else f"unscoped:{stored}"


def stored_acl(doc_id: str, stored: str) -> Acl:
    key = acl_key_of(doc_id, stored)
    if key.startswith("unscoped:"):
        return Acl.nobody("stored before per-source scoping: the next sync rewrites it")
    try:
        return Acl.from_json(json.loads(key))
    except json.JSONDecodeError:
        return Acl.nobody("malformed stored ACL")


@dataclass(frozen=True)
class DocState:
    content_hash: str
    acl_key: str
    embedder: str


@dataclass(frozen=True)
class StoredDocument:
    doc_id: str
    connector: str
    title: str
    url: str
    content_hash: str
    acl: Acl
    embedder: str
    chunks: int
    updated: str | None
    acl_confirmed_at: float


@dataclass(frozen=True)
class ChunkHit:
    chunk_id: int
    doc_id: str
    ordinal: int
    score: float
    text: str
    title: str
    url: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConnectorStats:
    documents: int
    chunks: int
    readable_by_nobody: int
    oldest_acl_confirmed_at: float | None


class ChunkStore(Protocol):
    def batch(self) -> AbstractContextManager[None]:
        """Group writes (one page of a sync); committed together at exit."""
        ...

    def document_states(self, doc_ids: Sequence[str]) -> dict[str, DocState]: ...

    def upsert(self, doc: Document, chunks: Sequence[Chunk],
               vectors: npt.NDArray[np.float32], embedder: str, run_id: str) -> None: ...

    def update_acl(self, doc_id: str, acl: Acl, run_id: str | None) -> bool:
        """Replace a document's ACL without touching its content; False if not indexed."""
        ...

    def mark_seen(self, doc_ids: Sequence[str], run_id: str | None) -> None:
        """Record that a sync saw these documents with an unchanged ACL (confirmed now).

        `run_id` None (a permission pass) confirms the ACL without counting as a full-sync sighting.
        """
        ...

    def delete_unseen(self, connector: str, run_id: str) -> list[str]:
        """Delete the connector's documents that sync `run_id` did not see; return their ids."""
        ...

    def delete(self, doc_ids: Sequence[str]) -> None: ...

    def doc_ids(self, connector: str) -> list[str]:
        """Every indexed document id of a connector, sorted."""
        ...

    def connector_names(self) -> list[str]:
        """Every connector name that has documents in the index, sorted (finds connectors
        removed from or renamed in the configuration)."""
        ...

    def lexical(self, query: str, acl: AclFilter, limit: int) -> list[ChunkHit]: ...

    def lexical_ceiling(self, query: str) -> float | None:
        """An upper bound of every score `lexical` can give for `query`, whoever asks (0.0
        when no term is scored; None when the store cannot tell): retriever.hybrid divides
        BM25 by it, so a weak lexical match stays weak. Drawn from the whole index's term
        statistics like the scores, so never shown."""
        ...

    def dense(self, vector: npt.NDArray[np.float32], acl: AclFilter,
              limit: int) -> list[ChunkHit]: ...

    def document(self, doc_id: str) -> StoredDocument | None: ...

    def stats(self, connector: str) -> ConnectorStats: ...

    def snapshot(self) -> dict[str, Any]:
        """A deterministic dump of everything indexed (tests compare two of them)."""
        ...


class StateStore(Protocol):
    def get_state(self, key: str) -> Any | None: ...

    def set_state(self, key: str, value: Any) -> None: ...

    def delete_state(self, key: str) -> None: ...


class IdentityStoreProtocol(Protocol):
    def replace_identities(self, source: str, memberships: Iterable[Membership],
                           aliases: Iterable[Alias]) -> None: ...

    def groups_of(self, members: Iterable[str],
                  source: str | None = None) -> list[Membership]: ...

    def aliases_of(self, email: str, source: str | None = None) -> list[Alias]: ...

    def identity_sources(self) -> list[str]: ...

    def identity_version(self) -> int: ...
