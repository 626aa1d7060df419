"""One HTTP policy for every connector, whichever client library sits on top.

`HttpPolicy` owns what every request to a source must respect: timeouts, the TLS trust
(`ca_bundle`), a descriptive User-Agent, a concurrency limit and a request-rate limit per
connector, `Retry-After` on 429/503 (seconds or an HTTP date, capped), jittered exponential
back-off for 5xx and connection errors with bounded attempts, and the translation of failures
into `core.errors` (`SourceUnavailable`, `SourceAuthError`, `SourceForbidden`, `SourceNotFound`,
`CursorExpired`). It counts what it did in `HttpStats` for the sync report.

Client libraries plug in through:
- `PolicySession` (a `requests.Session` whose adapter applies the policy on every hop): give it
  to atlassian-python-api (`Confluence(url, session=...)`), msal (`http_client=...`) and
  google-auth (`google.auth.transport.requests.Request(session)`).
- `PolicyHttp` (an httplib2.Http look-alike: `request(uri, method, body, headers, ...)` returning
  `(httplib2.Response, bytes)`): give it to google-api-python-client (`build(..., http=...)`).

A connector makes one policy and hands its session to whatever client it uses:

    policy = HttpPolicy(name, HttpLimits(concurrency=4, rate=10), ca_bundle=options.ca_bundle)
    confluence = Confluence(url, session=policy.session(), token=token)
    drive = build_from_document(doc, http=PolicyHttp(policy.session(), credentials=creds))
    app = msal.ConfidentialClientApplication(..., http_client=policy.session())
    # and exposes `http_stats` (the policy.stats): each SyncReport then carries its run's "http"

Secrets never reach a message or a log line: headers are never quoted, URLs lose their userinfo
and credential-like query values, response excerpts lose bearer tokens and JWTs. (core/redact.py
is not on main yet; `redact_url`/`redact_text` here can defer to it once it is.)
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import requests
from requests.adapters import HTTPAdapter

from core.errors import (
    CursorExpired,
    SourceAuthError,
    SourceError,
    SourceForbidden,
    SourceNotFound,
    SourceUnavailable,
)

log = logging.getLogger(__name__)

# -- redaction -------------------------------------------------------------------------------
MASK = "***"
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[\w.$\-]*(?:pass|pwd|token|secret|key|auth|sig|credential|session|code)"
    r"[\w.\-]*)=)([^&;#\s]*)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
_SECRET_FIELD = re.compile(
    r"(?i)(\"?(?:access_token|refresh_token|id_token|client_secret|password|assertion)\"?\s*[:=]\s*\"?)"
    r"[^\"&\s,}]+")


def redact_url(url: str) -> str:
    """`url` without userinfo (`https://user:pw@`, `https://TOKEN@`) and with the values of
    credential-like query parameters masked (`access_token=`, `sig=`, `$deltatoken=`, `code=`)."""
    scheme, sep, rest = url.partition("://")
    if sep:
        end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        at = rest[:end].rfind("@")
        if at >= 0:
            rest = MASK + rest[at:]
        url = f"{scheme}://{rest}"
    return _SECRET_PARAM.sub(rf"\1{MASK}", url)


def redact_text(text: str) -> str:
    """Free text (a response excerpt, a library's message) with URLs, bearer/basic credentials,
    JWTs and token fields masked."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _SECRET_PARAM.sub(rf"\1{MASK}", text)  # request lines quote the query alone
    text = _BEARER.sub(rf"\1 {MASK}", text)
    text = _JWT.sub(MASK, text)
    return _SECRET_FIELD.sub(rf"\1{MASK}", text)


class _RedactingFilter(logging.Filter):
    """urllib3 logs each request line (query included) at DEBUG: mask it like our own lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage()), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactingFilter())


# -- configuration and counters --------------------------------------------------------------
@dataclass(frozen=True)
class HttpLimits:
    """The knobs of the policy; one set per connector (its options model builds it)."""

    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 6  # per request, the first one included
    backoff_base: float = 0.5  # seconds; attempt n waits up to base * 2**(n-1), jittered
    backoff_max: float = 60.0
    max_retry_after: float = 300.0  # a Retry-After longer than this ends the request at once
    max_wait_total: float = 900.0  # sleeps (throttle + back-off) allowed for one request
    concurrency: int = 4  # requests in flight at once, per connector
    rate: float = 10.0  # requests per second (token bucket); 0: unlimited
    burst: int = 10

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.concurrency < 1 or self.burst < 1:
            raise ValueError("max_attempts, concurrency and burst must be at least 1")
        if min(self.connect_timeout, self.read_timeout, self.backoff_base, self.backoff_max,
               self.max_retry_after, self.max_wait_total, self.rate) < 0:
            raise ValueError("timeouts, waits and rate cannot be negative")


@dataclass
class HttpStats:
    """What the policy did for one connector; `to_json()` goes into the sync report."""

    requests: int = 0  # attempts sent, retries included
    retries: int = 0
    throttled: int = 0  # 429/503 (and Drive's 403 rate-limit) answers
    throttled_seconds: float = 0.0  # slept because the source said so (Retry-After)
    backoff_seconds: float = 0.0  # slept between retries the policy chose itself
    rate_limited_seconds: float = 0.0  # slept waiting for the request-rate limit
    bytes_received: int = 0
    bytes_sent: int = 0
    failures: int = 0  # requests that ended in an error raised to the connector
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def to_json(self) -> dict[str, int | float]:
        with self._lock:
            return {"requests": self.requests, "retries": self.retries,
                    "throttled": self.throttled,
                    "throttled_seconds": round(self.throttled_seconds, 3),
                    "backoff_seconds": round(self.backoff_seconds, 3),
                    "rate_limited_seconds": round(self.rate_limited_seconds, 3),
                    "bytes_received": self.bytes_received, "bytes_sent": self.bytes_sent,
                    "failures": self.failures}


@dataclass(frozen=True)
class Clock:
    """Time as the policy sees it; tests inject a fake one and read the sleeps it asked for."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    random: Callable[[], float] = random.random


class TokenBucket:
    """`rate` requests per second on average, `burst` at once after a quiet spell."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate, self.capacity, self.clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._stamp = clock.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until there is one; returns the seconds slept."""
        if self.rate <= 0:
            return 0.0
        slept = 0.0
        while True:
            with self._lock:
                now = self.clock.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return slept
                wait = (1.0 - self._tokens) / self.rate
            self.clock.sleep(wait)
            slept += wait


# -- the policy ------------------------------------------------------------------------------
class _Where:
    """ "GET https://host/path?token=***", made only when a message needs it (most requests
    succeed, and redacting every URL was a third of the policy's own cost)."""

    def __init__(self, method: str, url: str) -> None:
        self.method, self.url = method, url

    def __str__(self) -> str:
        return f"{self.method} {redact_url(self.url)}"


_RATE_LIMIT_REASONS = ("rateLimitExceeded", "userRateLimitExceeded")
_CURSOR_WORDS = re.compile(r"(?i)page.?token|cursor|delta.?token|sync.?state|resync")
Send = Callable[[], requests.Response]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clearance")
    except PackageNotFoundError:
        return "0"


class HttpPolicy:
    """The rules every request of one connector goes through (thread-safe; share one per
    connector so that its limits hold across its threads and client libraries)."""

    def __init__(self, connector: str, limits: HttpLimits | None = None, *,
                 ca_bundle: str | None = None, clock: Clock | None = None) -> None:
        self.connector = connector
        self.limits = limits or HttpLimits()
        self.clock = clock or Clock()
        # verify: the configured CA bundle, else the system's trust; never off.
        self.verify: str | bool = ca_bundle or True
        self.user_agent = f"Clearance/{_version()} (+connector {connector})"
        self.stats = HttpStats()
        self._slots = threading.BoundedSemaphore(self.limits.concurrency)
        self._bucket = TokenBucket(self.limits.rate, self.limits.burst, self.clock)

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.limits.connect_timeout, self.limits.read_timeout)

    def session(self, *, raise_errors: bool = True) -> PolicySession:
        return PolicySession(self, raise_errors=raise_errors)

    # -- one request, every attempt ------------------------------------------------------
    def run(self, method: str, url: str, send: Send, *, body_size: int = 0,
            replayable: bool = True) -> requests.Response:
        """Send (and resend) one request under the policy; the last answer is returned, a
        request that cannot get one raises SourceUnavailable."""
        where = _Where(method, url)
        waited = 0.0
        attempts = self.limits.max_attempts if replayable else 1
        for attempt in range(1, attempts + 1):
            limited = self._bucket.acquire()
            response, problem = self._attempt(where, send, body_size, limited)
            if response is not None:
                decision = self._decide(response, attempt)
                if decision is None:
                    return response
                problem, wait, throttled = decision
            else:
                wait, throttled = self._backoff(attempt), False
            if attempt == attempts:
                if response is not None:
                    response.close()
                break
            if throttled and wait > self.limits.max_retry_after:
                self._fail(f"{where}: the source asked to wait {wait:.0f} s, more than the "
                           f"{self.limits.max_retry_after:.0f} s this connector waits")
            if waited + wait > self.limits.max_wait_total:
                self._fail(f"{where}: {problem}; waited {waited:.0f} s, the next wait of "
                           f"{wait:.0f} s passes the {self.limits.max_wait_total:.0f} s budget")
            if response is not None:
                response.close()
            log.info("%s: %s; retry %d in %.1f s", where, problem, attempt, wait)
            self.clock.sleep(wait)
            waited += wait
            self.stats.add(retries=1, **{"throttled_seconds" if throttled else
                                         "backoff_seconds": wait})
        self._fail(f"{where}: {problem} after {attempts} attempt(s)")

    def _attempt(self, where: _Where, send: Send, body_size: int,
                 limited: float) -> tuple[requests.Response | None, str]:
        with self._slots:
            self.stats.add(requests=1, bytes_sent=body_size, rate_limited_seconds=limited)
            try:
                return send(), ""
            except requests.exceptions.SSLError as exc:
                # A certificate the configured trust refuses does not heal by retrying.
                self._fail(f"{where}: TLS verification failed ({_root_cause(exc)}); "
                           f"check the connector's ca_bundle")
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                return None, _transport_problem(exc)
            except requests.RequestException as exc:
                # An invalid URL or header, too many redirects: retrying cannot help, and the
                # library's message may quote a header value or a URL's credentials.
                self.stats.add(failures=1)
                raise SourceError(f"{where}: {type(exc).__name__}") from None

    def _decide(self, response: requests.Response,
                attempt: int) -> tuple[str, float, bool] | None:
        """None: hand the answer over. Else (what went wrong, how long to wait, throttled)."""
        status = response.status_code
        self.stats.add(bytes_received=_size(response))
        if status in (429, 503) or (status == 403 and _rate_limited(response)):
            self.stats.add(throttled=1)
            after = retry_after(response.headers.get("Retry-After"), self.clock.now())
            return f"HTTP {status}", after if after is not None else self._backoff(attempt), True
        if status >= 500 and status not in (501, 505):
            return f"HTTP {status}", self._backoff(attempt), False
        return None

    def _backoff(self, attempt: int) -> float:
        # Full jitter: uniform in [0, base * 2**(attempt-1)], capped: retries spread out.
        ceiling = min(self.limits.backoff_max, self.limits.backoff_base * 2.0 ** (attempt - 1))
        return float(ceiling * self.clock.random())

    def _fail(self, message: str) -> NoReturn:
        self.stats.add(failures=1)
        log.warning("%s", message)
        raise SourceUnavailable(message)

    # -- the error tree ------------------------------------------------------------------
    def check(self, response: requests.Response, *, every_error: bool = False) -> None:
        """Raise the `core.errors` type for 401/403/404/410 and an expired-cursor 400; with
        `every_error`, any other status of 400 or more raises SourceError."""
        status = response.status_code
        if status < 400:
            return
        where = f"{response.request.method} {redact_url(response.url or '')}"
        detail = _error_detail(response)
        message = f"{where}: HTTP {status}{f' ({detail})' if detail else ''}"
        error: type[SourceError] | None = {
            401: SourceAuthError, 403: SourceForbidden, 404: SourceNotFound,
            410: CursorExpired}.get(status)
        if error is None and status == 400 and _CURSOR_WORDS.search(detail):
            error = CursorExpired
        if error is None and every_error:
            error = SourceError
        if error is not None:
            self.stats.add(failures=1)
            raise error(message)


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, math.ceil((when - now).total_seconds()))


