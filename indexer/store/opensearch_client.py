"""The OpenSearch connection: client construction (auth, TLS), retries, error translation, bulk.

Everything that can raise an opensearch-py exception goes through `Cluster.call` or
`Cluster.bulk`, which retry what is transient (429, 502-504, timeouts, reset connections) with
bounded exponential back-off and raise `core.errors.StoreError` for the rest, so callers never
catch opensearch-py's exceptions. A refused connection or a failed TLS handshake is a wrong
address, not a hiccup: it fails at once. A missing index (cluster restarted empty, index
deleted) is `core.errors.IndexMissing`, with a line that says what happened and what to do.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import requests
from opensearchpy import OpenSearch, RequestsHttpConnection
from opensearchpy.exceptions import (
    ConnectionError as OsConnectionError,
)
from opensearchpy.exceptions import (
    ConnectionTimeout,
    ImproperlyConfigured,
    OpenSearchException,
    TransportError,
)

from core.errors import ConfigError, IndexMissing, StoreError
from core.redact import redact_text
from core.settings import StoreSettings

log = logging.getLogger("clearance.store.opensearch")

T = TypeVar("T")
RETRY_STATUS = frozenset({429, 502, 503, 504})
REQUEST_TIMEOUT = 30.0
SCAN_PAGE = 1000  # hits per search_after page
BLOCKED = "cluster_block_exception"
READ_ONLY = "index is read-only, a reindex may be running"
NOT_FOUND = "index_not_found_exception"
_ALIAS_MISSING = re.compile(r"alias \[(.+)\] missing")
_VERSIONED = re.compile(r"-v\d+$")


def make_client(settings: StoreSettings, environ: Mapping[str, str]) -> OpenSearch:
    """An OpenSearch client for `[store]`: basic auth, or SigV4 when `aws_region` is set; TLS
    verified against `ca_bundle` (or the system CAs). No request is sent here."""
    if not settings.url:
        raise ConfigError('[store] url is required when kind = "opensearch"')
    if settings.aws_region and (settings.username or settings.password_env):
        raise ConfigError("[store] use either aws_region (SigV4) or username/password_env, "
                          "not both")
    options: dict[str, Any] = {
        "hosts": [settings.url],
        "connection_class": RequestsHttpConnection,
        # Cluster.call retries with back-off; the transport's own immediate retries would
        # multiply the attempts and hammer a throttling cluster.
        "max_retries": 0,
        "timeout": REQUEST_TIMEOUT,
        "http_compress": True,
    }
    if settings.url.startswith("https://"):
        options.update(use_ssl=True, verify_certs=True, ssl_show_warn=True)
        if settings.ca_bundle:
            bundle = Path(settings.ca_bundle).expanduser()
            if not bundle.is_file():
                raise ConfigError(f"[store] ca_bundle not found: {bundle}")
            options["ca_certs"] = str(bundle)
            options["connection_class"] = PinnedCaConnection
    elif settings.ca_bundle:
        raise ConfigError("[store] ca_bundle is set but url is not https://")
    if settings.aws_region:
        options["http_auth"] = _sigv4_auth(settings.aws_region, environ)
        # Signatures of gzip-compressed bodies are a known source of 403s behind AWS front ends.
        options["http_compress"] = False
    elif settings.username or settings.password_env:
        options["http_auth"] = (settings.username or "", _password(settings, environ))
    try:
        return OpenSearch(**options)
    except (ImproperlyConfigured, ValueError) as exc:
        raise ConfigError("[store] cannot configure the OpenSearch client: "
                          f"{redact_text(str(exc), [settings.url])}") from None


class _PinnedCaSession(requests.Session):
    """requests swaps a session's CA for REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE on every request
    that does not pass `verify` itself (opensearch-py does not): keep the configured bundle."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        merged: dict[str, Any] = super().merge_environment_settings(url, proxies, stream,
                                                                    verify, cert)
        merged["verify"] = self.verify
        return merged


