"""The SyncLock protocol on a real redis-server and on the file lock: a trigger that meets a held
lock is merged and handed to the holder atomically with its release, so none falls between the
holder's last look and its release; the lock fails closed when Redis cannot be reached; keys and
queues are namespaced per deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.settings import FileConfig, Settings
from indexer.jobs.lock import RedisSyncLock, deployment_queue, lock_key, pending_key
from indexer.jobs.testing import RedisServer, free_port
from indexer.locks import (
    FileSyncLock,
    LockUnavailable,
    SyncBusy,
    Trigger,
    drain,
    exclusive,
    holding_all,
    sync_lock,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as s:
        yield s


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


def settings(home: Path, jobs: dict[str, object] | None = None,
             store: dict[str, object] | None = None) -> Settings:
    file = FileConfig.model_validate({"jobs": jobs or {}, "store": store or {}})
    return Settings(home=home, config_path=None, file=file)


def test_a_trigger_meeting_a_held_lease_is_merged_and_handed_to_the_holder(
        client: redis.Redis) -> None:
    lock = RedisSyncLock(client, "q", 5.0)
    held = lock.acquire("docs", "full", "task one")
    with pytest.raises(SyncBusy) as busy:
        lock.acquire("docs", "permissions", "task two")
    assert busy.value.merged and busy.value.running.holder == "task one"
    assert str(busy.value) == ("merged into the running full sync of 'docs' (task one): "
                               "a permission sync runs right after it")
    # Two more requests of the same mode coalesce into one; the latest requester is kept.
    assert lock.merge_if_running("docs", "permissions", "cli three") is not None
    running, pending = lock.running("docs")
    assert running is not None and running.mode == "full"
    assert [(t.mode, t.requested_by) for t in pending] == [("permissions", "cli three")]

    taken = held.finish()
    assert [t.mode for t in taken] == ["permissions"]
    assert client.pttl(lock_key("q", "docs")) > 0  # still held while the merged run runs
    assert client.exists(pending_key("q", "docs")) == 0
    with pytest.raises(SyncBusy):
        lock.acquire("docs", "full", "task four", merge=False)
    assert held.finish() == []
    assert client.exists(lock_key("q", "docs")) == 0  # released only when nothing was left
    assert lock.merge_if_running("docs", "permissions", "cli five") is None  # nobody runs
    assert client.exists(pending_key("q", "docs")) == 0
    lock.acquire("docs", "full", "task six").release()


def test_drain_runs_what_is_merged_while_it_drains_and_the_holder_is_never_merged_into_itself(
        client: redis.Redis) -> None:
    lock = RedisSyncLock(client, "q", 5.0)
    ran: list[str] = []

    def run(trigger: Trigger) -> None:
        ran.append(trigger.mode)
        if trigger.mode == "permissions":  # a request arrives during the merged run
            lock.merge_if_running("docs", "groups", "cli late")

    with exclusive(lock, "docs", "full", "task one", run):
        with pytest.raises(SyncBusy) as own:
            lock.acquire("docs", "full", "task one")  # this task, redelivered
        assert not own.value.merged
        lock.merge_if_running("docs", "permissions", "cli early")
    assert ran == ["permissions", "groups"]
    assert client.exists(lock_key("q", "docs"), pending_key("q", "docs")) == 0


def test_a_failed_body_still_runs_the_merged_revocation_and_an_interrupted_drain_gives_back(
        client: redis.Redis) -> None:
    from core.errors import SyncError

    lock = RedisSyncLock(client, "q", 5.0)
    ran: list[str] = []
    with pytest.raises(SyncError, match="budget"), \
            exclusive(lock, "docs", "full", "task one", lambda t: ran.append(t.mode)):
        lock.merge_if_running("docs", "permissions", "cli")
        raise SyncError("error budget spent")
    assert ran == ["permissions"] and client.exists(lock_key("q", "docs")) == 0

    held = lock.acquire("docs", "full", "task two")
    lock.merge_if_running("docs", "permissions", "cli")
    lock.merge_if_running("docs", "prune", "cli")

    def interrupted(trigger: Trigger) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drain(held, interrupted)
    assert client.exists(lock_key("q", "docs")) == 0  # released
    _, pending = lock.running("docs")
    assert sorted(t.mode for t in pending) == ["permissions", "prune"]  # kept for the next


def test_reindex_holds_every_connector_and_refuses_while_one_runs(client: redis.Redis) -> None:
    lock = RedisSyncLock(client, "q", 5.0)
    running = lock.acquire("b", "full", "task w")
    with pytest.raises(SyncBusy, match="already running"), \
            holding_all(lock, ["a", "b"], "reindex", "cli reindex", lambda n, t: None):
        pass
    assert client.exists(lock_key("q", "a")) == 0  # the one it took was let go
    assert client.exists(pending_key("q", "b")) == 0  # and it merged nothing
    running.release()
    ran: list[tuple[str, str]] = []
    with holding_all(lock, ["a", "b"], "reindex", "cli reindex",
                     lambda h, t: ran.append((h.connector, t.mode))):
        with pytest.raises(SyncBusy) as busy:
            lock.acquire("b", "permissions", "task x")
        assert busy.value.merged and "the running reindex of" in str(busy.value)
    assert ran == [("b", "permissions")]
    assert client.exists(lock_key("q", "a"), lock_key("q", "b")) == 0


def test_an_unreachable_redis_fails_closed_with_one_line_and_no_password(tmp_path: Path) -> None:
    url = f"redis://:Tr0ub4dor3pw@127.0.0.1:{free_port()}/0"
    lock = sync_lock(settings(tmp_path, {"broker_url": url}))
    assert isinstance(lock, RedisSyncLock)
    for attempt in (lambda: lock.acquire("docs", "full", "cli"), lambda: lock.running("docs"),
                    lambda: lock.merge_if_running("docs", "full", "cli")):
        with pytest.raises(LockUnavailable) as err:
            attempt()
        message = str(err.value)
        assert "Tr0ub4dor3pw" not in message and "\n" not in message
        assert "redis://:***@127.0.0.1" in message and "sync lock" in message


def test_the_file_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    lock = sync_lock(settings(tmp_path))
    assert isinstance(lock, FileSyncLock)
    held = lock.acquire("docs", "full", "`clearance sync` pid 1")
    with pytest.raises(SyncBusy) as busy:
        FileSyncLock(tmp_path).acquire("docs", "permissions", "other")
    assert not busy.value.merged and "full sync (`clearance sync` pid 1)" in str(busy.value)
    running, pending = FileSyncLock(tmp_path).running("docs")
    assert running is not None and running.mode == "full" and pending == []
    assert held.finish() == []
    assert FileSyncLock(tmp_path).running("docs") == (None, [])
    FileSyncLock(tmp_path).acquire("docs", "permissions", "other").release()


def test_each_deployment_has_its_own_queue_unless_one_is_set(tmp_path: Path) -> None:
    a, b = settings(tmp_path / "a"), settings(tmp_path / "b")
    assert deployment_queue(a) != deployment_queue(b)
    assert deployment_queue(a) == deployment_queue(settings(tmp_path / "a"))
    os = {"kind": "opensearch", "url": "https://search:9200"}
    one = settings(tmp_path / "host1", store={**os, "index_prefix": "acme"})
    two = settings(tmp_path / "host2", store={**os, "url": "https://Search:9200/",
                                              "index_prefix": "acme"})
    other = settings(tmp_path / "host1", store={**os, "index_prefix": "globex"})
    assert deployment_queue(one) == deployment_queue(two)  # one deployment on two hosts
    assert deployment_queue(one).startswith("acme.") and deployment_queue(one) != deployment_queue(
        other)
    assert deployment_queue(settings(tmp_path / "a", {"queue": "clearance"})) == "clearance"


def test_reading_the_file_lock_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert FileSyncLock(home).running("docs") == (None, [])
    assert not home.exists()


def test_a_damaged_trigger_entry_still_runs_its_mode(client: redis.Redis) -> None:
    lock = RedisSyncLock(client, "q", 5.0)
    held = lock.acquire("docs", "full", "task one")
    client.hset(pending_key("q", "docs"), mapping={"permissions": "not json",
                                                   "prune": '["a list"]',
                                                   "groups": '{"requested_at": "soon"}'})
    assert sorted(t.mode for t in held.finish()) == ["groups", "permissions", "prune"]
    assert held.finish() == []


def test_redis_gone_at_release_is_one_line_and_the_lease_simply_expires(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis-2").start()
    url = server.url.replace("redis://", "redis://:Hunter2pw@")  # no auth on it: ignored
    client = redis.Redis.from_url(server.url, socket_connect_timeout=2)
    lock = RedisSyncLock(client, "q", 30.0, url=url)
    held = lock.acquire("docs", "full", "cli")
    server.stop()
    try:
        for step in (held.finish, held.release):
            with pytest.raises(LockUnavailable) as err:
                step()
            message = str(err.value)
            assert message.startswith("cannot release the 'docs' sync lock at redis://:***@")
            assert "Hunter2pw" not in message and "\n" not in message
    finally:
        client.close()
