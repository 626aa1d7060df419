"""Two deployments sharing one Redis, each with a connector named `docs` and no `[jobs] queue`
set: each worker runs only its own deployment's tasks (issue 15, item 8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from auth.identity import resolve
from indexer.jobs.app import create_app, enqueue
from indexer.jobs.lock import deployment_queue
from indexer.jobs.testing import JobsDeployment, RedisServer
from retriever.filters import acl_filter
from tests.conftest import write_tree

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def deployment(tmp_path: Path, name: str, url: str, word: str) -> JobsDeployment:
    root = write_tree(tmp_path / f"{name}-docs", {
        ".access.json": {"read": ["domain:acme.com"]},
        **{f"doc{i}.md": f"# {word} {i}\n\nThe {word} report number {i}.\n" for i in range(5)}})
    return JobsDeployment(tmp_path / name, url, root)


def finds(dep: JobsDeployment, word: str) -> int:
    hits = dep.store.lexical(word, acl_filter(resolve(dep.store, "ann@acme.com")), 20)
    return len(hits)


def test_each_worker_runs_only_its_own_deployments_tasks(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        acme = deployment(tmp_path, "acme", server.url, "walrus")
        globex = deployment(tmp_path, "globex", server.url, "pelican")
        client = redis.Redis.from_url(server.url)
        try:
            acme_q, globex_q = deployment_queue(acme.settings()), deployment_queue(
                globex.settings())
            assert acme_q != globex_q
            # Globex's trigger goes first: with one shared queue, acme's worker would take it.
            enqueue(create_app(globex.settings()), globex.settings(), ["docs"], "full")
            enqueue(create_app(acme.settings()), acme.settings(), ["docs"], "full")
            acme.worker("--pool", "solo")
            report = acme.wait_report("full", since=0, timeout=90)
            assert report["status"] == "ok" and report["documents"] == 5, acme.logs()
            assert finds(acme, "walrus") == 5 and finds(acme, "pelican") == 0
            received = re.findall(r"Task clearance\.\w+\[[^\]]+\] received", acme.logs())
            assert len(received) == 1, acme.logs()  # its own, only
            assert client.llen(f"{globex_q}:{globex_q}") == 1  # globex's task still waits
            assert globex.state("sync:docs:full:last") is None

            globex.worker("--pool", "solo")
            other = globex.wait_report("full", since=0, timeout=90)
            assert other["status"] == "ok" and other["documents"] == 5, globex.logs()
            assert finds(globex, "pelican") == 5 and finds(globex, "walrus") == 0
            assert client.llen(f"{globex_q}:{globex_q}") == 0
            assert acme.state("sync:docs:full:last")["run_id"] == report["run_id"]
        finally:
            client.close()
            acme.close()
            globex.close()