class PinnedCaConnection(RequestsHttpConnection):
    """The requests connection, verifying TLS against `[store] ca_bundle` and nothing else."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.__class__ = _PinnedCaSession  # same state, one method overridden


def _password(settings: StoreSettings, environ: Mapping[str, str]) -> str:
    if not settings.username:
        raise ConfigError("[store] password_env is set but username is not")
    if not settings.password_env:
        raise ConfigError("[store] username needs password_env (the variable holding the "
                          "password)")
    password = environ.get(settings.password_env)
    if not password:
        raise ConfigError(f"[store] environment variable {settings.password_env} "
                          "(password_env) is not set")
    return password


def _sigv4_auth(region: str, environ: Mapping[str, str]) -> Any:
    """SigV4 for Amazon OpenSearch Service (service "es"). Serverless would sign for "aoss",
    but it offers no index aliases or explicit `_refresh`, which this store relies on."""
    import boto3  # type: ignore[import-untyped]
    from opensearchpy import AWSV4SignerAuth

    session = boto3.Session(
        aws_access_key_id=environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=environ.get("AWS_SESSION_TOKEN"),
        region_name=region,
    )
    # Without keys in the environment, boto3's default chain (profile, IRSA, instance role).
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError("[store] aws_region is set but no AWS credentials were found "
                          "(environment, profile or instance role)")
    return AWSV4SignerAuth(credentials, region, "es")


# -- calls, retries, errors -------------------------------------------------------------------
@dataclass(frozen=True)
class Backoff:
    """Bounded exponential back-off: `attempts` tries in all, waits base * 2^n capped at `cap`."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * (2 ** attempt)))


def describe(exc: OpenSearchException, where: str = "the cluster") -> str:
    """One short line: never a urllib3 repr, never a URL's credentials (`where` has none)."""
    if isinstance(exc, OsConnectionError):
        return f"cannot connect to {where}: {_connection_problem(exc)[0]}"
    if isinstance(exc, TransportError):
        reason = _reason(exc.info) or _short(exc.error) or _phrase(exc.status_code)
        if exc.status_code == 403 and BLOCKED in str(exc.error):
            return f"{READ_ONLY}: {reason}"
        if exc.status_code in (401, 403):
            return f"the cluster refused the credentials ({exc.status_code}): {reason}"
        return f"{exc.status_code} {reason}"
    return _short(str(exc)) or type(exc).__name__


def _phrase(status: Any) -> str:
    try:
        return HTTPStatus(int(status)).phrase.lower()
    except (TypeError, ValueError):
        return f"status {status}"


def _short(text: Any) -> str:
    """A server's error text if it is a short plain line (an HTML page or a dump is not)."""
    line = str(text or "").strip()
    if not line or "\n" in line or "<" in line or len(line) > 300:
        return ""
    return line


def _reason(info: Any) -> str | None:
    if isinstance(info, dict):
        error = info.get("error")
        if isinstance(error, dict):
            root = error.get("root_cause") or [error]
            first = root[0] if isinstance(root, list) and root else error
            if isinstance(first, dict):
                return f"{first.get('type')}: {first.get('reason')}"
        if isinstance(error, str):
            return _short(error) or None
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: requests -> urllib3 MaxRetryError.reason -> OSError."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (current.__cause__, current.__context__, getattr(current, "reason", None),
                    getattr(current, "info", None), *current.args):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _connection_problem(exc: OsConnectionError) -> tuple[str, bool]:
    """(what went wrong, worth retrying): only timeouts and dropped connections are."""
    causes = list(_causes(exc))
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    if tls is not None:
        return f"TLS handshake failed ({_tls_reason(tls)})", False
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused", False
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "host name not found", False
    if isinstance(exc, ConnectionTimeout) or any(isinstance(c, TimeoutError) for c in causes):
        return "timed out", True
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "connection reset", True
    return "connection lost", True


