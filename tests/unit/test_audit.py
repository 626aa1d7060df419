"""The audit log read back: WHEN parsing, user and time filters (the denied side: another
person's records never come back for --user), principals kept plain or only as a hash, and
every way a stored line can be broken reported and skipped, never fatal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from apps.cli.audit import line, parse_since, parse_user
from assistant.audit import AuditLog, AuditRecord, Skipped, principals_hash
from core.errors import StoreError, UsageError

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


def record(email: str, at: float, **kw: Any) -> AuditRecord:
    return AuditRecord(at=at, email=email, principals=kw.pop("principals", [f"user:{email}"]),
                       question=kw.pop("question", "q"), hits=[], citations=[], refused=False,
                       latency_ms=1.0, **kw)


@pytest.mark.parametrize("value,expected", [
    ("7d", NOW - 7 * DAY), ("24h", NOW - DAY), ("30m", NOW - 1800), ("2w", NOW - 14 * DAY),
    ("0d", NOW), (" 7d ", NOW - 7 * DAY),
    ("2026-12-01", NOW - 1.5 * DAY),
    ("2026-12-01T09:30", datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp()),
    ("2026-12-01T09:30:00Z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp()),
    ("2026-12-01T09:30:00z", datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp()),
    ("2026-12-01T10:30+01:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC).timestamp()),
])
def test_when_is_an_iso_date_time_or_an_age(value: str, expected: float) -> None:
    assert parse_since(value, NOW) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "7", "7 d", "-7d", "7y", "1.5d", "d7",
                                   "2026-13-01", "2026-12-01T25:00", "12/01/2026", "7d7d",
                                   "99999999d", "\x1b[2J"])
def test_a_bad_when_is_one_usage_line(value: str) -> None:
    with pytest.raises(UsageError, match="--since") as err:
        parse_since(value, NOW)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["ada", " ada@x.org", "ada @x.org", ""])
def test_user_must_be_an_email(value: str) -> None:
    with pytest.raises(UsageError, match="--user needs an email"):
        parse_user(value)


def test_filters_by_user_and_time_oldest_first(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write(record("ada@x.org", NOW - 3 * DAY, question="old"))
    log.write(record("bob@x.org", NOW - DAY, question="bob's secret question"))
    log.write(record("Ada@X.org", NOW - DAY, question="recent"))
    log.write(record("ada@x.org", NOW, question="now"))
    assert [r["question"] for r in log.records("ada@x.org", NOW - 2 * DAY)] == ["recent", "now"]
    assert [r["question"] for r in log.records("ADA@x.org")] == ["old", "recent", "now"]
    # The denied side: Bob's record never comes back for Ada, nor Ada's for Bob.
    assert all(r["email"].lower() == "ada@x.org" for r in log.records("ada@x.org"))
    assert [r["question"] for r in log.records("bob@x.org")] == ["bob's secret question"]
    assert len(list(log.records())) == 4
    assert list(log.records("carol@x.org")) == []


def test_only_ascii_letters_fold_in_the_user_filter(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write(record("kim@x.org", NOW))
    assert list(log.records("\u212aim@x.org")) == []  # KELVIN SIGN is not K
    assert len(list(log.records("KIM@x.org"))) == 1


def test_principals_are_kept_plain_or_only_as_their_hash(tmp_path: Path) -> None:
    principals = ["user:ada@x.org", "group:docs:eng", "everyone"]
    plain = AuditLog(tmp_path / "plain.jsonl")
    hashed = AuditLog(tmp_path / "hashed.jsonl", principals="hash")
    for log in (plain, hashed):
        log.write(record("ada@x.org", NOW, principals=principals))
    [p] = list(plain.records())
    [h] = list(hashed.records())
    assert isinstance(p, dict) and isinstance(h, dict)
    assert p["principals"] == principals and h["principals"] == []
    # An auditor recomputes the hash from a replayed identity: order does not matter.
    assert h["principals_hash"] == p["principals_hash"] == principals_hash(set(principals))
    assert "group:docs:eng" not in (tmp_path / "hashed.jsonl").read_text()
    assert principals_hash(["user:bob@x.org"]) != h["principals_hash"]


def test_broken_lines_are_reported_with_their_number_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.write(record("ada@x.org", NOW - 10, question="first"))
    with open(path, "ab") as f:
        f.write(b"{not json\n")
        f.write(b"\xff\xfe garbage\n")
        f.write(b"[1, 2]\n")
        f.write(b"\n")  # a blank line is nothing, not a problem
        f.write(json.dumps({"at": "yesterday", "email": "ada@x.org", "action": "ask"}).encode()
                + b"\n")
        f.write(json.dumps({"at": NOW, "action": "ask"}).encode() + b"\n")
        f.write(json.dumps({"at": True, "email": "ada@x.org", "action": "ask"}).encode() + b"\n")
    log.write(record("ada@x.org", NOW, question="second"))
    with open(path, "ab") as f:
        f.write(b'{"at": 1, "email": "ada@x.org", "act')  # a write cut off by a crash
    items = list(log.records("ada@x.org"))
    assert [i["question"] for i in items if isinstance(i, dict)] == ["first", "second"]
    skipped = [(i.where, i.reason) for i in items if isinstance(i, Skipped)]
    assert skipped == [
        ("line 2", "not JSON"), ("line 3", "not UTF-8"),
        ("line 4", "not an audit record (not a JSON object)"),
        ("line 6", "not an audit record ('at' has the wrong type)"),
        ("line 7", "not an audit record (no 'email')"),
        ("line 8", "not an audit record ('at' has the wrong type)"),
        ("line 10", "incomplete (the write was cut off)")]
    assert not any("garbage" in reason for _, reason in skipped)


def test_a_missing_log_holds_no_records_and_an_unreadable_one_is_a_store_error(
        tmp_path: Path) -> None:
    assert list(AuditLog(tmp_path / "none.jsonl").records()) == []
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(StoreError, match="cannot read the audit log"):
        list(AuditLog(folder).records())


def test_a_text_line_escapes_what_a_question_could_forge() -> None:
    data = {"at": NOW, "email": "ada@x.org", "action": "ask", "question": "q\nclearance: ok",
            "refused": False, "cited": [{"doc_id": "docs:a\x1b[2J.md"}], "latency_ms": 3.0,
            "input_tokens": 10, "output_tokens": 2, "provider": "openai",
            "guardrails": [{"stage": "question", "action": "redacted", "rule": "pii:email"}]}
    text = line(data)
    assert "\n" not in text and "\x1b" not in text
    assert text.startswith("2026-12-02T12:00:00Z  ask  ada@x.org")
    assert "openai 10+2 tokens" in text and "guardrail question:redacted:pii:email" in text
