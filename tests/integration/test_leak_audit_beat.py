"""`[eval] leak_audit_schedule` through `clearance beat` and a worker: the scheduled audit finds
a permission changed at the source and not yet synced, records it where `clearance status`
shows it (exit 1), and the next scheduled audit after a permission sync finds nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from indexer.jobs.testing import JobsDeployment, RedisServer, wait_for
from tests.conftest import write_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADA = "ada@example.org"


def test_scheduled_audit_reports_a_stale_acl_until_the_permission_sync(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["domain:example.org"]},
        ".groups.json": {"team": [f"user:{ADA}"]},
        "welcome.md": "# Welcome\n\nThe cafeteria opens at eight on weekdays.\n",
        "team/.access.json": {"read": ["group:team"]},
        "team/plan.md": "# Plan\n\nThe team ships the lighthouse release in June.\n",
    })
    with RedisServer(tmp_path / "redis") as redis_server:
        dep = JobsDeployment(tmp_path / "deploy", redis_server.url, root,
                             schedules={"schedule": "off", "permission_schedule": "off"})
        (dep.work / "q.jsonl").write_text(json.dumps({
            "question": "when does the team ship the lighthouse release", "as": ADA,
            "relevant": ["docs:team/plan.md"]}) + "\n", encoding="utf-8")
        with dep.config.open("a", encoding="utf-8") as cfg:
            cfg.write('\n[eval]\nquestions = "q.jsonl"\nleak_audit_schedule = "@every 2s"\n')
        try:
            assert dep.clearance("sync").returncode == 0
            (root / "team" / ".access.json").write_text(json.dumps({"read": ["group:other"]}))
            started = time.time()
            dep.worker("--pool", "solo")
            dep.beat()
            found = wait_for(lambda: (r := dep.state("eval:leak_audit:last"))
                             and r["started"] >= started and r, 90, "a scheduled leak audit")
            assert found["trigger"] == "schedule" and found["status"] == "leaks", dep.logs()
            assert [(x["user"], x["doc_id"]) for x in found["leaks"]] == [
                (ADA, "docs:team/plan.md")]
            status = dep.clearance("status", "--json")
            assert status.returncode == 1
            assert json.loads(status.stdout)["leak_audit"]["status"] == "leaks"
            assert "leak audit found 1 document(s)" in status.stderr

            assert dep.clearance("sync", "--mode", "permissions").returncode == 0
            synced = time.time()
            clean = wait_for(lambda: (r := dep.state("eval:leak_audit:last"))
                             and r["started"] >= synced and r, 90, "the next scheduled audit")
            assert clean["status"] == "ok" and clean["leaks"] == [], dep.logs()
            assert clean["questions"] == 1 and clean["hits"] >= 1
            assert dep.clearance("status").returncode == 0
        finally:
            dep.close()
