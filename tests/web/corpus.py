"""A small synced index for the surface tests: everyone at acme reads the handbook, only the
exec group reads the acquisition plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.cli.main import main
from tests.conftest import write_tree

CEO = "ceo@acme.com"      # group exec
ADA = "ada@acme.com"      # plain employee
SECRET_DOC = "docs:exec/acquisition.md"
SECRET_TITLE = "Project Nightjar"
SECRET_WORDS = ("Nightjar", "Lumen", "forty-two million")

TREE: dict[str, Any] = {
    ".access.json": {"read": ["domain:acme.com"]},
    ".groups.json": {"exec": [f"user:{CEO}"], "admins": [f"user:{CEO}"]},
    "handbook/leave.md": (
        "# Annual leave\n\nEvery employee receives twenty-eight days of paid annual leave per "
        "year. Leave requests are approved by your line manager in the HR portal.\n"),
    "handbook/expenses.md": (
        "# Expenses\n\nTravel expenses are reimbursed within fourteen days of submitting a "
        "receipt. Meals on business trips are covered up to forty euros per day.\n"),
    "exec/.access.json": {"read": ["group:exec"]},
    "exec/acquisition.md": (
        "# Project Nightjar\n\nAcme plans to acquire Lumen Robotics for forty-two million euros. "
        "The board votes on the Nightjar acquisition in March.\n"),
}


def build(tmp: Path, extra_config: str = "") -> tuple[Path, Path]:
    """(home, config): the tree synced into a fresh home with the hashing embedder."""
    write_tree(tmp / "docs", TREE)
    home = tmp / "home"
    config = tmp / "clearance.toml"
    config.write_text('[embedder]\nname = "hashing"\n\n' + extra_config +
                      '\n[[connectors]]\nname = "docs"\nkind = "files"\nroot = "docs"\n',
                      encoding="utf-8")
    assert main(["--home", str(home), "sync", "--config", str(config)]) == 0
    return home, config
