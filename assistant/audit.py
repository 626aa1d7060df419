"""The audit log: one record per question, search, access explanation or feedback.

Embedded: one JSON line each in `$CLEARANCE_HOME/audit.jsonl` (0600, appended whole lines
only). Production (`[audit] backend = "opensearch"`): one document each in an append-only
OpenSearch index (assistant/audit_opensearch.py). With `[audit] principals = "hash"` the
resolved principals are kept only as `principals_hash` (a SHA-256 of the sorted list, which an
auditor can recompute from a replayed identity); every record carries that hash.

`clearance audit --user EMAIL --since WHEN` reads either back (`records`): a line that is not
a record (a torn last line, a hand edit, bytes that are not UTF-8) is reported and skipped,
never the end of the reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from auth.identity import Identity
from core.acl import Acl
from core.errors import StoreError
from core.principals import fold

PrincipalsMode = Literal["plain", "hash"]


@dataclass(frozen=True)
class AuditRecord:
    """One line of the JSONL audit log: who asked what, as which principals, and what they got."""

    at: float
    email: str
    principals: list[str]
    question: str
    hits: list[str]
    citations: list[str]
    refused: bool
    latency_ms: float
    action: Literal["ask", "search", "explain", "feedback"] = "ask"
    # explain only: the document asked about and whether the person may read it (None: unknown)
    doc_id: str | None = None
    allowed: bool | None = None
    # ask only: who drafted the answer, what it cost, why it stopped, claims dropped as unsupported
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None
    dropped_claims: int = 0
    # guardrail interventions: {"stage", "action", "rule"} (never the matched text)
    guardrails: list[dict[str, str]] = field(default_factory=list)
    conversation: str | None = None  # the asker's conversation name, if any
    # ask: per cited document, {"doc_id", "version" (content hash), "acl_hash"} at answer time
    cited: list[dict[str, str]] = field(default_factory=list)
    # feedback only: {"vote": "up"|"down", "comment"} on the asker's answer to `question` in
    # `conversation` (the ask record with the same email, conversation and question)
    feedback: dict[str, str] | None = None
    # SHA-256 of the sorted principals (filled in by AuditLog.write)
    principals_hash: str = ""


def principals_hash(principals: list[str] | set[str] | frozenset[str]) -> str:
    """What an auditor recomputes from a replayed identity to check who was asking."""
    return hashlib.sha256(json.dumps(sorted(principals)).encode()).hexdigest()


@dataclass(frozen=True)
class Skipped:
    """A stored entry that is not an audit record: where it is and why (never its content)."""

    where: str  # "line 7" (JSONL) or "document <id>" (OpenSearch)
    reason: str


class AuditBackend(Protocol):
    def append(self, record: dict[str, Any]) -> None: ...

    def read(self, email: str | None, since: float | None
             ) -> Iterator[dict[str, Any] | Skipped]: ...


def acl_hash(acl: Acl) -> str:
    """A stable hash of an ACL (gates, deny list, unknown reason), principals sorted."""
    canonical = json.dumps({"gates": sorted(sorted(g) for g in acl.gates),
                            "deny": sorted(acl.deny), "unknown": acl.unknown_reason},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class AuditLog:
    """Writes records to the JSONL file `path` (or to `backend`); a record that cannot be
    written is a StoreError, so the caller gives no answer it could not audit."""

    def __init__(self, path: Path | None, *, principals: PrincipalsMode = "plain",
                 backend: AuditBackend | None = None) -> None:
        self.path = path
        self.principals = principals
        self.backend: AuditBackend | None = backend or (JsonlAudit(path) if path else None)

    def prepare(self, record: AuditRecord) -> dict[str, Any]:
        data = asdict(record)
        data["principals_hash"] = principals_hash(record.principals)
        if self.principals == "hash":
            data["principals"] = []
        return data

    def write(self, record: AuditRecord) -> None:
        if self.backend is not None:
            self.backend.append(self.prepare(record))

    def records(self, email: str | None = None, since: float | None = None
                ) -> Iterator[dict[str, Any] | Skipped]:
        """The stored records of `email` (ASCII case-insensitive) at or after `since` (epoch
        seconds), oldest first, with a Skipped for each entry that is not a record."""
        if self.backend is not None:
            yield from self.backend.read(email, since)

    def explain(self, identity: Identity, doc_id: str, allowed: bool | None,
                started: float) -> None:
        """Record an access explanation (`allowed` None: no such document in the index)."""
        self.write(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question="", hits=[], citations=[], refused=not allowed,
            latency_ms=elapsed_ms(started), action="explain", doc_id=doc_id, allowed=allowed))


# What every stored record must hold to be read back as one (the rest is shown as stored).
REQUIRED: dict[str, type | tuple[type, ...]] = {"at": (int, float), "email": str,
                                                "action": str}


def check_record(data: Any) -> str | None:
    """Why `data` is not an audit record, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, kind in REQUIRED.items():
        value = data.get(key)
        if value is None:
            return f"no {key!r}"
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key!r} has the wrong type"
    return None


def matches(data: dict[str, Any], email: str | None, since: float | None) -> bool:
    return (email is None or fold(str(data["email"])) == fold(email)) and \
        (since is None or float(data["at"]) >= since)


class JsonlAudit:
    """One JSON line per record, appended to a file created 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # servers write from many threads: whole lines only

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with self._lock, os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            raise StoreError(f"cannot write the audit log {self.path} "
                             f"({exc.strerror})") from exc

    def read(self, email: str | None, since: float | None
             ) -> Iterator[dict[str, Any] | Skipped]:
        """Line by line (the file may be large); a missing file holds no records."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed below, after the generator)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot read the audit log {self.path} "
                             f"({exc.strerror})") from None
        with f:
            number = 0
            while True:
                try:
                    raw = f.readline()
                except OSError as exc:
                    raise StoreError(f"cannot read the audit log {self.path} "
                                     f"({exc.strerror})") from None
                if not raw:
                    return
                number += 1
                if not raw.strip():
                    continue
                if not raw.endswith(b"\n"):
                    yield Skipped(f"line {number}", "incomplete (the write was cut off)")
                    continue
                try:
                    data = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    yield Skipped(f"line {number}", "not UTF-8")
                    continue
                except ValueError:
                    yield Skipped(f"line {number}", "not JSON")
                    continue
                why = check_record(data)
                if why is not None:
                    yield Skipped(f"line {number}", f"not an audit record ({why})")
                elif matches(data, email, since):
                    yield data
