"""A revocation triggered while a full sync runs is never lost (issue 15, item 3), and one
connector never syncs twice at once across an in-process `clearance sync` and a worker (issue 7,
production lock). Real redis-server, real `clearance worker` and `clearance sync` processes.

The full sync reads each folder's ACL when it reaches it, so an `.access.json` edited after it
passed the folder is not seen by it: only the permission sync triggered meanwhile applies the
revocation, and it has to run after the full sync (a permission sync that ran *during* it would be
overwritten by nothing, but one that is dropped leaves the revoked person reading)."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from auth.identity import resolve
from indexer.jobs.app import create_app
from indexer.jobs.lock import deployment_queue, lock_key
from indexer.jobs.testing import JobsDeployment, RedisServer, clearance_command, wait_for
from retriever.filters import acl_filter
from tests.conftest import write_tree
from tests.integration.test_jobs_lock import long_documents

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANN, BOB = "ann@acme.com", "bob@acme.com"
SECRET = "docs:aaa/plan.md"
CHECKPOINT = "sync:docs:full:checkpoint"


def company(root: Path) -> Path:
    long_documents(root, n=300)
    return write_tree(root, {
        "aaa/.access.json": {"read": [f"user:{ANN}", f"user:{BOB}"]},
        "aaa/plan.md": "# Plan\n\nThe lighthouse merger is planned for June.\n",
    })


def readers(dep: JobsDeployment) -> set[str]:
    out = set()
    for email in (ANN, BOB):
        hits = dep.store.lexical("lighthouse merger", acl_filter(resolve(dep.store, email)), 10)
        if any(h.doc_id == SECRET for h in hits):
            out.add(email)
    return out


def past_the_secret(dep: JobsDeployment) -> dict[str, Any] | None:
    """The running full sync has indexed (and so read the ACL of) the secret's folder."""
    saved = dep.state(CHECKPOINT)
    return saved if saved and saved["report"]["indexed"] >= 12 else None


def revoke_bob(root: Path) -> None:
    (root / "aaa" / ".access.json").write_text(json.dumps({"read": [f"user:{ANN}"]}))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as s:
        yield s


def test_a_permission_trigger_during_a_worker_full_sync_runs_right_after_it(
        tmp_path: Path, server: RedisServer) -> None:
    root = company(tmp_path / "docs")
    dep = JobsDeployment(tmp_path / "deploy", server.url, root, page_size=2,
                         jobs={"lock_lease_seconds": 2})
    try:
        dep.worker("--pool", "prefork", "--concurrency", "2")
        queued = dep.clearance("sync", "--queue")
        assert queued.returncode == 0, queued.stderr
        full_task = queued.stdout.strip().rpartition("task ")[2]
        wait_for(lambda: past_the_secret(dep), 120, "the full sync to pass the secret", 0.01)
        revoke_bob(root)
        trigger = dep.clearance("sync", "--queue", "--mode", "permissions")
        assert trigger.returncode == 0, trigger.stderr
        during = dep.clearance("status")
        assert dep.state("sync:docs:full:last") is None, "the full sync ended before the trigger"
        assert during.returncode == 0, during.stderr
        assert f"running now: full sync (task {full_task})" in during.stdout, during.stdout
        assert "merged, runs right after it: permission sync (requested " in during.stdout
        assert trigger.stdout.strip() == (
            f"merged into the running full sync of 'docs' "
            f"(task {full_task}): a permission sync runs right after it"), trigger.stdout

        merged = wait_for(lambda: (r := dep.state("sync:docs:permissions:merged")) and r["ran"]
                          and r, 180, "the merged permission sync to run")
        full = dep.state("sync:docs:full:last")
        perm = dep.state("sync:docs:permissions:last")
        assert full["status"] == "ok" and perm["status"] == "ok", dep.logs()
        assert merged["ran"]["run_id"] == perm["run_id"]
        assert merged["merged_into"] == {"mode": "full", "holder": f"task {full_task}"}
        assert perm["started"] >= full["finished"]  # right after it, never during it
        assert perm["acl_updated"] >= 1
        assert readers(dep) == {ANN}  # the revoked person no longer finds it

        status = dep.clearance("status")
        assert status.returncode == 0, status.stderr
        assert "last merged: permission sync requested" in status.stdout, status.stdout
        assert f"merged into the full sync (task {full_task}), ran right after it: ok" \
            in status.stdout
        as_json = json.loads(dep.clearance("status", "--json").stdout)["connectors"][0]
        assert as_json["running"] is None and as_json["pending"] == []
        assert as_json["last_merged"]["ran"]["status"] == "ok"
    finally:
        dep.close()


