"""`make_client`: what reaches the wire for basic auth, SigV4 and TLS with a CA bundle.

A loopback HTTP(S) server answers like a cluster's root endpoint and records the headers; the
client under test is the one `[store]` settings build, talking through its real transport.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from core.errors import ConfigError, StoreError
from core.settings import StoreSettings
from indexer.store.opensearch_client import Backoff, Cluster, make_client
from tests.support import unavailable

pytestmark = pytest.mark.integration


class Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"cluster_name": "loopback",
                           "version": {"distribution": "opensearch", "number": "2.17.0"}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def serve(context: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[dict[str, str]]]]:
    handler = type("Handler", (Recorder,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    yield from serve()


def opensearch(url: str, **keys: str) -> StoreSettings:
    return StoreSettings.model_validate({"kind": "opensearch", "url": url, **keys})


def test_basic_auth_takes_the_password_from_the_named_variable(
        http_server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = http_server
    client = make_client(opensearch(url, username="clearance", password_env="OS_PASSWORD"),
                         {"OS_PASSWORD": "s3cret!"})
    assert client.info()["cluster_name"] == "loopback"
    expected = base64.b64encode(b"clearance:s3cret!").decode()
    assert seen[-1]["authorization"] == f"Basic {expected}"


def test_no_auth_sends_no_authorization(http_server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = http_server
    make_client(opensearch(url), {}).info()
    assert "authorization" not in seen[-1]


def test_sigv4_signs_for_the_region_with_credentials_from_the_given_environment(
        http_server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = http_server
    environ = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
               "AWS_SESSION_TOKEN": "session-token-1"}
    make_client(opensearch(url, aws_region="eu-west-1"), environ).info()
    headers = seen[-1]
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/es/aws4_request" in headers["authorization"]
    assert headers["x-amz-security-token"] == "session-token-1"
    assert "x-amz-date" in headers


@pytest.mark.parametrize(("keys", "environ", "message"), [
    ({}, {}, "url is required"),
    ({"url": "http://127.0.0.1:9", "username": "u", "password_env": "PW"}, {},
     r"PW \(password_env\) is not set"),
    ({"url": "http://127.0.0.1:9", "username": "u"}, {}, "needs password_env"),
    ({"url": "http://127.0.0.1:9", "password_env": "PW"}, {"PW": "x"}, "username is not"),
    ({"url": "http://127.0.0.1:9", "aws_region": "eu-west-1", "username": "u"}, {},
     "either aws_region"),
    ({"url": "https://127.0.0.1:9", "ca_bundle": "/nonexistent/ca.pem"}, {},
     "ca_bundle not found"),
    ({"url": "http://127.0.0.1:9", "ca_bundle": "/etc/hosts"}, {}, "not https"),
])
def test_a_wrong_store_section_is_a_config_error(keys: dict[str, str], environ: dict[str, str],
                                                 message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_client(StoreSettings.model_validate({"kind": "opensearch", **keys}), environ)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed: cannot make a test CA")
    files = {n: tmp_path / f"{n}.pem" for n in ("ca", "ca-key", "server", "server-key", "csr")}
    ext = tmp_path / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-keyout", files["ca-key"], "-out", files["ca"], "-days", "1",
         "-subj", "/CN=Clearance test CA"],
        ["req", *ec, "-keyout", files["server-key"], "-out", files["csr"],
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", files["csr"], "-CA", files["ca"], "-CAkey", files["ca-key"],
         "-CAcreateserial", "-out", files["server"], "-days", "1", "-extfile", ext],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return files


@pytest.fixture
def https_server(tls_files: dict[str, Path]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["server"], tls_files["server-key"])
    yield from serve(context)


def test_tls_is_verified_against_the_ca_bundle(https_server: tuple[str, list[dict[str, str]]],
                                               tls_files: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = https_server
    # A container-wide CA variable must not override the bundle the config names.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    trusted = make_client(opensearch(url, ca_bundle=str(tls_files["ca"])), {})
    assert Cluster(trusted).call("info", trusted.info)["cluster_name"] == "loopback"
    untrusted = make_client(opensearch(url), {})
    sleeps: list[float] = []
    with pytest.raises(StoreError) as failure:
        Cluster(untrusted, sleep=sleeps.append).call("info", untrusted.info)
    assert str(failure.value) == (
        f"OpenSearch info failed: cannot connect to {url}: TLS handshake failed (certificate "
        "verify failed: unable to get local issuer certificate)")
    assert sleeps == []  # a certificate does not get better by retrying


# -- what a wrong address, a wrong scheme or refused credentials print ------------------------
class Refusing(BaseHTTPRequestHandler):
    """A cluster (or a proxy in front of one) that refuses every request with 401."""

    body: ClassVar[bytes] = b""
    content_type: ClassVar[str] = "text/plain"

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def refusing(body: bytes, content_type: str) -> Iterator[str]:
    handler = type("Handler", (Refusing,), {"body": body, "content_type": content_type})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def info_error(url: str, environ: dict[str, str] | None = None,
               **keys: str) -> tuple[str, list[float]]:
    client = make_client(opensearch(url, **keys), environ or {})
    sleeps: list[float] = []
    with pytest.raises(StoreError) as failure:
        Cluster(client, sleep=sleeps.append).call("info", client.info)
    return str(failure.value), sleeps


@pytest.mark.parametrize(("body", "content_type", "reason"), [
    (b"", "text/plain", "unauthorized"),
    (b"<html><body><h1>401 Authorization Required</h1></body></html>", "text/html",
     "unauthorized"),
    (b"Unauthorized", "text/plain", "Unauthorized"),
    (json.dumps({"error": {"type": "security_exception", "reason": "missing authentication "
                           "credentials"}, "status": 401}).encode(), "application/json",
     "security_exception: missing authentication credentials"),
])
def test_refused_credentials_print_a_reason_and_no_secret(body: bytes, content_type: str,
                                                          reason: str) -> None:
    for host in refusing(body, content_type):
        message, sleeps = info_error(f"http://{host}", {"OS_PASSWORD": "s3cret!"},
                                     username="clearance", password_env="OS_PASSWORD")
        assert message == f"OpenSearch info failed: the cluster refused the credentials (401): " \
                          f"{reason}"
        assert sleeps == []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_wrong_port_fails_at_once_with_one_short_line() -> None:
    port = free_port()
    message, sleeps = info_error(f"http://127.0.0.1:{port}")
    assert message == (f"OpenSearch info failed: cannot connect to http://127.0.0.1:{port}: "
                       "connection refused")
    assert sleeps == []  # a refused connection is a wrong address, not a hiccup


def test_tls_against_plain_http_fails_at_once_and_names_the_likely_cause(
        http_server: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = http_server
    https = url.replace("http://", "https://")
    message, sleeps = info_error(https)
    assert message == (f"OpenSearch info failed: cannot connect to {https}: TLS handshake failed "
                       "(wrong version number: is the cluster plain http?)")
    assert sleeps == []


def test_credentials_in_the_url_never_reach_the_message() -> None:
    from opensearchpy import OpenSearch

    port = free_port()
    client = OpenSearch(hosts=[f"https://clearance:hunter2@127.0.0.1:{port}"], max_retries=0)
    with pytest.raises(StoreError) as failure:
        Cluster(client, sleep=lambda s: None).call("info", client.info)
    assert str(failure.value) == (f"OpenSearch info failed: cannot connect to "
                                  f"https://127.0.0.1:{port}: connection refused")
    assert "hunter2" not in str(failure.value)


def test_timeouts_and_dropped_connections_are_retried_with_back_off() -> None:
    from opensearchpy.exceptions import ConnectionError as OsConnectionError
    from opensearchpy.exceptions import ConnectionTimeout


    port = free_port()
    for error in (ConnectionTimeout("TIMEOUT", "read timed out", TimeoutError("timed out")),
                  OsConnectionError("N/A", "reset", ConnectionResetError(104, "reset"))):
        client = make_client(opensearch(f"http://127.0.0.1:{port}"), {})
        sleeps: list[float] = []

        def fail(error: Exception = error) -> None:
            raise error

        with pytest.raises(StoreError) as failure:
            Cluster(client, Backoff(attempts=3, base=0.5), sleeps.append).call("info", fail)
        assert sleeps == [0.5, 1.0]
        assert str(failure.value).startswith(f"OpenSearch info failed: cannot connect to "
                                             f"http://127.0.0.1:{port}: ")
        assert str(failure.value).endswith(("timed out", "connection reset"))
