"""Answer orchestration: identity -> ACL-filtered retrieval -> numbered sources -> provider draft
-> citation validation -> audit. Searches and access explanations are audited the same way."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from assistant.citations import Answer, refusal, validate
from assistant.llm.base import LlmProvider, Source
from auth.identity import Identity
from core.errors import StoreError
from core.models import Hit
from retriever.filters import acl_filter
from retriever.hybrid import Retriever


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
    action: Literal["ask", "search", "explain"] = "ask"
    # explain only: the document asked about and whether the person may read it (None: unknown)
    doc_id: str | None = None
    allowed: bool | None = None


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class Assistant:
    def __init__(self, retriever: Retriever, provider: LlmProvider, *, max_sources: int = 6,
                 audit_path: Path | None = None) -> None:
        self.retriever = retriever
        self.provider = provider
        self.max_sources = max_sources
        self.audit_path = audit_path

    def sources(self, question: str, identity: Identity, k: int | None = None) -> list[Source]:
        """The best passages the caller may read, numbered from 1, at most two per document and
        (with k) from at most k documents."""
        sources: list[Source] = []
        per_doc: dict[str, int] = {}
        limit = self.max_sources if k is None else 2 * k
        for p in self.retriever.passages(question, acl_filter(identity), k):
            seen = per_doc.get(p.chunk.doc_id, 0)
            if seen >= 2 or (k is not None and not seen and len(per_doc) == k):
                continue
            per_doc[p.chunk.doc_id] = seen + 1
            sources.append(Source(len(sources) + 1, p.chunk.doc_id, p.chunk.title, p.chunk.url,
                                  p.chunk.text))
            if len(sources) == limit:
                break
        return sources

    def ask(self, question: str, identity: Identity, k: int | None = None) -> Answer:
        started = time.perf_counter()
        sources = self.sources(question, identity, k)
        answer = validate(self.provider.draft(question, sources), sources) if sources else refusal()
        self._audit(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question=question, hits=[s.doc_id for s in sources],
            citations=[c.doc_id for c in answer.citations], refused=answer.refused,
            latency_ms=_elapsed_ms(started)))
        return answer

    def search(self, query: str, identity: Identity, k: int) -> list[Hit]:
        """The caller's best k documents, audited like a question."""
        started = time.perf_counter()
        hits = self.retriever.search(query, acl_filter(identity), k)
        self._audit(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question=query, hits=[h.doc_id for h in hits], citations=[], refused=not hits,
            latency_ms=_elapsed_ms(started), action="search"))
        return hits

    def audit_explain(self, identity: Identity, doc_id: str, allowed: bool | None,
                      started: float) -> None:
        """Record an access explanation (`allowed` None: no such document in the index)."""
        self._audit(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question="", hits=[], citations=[], refused=not allowed,
            latency_ms=_elapsed_ms(started), action="explain", doc_id=doc_id, allowed=allowed))

    def _audit(self, record: AuditRecord) -> None:
        """Append one line; an answer that cannot be audited is not given (StoreError)."""
        if self.audit_path is None:
            return
        line = json.dumps(asdict(record), sort_keys=True) + "\n"
        try:
            self.audit_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            raise StoreError(f"cannot write the audit log {self.audit_path} "
                             f"({exc.strerror})") from exc
