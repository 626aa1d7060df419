"""Oversharing guard: documents that hold sensitive data (the PII types of the guardrails, and
credentials) *and* are shared with `everyone` or a whole domain.

The content is scanned at ingest (`record`, called for every upserted document); the result is
kept per connector in the store's state as {doc_id: {"types", "version"}} — the types found, never
the text. Whether the document is *shared broadly* is decided from the ACL stored now, so a
permission sync that narrows the sharing at the source clears the flag without re-reading the
content. A recorded scan whose version is not the document's current content hash counts as
sensitive (fail closed: the content changed and was not rescanned).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from assistant.guardrails import DETECTORS
from core import principals as P
from core.acl import Acl
from core.models import Document

# Credentials beyond the AWS access key id the PII detectors know.
CREDENTIALS: dict[str, re.Pattern[str]] = {
    "private_key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
    "aws_secret_key": re.compile(
        r"(?i)aws_?secret_?access_?key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}\b"),
    "token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|xox[abpr]-[A-Za-z0-9-]{10,}"
                        r"|sk-[A-Za-z0-9]{32,})\b"),
    "password": re.compile(r"(?i)\b(?:password|passwd|pwd|secret)\s*[:=]\s*\S{6,}"),
}


class StateStore(Protocol):
    def get_state(self, key: str) -> Any | None: ...

    def set_state(self, key: str, value: Any) -> None: ...


def state_key(connector: str) -> str:
    return f"oversharing:{connector}"


_DIGIT = re.compile(r"\d")
# What a detector's pattern cannot match without (checked once per text, far cheaper than the
# pattern's scan): email needs an "@", the AWS key id its prefix, the others a digit (the same
# `\d` their patterns use). A detector not listed here is always scanned.
_NEEDS: dict[str, Callable[[str, bool], bool]] = {
    "email": lambda text, digit: "@" in text,
    "aws_access_key": lambda text, digit: "AKIA" in text or "ASIA" in text,
    "iban": lambda text, digit: digit,
    "credit_card": lambda text, digit: digit,
    "us_ssn": lambda text, digit: digit,
    "phone": lambda text, digit: digit,
}


def sensitive_types(text: str) -> list[str]:
    """The sensitive data types `text` holds (PII detectors, then credentials), sorted."""
    digit = _DIGIT.search(text) is not None
    found = {name for name, d in DETECTORS.items()
             if _NEEDS.get(name, _always)(text, digit)
             and any(d.valid(m.group()) for m in d.pattern.finditer(text))}
    found |= {name for name, pattern in CREDENTIALS.items() if pattern.search(text)}
    return sorted(found)


def _always(text: str, digit: bool) -> bool:
    return True


def document_text(doc: Document) -> str:
    return "\n".join([doc.title, *(s.text for s in doc.sections)])


def _unscoped(principal: str) -> str:
    return principal.rsplit(P.SCOPE_SEPARATOR, 1)[-1] if P.SCOPE_SEPARATOR in principal \
        else principal


def broad_audience(acl: Acl) -> str | None:
    """'everyone' or 'domain:<name>' when every gate of the ACL lets a whole population in
    (a gate with a group or a person narrows it), else None."""
    if not acl.readable_by_somebody or not acl.gates:
        return None
    widest: str | None = None
    for gate in acl.gates:
        broad = sorted(p for p in map(_unscoped, gate)
                       if p == P.EVERYONE or p.startswith("domain:"))
        if not broad:
            return None
        if P.EVERYONE in broad:
            widest = widest or P.EVERYONE
        else:
            widest = broad[0] if widest in (None, P.EVERYONE) else widest
    return widest


def record(store: StateStore, docs: Iterable[Document]) -> None:
    """Scan upserted documents (one connector per call is typical; any mix works)."""
    by_connector: dict[str, dict[str, list[str]]] = {}
    hashes: dict[str, str] = {}
    for doc in docs:
        by_connector.setdefault(doc.connector, {})[doc.doc_id] = \
            sensitive_types(document_text(doc))
        hashes[doc.doc_id] = doc.content_hash
    for connector, scans in by_connector.items():
        key = state_key(connector)
        current = store.get_state(key)
        table: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
        for doc_id, types in scans.items():
            if types:
                table[doc_id] = {"types": types, "version": hashes[doc_id]}
            else:
                table.pop(doc_id, None)
        store.set_state(key, table)


@dataclass(frozen=True)
class Flagged:
    doc_id: str
    title: str
    url: str
    types: tuple[str, ...]
    audience: str  # "everyone" or "domain:<name>"

    def to_json(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "title": self.title, "url": self.url,
                "types": list(self.types), "shared_with": self.audience}


class DocumentStore(StateStore, Protocol):
    def document(self, doc_id: str) -> Any | None: ...


def _scan_of(store: StateStore, doc_id: str) -> dict[str, Any] | None:
    table = store.get_state(state_key(doc_id.split(":", 1)[0]))
    entry = table.get(doc_id) if isinstance(table, dict) else None
    return entry if isinstance(entry, dict) else None


def check(store: DocumentStore, doc_id: str) -> Flagged | None:
    """The flag of one indexed document, or None when it is not overshared."""
    doc = store.document(doc_id)
    if doc is None:
        return None
    audience = broad_audience(doc.acl)
    if audience is None:
        return None
    entry = _scan_of(store, doc_id)
    if entry is None:
        return None
    types = entry.get("types")
    types = [str(t) for t in types] if isinstance(types, list) and types else ["unknown"]
    if entry.get("version") != doc.content_hash:
        types = sorted({*types, "unscanned_change"})
    return Flagged(doc_id, doc.title, doc.url, tuple(types), audience)


def flagged(store: DocumentStore, connectors: Iterable[str]) -> list[Flagged]:
    """Every overshared document of these connectors, by doc id."""
    out: list[Flagged] = []
    for connector in connectors:
        table = store.get_state(state_key(connector))
        if not isinstance(table, dict):
            continue
        for doc_id in sorted(table):
            flag = check(store, str(doc_id))
            if flag is not None:
                out.append(flag)
    return out