def _size(response: requests.Response) -> int:
    # A streamed body is not read here (the caller streams it): count what the server declared.
    if not getattr(response, "_content_consumed", True):
        return int(response.headers.get("Content-Length") or 0)
    return len(response.content or b"")


def _rate_limited(response: requests.Response) -> bool:
    return any(reason in (response.text or "") for reason in _RATE_LIMIT_REASONS)


def _error_detail(response: requests.Response) -> str:
    """A short, secret-free excerpt of an error answer (its JSON error code and message)."""
    try:
        data = json.loads(response.content or b"null")
    except ValueError:
        data = None
    parts: list[str] = []
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("code", "status", "message") if error.get(k)]
        parts += [str(e.get(k)) for e in error.get("errors", []) if isinstance(e, dict)
                  for k in ("reason", "location") if e.get(k)]
    elif isinstance(error, str):
        parts = [error, str(data.get("error_description", ""))]
    text = " ".join(p for p in parts if p) if parts else (response.text or "")[:120]
    return redact_text(" ".join(text.split()))[:200]


def _root_cause(exc: BaseException) -> str:
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = exc.__cause__ or exc.__context__ or next(
            (a for a in exc.args if isinstance(a, BaseException)), None)
        reason = getattr(exc, "reason", None)
        if inner is None and isinstance(reason, BaseException):
            inner = reason
        if inner is None:
            break
        exc = inner
    return type(exc).__name__


