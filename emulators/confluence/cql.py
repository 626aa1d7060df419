"""CQL, dates and cursors of the Confluence emulator: the minimal CQL a connector uses, read in
the tenant's time zone with minute resolution, and the opaque search cursor."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONTENT_TYPES = ("page", "blogpost")
STATUSES = ("current", "draft", "trashed", "archived")


def tz_of(name: str) -> tzinfo:
    """`UTC`, an IANA zone name or a `+HH:MM` offset."""
    match = re.fullmatch(r"([+-])(\d\d):(\d\d)", name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


class CqlError(ValueError):
    pass


_CLAUSE = re.compile(
    r"\s*(?P<field>type|space|id|ancestor|lastmodified|created|status)\s*"
    r"(?:(?P<op>>=|<=|!=|=|>|<)\s*(?P<value>\"[^\"]*\"|[\w.\-]+)"
    r"|\s+in\s*\((?P<values>[^)]*)\))\s*", re.IGNORECASE)
_ORDER = re.compile(r"\s+order\s+by\s+(lastmodified|created|id|title)(?:\s+(asc|desc))?\s*$",
                    re.IGNORECASE)
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def parse_cql(cql: str) -> tuple[list[tuple[str, str, list[str]]], tuple[str, bool]]:
    """The minimal CQL a connector uses: clauses joined by AND, an optional ORDER BY."""
    order = ("created", False)
    match = _ORDER.search(cql)
    if match:
        order = (match.group(1).lower(), (match.group(2) or "asc").lower() == "desc")
        cql = cql[:match.start()]
    clauses = []
    for part in re.split(r"\s+and\s+", cql.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.fullmatch(part)
        if m is None:
            raise CqlError(f"Could not parse cql : {part!r}")
        field = m.group("field").lower()
        if m.group("values") is not None:
            clauses.append((field, "in", [_unquote(v) for v in m.group("values").split(",")]))
        else:
            clauses.append((field, m.group("op"), [_unquote(m.group("value"))]))
    return clauses, order


def cql_date(text: str, zone: tzinfo) -> datetime:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    raise CqlError(f"Could not parse cql date {text!r}")


def encode_cursor(offset: int, cql: str) -> str:
    raw = json.dumps({"o": offset, "q": cql}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, cql: str) -> int | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or data.get("q") != cql or not isinstance(data.get("o"), int):
        return None
    return int(data["o"])
