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
    with pytest.raises(StoreError, match="cannot reach the cluster"):
        Cluster(untrusted, Backoff(attempts=1)).call("info", untrusted.info)
