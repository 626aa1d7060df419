"""Answer orchestration: identity -> ACL-filtered retrieval -> numbered sources -> provider draft
-> citation validation -> audit. Searches and access explanations are audited the same way."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from assistant import oversharing
from assistant.audit import AuditLog, AuditRecord, acl_hash, elapsed_ms
from assistant.citations import Answer, CitationCheck, refusal
from assistant.conversations import Conversations, standalone
from assistant.guardrails import Action, Guardrails
from assistant.llm.base import DraftDone, LlmProvider, Source, TextDelta, Turn, Usage
from auth.identity import Identity
from core.errors import UsageError
from core.models import Hit
from retriever.filters import acl_filter
from retriever.hybrid import Retriever

WITHHELD = "The answer was withheld: it contained text a guardrail does not allow."


@dataclass(frozen=True)
class AnswerDelta:
    """The next checked sentence of the answer (with its leading space)."""

    text: str


@dataclass(frozen=True)
class AnswerDone:
    """The last event: the validated answer and its final citation list."""

    answer: Answer
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = "end_turn"
    asked: str = ""  # the question as it was answered (after guardrail redaction)


AnswerEvent = AnswerDelta | AnswerDone


class Assistant:
    def __init__(self, retriever: Retriever, provider: LlmProvider, *, max_sources: int = 6,
                 audit_path: Path | None = None, audit: AuditLog | None = None,
                 guard: Guardrails | None = None,
                 conversations: Conversations | None = None,
                 exclude_overshared: bool = True) -> None:
        self.retriever = retriever
        # Documents with sensitive data shared with everyone/a domain never feed an answer.
        self.exclude_overshared = exclude_overshared
        self.guard = guard
        self.conversations = conversations
        self.provider = provider
        self.max_sources = max_sources
        self.audit = audit or AuditLog(audit_path)

    def sources(self, question: str, identity: Identity, k: int | None = None) -> list[Source]:
        """The best passages the caller may read, numbered from 1, at most two per document and
        (with k) from at most k documents."""
        return self._sources(question, identity, k)[0]

    def _sources(self, question: str, identity: Identity, k: int | None
                 ) -> tuple[list[Source], list[str]]:
        """The sources, and the overshared documents kept out of them."""
        sources: list[Source] = []
        per_doc: dict[str, int] = {}
        overshared: dict[str, bool] = {}
        limit = self.max_sources if k is None else 2 * k
        for p in self.retriever.passages(question, acl_filter(identity), k):
            if self.exclude_overshared:
                doc_id = p.chunk.doc_id
                if doc_id not in overshared:
                    overshared[doc_id] = oversharing.check(
                        cast(oversharing.DocumentStore, self.retriever.store),
                        doc_id) is not None
                if overshared[doc_id]:
                    continue
            seen = per_doc.get(p.chunk.doc_id, 0)
            if seen >= 2 or (k is not None and not seen and len(per_doc) == k):
                continue
            per_doc[p.chunk.doc_id] = seen + 1
            sources.append(Source(len(sources) + 1, p.chunk.doc_id, p.chunk.title, p.chunk.url,
                                  p.chunk.text))
            if len(sources) == limit:
                break
        return sources, [d for d, flag in overshared.items() if flag]

    def ask(self, question: str, identity: Identity, k: int | None = None,
            history: Sequence[Turn] = (), conversation: str | None = None) -> Answer:
        final = refusal()
        for event in self.ask_stream(question, identity, k, history, conversation):
            if isinstance(event, AnswerDone):
                final = event.answer
        return final

    def ask_stream(self, question: str, identity: Identity, k: int | None = None,
                   history: Sequence[Turn] = (), conversation: str | None = None
                   ) -> Iterator[AnswerEvent]:
        """Checked sentences as the provider writes them, then the answer with its citations
        (the last event). Only sources the caller may read reach the provider.

        `conversation`: the asker's conversation of that name; its recent turns are the
        history, and this question and its answer are appended to it."""
        if conversation is not None:
            if self.conversations is None:
                raise UsageError("conversations are not available here")
            history = [*history, *self.conversations.history(identity.email, conversation)]
        final: AnswerDone | None = None
        for event in self._answer(question, identity, k, history, conversation):
            if isinstance(event, AnswerDone):
                final = event
            yield event
        if final is not None and conversation is not None and self.conversations is not None:
            self.conversations.append(identity.email, conversation, final.asked,
                                      final.answer.answer)

    def _answer(self, question: str, identity: Identity, k: int | None,
                history: Sequence[Turn], conversation: str | None) -> Iterator[AnswerEvent]:
        started = time.perf_counter()
        asked = question
        actions: list[Action] = []
        if self.guard is not None:
            verdict = self.guard.question(question)
            actions.extend(verdict.actions)
            if verdict.text is None:  # stopped before retrieval: nothing is read or sent
                answer = Answer(verdict.message, (), True)
                asked = self.guard.quote(question)
                self._audit_ask(identity, asked, [], answer, started, None, DraftDone(),
                                actions, conversation)
                yield AnswerDone(answer, asked=asked)
                return
            asked = verdict.text
        # Retrieval with the current identity, for the follow-up made standalone.
        query = standalone(asked, history)
        sources, kept_out = self._sources(query, identity, k)
        if kept_out:
            actions.append(Action("answer", "withheld", "oversharing"))
        check = CitationCheck(sources, self.guard)
        done = DraftDone()
        if sources:
            for event in self.provider.stream(query, sources, history):
                if isinstance(event, TextDelta):
                    for sentence in check.feed(event.text, event.quotes):
                        yield AnswerDelta(sentence)
                else:
                    done = event
        last, answer = check.finish()
        for sentence in last:
            yield AnswerDelta(sentence)
        actions.extend(check.actions)
        if answer.refused and any(a.action == "withheld" and a.rule != "oversharing"
                                  for a in actions):
            answer = Answer(WITHHELD, (), True, answer.dropped)
        self._audit_ask(identity, asked, sources, answer, started,
                        self.provider.name if sources else None, done, actions, conversation)
        yield AnswerDone(answer, done.usage, done.stop_reason, asked)

    def _audit_ask(self, identity: Identity, question: str, sources: Sequence[Source],
                   answer: Answer, started: float, provider: str | None, done: DraftDone,
                   actions: Sequence[Action], conversation: str | None) -> None:
        self._audit(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question=question, hits=list(dict.fromkeys(s.doc_id for s in sources)),
            citations=[c.doc_id for c in answer.citations], refused=answer.refused,
            latency_ms=elapsed_ms(started), provider=provider,
            input_tokens=done.usage.input_tokens, output_tokens=done.usage.output_tokens,
            stop_reason=done.stop_reason if provider else None, dropped_claims=answer.dropped,
            guardrails=[a.to_json() for a in actions], conversation=conversation,
            cited=self._provenance(answer)))

    def _provenance(self, answer: Answer) -> list[dict[str, str]]:
        """Each cited document's version and a hash of the ACL it had at answer time, so an
        auditor can replay who could see what was shown."""
        out: list[dict[str, str]] = []
        for doc_id in dict.fromkeys(c.doc_id for c in answer.citations):
            doc = self.retriever.store.document(doc_id)
            out.append({"doc_id": doc_id, "version": doc.content_hash if doc else "",
                        "acl_hash": acl_hash(doc.acl) if doc else ""})
        return out

    def search(self, query: str, identity: Identity, k: int) -> list[Hit]:
        """The caller's best k documents, audited like a question."""
        started = time.perf_counter()
        hits = self.retriever.search(query, acl_filter(identity), k)
        self._audit(AuditRecord(
            at=time.time(), email=identity.email, principals=sorted(identity.principals),
            question=query, hits=[h.doc_id for h in hits], citations=[], refused=not hits,
            latency_ms=elapsed_ms(started), action="search"))
        return hits

    def _audit(self, record: AuditRecord) -> None:
        self.audit.write(record)
