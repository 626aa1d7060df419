"""Triggers that did not run as sent, recorded beside the last run of the same mode (never in its
place, so `clearance status` still shows the last real result): skipped ones, and ones merged into
a running sync and run right after it. Imports nothing of Celery."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from indexer.locks import Trigger
from indexer.store.base import StateStore
from indexer.sync import Mode, SyncReport

log = logging.getLogger("clearance.jobs")


def skipped_key(connector: str, mode: Mode) -> str:
    return f"sync:{connector}:{mode}:skipped"


def record_skipped(store: StateStore, connector: str, mode: Mode, reason: str) -> SyncReport:
    now = time.time()
    report = SyncReport(connector=connector, mode=mode, run_id=uuid.uuid4().hex, started=now,
                        finished=now, status="skipped", error=reason)
    store.set_state(skipped_key(connector, mode), report.to_json())
    log.info("sync.skipped", extra={"connector": connector, "mode": mode, "reason": reason})
    return report


def merged_key(connector: str, mode: str) -> str:
    return f"sync:{connector}:{mode}:merged"


def record_merged(store: StateStore, connector: str, trigger: Trigger, into_mode: str,
                  into_holder: str, report: SyncReport | None) -> dict[str, Any]:
    """A trigger that met a running sync and ran right after it (report None: that run failed
    before it could report; its failure is the mode's last run)."""
    record: dict[str, Any] = {
        **trigger.to_json(), "connector": connector,
        "merged_into": {"mode": into_mode, "holder": into_holder},
        "ran": None if report is None else {"run_id": report.run_id, "status": report.status,
                                            "finished": report.finished},
    }
    store.set_state(merged_key(connector, trigger.mode), record)
    log.info("sync.merged_ran", extra={"connector": connector, "mode": trigger.mode,
                                       "into": into_holder})
    return record


def note_gave_up(store: StateStore, key: str, retries: int) -> None:
    """Say in the failed report that the retries were spent (the pipeline wrote the report)."""
    last: dict[str, Any] | None = store.get_state(key)
    if last and last.get("status") == "failed":
        last["error"] = f"{last.get('error')} (gave up after {retries} retries)"
        store.set_state(key, last)