def _tls_reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    reason = str(error.reason or "").replace("_", " ").lower()
    if reason == "wrong version number":
        return "wrong version number: is the cluster plain http?"
    return reason or "unknown reason"


def _transient(exc: OpenSearchException) -> bool:
    if isinstance(exc, OsConnectionError):
        return _connection_problem(exc)[1]
    return isinstance(exc, TransportError) and exc.status_code in RETRY_STATUS


def missing_index(exc: OpenSearchException) -> str | None:
    """The index or alias a 404 says does not exist, else None."""
    if not isinstance(exc, TransportError) or exc.status_code != 404:
        return None
    if exc.error == NOT_FOUND:
        info = exc.info.get("error") if isinstance(exc.info, dict) else None
        index = info.get("index") if isinstance(info, dict) else None
        return str(index or "?")
    found = _ALIAS_MISSING.search(str(exc.error))
    return found.group(1) if found else None


def missing_message(index: str) -> str:
    """What a missing index means, named by its role in the store (its name's suffix)."""
    name = _VERSIONED.sub("", index)
    if name.endswith("-identities"):
        return (f"identity store {name} is missing (cluster restarted empty or index deleted): "
                "every search fails closed until `clearance sync --mode groups` (or a full "
                "sync) rebuilds it")
    if name.endswith("-state"):
        return (f"sync state {name} is missing (cluster restarted empty or index deleted): "
                "the next sync rebuilds it")
    return (f"index {name} is missing (cluster restarted empty or index deleted): the next "
            "sync rebuilds it")


def _address(client: OpenSearch) -> str:
    """scheme://host:port of the first node: what messages name (no credentials)."""
    hosts = getattr(client.transport, "hosts", None) or [{}]
    host = hosts[0] if isinstance(hosts[0], dict) else {}
    scheme = "https" if host.get("use_ssl") or host.get("scheme") == "https" else "http"
    return f"{scheme}://{host.get('host', 'localhost')}:{host.get('port', 9200)}"


@dataclass
class Cluster:
    """One client plus the retry policy; the only place opensearch-py exceptions are caught."""

    client: OpenSearch
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    where: str = ""
    lost: bool = False  # set when an index was found missing; the store's next sync rebuilds

    def __post_init__(self) -> None:
        if not self.where:
            self.where = _address(self.client)

    def call(self, what: str, fn: Callable[[], T], *, retry: bool = True) -> T:
        attempts = self.backoff.attempts if retry else 1
        for attempt in range(attempts):
            try:
                return fn()
            except OpenSearchException as exc:
                gone = missing_index(exc)
                if gone is not None:
                    raise self.missing(gone) from exc
                if attempt + 1 < attempts and _transient(exc):
                    self._wait(what, attempt, redact_text(describe(exc, self.where)))
                    continue
                message = f"OpenSearch {what} failed: {describe(exc, self.where)}"
                raise StoreError(redact_text(message)) from exc
        raise AssertionError("unreachable")

    def missing(self, index: str) -> IndexMissing:
        """The error for a lost index; remembered, so that the store's next sync rebuilds."""
        self.lost = True
        return IndexMissing(missing_message(index), index)

    def require(self, index: str) -> None:
        """A write to a concrete index would create it, dynamically mapped: check first (the
        deploy README's `action.auto_create_index` closes the remaining race)."""
        if not self.call("index lookup", partial(self.client.indices.exists, index=index)):
            raise self.missing(index)

    def _wait(self, what: str, attempt: int, why: str) -> None:
        delay = self.backoff.delay(attempt)
        log.warning("opensearch.retry", extra={"request": what, "attempt": attempt + 1,
                                               "delay": delay, "reason": why})
        self.sleep(delay)

    def scan(self, index: str, query: dict[str, Any], sort: list[dict[str, str]],
             source: list[str] | bool) -> Iterator[dict[str, Any]]:
        """Every hit of `query`, in `sort` order (a unique key), paged with search_after."""
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": SCAN_PAGE, "query": query, "sort": sort,
                                    "_source": source}
            if after is not None:
                body["search_after"] = after
            hits = self.call("scan", partial(self.client.search, index=index,
                                             body=body))["hits"]["hits"]
            yield from hits
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    def send(self, actions: Sequence[BulkAction], per_request: int) -> dict[str, str]:
        """`bulk` in requests of at most `per_request` actions."""
        failed: dict[str, str] = {}
        for start in range(0, len(actions), per_request):
            failed.update(self.bulk(actions[start:start + per_request]))
        return failed

    def bulk(self, actions: Sequence[BulkAction]) -> dict[str, str]:
        """Send actions in one `_bulk`, retrying items rejected with 429/5xx; return
        {doc_id: reason} for items that failed for good (the caller names them)."""
        pending = list(actions)
        failed: dict[str, str] = {}
        for attempt in range(self.backoff.attempts):
            lines: list[dict[str, Any]] = []
            for action in pending:
                lines.extend(action.lines())
            response = self.call("bulk", partial(self.client.bulk, body=lines))
            items = response.get("items", [])
            if len(items) != len(pending):
                raise StoreError(f"OpenSearch bulk answered {len(items)} items for "
                                 f"{len(pending)} actions")
            again: list[BulkAction] = []
            reasons: list[str] = []
            for action, item in zip(pending, items, strict=True):
                gone = missing_index_in(item)
                if gone is not None:  # require_alias: the write created nothing; stop here
                    raise self.missing(gone)
                outcome = action.outcome(item)
                if outcome is None:
                    continue
                status, reason = outcome
                if status in RETRY_STATUS and attempt + 1 < self.backoff.attempts:
                    again.append(action)
                    reasons.append(reason)
                else:
                    failed.setdefault(action.doc_id, reason)
            if not again:
                return failed
            self._wait("bulk", attempt, f"{len(again)} items: {reasons[0]}")
            pending = again
        return failed


