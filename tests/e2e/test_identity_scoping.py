"""Identity facts are scoped to the connector that asserted them, and a connector removed from
the configuration stops being searchable at once — through the installed console script.

Two files connectors share one index: `hr` (restricted documents) and `wiki`, whose root an
outsider controls. The wiki's `.aliases.json` claims that mallory is also the CEO, and its
`.groups.json` puts mallory into a group named like the hr connector's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from indexer.store.sqlite import SqliteStore
from tests.conftest import write_tree
from tests.e2e.test_cli import cli_env
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e

CEO = "ceo@acme.example"
MALLORY = "mallory@acme.example"
HANA = "hana@acme.example"

HR: dict[str, Any] = {
    ".access.json": {"read": ["group:hr"]},
    ".groups.json": {"hr": [f"user:{HANA}", f"user:{CEO}"]},
    "salaries.md": "# Salaries\n\nThe zeppelin salary review happens every March.\n",
    "ceo/.access.json": {"read": [f"user:{CEO}"]},
    "ceo/succession.md": "# Succession\n\nThe zeppelin succession plan names two people.\n",
}
WIKI: dict[str, Any] = {
    ".access.json": {"read": ["everyone"]},
    ".groups.json": {"hr": [f"user:{MALLORY}"]},
    ".aliases.json": {MALLORY: [CEO]},
    "welcome.md": "# Welcome\n\nThe zeppelin hangar opens at nine.\n",
    "board/.access.json": {"read": [f"user:{CEO}"]},
    "board/agenda.md": "# Agenda\n\nThe zeppelin board meets on Fridays.\n",
}


def run(home: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([clearance_exe(), "--home", str(home), *args, "--config", str(config)],
                          capture_output=True, text=True, env=cli_env(), timeout=300)


def write_config(path: Path, roots: dict[str, Path]) -> Path:
    path.write_text("".join(f'[[connectors]]\nname = "{name}"\nkind = "files"\n'
                            f'root = "{root}"\n\n' for name, root in roots.items()))
    return path


def hits(home: Path, config: Path, email: str) -> set[str]:
    out = run(home, config, "search", "zeppelin", "--as", email, "--json", "--k", "50")
    assert out.returncode == 0, out.stderr
    return {h["doc_id"] for h in json.loads(out.stdout)["hits"]}


@pytest.fixture
def tenant(tmp_path: Path) -> tuple[Path, Path, dict[str, Path]]:
    roots = {"hr": write_tree(tmp_path / "hr", HR), "wiki": write_tree(tmp_path / "wiki", WIKI)}
    home = tmp_path / "home"
    config = write_config(tmp_path / "clearance.toml", roots)
    out = run(home, config, "sync")
    assert out.returncode == 0, out.stderr
    return home, config, roots


def test_an_alias_and_a_group_from_one_connector_admit_only_to_its_own_documents(
        tenant: tuple[Path, Path, dict[str, Path]]) -> None:
    home, config, _ = tenant
    assert hits(home, config, MALLORY) == {"wiki:welcome.md", "wiki:board/agenda.md"}
    assert hits(home, config, HANA) == {"hr:salaries.md", "wiki:welcome.md"}
    assert hits(home, config, CEO) == {"hr:salaries.md", "hr:ceo/succession.md",
                                       "wiki:welcome.md", "wiki:board/agenda.md"}
    for doc in ("hr:salaries.md", "hr:ceo/succession.md"):
        explained = run(home, config, "explain", doc, "--as", MALLORY, "--json")
        assert explained.returncode == 0, explained.stderr
        assert json.loads(explained.stdout)["allowed"] is False
    # explain names the namespaced group and the membership path.
    hana = json.loads(run(home, config, "explain", "hr:salaries.md", "--as", HANA,
                          "--json").stdout)
    assert hana["allowed"] is True
    assert hana["gates"][0]["path"] == ["group:hr:hr", f"user:{HANA}"]


def test_a_connector_removed_from_the_config_is_searched_by_nobody_at_once(
        tenant: tuple[Path, Path, dict[str, Path]], tmp_path: Path) -> None:
    home, _, roots = tenant
    only_wiki = write_config(tmp_path / "wiki-only.toml", {"wiki": roots["wiki"]})
    assert hits(home, only_wiki, HANA) == {"wiki:welcome.md"}
    assert hits(home, only_wiki, CEO) == {"wiki:welcome.md", "wiki:board/agenda.md"}
    explained = run(home, only_wiki, "explain", "hr:salaries.md", "--as", HANA, "--json")
    assert explained.returncode == 0, explained.stderr
    decision = json.loads(explained.stdout)
    assert decision["allowed"] is False and "no longer configured" in decision["reason"]
    # Renamed: the same folder under a new name is a new connector; the old name is closed.
    renamed = write_config(tmp_path / "renamed.toml", {"people": roots["hr"],
                                                       "wiki": roots["wiki"]})
    assert "hr:salaries.md" not in hits(home, renamed, HANA)


def test_an_index_written_before_scoping_fails_closed_until_the_next_sync(
        tenant: tuple[Path, Path, dict[str, Path]]) -> None:
    home, config, _ = tenant
    store = SqliteStore(home / "index.sqlite3")
    # Rewrite every stored ACL the way an index from before per-source scoping holds them.
    with store.batch():
        db = store._db
        db.execute("UPDATE acls SET acl_key = substr(acl_key, instr(acl_key, '|') + 1)")
        db.execute("UPDATE acl_gates SET principal = substr(principal, instr(principal, '|') + 1)")
        db.execute("UPDATE acl_deny SET principal = substr(principal, instr(principal, '|') + 1)")
        store._bump("acl_gen")
    store.close()
    assert hits(home, config, HANA) == set()
    assert hits(home, config, CEO) == set()
    out = run(home, config, "sync", "--mode", "permissions", "--json")
    assert out.returncode == 0, out.stderr
    syncs = json.loads(out.stdout)["syncs"]
    assert sum(s["acl_updated"] for s in syncs) == 4  # every document, none re-embedded
    assert sum(s["chunks_embedded"] for s in syncs) == 0
    assert hits(home, config, HANA) == {"hr:salaries.md", "wiki:welcome.md"}
    assert hits(home, config, MALLORY) == {"wiki:welcome.md", "wiki:board/agenda.md"}


def test_a_shared_address_two_people_claim_is_reported_and_opens_nothing(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "mail", {
        ".access.json": {"read": ["everyone"]},
        ".aliases.json": {"alice@acme.example": ["shared@acme.example"],
                          "bob@acme.example": ["shared@acme.example", "bob.old@acme.example"]},
        "open.md": "# Open\n\nThe zeppelin timetable is public.\n",
        "box/.access.json": {"read": ["user:shared@acme.example"]},
        "box/inbox.md": "# Inbox\n\nThe zeppelin invoices arrive in the shared box.\n",
        "old/.access.json": {"read": ["user:bob.old@acme.example"]},
        "old/notes.md": "# Notes\n\nBob's zeppelin notes from his old address.\n",
    })
    home, config = tmp_path / "home", write_config(tmp_path / "c.toml", {"mail": root})
    out = run(home, config, "sync", "--json")
    assert out.returncode == 0, out.stderr
    (report,) = json.loads(out.stdout)["syncs"]
    assert any("shared@acme.example" in w and "alice@acme.example" in w
               and "bob@acme.example" in w for w in report["warnings"]), report["warnings"]
    assert hits(home, config, "alice@acme.example") == {"mail:open.md"}
    assert hits(home, config, "bob@acme.example") == {"mail:open.md", "mail:old/notes.md"}
    # The shared address itself reads its own box, and picks neither claimant's access.
    assert hits(home, config, "shared@acme.example") == {"mail:open.md", "mail:box/inbox.md"}
    # An alias is one way: signing in as bob's old address does not make one bob.
    assert hits(home, config, "bob.old@acme.example") == {"mail:open.md", "mail:old/notes.md"}
