"""A broker URL with a password (`redis://:token@`, as deploy/README.md recommends for
ElastiCache) that cannot be reached: through the console script, `sync --queue`, an in-process
`sync`, `status`, `worker` and `beat` never print the password, each command that needs the broker
ends with one clear line (exit 1), and no sync runs without its lock."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from indexer.jobs.testing import JobsDeployment, free_port, wait_for
from tests.conftest import write_tree

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PASSWORD = "Zq8sEcReT-t0ken"


@pytest.fixture
def dep(tmp_path: Path) -> JobsDeployment:
    root = write_tree(tmp_path / "docs", {".access.json": {"read": ["domain:acme.com"]},
                                          "a.md": "# A\n\nThe canteen opens at nine.\n"})
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    # A 1-second schedule: beat tries to send at once (and so to reach the broker).
    return JobsDeployment(tmp_path / "deploy", url, root,
                          schedules={"permission_schedule": "@every 1s"})


def one_line_error(run: subprocess.CompletedProcess[str]) -> str:
    assert PASSWORD not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clearance: "), run.stderr
    return lines[0]


def test_sync_queue_says_the_broker_is_unreachable_without_its_password(
        dep: JobsDeployment) -> None:
    run = dep.clearance("sync", "--queue", timeout=60)
    assert run.returncode == 1
    line = one_line_error(run)
    assert "redis://:***@127.0.0.1" in line and "cannot" in line


def test_an_in_process_sync_fails_closed_when_the_broker_lock_cannot_be_reached(
        dep: JobsDeployment) -> None:
    run = dep.clearance("sync", timeout=60)
    assert run.returncode == 1
    line = one_line_error(run)
    assert "sync lock" in line and "redis://:***@" in line
    assert dep.state("sync:docs:full:last") is None  # nothing ran without the lock
    assert dep.store.stats("docs").documents == 0


def test_status_shows_the_index_and_ends_with_one_line_when_redis_is_down(
        dep: JobsDeployment) -> None:
    for args in (("status",), ("status", "--json")):
        run = dep.clearance(*args, timeout=60)
        assert run.returncode == 1
        assert "docs" in run.stdout  # what the store knows is still shown
        assert "sync locks" in one_line_error(run)


@pytest.mark.slow
@pytest.mark.parametrize(("command", "says"), [
    # Celery masks the password as `**`; the three stars show our filter on Celery's handler.
    (("worker", "--pool", "solo"), "Cannot connect to redis://:***@127.0.0.1"),
    (("beat",), "beat: Connection error"),
])
def test_worker_and_beat_logs_never_carry_the_password(
        dep: JobsDeployment, command: tuple[str, ...], says: str) -> None:
    log = dep.work / f"{command[0]}.log"
    dep.start(*command, "--loglevel", "debug", log=log.name)
    try:
        wait_for(lambda: says in log.read_text(errors="replace"), 60,
                 f"{command[0]} to report the unreachable broker")
    finally:
        dep.close()
    text = log.read_text(errors="replace")
    assert PASSWORD not in text, text[-3000:]
    assert "Traceback" not in text


def test_a_broker_url_that_is_not_redis_is_a_config_error_without_its_password(
        tmp_path: Path) -> None:
    root = write_tree(tmp_path / "docs", {"a.md": "# A\n"})
    dep = JobsDeployment(tmp_path / "deploy", f"http://admin:{PASSWORD}@127.0.0.1:1/0", root)
    for args in (("sync",), ("sync", "--queue"), ("status",)):
        run = dep.clearance(*args, timeout=60)
        assert run.returncode == 2, (args, run.stderr)
        assert "broker_url http://admin:***@127.0.0.1:1/0" in one_line_error(run)