def _transport_problem(exc: BaseException) -> str:
    # Library messages quote the URL (query included): name the failure, never the message.
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timeout"
    return f"connection failed ({_root_cause(exc)})"


# -- requests ---------------------------------------------------------------------------------
class PolicyAdapter(HTTPAdapter):
    """Applies the policy to every request (each redirect hop is one request) of a session."""

    def __init__(self, policy: HttpPolicy) -> None:
        super().__init__(pool_connections=4, pool_maxsize=max(4, policy.limits.concurrency))
        self.policy = policy

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: dict[str, str] | None = None) -> requests.Response:
        policy = self.policy
        # The policy's rules win over whatever a library passes (atlassian passes verify=True
        # and its own timeout on every call, which would bypass a configured ca_bundle).
        request.headers["User-Agent"] = policy.user_agent
        body = request.body
        replayable = body is None or isinstance(body, bytes | str)
        size = len(body.encode() if isinstance(body, str) else body) \
            if isinstance(body, bytes | str) else 0

        def once() -> requests.Response:
            response = super(PolicyAdapter, self).send(
                request, stream=stream, timeout=policy.timeout, verify=policy.verify,
                cert=cert, proxies=proxies)
            if not stream:
                _ = response.content  # read now: a reset mid-body is a failed attempt
            return response

        return policy.run(request.method or "GET", request.url or "", once, body_size=size,
                          replayable=replayable)


