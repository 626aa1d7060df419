"""The audit log: one JSON line per question, search or access explanation, in the home."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from auth.identity import Identity
from core.acl import Acl
from core.errors import StoreError


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


def acl_hash(acl: Acl) -> str:
    """A stable hash of an ACL (gates, deny list, unknown reason), principals sorted."""
    canonical = json.dumps({"gates": sorted(sorted(g) for g in acl.gates),
                            "deny": sorted(acl.deny), "unknown": acl.unknown_reason},
                           sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class AuditLog:
    """Appends records to a JSONL file created 0600; a record that cannot be written is a
    StoreError, so the caller gives no answer it could not audit."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def write(self, record: AuditRecord) -> None:
        if self.path is None:
            return
        line = json.dumps(asdict(record), sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            raise StoreError(f"cannot write the audit log {self.path} "
                             f"({exc.strerror})") from exc

    def explain(self, identity: Identity, doc_id: str, allowed: bool | None,
                started: float) -> None:
        """Record an access explanation (`allowed` None: no such document in the index)."""
        self.write(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question="", hits=[], citations=[], refused=not allowed,
            latency_ms=elapsed_ms(started), action="explain", doc_id=doc_id, allowed=allowed))
