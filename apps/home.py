"""The state folder (`--home`) is private to its owner: the index holds every chunk's text.

New files are created private by a 0077 umask (the SQLite file and its -wal/-shm, the audit
log, locks, the beat schedule); what an older version or another tool left readable is
tightened, with one warning line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private_by_default() -> int:
    """Files and folders this process creates from now on are its owner's only."""
    return os.umask(PRIVATE_UMASK)


def ensure_home(home: Path) -> None:
    """Create the home folder 0700 (parents too, when they are new)."""
    old = os.umask(PRIVATE_UMASK)
    try:
        home.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(old)


# What Clearance keeps in its home; nothing else there is touched (a home may be a shared place).
OWN_NAMES = ("index.sqlite3", "audit.jsonl", "locks", "beat-schedule", "clearance.toml")


def _entries(home: Path) -> Iterator[Path]:
    """Clearance's own files in the home folder, and what its own sub-folders (locks/) hold."""
    try:
        children = sorted(p for p in home.iterdir() if p.name.startswith(OWN_NAMES))
    except OSError:
        return
    for child in children:
        yield child
        if child.is_dir() and not child.is_symlink():
            try:
                yield from sorted(child.iterdir())
            except OSError:
                continue


def _tighten(path: Path, label: str, private: int) -> str | None:
    """chmod `path` to `private` when group or others have any bit; a note of what changed."""
    try:
        st = path.lstat()
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & 0o077:
        return None
    if st.st_uid != os.geteuid():
        return f"{label} is owned by uid {st.st_uid} (left {stat.S_IMODE(st.st_mode):04o})"
    try:
        os.chmod(path, private)
    except OSError as exc:
        return f"{label}: {exc.strerror} (left {stat.S_IMODE(st.st_mode):04o})"
    return f"{label} {stat.S_IMODE(st.st_mode):04o}->{private:04o}"


def tighten_home(home: Path) -> str | None:
    """Make an existing home folder and what it holds private; one warning line, or None.

    The folder itself is closed only when it holds an index (a folder of other things, or a
    shared one like /tmp, is not ours to close; our files in it are).
    """
    try:
        st = home.stat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    notes: list[str] = []
    shared = bool(st.st_mode & stat.S_ISVTX) or home == Path(home.anchor)
    if not shared and (home / "index.sqlite3").exists():
        note = _tighten(home, str(home), DIR_MODE)
        if note:
            notes.append(note)
    for entry in _entries(home):
        label = entry.relative_to(home).as_posix()
        note = _tighten(entry, label, DIR_MODE if entry.is_dir() else FILE_MODE)
        if note:
            notes.append(note)
    if not notes:
        return None
    return ("other local accounts could read the index and its state; tightened: "
            + ", ".join(notes))
