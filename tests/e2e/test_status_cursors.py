"""`clearance status` shows each pass's durable cursor and the age of the source's
identities (text and --json)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_sync import cli_env
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e


def run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([clearance_exe(), *args], capture_output=True, text=True,
                          env=cli_env(),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def test_status_shows_each_pass_cursor_and_the_identity_age(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / ".access.json").write_text('{"read": ["everyone"]}')
    (docs / ".groups.json").write_text('{"hr": ["user:ann@acme.example"]}')
    for n in range(3):
        (docs / f"n{n}.md").write_text(f"# Note {n}\n\nwombat {n}\n")
    config = tmp_path / "clearance.toml"
    config.write_text('[[connectors]]\nname = "docs"\nkind = "files"\nroot = "docs"\n'
                      'page_size = 2\n')
    base = ["--home", str(tmp_path / "home")]

    def status() -> dict[str, Any]:
        row: dict[str, Any] = json.loads(run(*base, "status", "--config", str(config),
                                             "--json").stdout)["connectors"][0]
        return row

    # Before the first sync the index is empty while the source lists 3 documents: status says
    # so and exits 1 (it cannot tell a never-synced index from a lost one).
    never = subprocess.run([clearance_exe(), *base, "status", "--config", str(config), "--json"],
                           capture_output=True, text=True, env=cli_env(), timeout=300)
    assert never.returncode == 1, never.stderr
    before: dict[str, Any] = json.loads(never.stdout)["connectors"][0]
    assert before["index_problem"] == "index empty or missing: 3 documents at the source"
    assert before["cursors"] == {"content": None, "permissions": None, "identities": None}
    assert before["identities"] is None
    run(*base, "sync", "--config", str(config))
    run(*base, "sync", "--config", str(config), "--mode", "permissions")
    row = status()
    content = row["cursors"]["content"]
    assert content["in_progress"] is False and content["pages"] == 2
    assert content["next"] is None  # files have no change feed: incremental re-lists
    assert content["cursor"] is None and content["completed_at"] is not None
    assert row["cursors"]["permissions"]["mode"] == "permissions"
    assert row["cursors"]["identities"]["in_progress"] is False
    assert row["identities"]["memberships"] == 1 and row["identities"]["age_seconds"] >= 0
    text = run(*base, "status", "--config", str(config)).stdout
    assert "identities: replaced" in text and "(1 memberships, 0 aliases)" in text
    assert "content pass: complete (2 pages" in text
    assert "permissions pass: complete" in text
