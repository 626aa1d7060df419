"""The surface's defences that are not about tokens: server-side sessions, CSRF tokens, per-person
rate limits, request-size limits and security headers."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_SESSIONS = 100_000
MAX_PENDING = 10_000
PENDING_SECONDS = 600.0  # a sign-in started must come back from the issuer within this


@dataclass
class Session:
    email: str
    csrf: str
    expires: float
    dev: bool = False  # signed in by the development login
    groups: tuple[str, ...] = ()
    created: float = field(default_factory=time.time)


class Sessions:
    """Session id (a random 256-bit cookie value) -> Session, in memory, bounded, locked.

    Server-side: logout and expiry end a session for good (a copied cookie dies with it)."""

    def __init__(self, lifetime_seconds: float) -> None:
        self.lifetime = lifetime_seconds
        self._lock = threading.Lock()
        self._by_id: OrderedDict[str, Session] = OrderedDict()
        self._pending: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def create(self, email: str, *, dev: bool = False, groups: tuple[str, ...] = ()) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._by_id[sid] = Session(email, secrets.token_urlsafe(32),
                                       time.time() + self.lifetime, dev, groups)
            while len(self._by_id) > MAX_SESSIONS:
                self._by_id.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            found = self._by_id.get(sid)
            if found is not None and found.expires <= time.time():
                del self._by_id[sid]
                return None
            return found

    def end(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_id.pop(sid, None)

    def begin_sign_in(self, state: str, data: dict[str, str]) -> None:
        with self._lock:
            self._pending[state] = (time.time() + PENDING_SECONDS, data)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)

    def finish_sign_in(self, state: str) -> dict[str, str] | None:
        """The sign-in `state` names, once (a replayed callback finds nothing)."""
        with self._lock:
            found = self._pending.pop(state, None)
        if found is None or found[0] <= time.time():
            return None
        return found[1]


def csrf_ok(session: Session, token: str | None) -> bool:
    return bool(token) and secrets.compare_digest(session.csrf, token or "")


class RateLimiter:
    """At most `limit` events per person per `window` seconds (a sliding window)."""

    def __init__(self, limit: int, window: float = 60.0, max_people: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_people = max_people
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, who: str) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._seen.pop(who, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            allowed = len(times) < self.limit
            if allowed:
                times.append(now)
            self._seen[who] = times
            while len(self._seen) > self.max_people:
                self._seen.popitem(last=False)
            return allowed


def content_security_policy() -> str:
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class Hardening:
    """ASGI middleware: request bodies over `max_bytes` get 413 before the app reads them, and
    every response carries the security headers (CSP without inline scripts)."""

    def __init__(self, app: Asgi, max_bytes: int, https: bool) -> None:
        self.app = app
        self.max_bytes = max_bytes
        headers = [(b"content-security-policy", content_security_policy().encode()),
                   (b"x-content-type-options", b"nosniff"),
                   (b"x-frame-options", b"DENY"),
                   (b"referrer-policy", b"same-origin"),  # no-referrer makes Origin "null"
                   (b"cross-origin-opener-policy", b"same-origin"),
                   (b"permissions-policy", b"camera=(), microphone=(), geolocation=()")]
        if https:
            headers.append((b"strict-transport-security", b"max-age=31536000"))
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = True
            if too_big:
                await self._refuse(send, 413, b'{"error": "request too large"}')
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, limited, with_headers)
        except BodyTooLarge:
            await self._refuse(send, 413, b'{"error": "request too large"}')

    async def _refuse(self, send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *self.headers]})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass
