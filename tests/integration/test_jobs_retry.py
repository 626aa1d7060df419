"""Transient source errors: a task retries with doubling delays and then succeeds; a source that
stays down is given up on after `max_retries`, the report says so, and what was indexed before
stays searchable. Tasks run eagerly in this process (Celery's `apply`, so the delays are logged
rather than waited for) against a real redis-server for the lease; the lease itself is checked
for token safety."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from connectors.base import DocumentPage, IdentitySnapshot, PermissionPage
from connectors.files.connector import FilesConnector
from core.errors import SourceUnavailable
from core.settings import FileConfig, Settings
from indexer.embedding.hashing import HashingEmbedder
from indexer.jobs import tasks
from indexer.jobs.app import create_app
from indexer.jobs.lock import (
    LeaseLost,
    RedisSyncLock,
    deployment_queue,
    lock_key,
    pending_key,
)
from indexer.jobs.testing import RedisServer, wait_for
from indexer.locks import SyncBusy
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline, Progress
from tests.conftest import write_tree

pytestmark = pytest.mark.integration


class FlakySource:
    """The files connector behind a source that is down for the next `outages` listings."""

    def __init__(self, inner: FilesConnector) -> None:
        self.inner = inner
        self.name, self.kind = inner.name, inner.kind
        self.outages = 0
        self.permission_outages = 0

    def documents(self, checkpoint: str | None = None) -> Iterator[DocumentPage]:
        if self.outages > 0:
            self.outages -= 1
            raise SourceUnavailable("503 Service Unavailable (Retry-After exhausted)")
        return self.inner.documents(checkpoint)

    def permissions(self, checkpoint: str | None = None) -> Iterator[PermissionPage]:
        if self.permission_outages > 0:
            self.permission_outages -= 1
            raise SourceUnavailable("429 Too Many Requests (Retry-After exhausted)")
        return self.inner.permissions(checkpoint)

    def identities(self) -> IdentitySnapshot:
        return self.inner.identities()


@dataclass
class FakeDeployment:
    settings: Settings
    store: SqliteStore
    source: FlakySource
    pipelines: list[Pipeline] = field(default_factory=list)

    def connectors(self, names: list[str] | None = None) -> list[Any]:
        return [self.source]

    def pipeline(self, progress: Progress | None = None) -> Pipeline:
        return Pipeline(self.store, HashingEmbedder(), progress=progress)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[FakeDeployment, RedisServer]]:
    root = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["domain:acme.com"]},
        **{f"doc{i}.md": f"# Note {i}\n\nThe quokka canteen menu for day {i}.\n"
           for i in range(10)}})
    with RedisServer(tmp_path / "redis") as server:
        file = FileConfig.model_validate({
            "jobs": {"broker_url": server.url, "max_retries": 3, "retry_backoff_seconds": 10,
                     "retry_backoff_max_seconds": 25},
            "connectors": [{"name": "docs", "kind": "files", "root": str(root)}]})
        settings = Settings(home=tmp_path / "home", config_path=None, file=file)
        store = SqliteStore(tmp_path / "home" / "index.sqlite3")
        dep = FakeDeployment(settings, store, FlakySource(FilesConnector("docs", root)))
        tasks.serve(lambda: dep)
        try:
            yield dep, server
        finally:
            tasks.serve(None)
            store.close()


def run_full_sync(dep: FakeDeployment) -> Any:
    app = create_app(dep.settings, with_schedule=False)
    return app.tasks["clearance.full_sync"].apply(args=("docs",))


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [r.in_seconds for r in caplog.records if r.getMessage() == "sync.retry"]


def test_transient_errors_are_retried_with_doubling_delays(
        deployment: tuple[FakeDeployment, RedisServer], caplog: pytest.LogCaptureFixture) -> None:
    dep, server = deployment
    dep.source.outages = 2
    with caplog.at_level(logging.INFO, logger="clearance"):
        result = run_full_sync(dep)
    assert result.successful(), result.traceback
    assert result.result["status"] == "ok" and result.result["indexed"] == 10
    first, second = retry_delays(caplog)
    assert 8 <= first <= 12 and 16 <= second <= 24  # 10 s, then 20 s, each ±20%
    client = redis.Redis.from_url(server.url)
    assert client.exists(lock_key(deployment_queue(dep.settings), "docs")) == 0
    client.close()


def test_a_source_that_stays_down_fails_with_the_reason_and_keeps_the_index(
        deployment: tuple[FakeDeployment, RedisServer], caplog: pytest.LogCaptureFixture) -> None:
    dep, _ = deployment
    assert run_full_sync(dep).successful()
    before = dep.store.snapshot()
    dep.source.outages = 100
    with caplog.at_level(logging.INFO, logger="clearance"):
        result = run_full_sync(dep)
    assert result.failed() and isinstance(result.result, SourceUnavailable)
    assert len(retry_delays(caplog)) == 3
    assert max(retry_delays(caplog)) <= 25 * 1.2  # capped
    report = dep.store.get_state("sync:docs:full:last")
    assert report["status"] == "failed"
    assert "503" in report["error"] and "gave up after 3 retries" in report["error"]
    assert dep.store.snapshot() == before  # the previous good index is still what is served


def test_a_lease_taken_over_by_someone_else_is_lost_and_never_released_by_us(
        deployment: tuple[FakeDeployment, RedisServer]) -> None:
    _, server = deployment
    client = redis.Redis.from_url(server.url)
    lock = RedisSyncLock(client, "q", 1.0)
    key = lock_key("q", "other")
    try:
        lease = lock.acquire("other", "full", "task a")
        with pytest.raises(SyncBusy, match=r"already running: full sync \(task a\)"):
            lock.acquire("other", "full", "task b", merge=False)
        time.sleep(0.5)
        lease.ensure_held()  # renewed: still ours
        client.set(key, "task-b/1234")  # e.g. our lease lapsed and another worker took it
        wait_for(lambda: getattr(lease, "_lost", None), 5, "the renewal thread to notice")
        with pytest.raises(LeaseLost):
            lease.ensure_held()
        lease.release()
        with pytest.raises(LeaseLost):
            lease.finish()
        assert client.get(key) == b"task-b/1234"
    finally:
        client.close()


def test_a_merged_revocation_that_meets_a_source_outage_waits_for_the_next_holder(
        deployment: tuple[FakeDeployment, RedisServer]) -> None:
    dep, server = deployment
    client = redis.Redis.from_url(server.url)
    queue = deployment_queue(dep.settings)
    lock = RedisSyncLock(client, queue, 5.0)
    try:
        # A permission trigger merged into a sync whose holder then died waits beside the lease.
        lock.acquire("docs", "full", "task dead").release()
        client.hset(pending_key(queue, "docs"), "permissions",
                    '{"requested_by": "cli revoke", "requested_at": 1.0}')
        dep.source.permission_outages = 1
        first = run_full_sync(dep)
        assert first.successful() and first.result["status"] == "ok", first.traceback
        assert dep.store.get_state("sync:docs:permissions:last")["status"] == "failed"
        merged = dep.store.get_state("sync:docs:permissions:merged")
        assert merged["ran"] is None and merged["requested_by"] == "cli revoke"
        _, pending = lock.running("docs")
        assert [t.requested_by for t in pending] == ["cli revoke"]  # not dropped

        second = run_full_sync(dep)  # the next holder runs it, the source is back
        assert second.successful(), second.traceback
        assert dep.store.get_state("sync:docs:permissions:last")["status"] == "ok"
        assert dep.store.get_state("sync:docs:permissions:merged")["ran"]["status"] == "ok"
        assert client.exists(pending_key(queue, "docs"), lock_key(queue, "docs")) == 0
    finally:
        client.close()