class PolicySession(requests.Session):
    """A requests.Session under the policy: hand it to atlassian-python-api, msal, google-auth.

    With `raise_errors` (the default) 401/403/404/410 and an expired-cursor 400 raise the
    `core.errors` types; other statuses are returned for the caller (msal reads its 400s).
    The environment is not consulted (no proxies, .netrc or CA override from variables):
    what the connector's configuration says is what applies.
    """

    def __init__(self, policy: HttpPolicy, *, raise_errors: bool = True) -> None:
        super().__init__()
        self.policy = policy
        self.raise_errors = raise_errors
        self.trust_env = False
        self.verify = policy.verify
        self.headers["User-Agent"] = policy.user_agent
        adapter = PolicyAdapter(policy)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        try:
            return super().prepare_request(request)
        except (requests.RequestException, ValueError) as exc:
            # "Invalid ... in header value: 'Bearer <token>\n'": never let it reach a log.
            where = f"{request.method} {redact_url(str(request.url))}"
            raise SourceError(f"{where}: cannot build the request ({type(exc).__name__})") \
                from None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        if self.raise_errors:
            self.policy.check(response)
        return response


# -- httplib2 (google-api-python-client) ------------------------------------------------------
class PolicyHttp:
    """What google-api-python-client calls on its `http` object, over a PolicySession.

    googleapiclient calls `http.request(uri, method, body=..., headers=...)` (and
    `redirections`, `connection_type` exist in httplib2's signature), reads `resp.status`,
    `resp.reason` and lower-cased header keys of the dict-like response, and `close()`.
    With `credentials` (google-auth), each request is authorized by
    `credentials.before_request(...)`, which refreshes the token through the same policy.
    """

    def __init__(self, session: PolicySession, credentials: Any = None) -> None:
        self.session = session
        self.credentials = credentials
        # One google-auth Request for the object's life: its __del__ closes the session it
        # wraps, so one made per call would drop the connection pool after every request.
        self._auth_request: Any = None

    def request(self, uri: str, method: str = "GET", body: bytes | str | None = None,
                headers: Mapping[str, str] | None = None, redirections: int = 5,
                connection_type: Any = None) -> tuple[Any, bytes]:
        import httplib2

        sent = dict(headers or {})
        if self.credentials is not None:
            if self._auth_request is None:
                from google.auth.transport.requests import Request as AuthRequest

                self._auth_request = AuthRequest(self.session)
            self.credentials.before_request(self._auth_request, method, uri, sent)
        response = self.session.request(method, uri, data=body, headers=sent,
                                        allow_redirects=redirections > 0)
        info = {k.lower(): v for k, v in response.headers.items()}
        # requests has already decoded gzip/deflate, as httplib2 would have.
        info.pop("content-encoding", None)
        info["content-length"] = str(len(response.content))
        info["status"] = str(response.status_code)
        answer = httplib2.Response(info)
        answer.reason = response.reason
        return answer, response.content

    def close(self) -> None:
        self.session.close()