def missing_index_in(item: dict[str, Any]) -> str | None:
    """The index a bulk item (or an `_mget` doc) could not find, else None."""
    result = next(iter(item.values()), {}) if "_id" not in item else item
    error = result.get("error") if isinstance(result, dict) else None
    if isinstance(error, dict) and error.get("type") == NOT_FOUND:
        return str(error.get("index") or result.get("_index") or "?")
    return None


@dataclass(frozen=True)
class BulkAction:
    """One bulk item: `op` on `_id` in `index`, for document `doc_id` (the id errors name)."""

    op: str  # index | update | delete
    index: str
    id: str
    doc_id: str
    source: dict[str, Any] | None = None
    missing_ok: bool = False  # an update of a record that is gone is not an error (mark_seen)
    # The write must go through an alias: a deleted index is an error, never re-created by
    # the write itself with a dynamic mapping (ACL fields as analysed text). Deletes never
    # create an index.
    require_alias: bool = False

    def lines(self) -> list[dict[str, Any]]:
        meta: dict[str, Any] = {"_index": self.index, "_id": self.id}
        if self.require_alias and self.op != "delete":
            meta["require_alias"] = True
        head = {self.op: meta}
        if self.op == "delete":
            return [head]
        body = {"doc": self.source} if self.op == "update" else self.source
        return [head, body or {}]

    def outcome(self, item: dict[str, Any]) -> tuple[int, str] | None:
        """None when the item succeeded (or failed in a way that is fine), else (status, why)."""
        result: dict[str, Any] = next(iter(item.values()), {})
        status = int(result.get("status", 500))
        if status < 300:
            return None
        error = result.get("error")
        if status == 404 and (self.op == "delete" or self.missing_ok) and (
                not isinstance(error, dict) or error.get("type") != NOT_FOUND):
            return None
        if not isinstance(error, dict):
            return status, f"status {status}"
        reason = f"{error.get('type')}: {error.get('reason')}"
        if error.get("type") == BLOCKED:
            reason += f" ({READ_ONLY})"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause['reason']})"
        return status, reason
