"""`clearance audit [--user EMAIL] [--since WHEN] [--json]`: read the audit log back.

WHEN is an ISO date or date-time (`2026-12-01`, `2026-12-01T09:30`, `2026-12-01T09:30:00Z`,
`2026-12-01T10:30+01:00`; without a zone it is UTC) or an age: a whole number and one of
`m` (minutes), `h`, `d`, `w` (`30m`, 24h, 7d, 2w). Records come oldest first. An entry that is
not a record is reported on stderr (one line each, at most 10, then a count) and skipped; the
command still exits 0. `--json` prints `{"records": [...], "skipped": [{"where", "reason"}]}`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from apps.cli import output
from assistant.audit import Skipped
from core.errors import UsageError

_AGE = re.compile(r"^(\d{1,7})([mhdw])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SHOWN_SKIPS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", metavar="EMAIL", default=None,
                        help="only this person's records (ASCII case-insensitive)")
    parser.add_argument("--since", metavar="WHEN", default=None,
                        help="only records at or after WHEN: an ISO date/time (UTC unless it "
                             "says) or an age like 30m, 24h, 7d, 2w")


def parse_since(value: str, now: float) -> float:
    """Epoch seconds for WHEN (UsageError: neither an ISO date/time nor an age)."""
    text = value.strip()
    age = _AGE.match(text)
    if age:
        return now - int(age.group(1)) * _UNIT[age.group(2)]
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise UsageError(f"--since {value!r} is neither an ISO date/time (2026-12-01, "
                         "2026-12-01T09:30Z) nor an age (30m, 24h, 7d, 2w)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_user(value: str) -> str:
    if "@" not in value or value.strip() != value or " " in value:
        raise UsageError(f"--user needs an email address, got {value!r}")
    return value


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def line(record: dict[str, Any]) -> str:
    """One record as one text line (control characters escaped by output.text)."""
    action = str(record.get("action"))
    parts = [iso(float(record["at"])), action, str(record["email"])]
    if record.get("conversation"):
        parts.append(f"[{record['conversation']}]")
    if action == "explain":
        allowed = record.get("allowed")
        verdict = "no such document" if allowed is None else "allowed" if allowed else "refused"
        parts.append(f"{record.get('doc_id')}: {verdict}")
    elif action == "feedback":
        vote = (record.get("feedback") or {}).get("vote", "?")
        parts.append(f"{vote} on {record.get('question', '')!r}")
    else:
        parts.append(repr(str(record.get("question", ""))))
        cited = [c.get("doc_id") for c in record.get("cited") or [] if isinstance(c, dict)] \
            or record.get("citations") or []
        if action == "ask":
            parts.append("refused" if record.get("refused") else
                         "cited " + (", ".join(map(str, cited)) or "nothing"))
            if record.get("input_tokens") or record.get("output_tokens"):
                parts.append(f"{record['provider']} {record.get('input_tokens', 0)}+"
                             f"{record.get('output_tokens', 0)} tokens")
        else:
            parts.append(f"{len(record.get('hits') or [])} hits")
        for g in record.get("guardrails") or []:
            if isinstance(g, dict):
                parts.append(f"guardrail {g.get('stage')}:{g.get('action')}:{g.get('rule')}")
    parts.append(f"{record.get('latency_ms', 0)} ms")
    return output.text("  ".join(parts))


def run(audit: Any, args: argparse.Namespace) -> int:
    since = parse_since(args.since, time.time()) if args.since is not None else None
    user = parse_user(args.user) if args.user is not None else None
    records: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    printed = 0
    for item in audit.records(user, since):
        if isinstance(item, Skipped):
            if len(skipped) < SHOWN_SKIPS:
                print(output.text(f"clearance: warning: audit log {item.where} skipped: "
                                  f"{item.reason}"), file=sys.stderr)
            skipped.append(item)
            continue
        if args.json:
            records.append(item)
        else:
            print(line(item))
            printed += 1
    if not args.json and not printed:
        print("No audit records" + (f" of {user}" if user else "")
              + (f" since {iso(since)}" if since is not None else "") + ".")
    if len(skipped) > SHOWN_SKIPS:
        print(f"clearance: warning: {len(skipped) - SHOWN_SKIPS} more audit entries skipped",
              file=sys.stderr)
    if args.json:
        output.print_json({"records": records,
                           "skipped": [{"where": s.where, "reason": s.reason} for s in skipped]})
    return 0
