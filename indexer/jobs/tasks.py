"""The Celery tasks: each runs the same Pipeline function as `clearance sync` does in-process.

A task takes the connector's SyncLock (the Redis lease, which an in-process `clearance sync` of
the same deployment takes too); a trigger that finds it held is merged and runs right after the
holder's sync, under the same lease (indexer.locks.drain). A
source that is down (SourceUnavailable) is retried with doubling delays; a sync that fails
otherwise is already recorded as failed by the pipeline, with the previous index untouched.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from typing import Any, Protocol, cast

from celery import Celery, Task
from celery.signals import task_revoked

from connectors.base import Connector
from core.errors import ClearanceError, ConfigError, SourceUnavailable
from core.settings import JobsSettings, Settings
from indexer.jobs.records import note_gave_up, record_skipped
from indexer.jobs.runner import run_exclusive
from indexer.locks import SyncBusy, SyncLock, sync_lock
from indexer.sync import Mode, Pipeline, Progress, Store, SyncReport, last_run_key

log = logging.getLogger("clearance.jobs")

# task name -> pipeline mode
TASK_MODES: dict[str, Mode] = {
    "clearance.full_sync": "full",
    "clearance.incremental_sync": "incremental",
    "clearance.permission_sync": "permissions",
    "clearance.group_sync": "groups",
    "clearance.prune": "prune",
}
MODE_TASKS: dict[Mode, str] = {mode: name for name, mode in TASK_MODES.items()}
class Deployment(Protocol):
    """What a worker needs of one deployment (apps.runtime.Runtime is one)."""

    settings: Settings

    @property
    def store(self) -> Store: ...

    def connectors(self, names: list[str] | None = None) -> list[Connector]: ...

    def pipeline(self, progress: Progress | None = None) -> Pipeline: ...


_factory: Callable[[], Deployment] | None = None
_deployment: tuple[int, Deployment] | None = None


def serve(factory: Callable[[], Deployment] | None) -> None:
    """Set the deployment this worker process serves (before the pool forks); None: none."""
    global _factory, _deployment
    _factory, _deployment = factory, None


def deployment() -> Deployment:
    """This process's deployment, built on first use after a fork (a SQLite connection must
    not cross one)."""
    global _deployment
    if _factory is None:
        raise ConfigError("this worker serves no deployment: start it with `clearance worker`")
    if _deployment is None or _deployment[0] != os.getpid():
        _deployment = (os.getpid(), _factory())
    return _deployment[1]


def backoff(jobs: JobsSettings, retries: int) -> float:
    """Doubling delay with ±20% jitter, capped (retries is how many were already made)."""
    base = min(jobs.retry_backoff_max_seconds, jobs.retry_backoff_seconds * 2.0 ** retries)
    return round(base * random.uniform(0.8, 1.2), 3)


def _summary(report: SyncReport) -> dict[str, Any]:
    keep = ("connector", "mode", "run_id", "status", "documents", "indexed", "acl_updated",
            "deleted", "chunks_embedded", "error_count", "error", "resumed", "duration")
    return {k: v for k, v in report.to_json().items() if k in keep}


def run_sync(task: Task, mode: Mode, connector_name: str, waited: bool) -> dict[str, Any]:
    dep = deployment()
    connector = dep.connectors([connector_name])[0]
    task_id = str(task.request.id or "eager")
    holder = f"task {task_id}"
    lock = sync_lock(dep.settings)
    try:
        return _run_locked(task, lock, dep, connector, mode, holder, waited)
    finally:
        _close(lock)


def _run_locked(task: Task, lock: SyncLock, dep: Deployment, connector: Connector, mode: Mode,
                holder: str, waited: bool) -> dict[str, Any]:
    jobs, name = dep.settings.file.jobs, connector.name
    try:
        runs = run_exclusive(lock, dep.store, dep.pipeline, connector, mode, holder)
    except SyncBusy as busy:
        if busy.running.holder == holder and not waited:
            # Redelivered while the lease of this same task's earlier delivery (a worker that
            # died) may still be live: wait it out once, then resume from the checkpoint.
            raise task.retry(countdown=jobs.lock_lease_seconds + 1, max_retries=None,
                             kwargs={**(task.request.kwargs or {}), "waited": True}) from None
        if busy.merged:
            log.info("sync.merged", extra={"connector": name, "mode": mode,
                                           "into": busy.running.holder})
            return {"connector": name, "mode": mode, "status": "merged", "error": str(busy)}
        return _summary(record_skipped(dep.store, name, mode, str(busy)))
    except SourceUnavailable as exc:
        retries = task.request.retries
        if retries >= jobs.max_retries:
            note_gave_up(dep.store, last_run_key(name, mode), retries)
            raise
        delay = backoff(jobs, retries)
        log.warning("sync.retry", extra={"connector": name, "mode": mode,
                                         "in_seconds": delay, "reason": str(exc)})
        raise task.retry(exc=exc, countdown=delay, max_retries=jobs.max_retries) from exc
    return _summary(runs.reports[0])


def _close(lock: SyncLock) -> None:
    close = getattr(lock, "close", None)
    if callable(close):
        close()


def _on_revoked(sender: Any = None, request: Any = None, expired: bool = False,
                **_: Any) -> None:
    """A trigger that waited in the queue past its expiry (the next one is due) is skipped."""
    name = getattr(sender, "name", None)
    if not expired or name not in TASK_MODES or request is None:
        return
    args = list(getattr(request, "args", None) or ())
    connector = args[0] if args else (getattr(request, "kwargs", None) or {}).get("connector")
    if not isinstance(connector, str):
        return
    try:
        record_skipped(deployment().store, connector, TASK_MODES[name],
                       "the trigger expired in the queue before a worker was free to run it")
    except ClearanceError as exc:
        log.error("sync.skip_not_recorded", extra={"connector": connector, "reason": str(exc)})


def register(app: Celery) -> None:
    """Define the five tasks on `app` (expected ClearanceErrors are logged without traceback)."""
    for name, mode in TASK_MODES.items():
        def body(self: Task, connector: str, trigger: str = "manual", waited: bool = False,
                 _mode: Mode = mode) -> dict[str, Any]:
            log.info("task.start", extra={"connector": connector, "mode": _mode,
                                          "trigger": trigger, "task_id": self.request.id})
            return run_sync(self, _mode, connector, waited)

        app.task(name=name, bind=True, shared=False, throws=(ClearanceError,))(body)
    app.task(name="clearance.leak_audit", bind=True, shared=False,
             throws=(ClearanceError,))(leak_audit)
    task_revoked.connect(_on_revoked, weak=False)


class Auditing(Protocol):
    """A deployment that can run the leak audit (apps.runtime.Runtime)."""

    def leak_audit(self, trigger: str) -> dict[str, Any]: ...


def leak_audit(self: Task, trigger: str = "manual") -> dict[str, Any]:
    """`[eval] leak_audit_schedule`: the audit, recorded where `clearance status` reads it."""
    dep = deployment()
    if not hasattr(dep, "leak_audit"):
        raise ConfigError("this worker's deployment cannot run the leak audit")
    auditing = cast(Auditing, dep)
    log.info("task.start", extra={"task": "leak_audit", "trigger": trigger,
                                  "task_id": self.request.id})
    result = auditing.leak_audit(trigger)
    log.info("leak_audit.done", extra={"status": result["status"],
                                       "leaks": len(result["leaks"])})
    return {k: result[k] for k in ("status", "questions", "people", "error")
            if k in result} | {"leaks": len(result["leaks"])}
