"""A real Celery worker (a `clearance worker` process) syncing through a real redis-server into
the embedded store: a full sync, then a permission-only change taken by permission_sync with no
re-embedding, after which the person who lost access no longer finds the document."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auth.identity import resolve
from indexer.embedding.hashing import HashingEmbedder
from indexer.jobs.testing import JobsDeployment, RedisServer
from retriever.filters import acl_filter
from retriever.hybrid import RetrievalParams, Retriever
from tests.conftest import write_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE, BOB, CAROL = "alice@acme.com", "bob@acme.com", "carol@acme.com"
SECRET = "finance/doc007.md"
VOCABULARY = ("ledger quarterly invoice travel policy budget review office holiday team "
              "report meeting supplier contract hiring laptop badge canteen parking").split()


def paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words)) + "."


def company_tree(root: Path, n_public: int = 150, n_finance: int = 50) -> Path:
    rng = random.Random(5)
    spec: dict[str, Any] = {
        ".access.json": {"read": ["domain:acme.com"]},
        ".groups.json": {"finance": [f"user:{ALICE}", f"user:{BOB}"]},
        "finance/.access.json": {"read": ["group:finance"]},
    }
    for i in range(n_public):
        spec[f"public/doc{i:03d}.md"] = f"# Public {i}\n\n{paragraph(rng, 150)}\n"
    for i in range(n_finance):
        spec[f"finance/doc{i:03d}.md"] = f"# Finance {i}\n\n{paragraph(rng, 150)}\n"
    spec[SECRET] = "# Marmoset\n\nThe marmoset programme receives four million euros.\n"
    return write_tree(root, spec)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def finds(dep: JobsDeployment, email: str, query: str) -> set[str]:
    retriever = Retriever(dep.store, HashingEmbedder(), RetrievalParams(k=50))
    return {h.doc_id for h in retriever.search(query, acl_filter(resolve(dep.store, email)), 50)}


def chunks_only(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {doc_id: doc["chunks"] for doc_id, doc in snapshot["documents"].items()}


def queue(dep: JobsDeployment, *args: str) -> str:
    run = dep.clearance("sync", "--queue", *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("queued ") and " task " in run.stdout, run.stdout
    return run.stdout


def test_worker_full_sync_then_permission_change_without_reembedding(
        tmp_path: Path, redis_server: RedisServer) -> None:
    root = company_tree(tmp_path / "docs")
    dep = JobsDeployment(tmp_path / "deploy", redis_server.url, root, page_size=16)
    secret = f"docs:{SECRET}"
    try:
        dep.worker("--pool", "solo")
        queue(dep)
        full = dep.wait_report("full", since=0, timeout=90)
        assert full["status"] == "ok", (full, dep.logs())
        assert full["documents"] == 200 and full["indexed"] == 200
        assert full["chunks_embedded"] > 0
        assert secret in finds(dep, ALICE, "marmoset programme")
        assert secret not in finds(dep, CAROL, "marmoset programme")
        before = dep.store.snapshot()

        # A permission-only change at the source: Alice is denied the finance folder.
        (root / "finance" / ".access.json").write_text(
            json.dumps({"read": ["group:finance"], "deny": [f"user:{ALICE}"]}))
        perm = dep.state("sync:docs:permissions:last")
        assert perm is None
        queue(dep, "--mode", "permissions")
        perm = dep.wait_report("permissions", since=0, timeout=60)
        assert perm["status"] == "ok", (perm, dep.logs())
        assert perm["acl_updated"] == 50 and perm["chunks_embedded"] == 0

        assert secret not in finds(dep, ALICE, "marmoset programme")
        assert secret in finds(dep, BOB, "marmoset programme")
        after = dep.store.snapshot()
        assert chunks_only(after) == chunks_only(before)  # same text, same vectors
        changed = {d for d in after["documents"]
                   if after["documents"][d]["acl"] != before["documents"][d]["acl"]}
        assert changed == {d for d in before["documents"] if d.startswith("docs:finance/")}

        # Nothing left for a full sync to do: no content change, no ACL change.
        started = full["finished"]
        queue(dep)
        again = dep.wait_report("full", since=started + 1e-3, timeout=60)
        assert (again["indexed"], again["acl_updated"], again["chunks_embedded"],
                again["unchanged"]) == (0, 0, 0, 200)

        status = dep.clearance("status", "--json")
        assert status.returncode == 0, status.stderr
        row = json.loads(status.stdout)["connectors"][0]
        assert row["last_run"]["status"] == "ok" and row["documents"] == 200
        assert row["next_run"] is not None and set(row["schedules"]) == {"full", "permissions"}
        assert row["permission_freshness_over_target"] is False
        assert row["permission_freshness_seconds"] < row["permission_freshness_target_seconds"]
    finally:
        dep.close()
