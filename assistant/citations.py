"""Citation validation: every [n] must name a source the caller may read, every quote must be a
verbatim span of it. Markers that fail are removed; an answer left with none is a refusal."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from assistant.llm.base import Draft, Source

MARKER = re.compile(r"\[(\d+)\]")
REFUSAL = "I could not find this in documents you can access."


@dataclass(frozen=True)
class Citation:
    n: int
    doc_id: str
    title: str
    url: str
    quote: str

    def to_json(self) -> dict[str, object]:
        return {"n": self.n, "doc_id": self.doc_id, "title": self.title, "url": self.url,
                "quote": self.quote}


@dataclass(frozen=True)
class Answer:
    answer: str
    citations: tuple[Citation, ...]
    refused: bool

    def to_json(self) -> dict[str, object]:
        return {"answer": self.answer, "citations": [c.to_json() for c in self.citations],
                "refused": self.refused}


_WORD = re.compile(r"\w+")


def supporting_sentence(claim: str, text: str) -> str:
    """The sentence of `text` sharing most words with `claim` (for providers that give no quote)."""
    words = {w.lower() for w in _WORD.findall(claim) if len(w) > 3}
    best, best_overlap = "", 0
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        overlap = len(words & {w.lower() for w in _WORD.findall(sentence)})
        if overlap > best_overlap:
            best, best_overlap = sentence.strip(), overlap
    return best if best_overlap >= 2 else ""


def refusal() -> Answer:
    return Answer(REFUSAL, (), True)


def validate(draft: Draft, sources: Sequence[Source]) -> Answer:
    by_n = {s.n: s for s in sources}
    kept: dict[int, Citation] = {}

    def keep(match: re.Match[str]) -> str:
        n = int(match.group(1))
        source = by_n.get(n)
        if source is None:
            return ""
        claim = draft.text[:match.start()].rsplit("]", 1)[-1]
        quote = draft.quotes.get(n) or supporting_sentence(claim, source.text)
        if not quote or quote not in source.text:
            return ""
        kept.setdefault(n, Citation(n, source.doc_id, source.title, source.url, quote))
        return match.group(0)

    text = re.sub(r"\s+([.,;:])", r"\1", MARKER.sub(keep, draft.text)).strip()
    if not kept:
        return refusal()
    # Renumber 1..m in order of appearance so the user sees [1], [2], ...
    order = {old: new for new, old in enumerate(dict.fromkeys(
        int(m.group(1)) for m in MARKER.finditer(text)), start=1)}
    text = MARKER.sub(lambda m: f"[{order[int(m.group(1))]}]", text)
    citations = tuple(
        Citation(order[c.n], c.doc_id, c.title, c.url, c.quote)
        for c in sorted(kept.values(), key=lambda c: order[c.n]))
    return Answer(text, citations, False)
