"""One sync under its connector's SyncLock, then every trigger merged into it meanwhile: the one
function behind a worker's task, an in-process `clearance sync` and `clearance demo`. Imports
nothing of Celery."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from connectors.base import Connector
from core.errors import ClearanceError, SourceUnavailable
from indexer.jobs.lock import LeaseLost
from indexer.jobs.records import record_merged
from indexer.locks import Held, LockUnavailable, SyncLock, Trigger, exclusive_held
from indexer.store.base import StateStore
from indexer.sync import Mode, Pipeline, Progress, SyncReport

log = logging.getLogger("clearance.jobs")

RUNS: dict[Mode, Callable[[Pipeline, Connector], SyncReport]] = {
    "full": Pipeline.full_sync,
    "incremental": Pipeline.incremental_sync,
    "permissions": Pipeline.permission_sync,
    "groups": Pipeline.group_sync,
    "prune": Pipeline.prune,
}


@dataclass
class LockedRuns:
    """What one exclusive run did: its reports (its own first) and the merged runs that failed
    (their failure is also each mode's last run in the state store)."""

    reports: list[SyncReport] = field(default_factory=list)
    failed: list[tuple[Trigger, ClearanceError]] = field(default_factory=list)


def run_exclusive(lock: SyncLock, store: StateStore,
                  make_pipeline: Callable[[Progress], Pipeline], connector: Connector,
                  mode: Mode, holder: str, *, progress: Progress | None = None,
                  announce: Callable[[Trigger], None] | None = None,
                  into: LockedRuns | None = None) -> LockedRuns:
    """`mode` on `connector` under its lock (SyncBusy if held: merged when the lock can), then
    each merged trigger under the same lock. `into` collects the runs even when one raises."""
    runs = into if into is not None else LockedRuns()
    held = lock.acquire(connector.name, mode, holder)
    transient: list[Trigger] = []

    def step(report: SyncReport) -> None:
        if progress is not None:
            progress(report)
        held.ensure_held()  # a sync that lost its lock stops at its last checkpoint

    def run_merged(trigger: Trigger) -> None:
        merged_mode = cast(Mode, trigger.mode)
        if merged_mode not in RUNS:
            log.error("sync.merged_unknown_mode", extra={"mode": trigger.mode})
            return
        if announce is not None:
            announce(trigger)
        report = None
        try:
            report = RUNS[merged_mode](make_pipeline(step), connector)
            runs.reports.append(report)
        except LeaseLost:
            raise
        except ClearanceError as exc:  # the pipeline recorded the failed run; the rest still run
            log.error("sync.merged_failed", extra={"connector": connector.name,
                                                   "mode": trigger.mode, "reason": str(exc)})
            runs.failed.append((trigger, exc))
            if isinstance(exc, SourceUnavailable):
                transient.append(trigger)
        finally:
            record_merged(store, connector.name, trigger, mode, holder, report)

    try:
        with exclusive_held(held, run_merged):
            runs.reports.append(RUNS[mode](make_pipeline(step), connector))
    finally:
        _keep_for_next_holder(held, transient)
    return runs


def _keep_for_next_holder(held: Held, transient: list[Trigger]) -> None:
    """A merged run that met a transient source error waits beside the lock again, for the next
    holder (a worker's retry of this task, say): a revocation is retried, not dropped."""
    if not transient:
        return
    try:
        held.restore(transient)
    except LockUnavailable as exc:
        log.error("lock.triggers_lost", extra={"connector": held.connector, "reason": str(exc),
                                               "modes": [t.mode for t in transient]})
