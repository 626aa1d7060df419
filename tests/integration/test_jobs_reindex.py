"""`clearance reindex` with a broker configured takes every connector's Redis lease (issue 15,
item 7), not only the local file locks: a trigger waiting beside a lease runs on the new index
before the reindex lets the lease go, and the leases are released afterwards. Real osmem-server
and redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from osmem_server import OsmemError, OsmemServer

from indexer.jobs.lock import RedisSyncLock, deployment_queue, lock_key, pending_key
from indexer.jobs.testing import JobsDeployment, RedisServer
from tests.conftest import write_tree
from tests.support import unavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[str]:
    try:
        server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    except OsmemError as exc:
        unavailable(f"osmem-server could not start here: {exc}")
    try:
        yield server.url
    finally:
        server.close()


def test_reindex_holds_the_redis_leases_and_runs_what_waited_for_them(
        tmp_path: Path, cluster: str) -> None:
    root = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["user:ann@acme.com", "user:bob@acme.com"]},
        "plan.md": "# Plan\n\nThe lighthouse merger is planned for June.\n"})
    with RedisServer(tmp_path / "redis") as server:
        dep = JobsDeployment(tmp_path / "deploy", server.url, root)
        dep.config.write_text(f'[store]\nkind = "opensearch"\nurl = "{cluster}"\n'
                              f'index_prefix = "acme"\n\n' + dep.config.read_text())
        client = redis.Redis.from_url(server.url)
        try:
            synced = dep.clearance("sync")
            assert synced.returncode == 0, synced.stderr
            queue = deployment_queue(dep.settings())
            # A worker's sync holds the lease: reindex is refused and touches nothing.
            lock = RedisSyncLock(client, queue, 30.0)
            held = lock.acquire("docs", "full", "task w1")
            refused = dep.clearance("reindex")
            assert refused.returncode == 1
            assert refused.stderr.strip() == ("clearance: a sync of connector 'docs' is already "
                                              "running: full sync (task w1)")
            # A revocation merged into that sync, whose worker then died (its lease lapsed):
            # the trigger waits beside the lease for its next holder, here the reindex.
            (root / ".access.json").write_text(json.dumps({"read": ["user:ann@acme.com"]}))
            lock.merge_if_running("docs", "permissions", "task w2")
            client.delete(lock_key(queue, "docs"))
            held.release()

            run = dep.clearance("reindex", "--json")
            assert run.returncode == 0, run.stderr
            assert json.loads(run.stdout)["new_index"] == "acme-chunks-v2"
            assert "running the permission sync of 'docs' merged into the reindex" in run.stderr
            assert client.exists(lock_key(queue, "docs"), pending_key(queue, "docs")) == 0
            status = dep.clearance("status", "--json")  # the state lives in the cluster
            assert status.returncode == 0, status.stderr
            merged = json.loads(status.stdout)["connectors"][0]["last_merged"]
            assert merged["merged_into"]["mode"] == "reindex"
            assert merged["ran"]["status"] == "ok" and merged["requested_by"] == "task w2"

            # The revocation reached the new index (osmem has no k-NN: ask explain, not search).
            for email, allowed in (("ann@acme.com", True), ("bob@acme.com", False)):
                why = dep.clearance("explain", "docs:plan.md", "--as", email, "--json")
                assert why.returncode == 0, why.stderr
                assert json.loads(why.stdout)["allowed"] is allowed, (email, why.stdout)
        finally:
            client.close()
            dep.close()
