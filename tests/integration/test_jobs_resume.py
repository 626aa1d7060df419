"""A worker SIGKILLed in the middle of a full sync: Redis hands its unacknowledged task to the
next worker (late acks, short visibility timeout here), the Redis lease of the dead worker
lapses, and the sync resumes from its last checkpoint to exactly the index a clean in-process
sync builds."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from connectors.files.connector import FilesConnector
from indexer.embedding.hashing import HashingEmbedder
from indexer.jobs.testing import JobsDeployment, RedisServer, kill_group, wait_for
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from tests.conftest import write_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKPOINT = "sync:docs:full:checkpoint"
WORDS = ("ledger quarterly invoice travel policy budget review office holiday team report "
         "meeting supplier contract hiring laptop badge canteen parking roadmap").split()


def long_documents(root: Path, n: int = 200, seed: int = 9) -> Path:
    """Long enough (15-30 chunks each) that a sync takes seconds, not milliseconds."""
    rng = random.Random(seed)
    spec: dict[str, Any] = {".access.json": {"read": ["domain:acme.com"]},
                            "team/.access.json": {"read": ["group:team"]},
                            ".groups.json": {"team": ["user:ann@acme.com"]}}
    for i in range(n):
        folder = "team" if i % 4 == 0 else "all"
        body = "\n\n".join(" ".join(rng.choice(WORDS) for _ in range(120)) + "."
                           for _ in range(rng.randint(12, 25)))
        spec[f"{folder}/doc{i:03d}.md"] = f"# Document {i}\n\n{body}\n"
    return write_tree(root, spec)


def test_sigkilled_worker_resumes_from_checkpoint_to_identical_index(tmp_path: Path) -> None:
    root = long_documents(tmp_path / "docs")
    with RedisServer(tmp_path / "redis") as redis_server:
        dep = JobsDeployment(tmp_path / "deploy", redis_server.url, root, page_size=2,
                             jobs={"visibility_timeout": 4, "lock_lease_seconds": 2})
        try:
            first = dep.worker("--pool", "solo", log="worker1.log")
            queued = dep.clearance("sync", "--queue")
            assert queued.returncode == 0, queued.stderr

            def midway() -> dict[str, Any] | None:
                saved = dep.state(CHECKPOINT)
                return saved if saved and saved["report"]["indexed"] >= 20 else None

            wait_for(midway, 90, "a checkpoint 20 documents into the sync", 0.01)
            kill_group(first)  # SIGKILL: no shutdown, no ack, the lease is no longer renewed
            first.wait(10)

            saved = dep.state(CHECKPOINT)
            assert dep.state("sync:docs:full:last") is None, "the sync finished before the kill"
            at_kill = dep.store.stats("docs").documents
            assert 20 <= at_kill < 200 and saved["cursor"]

            dep.worker("--pool", "solo", log="worker2.log")  # nobody triggers anything again
            report = dep.wait_report("full", since=0, timeout=120)
            assert report["status"] == "ok", (report, dep.logs())
            assert report["resumed"] is True and report["run_id"] == saved["report"]["run_id"]
            assert report["documents"] == 200 and dep.state(CHECKPOINT) is None
            assert "Task clearance.full_sync" in (dep.work / "worker2.log").read_text()

            reference = SqliteStore(tmp_path / "reference" / "index.sqlite3")
            try:
                clean = Pipeline(reference, HashingEmbedder()).full_sync(
                    FilesConnector("docs", root))
                assert clean.documents == 200
                assert dep.store.snapshot() == reference.snapshot()
            finally:
                reference.close()
        finally:
            dep.close()
