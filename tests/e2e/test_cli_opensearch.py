"""`clearance sync` and `clearance reindex` through the console script on an OpenSearch store
(osmem-server: OpenSearch-compatible, in memory, no k-NN)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from osmem_server import OsmemError, OsmemServer

from tests.support import clearance_exe, unavailable

pytestmark = pytest.mark.e2e



@pytest.fixture
def cluster() -> Iterator[str]:
    try:
        server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    except OsmemError as exc:
        unavailable(f"osmem-server could not start here: {exc}")
    try:
        yield server.url
    finally:
        server.close()


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEARANCE_EMBEDDER": "hashing"}
    return subprocess.run([clearance_exe(), "--home", str(home), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_sync_then_reindex_swaps_the_alias_and_keeps_every_document(
        tmp_path: Path, cluster: str) -> None:
    root = tmp_path / "docs"
    (root / "team").mkdir(parents=True)
    (root / ".access.json").write_text(json.dumps({"read": ["everyone"]}))
    (root / "a.md").write_text("# A\n\nThe lighthouse opens at dawn.\n")
    (root / "team" / ".access.json").write_text(json.dumps({"read": ["group:team"]}))
    (root / "team" / "b.md").write_text("# B\n\nThe team ships in June.\n")
    config = tmp_path / "clearance.toml"
    config.write_text(f'[store]\nkind = "opensearch"\nurl = "{cluster}"\n'
                      f'index_prefix = "acme"\n\n[[connectors]]\nname = "docs"\nkind = "files"\n'
                      f'root = "{root}"\n')
    home = tmp_path / "home"

    synced = run(home, "sync", "--config", str(config), "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["syncs"][0]["indexed"] == 2

    first = run(home, "reindex", "--config", str(config), "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["old_index"], result["new_index"]) == ("acme-chunks-v1", "acme-chunks-v2")
    assert result["records"] == 4  # two chunks and two document records

    status = run(home, "status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["connectors"][0]["documents"] == 2


def test_reindex_on_the_embedded_store_is_a_one_line_config_error(tmp_path: Path) -> None:
    r = run(tmp_path / "home", "reindex")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "opensearch" in r.stderr
