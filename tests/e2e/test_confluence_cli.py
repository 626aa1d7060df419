"""`clearance sync` with a Confluence service account (OAuth 2.0 client credentials through
the gateway `<api_url>/ex/confluence/<cloud_id>/wiki`) through the installed console script,
against the Confluence emulator: a good secret syncs; a wrong one ends in one line on stderr,
exit nonzero, the secret in no output and no file the run wrote; oauth without a `cloud_id`
exits 2."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.base import EmulatorServer
from emulators.confluence import ConfluenceEmulator
from tests.integration.test_connector_contract_confluence import tenant_data
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e
SECRET = "svc-secret-9a8b7c"
BASE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("CLEARANCE_CONFIG", "CLEARANCE_HOME", "CONF_SECRET")}


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    data = copy.deepcopy(tenant_data())
    data["service_accounts"] = [{"client_id": "svc-clearance", "client_secret": SECRET,
                                 "token": "bearer-of-svc"}]
    with EmulatorServer(ConfluenceEmulator(data)) as srv:
        yield srv


def config(tmp_path: Path, server: EmulatorServer, cloud_id: str | None = "cloud-1") -> Path:
    path = tmp_path / "clearance.toml"
    cloud = f'cloud_id = "{cloud_id}"\n' if cloud_id else ""
    path.write_text(f"""
[[connectors]]
name = "wiki"
kind = "confluence"
url = "{server.base_url}/wiki"
auth = "oauth"
{cloud}api_url = "{server.base_url}"
client_id = "svc-clearance"
client_secret_env = "CONF_SECRET"
spaces = ["ENG", "HR", "PUB"]
ca_bundle = "{server.ca_bundle}"
requests_per_second = 0
""")
    return path


def sync(tmp_path: Path, cfg: Path, secret: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(BASE_ENV)
    if secret is not None:
        env["CONF_SECRET"] = secret
    return subprocess.run([clearance_exe(), "--home", str(tmp_path / "home"), "--config",
                           str(cfg), "sync"], capture_output=True, text=True, env=env,
                          timeout=180, check=False)


def written(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_a_good_secret_syncs_and_a_wrong_one_is_one_line(tmp_path: Path,
                                                         server: EmulatorServer) -> None:
    cfg = config(tmp_path, server)
    good = sync(tmp_path, cfg, SECRET)
    assert good.returncode == 0, good.stderr
    wrong = "wrong-secret-0815"
    bad = sync(tmp_path, cfg, wrong)
    assert bad.returncode != 0
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "401" in lines[0], bad.stderr
    for secret in (wrong, SECRET):
        assert secret not in bad.stderr + bad.stdout + good.stderr + good.stdout
        assert secret.encode() not in written(tmp_path / "home")


def test_oauth_without_a_cloud_id_exits_2(tmp_path: Path, server: EmulatorServer) -> None:
    done = sync(tmp_path, config(tmp_path, server, cloud_id=None), SECRET)
    assert done.returncode == 2
    assert "cloud_id" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert SECRET not in done.stderr + done.stdout


def test_an_unset_secret_variable_exits_2(tmp_path: Path, server: EmulatorServer) -> None:
    done = sync(tmp_path, config(tmp_path, server), None)
    assert done.returncode == 2
    assert "CONF_SECRET" in done.stderr and len(done.stderr.strip().splitlines()) == 1
