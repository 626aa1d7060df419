"""Helpers shared by tests that run the installed console script."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def clearance_exe() -> str:
    """The `clearance` script of the interpreter running the tests (the project's venv)."""
    found = Path(sys.executable).parent / "clearance"
    if found.is_file():
        return str(found)
    which = shutil.which("clearance")
    assert which, "the clearance console script is not installed"
    return which
