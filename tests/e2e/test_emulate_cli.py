"""`clearance emulate SOURCE --tenant FILE --port N` through the installed console script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import clearance_exe
from tests.support_http import TOKEN, tenant

pytestmark = pytest.mark.e2e
# No configuration is needed to emulate; none from the caller's environment is used either.
ENV = {k: v for k, v in os.environ.items() if k not in ("CLEARANCE_CONFIG", "CLEARANCE_HOME")}


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([clearance_exe(), "--home", str(tmp_path / "home"), "emulate", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=ENV)


def test_emulate_serves_tls_prints_its_url_and_stops_on_sigterm(tmp_path: Path):
    data = tmp_path / "tenant.json"
    data.write_text(json.dumps(tenant()))
    proc = start(tmp_path, "httpfiles", "--tenant", str(data), "--port", "0")
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        ca_line = proc.stdout.readline().strip()
        assert base_url.startswith("https://127.0.0.1:"), (base_url, proc.stderr)
        ca_bundle = ca_line.removeprefix("ca_bundle ")
        assert Path(ca_bundle).is_file()
        session = requests.Session()
        session.trust_env = False
        answer = session.get(f"{base_url}/api/documents", verify=ca_bundle, timeout=10,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert [i["id"] for i in answer.json()["items"]] == ["doc0.md", "doc1.md"]
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"{base_url}/api/documents", timeout=10)  # the system trust refuses it
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0
    assert not Path(ca_bundle).exists()  # the throwaway CA is gone with the server


def test_emulate_on_a_given_port_with_the_example_tenant_over_plain_http(tmp_path: Path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start(tmp_path, "httpfiles", "--port", str(port), "--plain-http", "--json")
    try:
        assert proc.stdout is not None
        printed = json.loads(proc.stdout.readline())
        assert printed == {"base_url": f"http://127.0.0.1:{port}", "ca_bundle": None}
        groups = requests.get(f"{printed['base_url']}/api/groups", timeout=10,
                              headers={"Authorization": "Bearer demo-token"}).json()
        assert {g["id"] for g in groups["items"]} == {"hr", "hr-leads"}
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["nosuch"], "unknown emulator 'nosuch' (known: bedrock, httpfiles)"),
    (["httpfiles", "--tenant", "missing.json"], "tenant file missing.json"),
    (["httpfiles", "--port", "70000"], "not a port number"),
])
def test_emulate_usage_errors_exit_2_with_one_line(tmp_path: Path, args, message):
    proc = subprocess.run([clearance_exe(), "--home", str(tmp_path / "home"), "emulate", *args],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env=ENV)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_emulate_on_a_busy_port_exits_1(tmp_path: Path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([clearance_exe(), "emulate", "httpfiles", "--port", str(port)],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60,
                              env=ENV)
    assert proc.returncode == 1 and f"cannot serve on 127.0.0.1:{port}" in proc.stderr
