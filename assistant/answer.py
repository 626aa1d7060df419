"""Answer orchestration: identity -> ACL-filtered retrieval -> numbered sources -> provider draft
-> citation validation -> audit."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.citations import Answer, refusal, validate
from assistant.llm.base import LlmProvider, Source
from auth.identity import Identity
from retriever.filters import acl_filter
from retriever.hybrid import Retriever


@dataclass(frozen=True)
class AuditRecord:
    at: float
    email: str
    principals: list[str]
    question: str
    hits: list[str]
    citations: list[str]
    refused: bool
    latency_ms: float


class Assistant:
    def __init__(self, retriever: Retriever, provider: LlmProvider, *, max_sources: int = 6,
                 audit_path: Path | None = None) -> None:
        self.retriever = retriever
        self.provider = provider
        self.max_sources = max_sources
        self.audit_path = audit_path

    def sources(self, question: str, identity: Identity) -> list[Source]:
        """The best passages the caller may read, numbered from 1, at most two per document."""
        sources: list[Source] = []
        per_doc: dict[str, int] = {}
        for p in self.retriever.passages(question, acl_filter(identity)):
            if per_doc.get(p.chunk.doc_id, 0) >= 2:
                continue
            per_doc[p.chunk.doc_id] = per_doc.get(p.chunk.doc_id, 0) + 1
            sources.append(Source(len(sources) + 1, p.chunk.doc_id, p.chunk.title, p.chunk.url,
                                  p.chunk.text))
            if len(sources) == self.max_sources:
                break
        return sources

    def ask(self, question: str, identity: Identity) -> Answer:
        started = time.perf_counter()
        sources = self.sources(question, identity)
        answer = validate(self.provider.draft(question, sources), sources) if sources else refusal()
        self._audit(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question=question, hits=[s.doc_id for s in sources],
            citations=[c.doc_id for c in answer.citations], refused=answer.refused,
            latency_ms=round((time.perf_counter() - started) * 1000, 1)))
        return answer

    def _audit(self, record: AuditRecord) -> None:
        if self.audit_path is None:
            return
        self.audit_path.parent.mkdir(parents=True, exist_ok=True)
        with self.audit_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record.__dict__, sort_keys=True) + "\n")
