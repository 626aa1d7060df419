"""`clearance sync` with a SharePoint connector through the installed console script, against
the Graph emulator served by the test: a good secret syncs; a bad one ends in one line on
stderr, without the secret, and a config naming an unset variable exits 2."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.base import EmulatorServer
from emulators.graph import GraphEmulator
from emulators.graph.generate import CLIENT_ID, CLIENT_SECRET, TENANT_ID, example_tenant
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e
BASE_ENV = {k: v for k, v in os.environ.items()
            if k not in ("CLEARANCE_CONFIG", "CLEARANCE_HOME", "SP_SECRET")}


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(GraphEmulator(copy.deepcopy(example_tenant()))) as srv:
        yield srv


def config(tmp_path: Path, server: EmulatorServer) -> Path:
    path = tmp_path / "clearance.toml"
    path.write_text(f"""
[[connectors]]
name = "sp"
kind = "sharepoint"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret_env = "SP_SECRET"
sites = ["site-hr"]
authority_host = "{server.base_url}"
graph_url = "{server.base_url}/v1.0"
ca_bundle = "{server.ca_bundle}"
""")
    return path


def sync(tmp_path: Path, cfg: Path, secret: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(BASE_ENV)
    if secret is not None:
        env["SP_SECRET"] = secret
    return subprocess.run([clearance_exe(), "--home", str(tmp_path / "home"), "--config",
                           str(cfg), "sync"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_a_good_secret_syncs_and_a_bad_one_is_one_line(tmp_path: Path,
                                                       server: EmulatorServer) -> None:
    cfg = config(tmp_path, server)
    good = sync(tmp_path, cfg, CLIENT_SECRET)
    assert good.returncode == 0, good.stderr
    wrong = "wrong-secret-0815"
    bad = sync(tmp_path, cfg, wrong)
    assert bad.returncode != 0
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "invalid_client" in lines[0], bad.stderr
    assert wrong not in bad.stderr + bad.stdout and CLIENT_SECRET not in bad.stderr + bad.stdout


def test_an_unset_secret_variable_exits_2(tmp_path: Path, server: EmulatorServer) -> None:
    done = sync(tmp_path, config(tmp_path, server), None)
    assert done.returncode == 2
    assert "SP_SECRET" in done.stderr and len(done.stderr.strip().splitlines()) == 1
