"""One sync per connector across every worker: a Redis lease.

The lock is a key set with NX and a TTL (the lease) holding a token `<task id>/<nonce>`; a daemon
thread renews it every third of the lease while the sync runs, so a long page never lets it
lapse, and a worker that dies (SIGKILL, lost machine) stops renewing and the key expires. Renewal
and release run Lua scripts that act only while the token still matches (redis-py's Lock), so a
worker whose lease lapsed can never extend or delete the next holder's lock. The pipeline calls
`ensure_held` after each page: a sync that lost its lease stops at its last checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from core.errors import SyncError

log = logging.getLogger("clearance.jobs")


class LeaseLost(SyncError):
    """The lease lapsed while the sync ran (Redis unreachable, or the worker stalled too long)."""


def lock_key(queue: str, connector: str) -> str:
    return f"clearance:{queue}:sync-lock:{connector}"


class ConnectorLease:
    def __init__(self, client: redis.Redis, key: str, lease_seconds: float, holder: str) -> None:
        self.key = key
        self.lease_seconds = lease_seconds
        self.token = f"{holder}/{uuid.uuid4().hex[:12]}"
        self._lock = Lock(client, key, timeout=lease_seconds, blocking=False,
                          thread_local=False)
        self._client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed_at = 0.0
        self._lost: str | None = None

    def acquire(self) -> bool:
        if not self._lock.acquire(token=self.token):
            return False
        self._renewed_at = time.monotonic()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease:{self.key}",
                                        daemon=True)
        self._thread.start()
        return True

    def holder_task(self) -> str | None:
        """The task id holding the lease now (None if nobody does)."""
        value = self._client.get(self.key)
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return text.rpartition("/")[0] or text

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self._lock.reacquire()  # TTL back to the full lease, only if the token matches
                self._renewed_at = time.monotonic()
            except LockError:
                self._lost = "the lock is held by someone else now"
                log.error("lease.lost", extra={"key": self.key})
                return
            except RedisError as exc:  # keep trying while the lease may still be valid
                log.warning("lease.renew_failed", extra={"key": self.key, "reason": str(exc)})

    def ensure_held(self) -> None:
        if self._lost is None and time.monotonic() - self._renewed_at > self.lease_seconds:
            self._lost = f"not renewed for over {self.lease_seconds:g}s"
        if self._lost is not None:
            raise LeaseLost(f"lost the sync lock {self.key}: {self._lost}")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self._lock.release()
        except LockError:
            pass  # lapsed, and perhaps someone else's now: theirs stays
        except RedisError as exc:
            log.warning("lease.release_failed", extra={"key": self.key, "reason": str(exc)})
