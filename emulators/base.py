"""Base of the loopback fakes of real source APIs (see emulators/README.md).

An `Emulator` holds a tenant (a JSON document loaded from a data file), the routes that serve it
and a table of injected faults; `EmulatorServer` serves one on 127.0.0.1, over TLS signed by a
throwaway CA made at start-up, in a thread. Everything under `/_admin/` is the test's side door:
read and change the tenant, add and clear faults, read the server-side request counts.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

JsonObject = dict[str, Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # from the route pattern

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(data).encode(),
                   {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def error(cls, status: int, code: str, message: str = "") -> Response:
        return cls.json({"error": {"code": code, "message": message or code}}, status)


Handler = Callable[[Request], Response]


@dataclass
class Fault:
    """One injected misbehaviour of the routes whose path matches `path` (a glob, `*` allowed).

    `status` answers instead of the route (429/503 with `retry_after`, any 5xx); `latency`
    delays the answer (seconds); `drop` closes the connection without an answer (a reset).
    `times` faults are served, then the route behaves again (None: until cleared).
    """

    path: str
    method: str = "*"
    status: int | None = None
    retry_after: str | None = None
    latency: float = 0.0
    drop: bool = False
    times: int | None = 1
    body: JsonObject | None = None

    @classmethod
    def from_json(cls, data: JsonObject) -> Fault:
        known = {"path", "method", "status", "retry_after", "latency", "drop", "times", "body"}
        unknown = set(data) - known
        if unknown or not isinstance(data.get("path"), str):
            raise ValueError(f"a fault needs a 'path' and only {sorted(known)}; got {sorted(data)}")
        fault = cls(**data)
        if fault.retry_after is not None:
            fault.retry_after = str(fault.retry_after)
        return fault

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path)


class Faults:
    """The fault table, consulted before every non-admin request (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first matching fault, counted as served."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def to_json(self) -> list[JsonObject]:
        with self._lock:
            return [f.__dict__.copy() for f in self._faults]


class Counters:
    """What the server saw: requests per route, and the most requests in flight at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_path: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.user_agents: set[str] = set()

    @contextmanager
    def serving(self, path: str, user_agent: str) -> Iterator[None]:
        with self._lock:
            self.requests += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.user_agents.add(user_agent)
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def reset(self) -> None:
        with self._lock:
            self.requests, self.by_path, self.max_in_flight = 0, {}, self.in_flight
            self.user_agents = set()

    def to_json(self) -> JsonObject:
        with self._lock:
            return {"requests": self.requests, "by_path": dict(self.by_path),
                    "max_in_flight": self.max_in_flight, "user_agents": sorted(self.user_agents)}


class Emulator:
    """A fake source: subclasses set `name`, validate their tenant and add routes in `setup()`.

    Route patterns are paths with `{name}` segments (`/api/documents/{doc_id}/content`); a
    `{name:path}` segment matches the rest of the path, slashes included.
    """

    name: ClassVar[str] = "base"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        self.lock = threading.RLock()  # held while a handler reads or changes the tenant
        self.tenant: JsonObject = copy.deepcopy(tenant) if tenant is not None else {}
        self.faults = Faults()
        self.counters = Counters()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.validate(self.tenant)
        self.setup()

    @classmethod
    def from_file(cls, path: Path) -> Emulator:
        return cls(load_tenant(path))

    # -- for subclasses --------------------------------------------------------------------
    def setup(self) -> None:
        """Add the source's routes with `self.route(...)`."""

    def validate(self, tenant: JsonObject) -> None:
        """Raise ValueError if `tenant` is not a tenant of this source."""

    def admin(self, request: Request, rest: str) -> Response | None:
        """Source-specific admin routes under /_admin/ (None: not one of them)."""
        return None

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)(:path)?\}",
                       lambda m: f"(?P<{m.group(1)}>{'.+' if m.group(2) else '[^/]+'})",
                       pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    # -- dispatch --------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_admin/"):
            return self._admin(request, request.path[len("/_admin/"):])
        allowed = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed = True
                continue
            request.params = {k: unquote(v) for k, v in match.groupdict().items()}
            with self.lock:
                return handler(request)
        if allowed:
            return Response.error(405, "methodNotAllowed")
        return Response.error(404, "itemNotFound", f"no route {request.path}")

    def _admin(self, request: Request, rest: str) -> Response:
        try:
            with self.lock:
                return self._admin_locked(request, rest)
        except (ValueError, TypeError, KeyError) as exc:
            return Response.error(400, "invalidRequest", str(exc))

    def _admin_locked(self, request: Request, rest: str) -> Response:
        method = request.method
        if rest == "tenant" and method == "GET":
            return Response.json(self.tenant)
        if rest == "tenant" and method in ("PUT", "PATCH"):
            body = request.json()
            if not isinstance(body, dict):
                raise ValueError("the tenant is a JSON object")
            new = body if method == "PUT" else merge_patch(self.tenant, body)
            self.validate(new)
            self.tenant = new
            return Response.json(self.tenant)
        if rest == "faults" and method == "POST":
            self.faults.add(Fault.from_json(request.json()))
            return Response.json({"faults": self.faults.to_json()}, 201)
        if rest == "faults" and method == "DELETE":
            self.faults.clear()
            return Response.json({"faults": []})
        if rest == "faults" and method == "GET":
            return Response.json({"faults": self.faults.to_json()})
        if rest == "stats" and method == "GET":
            return Response.json(self.counters.to_json())
        if rest == "stats" and method == "DELETE":
            self.counters.reset()
            return Response.json(self.counters.to_json())
        answer = self.admin(request, rest)
        return answer if answer is not None else Response.error(404, "noSuchAdminRoute", rest)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def load_tenant(path: Path) -> JsonObject:
    """A tenant data file: one JSON object (duplicate keys refused, they hide a mistake)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> JsonObject:
        keys = [k for k, _ in pairs]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"duplicate key(s) {dupes}")
        return dict(pairs)

    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=no_duplicates)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"tenant file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"tenant file {path}: not a JSON object")
    return data


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes: without NODELAY, Nagle and the client's
        # delayed ACK add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the counters, not a log."""

    def _serve(self) -> None:
        emulator = self.server.emulator
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                          {k.lower(): v for k, v in self.headers.items()}, body)
        if request.path.startswith("/_admin/"):
            self._answer(emulator.dispatch(request))
            return
        # In flight until the answer is ready, not until it is written: a client may send its
        # next request as soon as it has read this answer, before this thread gets to run again.
        with emulator.counters.serving(request.path, request.headers.get("user-agent", "")):
            fault = emulator.faults.take(request.method, request.path)
            if fault is not None and fault.latency:
                time.sleep(fault.latency)
            if fault is not None and fault.drop:
                self._reset()
                return
            if fault is not None and fault.status is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                body_json = fault.body or {"error": {"code": "injectedFault",
                                                     "message": f"HTTP {fault.status}"}}
                response = Response.json(body_json, fault.status, headers)
            else:
                response = emulator.dispatch(request)
        self._answer(response)

    def _answer(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends a TCP RST, what a crashed or overloaded server does.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(address, _RequestHandler)
        self.emulator = emulator
        self.tls = tls

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the request's own thread (on first read), not here.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (or failed TLS) is not the emulator's error."""


class EmulatorServer:
    """Serves one emulator on 127.0.0.1 (port 0: a free one) in a background thread.

    With `tls=True` a throwaway CA is made at start-up (trustme); its certificate is written
    to `ca_bundle` (a PEM file) for clients to trust, and the server's certificate names
    127.0.0.1 and localhost.
    """

    def __init__(self, emulator: Emulator, *, port: int = 0, tls: bool = True,
                 host: str = "127.0.0.1") -> None:
        self.emulator = emulator
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.ca_bundle: Path | None = None
        context = self._tls_context(host) if tls else None
        self._server = _Server((host, port), emulator, context)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"emulator-{emulator.name}", daemon=True)
        self.port: int = self._server.server_address[1]
        self.host = host
        self.scheme = "https" if tls else "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _tls_context(self, host: str) -> ssl.SSLContext:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(host, "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._tmp = tempfile.TemporaryDirectory(prefix="clearance-emulator-")
        self.ca_bundle = Path(self._tmp.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        return context

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def registered() -> dict[str, type[Emulator]]:
    """Emulators by name, from the `clearance.emulators` entry point group."""
    from importlib.metadata import entry_points

    found: dict[str, type[Emulator]] = {}
    for ep in entry_points(group="clearance.emulators"):
        cls = ep.load()
        if isinstance(cls, type) and issubclass(cls, Emulator):
            found[ep.name] = cls
    return found
