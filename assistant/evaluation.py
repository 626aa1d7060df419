"""`clearance eval`: retrieval and answer quality on a labelled question file.

Input, one JSON object per line: `{"question", "as", "relevant": [doc_id, ...]}` and optionally
`"answer_contains"` (text the answer must contain, case-insensitive). Each question is searched
and asked as its person; scored with retriever.metrics (recall@1/5/10, MRR@10, nDCG@10), the
share of refused answers, and citation precision (cited documents that are relevant).
Per connector: the questions with a relevant document of that connector.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import principals as P
from core.errors import UsageError
from retriever.metrics import ndcg_at, recall_at, reciprocal_rank

KEYS = frozenset({"question", "as", "relevant", "answer_contains"})
REQUIRED = ("question", "as", "relevant")
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "refusal_rate",
           "citation_precision")
DEPTH = 10  # documents retrieved per question: the deepest cut-off measured
MAX_BYTES = 64 * 1024 * 1024  # a question file, not a corpus
MAX_QUESTION_CHARS = 4000


@dataclass(frozen=True)
class Question:
    line: int
    question: str
    email: str
    relevant: tuple[str, ...]
    answer_contains: str | None = None

    @property
    def connectors(self) -> tuple[str, ...]:
        return tuple(sorted({d.split(":", 1)[0] for d in self.relevant}))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def read_lines(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of a regular UTF-8 file, numbered from 1; UsageError otherwise."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"question file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read question file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"question file {path} is not a regular file")
    if info.st_size > MAX_BYTES:
        raise UsageError(f"question file {path} is larger than {MAX_BYTES // 2**20} MiB")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read question file {path}: {exc.strerror or exc}") from None
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{path}: line {number}: not valid UTF-8") from None
        if text.strip():
            out.append((number, text))
    if not out:
        raise UsageError(f"question file {path} holds no questions")
    return out


def parse_question(path: Path, number: int, text: str) -> Question:
    where = f"{path}: line {number}"
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:
        raise UsageError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: not a JSON object")
    unknown = sorted(set(obj) - KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (expected question, as, "
                         "relevant, answer_contains)")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise UsageError(f"{where}: missing {missing[0]!r}")
    question, email, relevant = obj["question"], obj["as"], obj["relevant"]
    if not isinstance(question, str) or not question.strip():
        raise UsageError(f"{where}: 'question' must be non-empty text")
    if len(question) > MAX_QUESTION_CHARS:
        raise UsageError(f"{where}: 'question' is longer than {MAX_QUESTION_CHARS} characters")
    if (not isinstance(email, str) or email.strip() != email or " " in email
            or P.domain_of(email) is None):
        raise UsageError(f"{where}: 'as' must be an email address, got {email!r}")
    if not isinstance(relevant, list) or not relevant:
        raise UsageError(f"{where}: 'relevant' must be a non-empty list of document ids")
    for doc_id in relevant:
        if not isinstance(doc_id, str) or ":" not in doc_id or doc_id.startswith(":"):
            raise UsageError(f"{where}: 'relevant' holds {doc_id!r}, not a document id "
                             "(<connector>:<source id>)")
    if len(set(relevant)) != len(relevant):
        dup = next(d for d in relevant if relevant.count(d) > 1)
        raise UsageError(f"{where}: 'relevant' lists {dup!r} twice")
    contains = obj.get("answer_contains")
    if contains is not None and (not isinstance(contains, str) or not contains.strip()):
        raise UsageError(f"{where}: 'answer_contains' must be non-empty text")
    return Question(number, question.strip(), P.normalize_email(email), tuple(relevant),
                    contains)


def load_questions(path: Path) -> list[Question]:
    """Every question of the file, or a UsageError naming the first bad line."""
    questions: list[Question] = []
    seen: dict[tuple[str, str], int] = {}
    for number, text in read_lines(path):
        q = parse_question(path, number, text)
        key = (q.question, q.email)
        if key in seen:
            raise UsageError(f"{path}: line {number}: the same question as the same person as "
                             f"line {seen[key]}")
        seen[key] = number
        questions.append(q)
    return questions


def check_known(path: Path, questions: Sequence[Question], indexed: Callable[[str], bool],
                configured: Iterable[str], known: Callable[[str], bool]) -> None:
    """Every relevant document is indexed under a configured connector, and every person is
    one the sources know (a typo would be scored as someone who reads only public pages)."""
    names = set(configured)
    for q in questions:
        where = f"{path}: line {q.line}"
        for doc_id in q.relevant:
            connector = doc_id.split(":", 1)[0]
            if connector not in names:
                raise UsageError(f"{where}: {doc_id!r}: no connector {connector!r} configured")
            if not indexed(doc_id):
                raise UsageError(f"{where}: {doc_id!r} is not in the index (sync first, or "
                                 "fix the id)")
        if not known(q.email):
            raise UsageError(f"{where}: 'as' {q.email!r} is unknown: no source's groups, "
                             "aliases or ACLs name this person or their domain")


@dataclass(frozen=True)
class Outcome:
    """What the product returned for one question."""

    ranked: tuple[str, ...]  # search hits, best first
    refused: bool
    cited: tuple[str, ...]  # distinct cited documents, in citation order
    answer: str


@dataclass
class Scored:
    question: Question
    outcome: Outcome
    metrics: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        q, o = self.question, self.outcome
        row: dict[str, Any] = {
            "line": q.line, "question": q.question, "as": q.email,
            "relevant": list(q.relevant), "connectors": list(q.connectors),
            "retrieved": list(o.ranked), "refused": o.refused, "cited": list(o.cited),
            **{k: _round(v) for k, v in self.metrics.items()}}
        if q.answer_contains is not None:
            row["answer_contains"] = q.answer_contains
            row["answer_ok"] = q.answer_contains.casefold() in o.answer.casefold()
        return row


def score(question: Question, outcome: Outcome) -> Scored:
    ranked, relevant = outcome.ranked, question.relevant
    cited_relevant = sum(d in relevant for d in outcome.cited)
    return Scored(question, outcome, {
        "recall@1": recall_at(ranked, relevant, 1),
        "recall@5": recall_at(ranked, relevant, 5),
        "recall@10": recall_at(ranked, relevant, 10),
        "mrr@10": reciprocal_rank(ranked, relevant, 10),
        "ndcg@10": ndcg_at(ranked, relevant, 10),
        "refusal_rate": 1.0 if outcome.refused else 0.0,
        "citation_precision": cited_relevant / len(outcome.cited) if outcome.cited else None,
    })


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def aggregate(rows: Sequence[Scored]) -> dict[str, float | None]:
    """Means over the questions; citation precision over all cited documents (None: nothing
    was cited)."""
    out: dict[str, float | None] = {}
    for key in METRICS[:-1]:
        values = [r.metrics[key] for r in rows]
        out[key] = _round(sum(v or 0.0 for v in values) / len(values)) if values else None
    cited = sum(len(r.outcome.cited) for r in rows)
    hit = sum(sum(d in r.question.relevant for d in r.outcome.cited) for r in rows)
    out["citation_precision"] = _round(hit / cited) if cited else None
    return out


def recall_curve(rows: Sequence[Scored], depth: int = DEPTH) -> list[float]:
    """Mean recall@k for k = 1..depth (the plot)."""
    if not rows:
        return [0.0] * depth
    return [sum(recall_at(r.outcome.ranked, r.question.relevant, k) for r in rows) / len(rows)
            for k in range(1, depth + 1)]


@dataclass
class Report:
    rows: list[Scored]

    def per_connector(self) -> dict[str, list[Scored]]:
        out: dict[str, list[Scored]] = {}
        for row in self.rows:
            for name in row.question.connectors:
                out.setdefault(name, []).append(row)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {"overall": aggregate(self.rows),
                "per_connector": {n: aggregate(r) for n, r in self.per_connector().items()},
                "questions": [r.to_json() for r in self.rows]}


def evaluate(questions: Sequence[Question], run: Callable[[Question], Outcome]) -> Report:
    return Report([score(q, run(q)) for q in questions])
