"""`clearance beat` turns a connector's schedule into triggers that a worker runs: a 2-second
interval (cron's floor is a minute, so the `@every` form is what a test can wait for) fires
repeatedly, and `clearance status` names the next run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from indexer.jobs.testing import JobsDeployment, RedisServer, wait_for
from tests.conftest import write_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_short_interval_schedule_fires_through_beat_and_worker(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["domain:acme.com"]},
        **{f"doc{i}.md": f"# Note {i}\n\nThe canteen menu for day {i}.\n" for i in range(20)},
    })
    with RedisServer(tmp_path / "redis") as redis_server:
        dep = JobsDeployment(tmp_path / "deploy", redis_server.url, root,
                             schedules={"schedule": "@every 3s",
                                        "permission_schedule": "@every 2s"})
        try:
            dep.worker("--pool", "solo")
            started = time.time()
            dep.beat()
            full = dep.wait_report("full", since=started, timeout=60, status="ok")
            assert full["documents"] == 20, dep.logs()
            first = dep.wait_report("permissions", since=started, timeout=60, status="ok")
            again = wait_for(lambda: (r := dep.state("sync:docs:permissions:last"))
                             and r["run_id"] != first["run_id"] and r, 30,
                             "a second scheduled permission sync")
            assert isinstance(again, dict)
            assert again["started"] - first["started"] >= 1.5  # the interval, not a burst
            beat_log = (dep.work / "beat.log").read_text()
            assert "docs:permissions" in beat_log and "docs:full" in beat_log
            assert (dep.home / "beat-schedule").exists() or list(dep.home.glob("beat-schedule*"))

            status = dep.clearance("status", "--json")
            row = json.loads(status.stdout)["connectors"][0]
            assert set(row["schedules"]) == {"full", "permissions"}
            assert row["schedules"]["permissions"]["spec"] == "@every 2s"
            assert time.time() - 1 <= row["next_run"] <= time.time() + 4
        finally:
            dep.close()