def test_an_in_process_sync_and_a_worker_sync_never_run_at_once(
        tmp_path: Path, server: RedisServer) -> None:
    root = company(tmp_path / "docs")
    dep = JobsDeployment(tmp_path / "deploy", server.url, root, page_size=2,
                         jobs={"lock_lease_seconds": 2})
    client = redis.Redis.from_url(server.url)
    try:
        dep.worker("--pool", "solo")
        settings = dep.settings()
        key = lock_key(deployment_queue(settings), "docs")
        # An operator's in-process full sync holds the lease...
        here = subprocess.Popen([*clearance_command(), "sync"], env={**dep.env_all()},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: past_the_secret(dep), 120, "the in-process sync to get going", 0.01)
            holder = json.loads(client.get(key) or b"{}")["holder"]
            assert holder.startswith("`clearance sync` pid ")
            revoke_bob(root)
            # ...the worker's permission sync meets it and is merged, a second in-process sync
            # too: neither runs alongside it.
            app = create_app(settings, with_schedule=False)
            task = app.send_task("clearance.permission_sync", args=("docs",),
                                 queue=deployment_queue(settings)).id
            wait_for(lambda: '"event": "sync.merged"' in (dep.work / "worker.log").read_text(),
                     60, "the worker to merge its trigger")
            second = dep.clearance("sync", "--mode", "incremental")
            assert second.returncode == 0, second.stderr
            as_json = dep.clearance("sync", "--mode", "incremental", "--json")
            assert as_json.returncode == 0, as_json.stderr
            body = json.loads(as_json.stdout)  # JSON only, even when merged
            assert body["syncs"] == [] and body["merged"][0]["merged_into"]["mode"] == "full"
            assert "merged into the running full sync of 'docs' (`clearance sync` pid " \
                in second.stdout and "an incremental sync runs right after it" in second.stdout
            _out, err = here.communicate(timeout=300)
        finally:
            if here.poll() is None:
                here.kill()
                here.wait()
        assert here.returncode == 0, err
        # The operator's process ran both merged triggers itself, after its full sync.
        assert "running the permission sync of 'docs' merged into this one" in err
        assert "running the incremental sync of 'docs' merged into this one" in err
        full = dep.state("sync:docs:full:last")
        perm = dep.state("sync:docs:permissions:last")
        inc = dep.state("sync:docs:incremental:last")
        assert full["status"] == perm["status"] == inc["status"] == "ok"
        assert perm["started"] >= full["finished"] and inc["started"] >= full["finished"]
        runs = sorted((full, perm, inc), key=lambda r: r["started"])
        assert all(a["finished"] <= b["started"] for a, b in itertools.pairwise(runs))
        merged = dep.state("sync:docs:permissions:merged")
        assert merged["requested_by"] == f"task {task}"
        assert merged["merged_into"]["holder"] == holder
        assert readers(dep) == {ANN}
        assert client.exists(key) == 0
        assert dep.state("sync:docs:full:skipped") is None
    finally:
        client.close()
        dep.close()


def test_reindex_refuses_while_a_worker_sync_holds_the_lease(
        tmp_path: Path, server: RedisServer) -> None:
    root = company(tmp_path / "docs")
    dep = JobsDeployment(tmp_path / "deploy", server.url, root, page_size=2)
    try:
        dep.worker("--pool", "solo")
        queued = dep.clearance("sync", "--queue")
        task = queued.stdout.strip().rpartition("task ")[2]
        wait_for(lambda: dep.state(CHECKPOINT), 120, "the worker's full sync to start", 0.01)
        run = dep.clearance("reindex")
        assert run.returncode == 1
        assert run.stderr.strip() == (f"clearance: a sync of connector 'docs' is already "
                                      f"running: full sync (task {task})"), run.stderr
        assert dep.state("sync:docs:full:last") is None  # still running: nothing was touched
        report = dep.wait_report("full", since=time.time() - 3600, timeout=180)
        assert report["status"] == "ok"
    finally:
        dep.close()


def test_redis_lost_during_an_in_process_sync_stops_it_with_one_line(
        tmp_path: Path, server: RedisServer) -> None:
    root = company(tmp_path / "docs")
    dep = JobsDeployment(tmp_path / "deploy", server.url, root, page_size=2,
                         jobs={"lock_lease_seconds": 1})
    here = subprocess.Popen([*clearance_command(), "sync"], env=dep.env_all(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: dep.state(CHECKPOINT), 120, "the in-process sync to start", 0.01)
        server.stop()  # the lease can no longer be renewed: the sync must not go on without it
        _out, err = here.communicate(timeout=300)
    finally:
        if here.poll() is None:
            here.kill()
            here.wait()
        dep.close()
    assert here.returncode == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clearance: sync of 'docs' failed: "), err
    assert "sync lock" in lines[0]
    report = dep.state("sync:docs:full:last")
    assert report["status"] == "failed" and report["documents"] < 300
    assert dep.state(CHECKPOINT) is not None  # the next run resumes from where it stopped
