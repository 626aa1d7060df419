"""Triggers that did not run, recorded beside the last run of the same mode (never in its place,
so `clearance status` still shows the last real result). Imports nothing of Celery."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from indexer.store.base import StateStore
from indexer.sync import Mode, SyncReport

log = logging.getLogger("clearance.jobs")


def skipped_key(connector: str, mode: Mode) -> str:
    return f"sync:{connector}:{mode}:skipped"


def record_skipped(store: StateStore, connector: str, mode: Mode, reason: str) -> SyncReport:
    now = time.time()
    report = SyncReport(connector, mode, uuid.uuid4().hex, started=now, finished=now,
                        status="skipped", error=reason)
    store.set_state(skipped_key(connector, mode), report.to_json())
    log.info("sync.skipped", extra={"connector": connector, "mode": mode, "reason": reason})
    return report


def note_gave_up(store: StateStore, key: str, retries: int) -> None:
    """Say in the failed report that the retries were spent (the pipeline wrote the report)."""
    last: dict[str, Any] | None = store.get_state(key)
    if last and last.get("status") == "failed":
        last["error"] = f"{last.get('error')} (gave up after {retries} retries)"
        store.set_state(key, last)
