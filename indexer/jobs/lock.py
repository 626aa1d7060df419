"""One sync per connector across every worker and host: a Redis lease (the SyncLock whenever a
broker is configured).

The lease is a key set with NX and a TTL holding a token (JSON: holder, mode, nonce); a daemon
thread renews it every third of the lease while the sync runs, so a long page never lets it
lapse, and a holder that dies (SIGKILL, lost machine) stops renewing and the key expires. Every
step is a Lua script that acts only while the token still matches, so a holder whose lease lapsed
can never extend or delete the next holder's lease. The pipeline calls `ensure_held` after each
page: a sync that lost its lease stops at its last checkpoint.

Triggers that meet a held lease are merged into a hash beside it (one entry per mode, the latest
request wins), atomically with the check that the lease is held; the holder's `finish` takes them
atomically with the check that none is left before it deletes the lease. So no trigger can fall
between a holder's last look and its release.

Keys are namespaced by the deployment (`deployment_queue`): two deployments on one Redis with a
same-named connector never share a lease, a trigger or a queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from typing import Any

import redis
from redis.exceptions import RedisError

from core.errors import ConfigError, SyncError
from core.redact import redact_text, redact_url
from core.settings import Settings
from indexer.locks import Held, LockUnavailable, RunningSync, SyncBusy, Trigger

log = logging.getLogger("clearance.jobs")

# ARGV: token, ttl ms, mode, trigger json, requester, merge (1/0)
# -> {1} taken | {2, value} merged | {0, value} held (not merged)
_ACQUIRE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
local held = redis.call('get', KEYS[1])
local ok, v = pcall(cjson.decode, held)
local holder = ok and type(v) == 'table' and v['holder'] or held
if ARGV[6] == '1' and holder ~= ARGV[5] then
  redis.call('hset', KEYS[2], ARGV[3], ARGV[4])
  return {2, held}
end
return {0, held}
"""
# ARGV: mode, trigger json -> the lease value (merged) | false (nobody holds it)
_MERGE = """
local held = redis.call('get', KEYS[1])
if not held then return false end
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
return held
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# -> {0} not ours | {1} released | {2, mode, json, mode, json, ...} triggers taken, still held
_FINISH = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return {0} end
local pending = redis.call('hgetall', KEYS[2])
if #pending > 0 then
  redis.call('del', KEYS[2])
  redis.call('pexpire', KEYS[1], ARGV[2])
  table.insert(pending, 1, 2)
  return pending
end
redis.call('del', KEYS[1])
return {1}
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LeaseLost(SyncError):
    """The lease lapsed while the sync ran (Redis unreachable, or the holder stalled too long)."""


def deployment_queue(settings: Settings) -> str:
    """This deployment's Celery queue and Redis namespace: `[jobs] queue` when set, else derived
    from what the deployment writes to (the OpenSearch cluster and index prefix, or the embedded
    home), so that two deployments sharing a Redis never run each other's tasks."""
    jobs = settings.file.jobs
    if "queue" in jobs.model_fields_set:
        return jobs.queue
    store = settings.file.store
    if store.kind == "opensearch":
        url = (store.url or "").strip().rstrip("/").lower()  # one cluster, however it is spelled
        where, name = f"{url}\0{store.index_prefix}", store.index_prefix
    else:
        where, name = str(settings.home), "clearance"
    return f"{name}.{hashlib.sha256(where.encode()).hexdigest()[:10]}"


def lock_key(queue: str, connector: str) -> str:
    return f"clearance:{queue}:sync-lock:{connector}"


def pending_key(queue: str, connector: str) -> str:
    return f"clearance:{queue}:pending:{connector}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _running(connector: str, value: Any) -> RunningSync:
    text = _text(value)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):  # a lease of an older version: `<task id>/<nonce>`
        return RunningSync(connector, "sync", f"task {text.rpartition('/')[0] or text}")
    return RunningSync(connector, str(data.get("mode", "sync")), str(data.get("holder", "?")))


def _triggers(flat: list[Any]) -> list[Trigger]:
    out = []
    for mode, raw in zip(flat[::2], flat[1::2], strict=True):
        try:  # a damaged entry still runs its mode: a trigger is never dropped
            data = json.loads(_text(raw))
            at = float(data.get("requested_at", 0.0))
        except (ValueError, TypeError, AttributeError):
            data, at = {}, 0.0
        out.append(Trigger(_text(mode), str(data.get("requested_by", "?")), at))
    return sorted(out, key=lambda t: t.requested_at)


