"""The connector protocol (v2): three kinds of pass, each paged, resumable and scheduled on its
own, a small capabilities model, typed options and a typed factory.

- content:     pages of operations (upsert a document, delete a document id, ACL-only update),
               each with the cursor to resume from after it. Called with no cursor, a connector
               enumerates everything in scope; called with the cursor its last content page
               returned, a connector with a change feed yields only what changed since.
- permissions: every document's current ACL without reading content (no re-embedding).
- identities:  the source's group memberships and aliases, paged; the pipeline swaps the
               source's snapshot only when every page arrived without a failure.

A cursor is opaque to the pipeline (a delta link, a page token, a CQL timestamp). The pipeline
commits it only after the page's writes are durable; one the source no longer accepts raises
`core.errors.CursorExpired`. A connector never writes to the index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.acl import Acl
from core.errors import ConfigError
from core.models import Alias, Document, Membership

if TYPE_CHECKING:
    from connectors.http import HttpPolicy

PassKind = Literal["content", "permissions", "identities"]
PASSES: tuple[PassKind, ...] = ("content", "permissions", "identities")

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


class Capabilities(BaseModel):
    """What a connector can do; the pipeline plans its passes from this."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passes: frozenset[PassKind] = frozenset(PASSES)
    # content(cursor) with the cursor of the last content page yields only the changes since
    # (and deletions as operations). Without a feed every content pass is an enumeration.
    change_feed: bool = False
    # An enumeration lists *everything* in scope (a folder walk): what it does not list is gone.
    complete_listing: bool = False
    # The identity pass is cheap (two local files): content and permission passes refresh it
    # first. Otherwise identities follow their own schedule (`group_schedule`).
    identities_each_pass: bool = False


# -- content operations -------------------------------------------------------------------------
@dataclass(frozen=True)
class Upsert:
    document: Document


@dataclass(frozen=True)
class Delete:
    doc_id: str


@dataclass(frozen=True)
class AclUpdate:
    """The document's ACL changed and its content did not (no content read, no re-embedding)."""

    doc_id: str
    acl: Acl


Operation = Upsert | Delete | AclUpdate


@dataclass(frozen=True)
class ContentPage:
    operations: tuple[Operation, ...] = ()
    failures: tuple[Failure, ...] = ()
    # Opaque resume point *after* this page. On the last page: where the next incremental pass
    # starts (a delta link); None when the source has no change feed.
    cursor: str | None = None
    # Things an administrator should know that grant or deny nothing (a near-miss file name).
    warnings: tuple[str, ...] = ()

    @property
    def documents(self) -> tuple[Document, ...]:
        return tuple(op.document for op in self.operations if isinstance(op, Upsert))

    @property
    def checkpoint(self) -> str | None:
        return self.cursor


@dataclass(frozen=True)
class PermissionPage:
    acls: tuple[tuple[str, Acl], ...]  # (doc_id, acl)
    failures: tuple[Failure, ...] = ()
    cursor: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def checkpoint(self) -> str | None:
        return self.cursor


@dataclass(frozen=True)
class IdentityPage:
    """Part of the source's memberships and aliases; the pages of one pass make its snapshot."""

    memberships: tuple[Membership, ...] = ()
    aliases: tuple[Alias, ...] = ()
    failures: tuple[Failure, ...] = ()
    cursor: str | None = None


@runtime_checkable
class Connector(Protocol):
    name: str
    kind: str
    capabilities: Capabilities

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        """Enumerate (no cursor) or follow the change feed / resume (a cursor it returned)."""
        ...

    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        """Every document's current ACL without fetching content, resuming after `cursor`."""
        ...

    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        """Group memberships (nested allowed) and known aliases of people, page by page."""
        ...


# -- options and factory ------------------------------------------------------------------------
_SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey", "private_key")


def _secret_like(key: str) -> bool:
    low = key.lower()
    return not low.endswith("_env") and any(word in low for word in _SECRET_WORDS)


