"""Wiring of `clearance eval` onto a Runtime: the question file checked against the index and
the sources, each question searched and asked through the product, and the leak audit (also
run by the `[eval] leak_audit_schedule` beat entry), whose last result `clearance status` shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.evaluation import DEPTH, Outcome, Question, Report, check_known, evaluate
from assistant.evaluation import load_questions as _load
from assistant.leaks import Leak, Seen, SourceView, audit, people, read_source
from core import principals as P
from core.acl import Acl
from core.errors import ClearanceError, ConfigError
from core.redact import redact_text
from retriever.hybrid import Fusion, Retriever

if TYPE_CHECKING:
    from apps.runtime import Runtime
    from assistant.answer import Assistant

log = logging.getLogger("clearance.eval")
LAST_AUDIT_KEY = "eval:leak_audit:last"
EVAL_AUDIT = "audit-eval.jsonl"  # what eval and the leak audit were shown, as whom
MODES: dict[str, Fusion | None] = {"bm25": "bm25", "dense": "dense", "hybrid": None}


def load_questions(rt: Runtime, path: Path,
                   views: dict[str, SourceView] | None = None) -> list[Question]:
    """The question file, parsed and checked against the index and, for the leak audit, what
    the sources say now (`views`): UsageError naming the line."""
    questions = _load(path)
    indexed = {d for name in rt.connector_names for d in rt.store.doc_ids(name)}
    users: set[str] = set()
    domains: set[str] = set()
    for view in (views or {}).values():
        _named(users, domains, (p for acl in view.acls.values() for p in acl.principals()))
        _named(users, domains, view.groups)
        users.update(a for pair in view.aliases for a in pair)
    scanned: list[bool] = []

    def known(email: str) -> bool:
        if email in users or P.domain_of(email) in domains:
            return True
        identity = rt.identity(email)
        base = P.principals_for_email(email)
        if any(identity.at(c).principals - base for c in rt.connector_names):
            return True
        if not scanned:  # every indexed ACL, read once and only when needed
            scanned.append(True)
            _named(users, domains, _indexed_principals(rt))
        if not users and not domains and not rt.store.identity_sources():
            return True  # the sources name nobody (everything is public): nothing to check
        return email in users or P.domain_of(email) in domains

    check_known(path, questions, indexed.__contains__, rt.connector_names, known)
    return questions


def _named(users: set[str], domains: set[str], principals: Iterable[str]) -> None:
    for p in principals:
        if p.startswith("user:"):
            users.add(p.removeprefix("user:"))
        elif p.startswith("domain:"):
            domains.add(p.removeprefix("domain:"))


def _indexed_principals(rt: Runtime) -> Iterator[str]:
    """The principals of every indexed ACL of a configured connector."""
    for name in rt.connector_names:
        for doc_id in rt.store.doc_ids(name):
            doc = rt.store.document(doc_id)
            if doc is not None:
                yield from doc.acl.principals()


def assistant_for(rt: Runtime, mode: str = "hybrid") -> Assistant:
    """The product's assistant (or one whose retriever runs one retriever alone), auditing to
    its own file: the audit log of people's questions never shows one a person did not ask."""
    from assistant.audit import AuditLog

    fusion = MODES[mode]
    base = rt.retriever
    retriever = base if fusion is None else Retriever(
        base.store, base.embedder, replace(base.params, fusion=fusion))
    assistant = rt.assistant_for(retriever)
    assistant.audit = AuditLog(rt.settings.home / EVAL_AUDIT,
                               principals=rt.settings.file.audit.principals)
    return assistant


def outcome(rt: Runtime, assistant: Assistant, question: str, email: str) -> Outcome:
    identity = rt.identity(email)
    hits = assistant.search(question, identity, DEPTH)
    answer = assistant.ask(question, identity)
    cited = tuple(dict.fromkeys(c.doc_id for c in answer.citations))
    return Outcome(tuple(h.doc_id for h in hits), answer.refused, cited, answer.answer)


def run_eval(rt: Runtime, questions: list[Question], mode: str = "hybrid") -> Report:
    assistant = assistant_for(rt, mode)
    return evaluate(questions, lambda q: outcome(rt, assistant, q.question, q.email))


def source_views(rt: Runtime) -> dict[str, SourceView]:
    """Every configured connector's ACLs and identities read from the source now."""
    return {c.name: read_source(c) for c in rt.connectors()}


def leak_audit(rt: Runtime, questions: list[Question], views: dict[str, SourceView]
               ) -> tuple[list[Leak], dict[str, int]]:
    """Every question asked as every person of the file, checked against `views` (read from
    the sources before asking: a change at the source after that is no leak yet)."""
    seen: list[Seen] = []
    assistant = assistant_for(rt)
    for email in people(questions):
        for q in questions:
            o = outcome(rt, assistant, q.question, email)
            seen.append(Seen(email, q.question, o.ranked, o.cited))

    def indexed_acl(doc_id: str) -> Acl | None:
        doc = rt.store.document(doc_id)
        return None if doc is None else doc.acl

    def indexed_held(email: str, connector: str) -> frozenset[str]:
        return rt.identity(email).at(connector).principals

    leaks = audit(seen, views, indexed_acl, indexed_held)
    counts = {"questions": len(questions), "people": len(people(questions)),
              "hits": sum(len(s.hits) for s in seen), "citations": sum(len(s.cited) for s in seen)}
    return leaks, counts


def record(rt: Runtime, started: float, leaks: list[Leak] | None, counts: dict[str, int],
           error: str | None = None, trigger: str = "cli") -> dict[str, Any]:
    entry = {"started": started, "finished": time.time(), "trigger": trigger,
             "status": "failed" if error else ("leaks" if leaks else "ok"),
             "error": None if error is None else redact_text(error),
             **counts, "leaks": [leak.to_json() for leak in leaks or []]}
    try:
        rt.store.set_state(LAST_AUDIT_KEY, entry)
    except ClearanceError as exc:
        log.error("eval.audit_not_recorded", extra={"reason": str(exc)})
    return entry


def scheduled_questions(rt: Runtime) -> Path:
    cfg = rt.settings.file.eval
    if not cfg.questions:
        raise ConfigError("[eval] leak_audit_schedule needs [eval] questions (the question file)")
    return (rt.settings.config_dir / Path(cfg.questions).expanduser()).resolve()


def run_scheduled_audit(rt: Runtime, trigger: str = "schedule") -> dict[str, Any]:
    """The beat entry's task body: the audit on `[eval] questions`, recorded either way."""
    started = time.time()
    try:
        views = source_views(rt)
        questions = load_questions(rt, scheduled_questions(rt), views)
        leaks, counts = leak_audit(rt, questions, views)
    except ClearanceError as exc:
        record(rt, started, None, {}, str(exc), trigger)
        raise
    for leak in leaks:
        log.error("eval.leak", extra=leak.to_json())
    return record(rt, started, leaks, counts, None, trigger)
