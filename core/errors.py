"""One exception tree for the product; library errors are translated at the boundary."""

from __future__ import annotations


class ClearanceError(Exception):
    """Root of every error Clearance raises on purpose."""

    exit_code = 1


class ConfigError(ClearanceError):
    """The configuration file, a flag or the environment is wrong: a user mistake (exit 2)."""

    exit_code = 2


class UsageError(ClearanceError):
    """A command was called the wrong way (exit 2)."""

    exit_code = 2


class SourceError(ClearanceError):
    """A connector could not read its source."""


class SourceUnavailable(SourceError):
    """The source is down or throttling past the retry budget (transient)."""


class CursorExpired(SourceError):
    """A change-feed or resume cursor the source no longer accepts (Graph 410 resyncRequired,
    an invalid Drive page token, a cursor of an older format): the pipeline re-enumerates."""


class MalformedDocument(SourceError):
    """One document (or one ACL file) could not be read; the sync skips and reports it."""


class SourceAuthError(SourceError):
    """The source refused the connector's credentials (HTTP 401): a configuration problem."""


class SourceForbidden(SourceError):
    """The connector's identity may not read this resource (HTTP 403)."""


class SourceNotFound(SourceError):
    """The resource is not at the source (HTTP 404): deleted, moved, or never there."""


class SyncError(ClearanceError):
    """A sync failed as a whole (error budget spent, store unwritable)."""


class SyncLocked(SyncError):
    """Another sync of the same connector holds the lock."""


class StoreError(ClearanceError):
    """The index store failed."""


class IndexMissing(StoreError):
    """An index the store needs is gone (cluster restarted empty, index deleted): fail closed."""

    def __init__(self, message: str, index: str = "") -> None:
        super().__init__(message)
        self.index = index


class EmbedderUnavailable(ClearanceError):
    """The embedding model cannot be loaded (package missing, files damaged)."""


class UnknownDocument(ClearanceError):
    """A document id that the index does not hold."""


class ProviderError(ClearanceError):
    """The LLM provider failed (throttled past its retries, model error, unreachable): exit 1,
    one line, no answer."""
