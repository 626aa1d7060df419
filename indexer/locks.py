"""One sync per connector at a time, for every caller: the SyncLock protocol.

`sync_lock(settings)` is the Redis lease (indexer.jobs.lock) whenever `[jobs] broker_url` is set,
so an in-process `clearance sync`, `demo`, `reindex` and every worker's task exclude each other
across hosts; without a broker it is an exclusive file lock in the home (embedded mode). A caller
that finds the lock held gets SyncBusy; with the Redis lease its trigger is first *merged*: it is
recorded beside the lease, and the holder runs it right after its own sync (`drain`), so a
revocation triggered mid-sync is never lost. Errors reaching the lock fail closed (LockUnavailable:
no sync runs without the lock).
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.errors import ClearanceError, SyncError, SyncLocked
from core.settings import Settings

log = logging.getLogger("clearance.jobs")

MODE_NAMES = {"full": "full sync", "incremental": "incremental sync",
              "permissions": "permission sync", "groups": "group sync", "prune": "prune",
              "reindex": "reindex"}


def mode_name(mode: str) -> str:
    return MODE_NAMES.get(mode, f"{mode} sync")


@dataclass(frozen=True)
class RunningSync:
    """Who holds a connector's lock: a sync mode (or "reindex") and a holder description."""

    connector: str
    mode: str
    holder: str


@dataclass(frozen=True)
class Trigger:
    """A request that met a held lock and was merged: the holder runs it right after."""

    mode: str
    requested_by: str
    requested_at: float

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "requested_by": self.requested_by,
                "requested_at": self.requested_at}


class SyncBusy(SyncLocked):
    """The connector's lock is held; `merged` says whether this trigger will still run."""

    def __init__(self, running: RunningSync, mode: str, merged: bool) -> None:
        self.running, self.mode, self.merged = running, mode, merged
        what = f"the running {mode_name(running.mode)} of {running.connector!r} ({running.holder})"
        if merged:
            article = "an" if mode_name(mode)[0] in "aeiou" else "a"
            super().__init__(f"merged into {what}: {article} {mode_name(mode)} runs right "
                             "after it")
        else:
            super().__init__(f"a sync of connector {running.connector!r} is already running: "
                             f"{mode_name(running.mode)} ({running.holder})")


class LockUnavailable(SyncError):
    """The lock could not be taken, checked or released (Redis unreachable, say)."""


class Held(Protocol):
    """A held connector lock."""

    connector: str

    def ensure_held(self) -> None:
        """Raise SyncError if the lock was lost (a sync stops at its last checkpoint)."""

    def finish(self) -> list[Trigger]:
        """Atomically: the triggers merged meanwhile (the lock stays held: run them and call
        again), or [] with the lock released."""

    def release(self) -> None:
        """Release now (error paths); triggers merged meanwhile stay for the next holder."""

    def restore(self, triggers: list[Trigger]) -> None:
        """Put triggers taken by `finish` but not run back beside the lock."""


class SyncLock(Protocol):
    def acquire(self, connector: str, mode: str, holder: str, *, merge: bool = True) -> Held:
        """Take `connector`'s lock for a `mode` run; SyncBusy if held (merged when `merge`
        and the lock can record triggers), LockUnavailable if the lock cannot be reached."""

    def running(self, connector: str) -> tuple[RunningSync | None, list[Trigger]]:
        """Who holds `connector`'s lock now, and the triggers waiting for it to finish."""


def cli_holder(command: str) -> str:
    return f"`clearance {command}` pid {os.getpid()} on {socket.gethostname()}"


