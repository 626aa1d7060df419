"""Helpers shared by tests that run the installed console script."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import pytest


def clearance_exe() -> str:
    """The `clearance` script of the interpreter running the tests (the project's venv)."""
    found = Path(sys.executable).parent / "clearance"
    if found.is_file():
        return str(found)
    which = shutil.which("clearance")
    assert which, "the clearance console script is not installed"
    return which


def running_in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """CI sets CI=true: there a missing service is a broken setup, not a reason to skip."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in ("1", "true", "yes")


def unavailable(reason: str, environ: Mapping[str, str] | None = None) -> NoReturn:
    """A fixture that cannot start its service (osmem-server, redis-server, openssl): skip on a
    developer's machine, fail under CI, where a skip would hide that the tests never ran."""
    if running_in_ci(environ):
        pytest.fail(f"{reason} (CI=true: a service the tests need must start)", pytrace=False)
    pytest.skip(reason)
