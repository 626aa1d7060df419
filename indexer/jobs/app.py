"""The Celery app of one deployment.

- Broker: Redis from `[jobs] broker_url` (env CLEARANCE_BROKER_URL overrides). No result
  backend: a sync's outcome is its SyncReport in the state store, which `clearance status` reads
  and which survives the broker; Redis keeps only messages and locks.
- One queue per deployment (`[jobs] queue`, else derived from the deployment's store:
  indexer.jobs.lock.deployment_queue), every task on it; kombu's own keys carry the same prefix.
- Late acks and a prefetch of one: a worker that dies mid-sync leaves its message unacked, and
  Redis hands it out again after `visibility_timeout`; the new delivery resumes from the
  checkpoint. The timeout is long (2 h) because Redis redelivers a message whose worker is merely
  slow too: such a duplicate finds the lease held and is recorded as skipped.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger
from kombu.exceptions import OperationalError

from core.errors import ClearanceError, ConfigError
from core.redact import redact_handlers, redact_text, redact_url
from core.settings import Settings
from indexer.jobs import schedules, tasks
from indexer.jobs.lock import RedisSyncLock, deployment_queue
from indexer.locks import LockUnavailable, SyncBusy
from indexer.sync import Mode


class BrokerUnavailable(ClearanceError):
    """The broker could not be reached to enqueue a task."""


def broker_url(settings: Settings) -> str:
    url = settings.file.jobs.broker_url
    if not url:
        raise ConfigError("no broker configured: set [jobs] broker_url in the config file "
                          "or CLEARANCE_BROKER_URL")
    return url


def create_app(settings: Settings, *, with_schedule: bool = True) -> Celery:
    jobs = settings.file.jobs
    queue = deployment_queue(settings)
    app = Celery("clearance", broker=broker_url(settings), set_as_current=False)
    restore_every = max(1, min(10, jobs.visibility_timeout // 10))
    app.conf.update(
        task_default_queue=queue,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        enable_utc=True,
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": jobs.visibility_timeout,
            # Look for messages of dead workers every few seconds, not every 100 s.
            "unacked_restore_interval": restore_every,
            "unacked_restore_throttle": 1,
            # kombu's unacked/bindings keys: one deployment never restores another's messages.
            "global_keyprefix": f"{queue}:",
        },
        worker_hijack_root_logger=False,
        beat_schedule=schedules.beat_schedule(settings) if with_schedule else {},
    )
    tasks.register(app)
    return app


def enqueue(app: Celery, settings: Settings, connectors: list[str], mode: Mode,
            requester: str = "clearance sync --queue") -> list[dict[str, Any]]:
    """One task per connector; a connector whose sync is running gets no task: the trigger is
    merged into that sync and runs right after it. Returns [{connector, mode, task_id,
    merged_into}] (task_id None and merged_into {mode, holder, message} when merged)."""
    queue = deployment_queue(settings)
    url = broker_url(settings)
    lock = RedisSyncLock.from_settings(settings)
    out: list[dict[str, Any]] = []
    try:
        for name in connectors:
            try:
                running = lock.merge_if_running(name, mode, requester)
            except LockUnavailable as exc:
                raise BrokerUnavailable(str(exc)) from None
            if running is not None:
                message = str(SyncBusy(running, mode, merged=True))
                out.append({"connector": name, "mode": mode, "task_id": None, "merged_into": {
                    "mode": running.mode, "holder": running.holder, "message": message}})
                continue
            out.append({"connector": name, "mode": mode,
                        "task_id": _send(app, queue, url, name, mode), "merged_into": None})
    finally:
        lock.close()
    return out


def _send(app: Celery, queue: str, url: str, connector: str, mode: Mode) -> str:
    try:
        result = app.send_task(
            tasks.MODE_TASKS[mode], args=(connector,), kwargs={"trigger": "manual"},
            queue=queue, retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                                   "interval_step": 0.5, "interval_max": 1})
    except OperationalError as exc:
        raise BrokerUnavailable(f"cannot reach the broker at {redact_url(url)}: "
                                f"{redact_text(str(exc), [url])}") from None
    return str(result.id)


def install_log_redaction(settings: Settings) -> None:
    """Every log handler of this process (ours and the ones Celery sets up for the worker or
    beat) redacts URL credentials and the broker's password."""
    known = [settings.file.jobs.broker_url, settings.file.store.url]

    def redact(logger: logging.Logger | None = None, **_: Any) -> None:
        for target in (logger, logging.getLogger(), logging.getLogger("clearance"),
                       logging.getLogger("celery.task")):
            if target is not None:
                redact_handlers(target, known)

    after_setup_logger.connect(redact, weak=False)
    after_setup_task_logger.connect(redact, weak=False)
    redact()
