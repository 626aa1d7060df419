"""Beat entries from the config: each connector's schedules, parsed and checked once.

A schedule is a 5-field cron expression in UTC (`*/15 * * * *`), an interval `@every 30s`
(`s`, `m` or `h`; below the minute that cron allows, e.g. for a tight permission loop or a
test), or `off`. Unset keys take DEFAULTS. Each entry's trigger expires when the next one is
due, so triggers never pile up behind a slow sync: an expired one is recorded as skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from celery.schedules import BaseSchedule, crontab, schedule

from core.errors import ConfigError
from core.settings import ConnectorSettings, Settings
from indexer.jobs.lock import deployment_queue
from indexer.sync import Mode

# mode -> (config key, default, task name)
SCHEDULED: dict[Mode, tuple[str, str, str]] = {
    "full": ("schedule", "0 2 * * *", "clearance.full_sync"),
    "incremental": ("incremental_schedule", "off", "clearance.incremental_sync"),
    "permissions": ("permission_schedule", "*/5 * * * *", "clearance.permission_sync"),
    "prune": ("prune_schedule", "off", "clearance.prune"),
    "groups": ("group_schedule", "off", "clearance.group_sync"),  # the identity pass
}
_EVERY = re.compile(r"^@every\s+(\d+)\s*([smh])$")
_UNIT = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Trigger:
    connector: str
    mode: Mode
    spec: str
    when: BaseSchedule

    @property
    def task(self) -> str:
        return SCHEDULED[self.mode][2]

    @property
    def entry_name(self) -> str:
        return f"{self.connector}:{self.mode}"


def parse(spec: str, where: str = "schedule",
          nowfun: Callable[[], datetime] | None = None) -> BaseSchedule | None:
    """A schedule string as Celery's schedule object; None for `off`; ConfigError if invalid."""
    text = " ".join(spec.split())
    if text.lower() == "off":
        return None
    every = _EVERY.match(text.lower())
    if every:
        seconds = int(every.group(1)) * _UNIT[every.group(2)]
        if seconds < 1:
            raise ConfigError(f"{where}: {spec!r}: the interval must be at least 1s")
        return schedule(run_every=timedelta(seconds=seconds))
    fields = text.split(" ")
    if len(fields) != 5:
        raise ConfigError(f"{where}: {spec!r} is not a schedule: use 5 cron fields "
                          "(minute hour day-of-month month day-of-week), '@every 30s' or 'off'")
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month, day_of_week=day_of_week, nowfun=nowfun)
    except (ValueError, IndexError, KeyError) as exc:
        raise ConfigError(f"{where}: {spec!r} is not a valid cron expression ({exc})") from None


def connector_triggers(cfg: ConnectorSettings) -> list[Trigger]:
    out = []
    for mode, (key, default, _task) in SCHEDULED.items():
        spec = getattr(cfg, key) or default
        when = parse(spec, f"connector {cfg.name!r}: {key}")
        if when is not None:
            out.append(Trigger(cfg.name, mode, spec, when))
    return out


def triggers(settings: Settings) -> list[Trigger]:
    return [t for cfg in settings.file.connectors for t in connector_triggers(cfg)]


def next_run(spec: str, now: datetime, last_run: datetime | None = None) -> datetime | None:
    """When beat fires `spec` next after `now` (None if off); an interval counts from its last
    run, or from now when it never ran."""
    when = parse(spec, nowfun=lambda: now)
    if when is None:
        return None
    if isinstance(when, schedule):
        every: timedelta = when.run_every
        return now + every if last_run is None else max(now, last_run + every)
    remaining: timedelta = when.remaining_estimate(now)
    return now + remaining


def period(spec: str, now: datetime) -> float:
    """Seconds between two firings after `now` (for cron, the shortest of the next few)."""
    times: list[datetime] = []
    at: datetime | None = now
    while at is not None and len(times) < 5:
        at = next_run(spec, at, times[-1] if times else None)
        if at is not None:
            times.append(at)
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    return min(gaps) if gaps else 0.0


LEAK_AUDIT_TASK = "clearance.leak_audit"
LEAK_AUDIT_ENTRY = "eval:leak_audit"


def leak_audit_schedule(settings: Settings) -> BaseSchedule | None:
    """`[eval] leak_audit_schedule` parsed (None: off); it needs `[eval] questions`."""
    cfg = settings.file.eval
    when = parse(cfg.leak_audit_schedule, "[eval] leak_audit_schedule")
    if when is not None and not cfg.questions:
        raise ConfigError("[eval] leak_audit_schedule needs [eval] questions (the question "
                          "file the audit asks)")
    return when


def beat_schedule(settings: Settings, now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule` for this deployment: one entry per connector and mode, and
    the leak audit when `[eval] leak_audit_schedule` is set."""
    ref = now or datetime.now(UTC)
    queue = deployment_queue(settings)
    audit = leak_audit_schedule(settings)
    extra = {} if audit is None else {LEAK_AUDIT_ENTRY: {
        "task": LEAK_AUDIT_TASK, "schedule": audit, "args": (),
        "kwargs": {"trigger": "schedule"},
        "options": {"queue": queue, "expires": period(settings.file.eval.leak_audit_schedule,
                                                      ref)}}}
    return extra | {
        t.entry_name: {
            "task": t.task,
            "schedule": t.when,
            "args": (t.connector,),
            "kwargs": {"trigger": "schedule"},
            "options": {"queue": queue, "expires": period(t.spec, ref)},
        }
        for t in triggers(settings)
    }


def upcoming(cfg: ConnectorSettings, now: datetime,
             last_started: dict[Mode, float]) -> dict[Mode, tuple[str, datetime]]:
    """For `clearance status`: each scheduled mode's spec and next firing after `now`
    (`last_started`: epoch seconds of each mode's last run, for intervals)."""
    out: dict[Mode, tuple[str, datetime]] = {}
    for t in connector_triggers(cfg):
        started = last_started.get(t.mode)
        last = datetime.fromtimestamp(started, UTC) if started else None
        at = next_run(t.spec, now, last)
        if at is not None:
            out[t.mode] = (t.spec, at)
    return out
