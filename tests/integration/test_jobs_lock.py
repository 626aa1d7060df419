"""One sync per connector at a time across workers: the Redis lease.

Two triggers at once on a two-process worker: one runs (holding a lease far shorter than the
sync, so it only finishes because the lease is renewed), the other is merged into it and runs
right after it, under the same lease. A
trigger that waits in the queue past its expiry is recorded as skipped instead of running late.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import redis

from indexer.jobs.app import create_app, enqueue
from indexer.jobs.lock import deployment_queue, lock_key
from indexer.jobs.testing import JobsDeployment, RedisServer, wait_for
from tests.conftest import write_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WORDS = ("ledger quarterly invoice travel policy budget review office holiday team report "
         "meeting supplier contract hiring laptop badge canteen parking roadmap").split()
LEASE = 1.0


def long_documents(root: Path, n: int = 200, seed: int = 4) -> Path:
    rng = random.Random(seed)
    spec: dict[str, Any] = {".access.json": {"read": ["domain:acme.com"]}}
    for i in range(n):
        body = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(120)) + "."
                           for _ in range(rng.randint(12, 25)))
        spec[f"all/doc{i:03d}.md"] = f"# Document {i}\n\n{body}\n"
    return write_tree(root, spec)


def sync_starts(dep: JobsDeployment) -> int:
    return sum(p.read_text().count('"event": "sync.start"') for p in dep.work.glob("*.log"))


def test_two_triggers_at_once_one_runs_the_other_is_merged_and_runs_right_after(
        tmp_path: Path) -> None:
    root = long_documents(tmp_path / "docs", n=400)
    with RedisServer(tmp_path / "redis") as redis_server:
        dep = JobsDeployment(tmp_path / "deploy", redis_server.url, root, page_size=4,
                             jobs={"lock_lease_seconds": LEASE})
        client = redis.Redis.from_url(redis_server.url)
        try:
            dep.worker("--pool", "prefork", "--concurrency", "2")
            settings = dep.settings()
            app = create_app(settings)
            queue = deployment_queue(settings)
            ids = {q["task_id"] for q in enqueue(app, settings, ["docs"], "full")}
            key = lock_key(queue, "docs")
            ttl = int(wait_for(lambda: max(client.pttl(key), 0), 60, "the lease to be taken"))
            assert 0 < ttl <= LEASE * 1000
            # Sent straight to the queue (not through `sync --queue`, which would merge it
            # itself): the second worker process meets the lease and merges the trigger.
            second = app.send_task("clearance.full_sync", args=("docs",), queue=queue).id
            merged = wait_for(lambda: dep.state("sync:docs:full:merged"), 120,
                              "the merged trigger to run")
            assert merged["requested_by"] == f"task {second}"
            assert merged["merged_into"]["holder"] in {f"task {i}" for i in ids}
            assert merged["ran"]["status"] == "ok", dep.logs()

            report = dep.state("sync:docs:full:last")
            assert report["run_id"] == merged["ran"]["run_id"]
            assert report["status"] == "ok" and report["documents"] == 400
            assert sync_starts(dep) == 2  # the first, then the merged one: never both at once
            assert dep.state("sync:docs:full:skipped") is None
            assert client.exists(key) == 0  # released, not left to expire

            status = dep.clearance("status", "--json")
            assert status.returncode == 0, status.stderr
            row = json.loads(status.stdout)["connectors"][0]
            assert row["last_run"]["status"] == "ok" and row["running"] is None
            assert row["last_merged"]["requested_by"] == f"task {second}"
        finally:
            client.close()
            dep.close()


def test_a_trigger_that_expires_in_the_queue_is_recorded_as_skipped(tmp_path: Path) -> None:
    root = long_documents(tmp_path / "docs", n=200)
    with RedisServer(tmp_path / "redis") as redis_server:
        dep = JobsDeployment(tmp_path / "deploy", redis_server.url, root, page_size=4)
        try:
            dep.worker("--pool", "solo")  # busy with the first sync while the second waits
            settings = dep.settings()
            app = create_app(settings)
            enqueue(app, settings, ["docs"], "full")
            app.send_task("clearance.permission_sync", args=("docs",),
                          queue=deployment_queue(settings), expires=0.5)
            full = dep.wait_report("full", since=0, timeout=120)
            assert full["status"] == "ok" and full["duration"] > 0.5, dep.logs()
            skipped = wait_for(lambda: dep.state("sync:docs:permissions:skipped"), 30,
                               "the expired trigger's skip record")
            assert isinstance(skipped, dict) and "expired" in skipped["error"]
            assert dep.state("sync:docs:permissions:last") is None  # it never ran
            status = dep.clearance("status")
            assert "last skipped: permissions" in status.stdout, status.stdout
        finally:
            dep.close()