class ConnectorLease:
    """One held lease: renewed by a daemon thread until `finish` releases it (or `release`)."""

    def __init__(self, lock: RedisSyncLock, connector: str, token: str) -> None:
        self.connector = connector
        self.key = lock_key(lock.queue, connector)
        self._lock, self.token = lock, token
        self._stop = threading.Event()
        self._renewed_at = time.monotonic()
        self._lost: str | None = None
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease:{self.key}",
                                        daemon=True)
        self._thread.start()

    @property
    def lease_seconds(self) -> float:
        return self._lock.lease_seconds

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                renewed = self._lock.script(_RENEW, [self.key],
                                            [self.token, self._lock.lease_ms])
            except RedisError as exc:  # keep trying while the lease may still be valid
                log.warning("lease.renew_failed",
                            extra={"key": self.key, "reason": self._lock.clean(exc)})
                continue
            if not renewed:
                self._lost = "the lock is held by someone else now"
                log.error("lease.lost", extra={"key": self.key})
                return
            self._renewed_at = time.monotonic()

    def ensure_held(self) -> None:
        if self._lost is None and time.monotonic() - self._renewed_at > self.lease_seconds:
            self._lost = f"not renewed for over {self.lease_seconds:g}s"
        if self._lost is not None:
            raise LeaseLost(f"lost the sync lock of {self.connector!r}: {self._lost}")

    def finish(self) -> list[Trigger]:
        self.ensure_held()
        pending = pending_key(self._lock.queue, self.connector)
        reply = self._lock.call(_FINISH, [self.key, pending], [self.token, self._lock.lease_ms],
                                f"release the {self.connector!r}")
        if int(reply[0]) == 2:
            self._renewed_at = time.monotonic()
            return _triggers(list(reply[1:]))
        self._stop_renewing()
        if int(reply[0]) == 0:
            raise LeaseLost(f"lost the sync lock of {self.connector!r}: it expired before the "
                            "sync finished")
        return []

    def restore(self, triggers: list[Trigger]) -> None:
        if triggers:
            self._lock.merge_back(self.connector, triggers)

    def release(self) -> None:
        self._stop_renewing()
        self._lock.call(_RELEASE, [self.key], [self.token], f"release the {self.connector!r}")

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


class RedisSyncLock:
    """The SyncLock of a deployment with a broker: leases and merged triggers in Redis."""

    def __init__(self, client: redis.Redis, queue: str, lease_seconds: float,
                 url: str | None = None) -> None:
        self.client, self.queue, self.lease_seconds, self.url = client, queue, lease_seconds, url
        self.lease_ms = max(1, int(lease_seconds * 1000))

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisSyncLock:
        jobs = settings.file.jobs
        assert jobs.broker_url
        try:
            client = redis.Redis.from_url(jobs.broker_url, socket_connect_timeout=5,
                                          socket_timeout=10)
        except ValueError as exc:  # not a Redis URL: the config is wrong (exit 2)
            raise ConfigError(f"[jobs] broker_url {redact_url(jobs.broker_url)}: "
                              f"{redact_text(str(exc), [jobs.broker_url])}") from None
        return cls(client, deployment_queue(settings), jobs.lock_lease_seconds, jobs.broker_url)

    def clean(self, exc: BaseException) -> str:
        return redact_text(str(exc) or type(exc).__name__, [self.url])

    def script(self, body: str, keys: list[str], args: list[Any]) -> Any:
        return self.client.eval(body, len(keys), *keys, *args)

    def call(self, body: str, keys: list[str], args: list[Any], doing: str) -> Any:
        """A script, with a Redis failure as one LockUnavailable line (never a traceback)."""
        try:
            return self.script(body, keys, args)
        except RedisError as exc:
            where = redact_url(self.url) if self.url else "Redis"
            raise LockUnavailable(f"cannot {doing} sync lock at {where}: {self.clean(exc)}"
                                  ) from None

    def acquire(self, connector: str, mode: str, holder: str, *, merge: bool = True) -> Held:
        token = json.dumps({"holder": holder, "mode": mode, "nonce": uuid.uuid4().hex[:12]})
        trigger = json.dumps({"requested_by": holder, "requested_at": time.time()})
        reply = self.call(_ACQUIRE, [lock_key(self.queue, connector),
                                     pending_key(self.queue, connector)],
                          [token, self.lease_ms, mode, trigger, holder, int(merge)],
                          f"take the {connector!r}")
        if int(reply[0]) == 1:
            return ConnectorLease(self, connector, token)
        running = _running(connector, reply[1])
        raise SyncBusy(running, mode, merged=int(reply[0]) == 2)

    def merge_if_running(self, connector: str, mode: str, requester: str) -> RunningSync | None:
        """Merge a trigger into the running sync of `connector`, if one holds the lease."""
        trigger = json.dumps({"requested_by": requester, "requested_at": time.time()})
        value = self.call(_MERGE, [lock_key(self.queue, connector),
                                   pending_key(self.queue, connector)], [mode, trigger],
                          f"check the {connector!r}")
        return None if value is None else _running(connector, value)

    def merge_back(self, connector: str, triggers: list[Trigger]) -> None:
        try:
            self.client.hset(pending_key(self.queue, connector), mapping={
                t.mode: json.dumps({"requested_by": t.requested_by,
                                    "requested_at": t.requested_at}) for t in triggers})
        except RedisError as exc:
            raise LockUnavailable(f"cannot put back the triggers merged into the sync of "
                                  f"{connector!r}: {self.clean(exc)}") from None

    def running(self, connector: str) -> tuple[RunningSync | None, list[Trigger]]:
        try:
            value = self.client.get(lock_key(self.queue, connector))
            pending = self.client.hgetall(pending_key(self.queue, connector))
        except RedisError as exc:
            where = redact_url(self.url) if self.url else "Redis"
            raise LockUnavailable(f"cannot read the sync locks at {where}: {self.clean(exc)}"
                                  ) from None
        flat = [x for kv in pending.items() for x in kv]
        return (None if value is None else _running(connector, value)), _triggers(flat)

    def close(self) -> None:
        self.client.close()
