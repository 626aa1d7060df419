"""A running web surface for the tests: the corpus synced, the OIDC emulator on loopback,
the FastAPI app on uvicorn in a thread (a real socket, real HTTP clients)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from apps.runtime import Runtime
from apps.web.app import create_app
from core.settings import load_settings
from emulators.base import EmulatorServer
from emulators.oidc import OidcEmulator
from tests.web.corpus import build

CLIENT_ID = "clearance-web"
USERS = [
    {"username": "ceo", "password": "ceo-pass", "email": "ceo@acme.com", "name": "CEO"},
    {"username": "ada", "password": "ada-pass", "email": "ada@acme.com", "name": "Ada"},
]


@dataclass
class Web:
    url: str
    idp: OidcEmulator
    idp_url: str
    runtime: Runtime
    home: Path
    state: Any  # the app's WebApp (sessions, limits)

    def token(self, email: str, **overrides: Any) -> str:
        user = next(u for u in USERS if u["email"] == email)
        token = self.idp.token_for(user, CLIENT_ID)
        if not overrides:
            return token
        import jwt

        claims = jwt.decode(token, options={"verify_signature": False})
        claims.update(overrides)
        return self.idp.sign({k: v for k, v in claims.items() if v is not None})

    def api(self, path: str, body: Any, token: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=30)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve(app: Any, sock: socket.socket) -> Callable[[], None]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
    return stop


@pytest.fixture
def make_web(tmp_path: Path) -> Iterator[Callable[..., Web]]:
    stops: list[Callable[[], None]] = []

    def make(extra: str = "", asks_per_minute: int = 1000) -> Web:
        sock = free_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        idp = OidcEmulator({"clients": [{"client_id": CLIENT_ID,
                                         "redirect_uris": [f"{url}/auth/callback"]}],
                            "users": USERS})
        idp_server = EmulatorServer(idp, tls=False).start()
        stops.append(idp_server.stop)
        idp.bind(idp_server.base_url)
        web = (f'[web]\npublic_url = "{url}"\noidc_issuer = "{idp_server.base_url}"\n'
               f'client_id = "{CLIENT_ID}"\nadmin_group = "group:docs:admins"\n'
               f'asks_per_minute = {asks_per_minute}\n{extra}\n')
        home, config = build(tmp_path, web)
        rt = Runtime(load_settings(home, config), read_only=True)
        app = create_app(rt)
        stops.append(serve(app, sock))
        stops.append(rt.lanes().close)
        return Web(url, idp, idp_server.base_url, rt, home, app.state.web)

    yield make
    for stop in reversed(stops):
        stop()