class ConnectorOptions(BaseModel):
    """A connector kind's own keys of `[[connectors]]` (the shared ones, name, kind and the
    schedules, are core.settings.ConnectorSettings). Unknown keys are an error; secrets are
    named by `<key>_env` (an environment variable), never written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        inline = sorted(k for k in cls.model_fields if _secret_like(k))
        if inline:  # a programming error: caught by the first import, in every test run
            raise TypeError(f"{cls.__name__}.{inline[0]}: secrets are read through '*_env' "
                            "option names only")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            inline = sorted(k for k in data if isinstance(k, str) and _secret_like(k))
            if inline:
                raise ValueError(f"{inline[0]!r} looks like a secret: put it in an environment "
                                 f"variable and name that variable with '{inline[0]}_env'")
        return data


class HttpConnectorOptions(ConnectorOptions):
    """Options every HTTP connector shares: trust, and the limits of the one HTTP policy."""

    ca_bundle: str | None = None  # PEM file of the CA that signs the source's certificate
    max_concurrency: int = Field(default=4, ge=1, le=64)  # requests in flight at once
    requests_per_second: float = Field(default=10.0, ge=0.0)  # 0: no rate limit
    max_retry_after_seconds: float = Field(default=300.0, gt=0.0)  # a longer wait: give up
    timeout_seconds: float = Field(default=60.0, gt=0.0)  # read timeout per request

    def http_policy(self, connector: str) -> HttpPolicy:
        """The connector's one HTTP policy, with these limits and this trust."""
        from connectors.http import HttpLimits, HttpPolicy

        limits = HttpLimits(read_timeout=self.timeout_seconds, concurrency=self.max_concurrency,
                            rate=self.requests_per_second,
                            burst=max(1, math.ceil(self.requests_per_second)),
                            max_retry_after=self.max_retry_after_seconds)
        return HttpPolicy(connector, limits, ca_bundle=self.ca_bundle)


class ConnectorFactory(Protocol):
    """What the `clearance.connectors` entry point of a kind names (usually the class)."""

    @property
    def options_model(self) -> type[ConnectorOptions]: ...

    def from_options(self, name: str, options: ConnectorOptions, base_dir: Path) -> Connector:
        ...


def parse_options(factory: ConnectorFactory, name: str, kind: str,
                  raw: dict[str, Any]) -> ConnectorOptions:
    """The kind's options model from the `[[connectors]]` keys; ConfigError in one line."""
    try:
        return factory.options_model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise ConfigError(f"connector {name!r}: unknown key {key!r} for kind {kind!r}"
                              ) from None
        if first["type"] == "missing":
            raise ConfigError(f"connector {name!r}: {key!r} is required for kind {kind!r}"
                              ) from None
        msg = str(first["msg"]).removeprefix("Value error, ")
        where = f"{key!r}: " if key else ""
        raise ConfigError(f"connector {name!r}: {where}{msg}") from None


# -- the v1 protocol, for wrappers written against it -------------------------------------------
@dataclass(frozen=True)
class DocumentPage:
    documents: tuple[Document, ...]
    failures: tuple[Failure, ...] = ()
    checkpoint: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentitySnapshot:
    """v1: every group membership and alias at once."""

    memberships: tuple[Membership, ...] = ()
    aliases: tuple[Alias, ...] = ()
    failures: tuple[Failure, ...] = ()


class _V1Adapter:
    """A v1 connector (documents()/permissions()/identities() -> snapshot) seen as v2."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.kind: str = inner.kind
        self.capabilities = Capabilities(
            complete_listing=bool(getattr(inner, "complete_listing", False)),
            identities_each_pass=True)

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        for page in self.inner.documents(cursor):
            ops: tuple[Operation, ...] = tuple(Upsert(d) for d in page.documents)
            yield ContentPage(ops, tuple(page.failures), page.checkpoint, tuple(page.warnings))

    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        for page in self.inner.permissions(cursor):
            yield PermissionPage(tuple(page.acls), tuple(page.failures), page.checkpoint,
                                 tuple(page.warnings))

    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        got = self.inner.identities()
        if isinstance(got, IdentitySnapshot):
            yield IdentityPage(got.memberships, got.aliases, got.failures)
        else:
            yield from got


def as_connector(source: Any) -> Connector:
    """A v2 connector as is; an object with the v1 methods wrapped."""
    if hasattr(source, "content") and hasattr(source, "capabilities"):
        connector: Connector = source
        return connector
    return _V1Adapter(source)


def doc_ids(pages: Iterable[ContentPage | DocumentPage]) -> list[str]:
    return [d.doc_id for p in pages for d in p.documents]


@dataclass
class PassNotes:
    """What one pass of a SaaS connector reports besides its pages: failures, and warnings said
    once each (keyed), handed to the next page by `drain`."""

    warned: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.warnings.append(message)

    def drain(self) -> tuple[tuple[Failure, ...], tuple[str, ...]]:
        out = (tuple(self.failures), tuple(self.warnings))
        self.failures, self.warnings = [], []
        return out