class _FileHeld:
    def __init__(self, connector: str, fd: int) -> None:
        self.connector, self._fd = connector, fd

    def ensure_held(self) -> None:
        return None  # the kernel holds it until this process ends

    def finish(self) -> list[Trigger]:
        self.release()
        return []

    def restore(self, triggers: list[Trigger]) -> None:
        return None  # the file lock records no triggers

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FileSyncLock:
    """Embedded mode: an exclusive, non-blocking flock per connector in the home. The kernel drops
    it when the process dies, so a killed sync never leaves it stuck. Nothing records triggers
    here: a second sync is refused (the person who ran it is told)."""

    def __init__(self, home: Path) -> None:
        self.lock_dir = home / "locks"

    def _open(self, connector: str) -> int:
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            return os.open(self.lock_dir / f"{connector}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LockUnavailable(f"cannot open the sync lock of {connector!r} in "
                                  f"{self.lock_dir}: {exc.strerror}") from None

    def acquire(self, connector: str, mode: str, holder: str, *, merge: bool = True) -> Held:
        fd = self._open(connector)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = self._read(fd, connector)
            os.close(fd)
            raise SyncBusy(running, mode, merged=False) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"mode": mode, "holder": holder}).encode())
        return _FileHeld(connector, fd)

    def _read(self, fd: int, connector: str) -> RunningSync:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        return RunningSync(connector, str(data.get("mode", "sync")),
                           str(data.get("holder", "another process on this home")))

    def running(self, connector: str) -> tuple[RunningSync | None, list[Trigger]]:
        try:  # read-only: `status` creates nothing in the home
            fd = os.open(self.lock_dir / f"{connector}.lock", os.O_RDONLY)
        except FileNotFoundError:
            return None, []
        except OSError as exc:
            raise LockUnavailable(f"cannot read the sync lock of {connector!r} in "
                                  f"{self.lock_dir}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read(fd, connector), []
            return None, []
        finally:
            os.close(fd)


def sync_lock(settings: Settings) -> SyncLock:
    """The lock every sync of this deployment takes: Redis with a broker, else the file lock."""
    if settings.file.jobs.broker_url:
        from indexer.jobs.lock import RedisSyncLock

        return RedisSyncLock.from_settings(settings)
    return FileSyncLock(settings.home)


def drain(held: Held, run: Callable[[Trigger], None]) -> None:
    """Run the triggers merged into this holder's run until none is left; the lock is released
    when `finish` finds none. `run` reports a run's own failure; the other triggers still run.
    Interrupted, the triggers not run yet go back beside the lock for its next holder."""
    todo: list[Trigger] = []
    try:
        while True:
            todo = held.finish()
            if not todo:
                return
            while todo:
                trigger = todo[0]
                log.info("sync.merged_run", extra={"connector": held.connector,
                                                   "mode": trigger.mode,
                                                   "requested_by": trigger.requested_by})
                run(trigger)
                todo.pop(0)
    except BaseException:
        _give_back(held, todo)
        raise


def _give_back(held: Held, todo: list[Trigger]) -> None:
    try:
        held.restore(todo)
    except LockUnavailable as exc:
        log.warning("lock.triggers_lost", extra={"connector": held.connector, "reason": str(exc),
                                               "modes": [t.mode for t in todo]})
    _quiet_release(held)


@contextmanager
def exclusive(lock: SyncLock, connector: str, mode: str, holder: str,
              run_merged: Callable[[Trigger], None]) -> Iterator[Held]:
    """Hold `connector`'s lock for the body, then run what was merged into it meanwhile."""
    with exclusive_held(lock.acquire(connector, mode, holder), run_merged) as held:
        yield held


@contextmanager
def exclusive_held(held: Held, run_merged: Callable[[Trigger], None]) -> Iterator[Held]:
    """The body under `held`, then `drain` (also after the body failed with a ClearanceError: a
    revocation merged into a failed full sync still runs); any other exception releases."""
    try:
        yield held
    except ClearanceError:
        drain(held, run_merged)
        raise
    except BaseException:
        _quiet_release(held)
        raise
    drain(held, run_merged)


@contextmanager
def holding_all(lock: SyncLock, connectors: list[str], mode: str, holder: str,
                run_merged: Callable[[Held, Trigger], None]) -> Iterator[list[Held]]:
    """Every connector's lock at once (reindex), never merging this caller's own trigger; on the
    way out each connector's merged triggers run, then its lock is released."""
    held: list[Held] = []
    try:
        for name in connectors:
            held.append(lock.acquire(name, mode, holder, merge=False))
        yield held
    except BaseException:
        for h in reversed(held):
            _quiet_release(h)
        raise
    for i, h in enumerate(held):
        try:
            drain(h, functools.partial(run_merged, h))
        except BaseException:
            for rest in held[i + 1:]:
                _quiet_release(rest)
            raise


def _quiet_release(held: Held) -> None:
    try:
        held.release()
    except LockUnavailable as exc:
        log.warning("lock.release_failed", extra={"connector": held.connector, "reason": str(exc)})


@contextmanager
def connector_lock(home: Path, connector: str) -> Iterator[None]:
    """The embedded file lock alone (kept for callers not yet on `sync_lock`)."""
    held = FileSyncLock(home).acquire(connector, "sync", cli_holder("sync"), merge=False)
    try:
        yield
    finally:
        held.release()
