"""Beat entries built from the config file, next-run times for `clearance status`, and the
config mistakes a person makes with schedules (exit 2, one line naming the connector)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab, schedule

from apps.cli.main import main
from core.errors import ConfigError
from core.settings import FileConfig, Settings
from indexer.jobs.schedules import beat_schedule, next_run, parse, period

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 14, 7, 30, tzinfo=UTC)  # a Wednesday


def settings(*connectors: dict[str, str], queue: str = "clearance") -> Settings:
    file = FileConfig.model_validate({
        "jobs": {"broker_url": "redis://127.0.0.1:1/0", "queue": queue},
        "connectors": [{"kind": "files", "root": "docs", **c} for c in connectors]})
    return Settings(home=Path("/nonexistent"), config_path=None, file=file)


def test_entries_per_connector_and_mode_with_task_args_and_queue() -> None:
    beat = beat_schedule(settings(
        {"name": "handbook", "schedule": "*/30 * * * *", "permission_schedule": "*/5 * * * *"},
        {"name": "wiki", "schedule": "15 3 * * 1-5", "permission_schedule": "off",
         "incremental_schedule": "@every 10m", "prune_schedule": "0 * * * *"},
        queue="acme"), NOW)
    assert set(beat) == {"handbook:full", "handbook:permissions", "wiki:full",
                         "wiki:incremental", "wiki:prune"}
    assert beat["handbook:full"]["task"] == "clearance.full_sync"
    assert beat["handbook:permissions"]["task"] == "clearance.permission_sync"
    assert beat["wiki:incremental"]["task"] == "clearance.incremental_sync"
    assert beat["wiki:prune"]["task"] == "clearance.prune"
    for name, entry in beat.items():
        assert entry["args"] == (name.split(":")[0],)
        assert entry["kwargs"] == {"trigger": "schedule"}
        assert entry["options"]["queue"] == "acme"

    every_half_hour = beat["handbook:full"]["schedule"]
    assert isinstance(every_half_hour, crontab)
    assert every_half_hour.minute == {0, 30} and every_half_hour.hour == set(range(24))
    weekdays = beat["wiki:full"]["schedule"]
    assert weekdays.minute == {15} and weekdays.hour == {3}
    assert weekdays.day_of_week == {1, 2, 3, 4, 5}
    interval = beat["wiki:incremental"]["schedule"]
    assert isinstance(interval, schedule) and interval.run_every == timedelta(minutes=10)
    # A trigger expires when the next one is due, so they never pile up behind a slow sync.
    assert beat["handbook:permissions"]["options"]["expires"] == 300
    assert beat["wiki:incremental"]["options"]["expires"] == 600
    assert beat["wiki:full"]["options"]["expires"] == 86400


def test_defaults_when_unset_full_daily_and_permissions_every_five_minutes() -> None:
    beat = beat_schedule(settings({"name": "docs"}), NOW)
    assert set(beat) == {"docs:full", "docs:permissions"}
    assert beat["docs:full"]["schedule"].minute == {0}
    assert beat["docs:full"]["schedule"].hour == {2}
    assert beat["docs:permissions"]["schedule"].minute == set(range(0, 60, 5))


@pytest.mark.parametrize(("spec", "expected"), [
    ("*/15 * * * *", datetime(2026, 11, 25, 14, 15, tzinfo=UTC)),
    ("0 2 * * *", datetime(2026, 11, 26, 2, 0, tzinfo=UTC)),
    ("30 9 * * 1-5", datetime(2026, 11, 26, 9, 30, tzinfo=UTC)),
    ("0 0 1 * *", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),
    ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),  # the next leap day
    ("@every 2s", NOW + timedelta(seconds=2)),
    ("@every 2h", NOW + timedelta(hours=2)),
])
def test_next_run(spec: str, expected: datetime) -> None:
    assert next_run(spec, NOW) == expected


def test_next_run_of_an_interval_counts_from_its_last_run_and_never_lies_in_the_past() -> None:
    assert next_run("@every 10m", NOW, NOW - timedelta(minutes=4)) == NOW + timedelta(minutes=6)
    assert next_run("@every 10m", NOW, NOW - timedelta(hours=1)) == NOW
    assert next_run("off", NOW) is None
    assert period("0 9,17 * * *", NOW) == 8 * 3600


@pytest.mark.parametrize("spec", ["61 * * * *", "* * * 13 *", "*/0 * * * *", "* * *",
                                  "every day", "@every 0s", "@every 5d", "* * * * * *"])
def test_invalid_schedule_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse(spec)


def test_invalid_cron_names_the_connector_and_key() -> None:
    bad = {"name": "wiki", "permission_schedule": "61 * * * *"}
    with pytest.raises(ConfigError, match=r"connector 'wiki': permission_schedule: '61 \* "):
        beat_schedule(settings({"name": "docs"}, bad))


def write_config(tmp_path: Path, jobs: str, connector: str = "") -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    cfg = tmp_path / "clearance.toml"
    cfg.write_text(f'{jobs}\n[[connectors]]\nname = "docs"\nkind = "files"\nroot = "docs"\n'
                   f"{connector}\n")
    return cfg


@pytest.mark.parametrize("command", [["beat"], ["worker"], ["sync", "--queue"]])
def test_cli_rejects_a_bad_cron_with_exit_2_and_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    monkeypatch.delenv("CLEARANCE_BROKER_URL", raising=False)
    cfg = write_config(tmp_path, '[jobs]\nbroker_url = "redis://127.0.0.1:1/0"',
                       'schedule = "*/15 * * 99 *"')
    code = main(["--home", str(tmp_path / "home"), *command, "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "connector 'docs': schedule" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["beat"], ["worker"], ["sync", "--queue"]])
def test_cli_without_a_broker_exits_2_with_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    monkeypatch.delenv("CLEARANCE_BROKER_URL", raising=False)
    cfg = write_config(tmp_path, "")
    code = main(["--home", str(tmp_path / "home"), *command, "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "broker" in err


def _with_eval(**section: str) -> Settings:
    base = settings({"name": "docs"})
    file = base.file.model_copy(update={"eval": base.file.eval.model_validate(section)})
    return base.model_copy(update={"file": file})


def test_the_leak_audit_is_a_beat_entry_of_its_own() -> None:
    beat = beat_schedule(_with_eval(questions="q.jsonl", leak_audit_schedule="@every 1h"), NOW)
    entry = beat["eval:leak_audit"]
    assert entry["task"] == "clearance.leak_audit" and entry["args"] == ()
    assert entry["schedule"].run_every == timedelta(hours=1)
    assert entry["options"] == {"queue": "clearance", "expires": 3600.0}
    assert "eval:leak_audit" not in beat_schedule(_with_eval(questions="q.jsonl"), NOW)  # off


@pytest.mark.parametrize(("section", "message"), [
    ({"leak_audit_schedule": "@every 1h"}, "needs [eval] questions"),
    ({"questions": "q.jsonl", "leak_audit_schedule": "every hour"}, "is not a schedule"),
])
def test_leak_audit_schedule_mistakes_are_config_errors(section: dict[str, str],
                                                        message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        beat_schedule(_with_eval(**section), NOW)


def test_an_unknown_eval_key_is_a_config_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[eval]\nleak_audit = "@every 1h"\n', encoding="utf-8")
    assert main(["--home", str(tmp_path / "h"), "status", "--config", str(cfg)]) == 2
    assert "eval.leak_audit: unknown key" in capsys.readouterr().err
