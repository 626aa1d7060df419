"""An index that lost its documents (SQLite file deleted; an OpenSearch cluster restarted
empty is in test_cli_opensearch.py) is reported by `status` and by the permission pass, both
exit 1, instead of "never, 0 documents" and "ok"."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import clearance_exe

pytestmark = pytest.mark.e2e

GAP = "index empty or missing: 3 documents at the source"


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEARANCE_EMBEDDER": "hashing"}
    return subprocess.run([clearance_exe(), "--home", str(home), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_a_deleted_sqlite_file_is_reported_by_status_and_the_permission_pass(
        tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / ".access.json").write_text(json.dumps({"read": ["everyone"]}))
    for name in ("a", "b", "c"):
        (root / f"{name}.md").write_text(f"# {name}\n\nThe lighthouse {name}.\n")
    config = tmp_path / "clearance.toml"
    config.write_text(f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{root}"\n')
    home = tmp_path / "home"
    assert run(home, "sync", "--config", str(config)).returncode == 0
    healthy = run(home, "status", "--config", str(config))
    assert healthy.returncode == 0 and "PROBLEM" not in healthy.stdout

    (home / "index.sqlite3").unlink()
    status = run(home, "status", "--config", str(config))
    assert status.returncode == 1, status.stderr
    assert f"PROBLEM: {GAP}" in status.stdout
    as_json = run(home, "status", "--config", str(config), "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["connectors"][0]["index_problem"] == GAP

    permissions = run(home, "sync", "--mode", "permissions", "--config", str(config))
    assert permissions.returncode == 1
    assert permissions.stderr.strip() == (f"clearance: sync of 'docs' failed: {GAP}; a full "
                                          "sync indexes them again")

    assert run(home, "sync", "--config", str(config)).returncode == 0
    again = run(home, "status", "--config", str(config), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["connectors"][0]["index_problem"] is None


def test_an_empty_source_next_to_an_empty_index_is_no_problem(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    config = tmp_path / "clearance.toml"
    config.write_text(f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{root}"\n')
    status = run(tmp_path / "home", "status", "--config", str(config))
    assert status.returncode == 0 and "PROBLEM" not in status.stdout
