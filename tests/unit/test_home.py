"""Tightening an existing home folder touches Clearance's own files only, never follows a
symlink, and leaves a folder that is not an index's (or a shared one) as it is."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from apps.home import tighten_home

pytestmark = pytest.mark.unit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def loose_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "locks").mkdir(parents=True)
    for name in ("index.sqlite3", "index.sqlite3-wal", "audit.jsonl", "locks/docs.lock",
                 "notes.txt"):
        (home / name).write_text("x")
        os.chmod(home / name, 0o644)
    os.chmod(home / "locks", 0o755)
    os.chmod(home, 0o755)
    return home


def test_own_files_are_tightened_and_reported_in_one_line(tmp_path: Path) -> None:
    home = loose_home(tmp_path)
    warning = tighten_home(home)
    assert warning is not None and "\n" not in warning
    assert mode(home) == 0o700 and mode(home / "locks") == 0o700
    for name in ("index.sqlite3", "index.sqlite3-wal", "audit.jsonl", "locks/docs.lock"):
        assert mode(home / name) == 0o600, name
        assert name in warning
    assert tighten_home(home) is None  # nothing left to say


def test_files_that_are_not_clearances_keep_their_mode(tmp_path: Path) -> None:
    home = loose_home(tmp_path)
    tighten_home(home)
    assert mode(home / "notes.txt") == 0o644


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    home = loose_home(tmp_path)
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone else's")
    os.chmod(target, 0o644)
    (home / "index.sqlite3-shm").symlink_to(target)
    tighten_home(home)
    assert mode(target) == 0o644


def test_a_folder_without_an_index_is_not_closed(tmp_path: Path) -> None:
    folder = tmp_path / "projects"
    folder.mkdir()
    os.chmod(folder, 0o755)
    (folder / "audit.jsonl").write_text("")
    os.chmod(folder / "audit.jsonl", 0o644)
    tighten_home(folder)
    assert mode(folder) == 0o755 and mode(folder / "audit.jsonl") == 0o600


def test_a_sticky_shared_folder_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "index.sqlite3").write_text("x")
    os.chmod(shared, 0o1777)
    tighten_home(shared)
    assert mode(shared) == 0o1777
    assert mode(shared / "index.sqlite3") == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a file to another uid")
def test_a_file_owned_by_another_account_is_reported_not_changed(tmp_path: Path) -> None:
    home = loose_home(tmp_path)
    os.chown(home / "audit.jsonl", 65534, 65534)
    warning = tighten_home(home)
    assert warning is not None and "audit.jsonl is owned by uid 65534" in warning
    assert mode(home / "audit.jsonl") == 0o644
