"""`clearance sync` with a gdrive connector through the installed console script, against the
Google emulator served by the test: a good key syncs; a key the service does not know ends in
one line on stderr without key material; a missing key file or an unset key variable exits 2;
`clearance emulate google` serves a tenant file and prints its base URL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from emulators.base import EmulatorServer
from emulators.google import GoogleEmulator
from emulators.google.generate import ServiceAccount, example_tenant
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e
BASE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("CLEARANCE_CONFIG", "CLEARANCE_HOME", "GDRIVE_KEY")}


@pytest.fixture(scope="module")
def account() -> ServiceAccount:
    return ServiceAccount.new()


@pytest.fixture
def server(account: ServiceAccount) -> Iterator[EmulatorServer]:
    emulator = GoogleEmulator(example_tenant(account))
    with EmulatorServer(emulator) as srv:
        emulator.bind(srv.base_url)
        yield srv


def config(tmp_path: Path, server: EmulatorServer, key: str) -> Path:
    path = tmp_path / "clearance.toml"
    path.write_text(f"""
[[connectors]]
name = "drive"
kind = "gdrive"
{key}
delegated_admin = "ann@acme.example"
domain = "acme.example"
my_drives = ["ann@acme.example", "bob@acme.example"]
api_endpoint = "{server.base_url}"
ca_bundle = "{server.ca_bundle}"
""")
    return path


def run(tmp_path: Path, cfg: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([clearance_exe(), "--home", str(tmp_path / "home"), "--config",
                           str(cfg), *args], capture_output=True, text=True,
                          env={**BASE_ENV, **(env or {})}, timeout=180, check=False)


def test_a_good_key_syncs_and_a_strangers_key_is_one_line(
        tmp_path: Path, server: EmulatorServer, account: ServiceAccount) -> None:
    account.write_key_file(tmp_path / "sa.json", server.base_url)
    good = run(tmp_path, config(tmp_path, server, 'service_account_file = "sa.json"'), "sync")
    assert good.returncode == 0, good.stderr
    stranger = ServiceAccount.new(client_email=account.client_email)
    stranger.write_key_file(tmp_path / "other.json", server.base_url)
    bad = run(tmp_path, config(tmp_path, server, 'service_account_file = "other.json"'),
              "sync")
    assert bad.returncode != 0
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "invalid_grant" in lines[0], bad.stderr
    for pem in (stranger.private_key_pem, account.private_key_pem):
        assert pem[40:100] not in bad.stderr + bad.stdout
    assert "PRIVATE KEY" not in bad.stderr + bad.stdout


def test_a_missing_key_file_or_unset_variable_exits_2(tmp_path: Path,
                                                      server: EmulatorServer) -> None:
    missing = run(tmp_path, config(tmp_path, server, 'service_account_file = "nope.json"'),
                  "sync")
    assert missing.returncode == 2
    assert "nope.json" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    unset = run(tmp_path, config(tmp_path, server, 'service_account_json_env = "GDRIVE_KEY"'),
                "sync")
    assert unset.returncode == 2
    assert "GDRIVE_KEY" in unset.stderr and len(unset.stderr.strip().splitlines()) == 1


def test_emulate_google_serves_a_tenant_file_and_prints_its_url(
        tmp_path: Path, account: ServiceAccount) -> None:
    data = tmp_path / "tenant.json"
    data.write_text(json.dumps(example_tenant(account)))
    proc = subprocess.Popen([clearance_exe(), "--home", str(tmp_path / "home"), "emulate",
                             "google", "--tenant", str(data), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=BASE_ENV)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        ca_bundle = proc.stdout.readline().strip().removeprefix("ca_bundle ")
        assert base_url.startswith("https://127.0.0.1:"), base_url
        session = requests.Session()
        session.trust_env = False
        # unauthenticated: Google's 401 shape; a JWT signed by the tenant's key: a token
        answer = session.get(f"{base_url}/drive/v3/files", verify=ca_bundle, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["error"]["errors"][0]["reason"] == "authError"
        now = int(time.time())
        signed = jwt.encode({"iss": account.client_email, "sub": "bob@acme.example",
                             "aud": f"{base_url}/token", "iat": now, "exp": now + 600,
                             "scope": "https://www.googleapis.com/auth/drive.readonly"},
                            account.private_key_pem, algorithm="RS256")
        token = session.post(f"{base_url}/token", verify=ca_bundle, timeout=10, data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": signed})
        assert token.status_code == 200 and token.json()["access_token"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_emulate_google_refuses_a_bad_tenant_file(tmp_path: Path) -> None:
    data = tmp_path / "tenant.json"
    data.write_text(json.dumps({"domain": "acme.example", "users": []}))
    done = subprocess.run([clearance_exe(), "--home", str(tmp_path / "home"), "emulate",
                           "google", "--tenant", str(data)], capture_output=True, text=True,
                          env=BASE_ENV, timeout=60, check=False)
    assert done.returncode == 2 and "service_accounts" in done.stderr


def test_the_documented_flow_generate_emulate_sync(tmp_path: Path) -> None:
    """README: generate a tenant and its key file, serve it, point a connector at it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"https://127.0.0.1:{port}"
    made = subprocess.run([sys.executable, "-m",
                           "emulators.google.generate", str(tmp_path / "out"), "--seed", "3",
                           "--base-url", base], capture_output=True, text=True, env=BASE_ENV,
                          timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "out" / "service_account.json").stat().st_mode & 0o077 == 0
    proc = subprocess.Popen([clearance_exe(), "--home", str(tmp_path / "home"), "emulate",
                             "google", "--tenant", str(tmp_path / "out" / "tenant.json"),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=BASE_ENV)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == base
        ca_bundle = proc.stdout.readline().strip().removeprefix("ca_bundle ")
        cfg = tmp_path / "clearance.toml"
        cfg.write_text(f"""
[[connectors]]
name = "drive"
kind = "gdrive"
service_account_file = "out/service_account.json"
delegated_admin = "user000@acme.example"
domain = "acme.example"
my_drives = ["user001@acme.example"]
shared_drives = false
api_endpoint = "{base}"
ca_bundle = "{ca_bundle}"
""")
        done = run(tmp_path, cfg, "sync")
        assert done.returncode == 0, done.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
