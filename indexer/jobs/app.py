"""The Celery app of one deployment.

- Broker: Redis from `[jobs] broker_url` (env CLEARANCE_BROKER_URL overrides). No result
  backend: a sync's outcome is its SyncReport in the state store, which `clearance status` reads
  and which survives the broker; Redis keeps only messages and locks.
- One queue per deployment (`[jobs] queue`), every task on it.
- Late acks and a prefetch of one: a worker that dies mid-sync leaves its message unacked, and
  Redis hands it out again after `visibility_timeout`; the new delivery resumes from the
  checkpoint. The timeout is long (2 h) because Redis redelivers a message whose worker is merely
  slow too: such a duplicate finds the lease held and is recorded as skipped.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from core.errors import ClearanceError, ConfigError
from core.settings import Settings
from indexer.jobs import schedules, tasks
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
    app = Celery("clearance", broker=broker_url(settings), set_as_current=False)
    restore_every = max(1, min(10, jobs.visibility_timeout // 10))
    app.conf.update(
        task_default_queue=jobs.queue,
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
        },
        worker_hijack_root_logger=False,
        beat_schedule=schedules.beat_schedule(settings) if with_schedule else {},
    )
    tasks.register(app)
    return app


def enqueue(app: Celery, settings: Settings, connectors: list[str],
            mode: Mode) -> list[dict[str, Any]]:
    """Send one task per connector; returns [{connector, mode, task_id}]."""
    queue = settings.file.jobs.queue
    out = []
    for name in connectors:
        try:
            result = app.send_task(
                tasks.MODE_TASKS[mode], args=(name,), kwargs={"trigger": "manual"}, queue=queue,
                retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                          "interval_step": 0.5, "interval_max": 1})
        except OperationalError as exc:
            raise BrokerUnavailable(
                f"cannot reach the broker at {settings.file.jobs.broker_url}: {exc}") from None
        out.append({"connector": name, "mode": mode, "task_id": result.id})
    return out
