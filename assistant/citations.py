"""Citation validation, for every provider: every [n] must name a source the caller may read,
every claim must be supported by the source it cites, every quote must be a verbatim span of
it. Markers that fail are removed; a sentence left with no valid marker is an unsupported claim
and is dropped; an answer left with none is a refusal.

`CitationCheck` works on a stream: it is fed the draft's deltas and gives back each sentence
once it is complete and checked, so nothing unchecked ever reaches the person asking."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.llm.base import Draft, Source

if TYPE_CHECKING:
    from assistant.guardrails import Action, Guardrails

MARKER = re.compile(r"\[(\d+)\]")
REFUSAL = "I could not find this in documents you can access."
# Text addressed to an assistant is data: never evidence for an answer.
INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.]{0,40}\b(instructions?|prompts?|rules)\b"
    r"|\bsystem prompt\b|\byou are now\b|\bact as\b", re.IGNORECASE)
# Where one sentence (with its trailing markers) ends and the next begins: the next one must
# have started, so a stream never cuts "claim." from the " [1]" still to come.
_BOUNDARY = re.compile(r"(?<=[.!?\]])[ \t]+(?=[^\s\[])|\s*\n\s*(?=[^\s\[])")
_WORD = re.compile(r"\w+")


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
    # claims of the draft dropped as unsupported or uncited (audited, not shown)
    dropped: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, object]:
        return {"answer": self.answer, "citations": [c.to_json() for c in self.citations],
                "refused": self.refused}


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 3}


def supporting_sentence(claim: str, text: str) -> str:
    """The sentence of `text` that supports `claim` best: it shares at least two words and half
    of the claim's words with it. Sentences addressed to an assistant support nothing."""
    words = _words(claim)
    best, best_overlap = "", 0
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        if INJECTION.search(sentence):
            continue
        overlap = len(words & {w.lower() for w in _WORD.findall(sentence)})
        if overlap > best_overlap:
            best, best_overlap = sentence.strip(), overlap
    return best if supports(claim, best) else ""


def supports(claim: str, span: str) -> bool:
    """`span` shares at least two words and half of the claim's words with `claim`."""
    words = _words(claim)
    overlap = len(words & {w.lower() for w in _WORD.findall(span)})
    return overlap >= 2 and 2 * overlap >= len(words)


def refusal() -> Answer:
    return Answer(REFUSAL, (), True)


def split_sentences(text: str) -> tuple[list[str], str]:
    """The complete sentences of `text`, and the rest (a sentence still being written)."""
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        before = text[start:m.start()]
        # "X [1] and Y [2]." keeps going: a marker ends a sentence only after its full stop.
        if before.endswith("]") and not re.search(r"[.!?](\s*\[\d+\])+$", before):
            continue
        out.append(before.strip())
        start = m.end()
    return [s for s in out if s], text[start:]


class CitationCheck:
    """Checks a draft sentence by sentence as it streams (`feed`), then gives the answer."""

    def __init__(self, sources: Sequence[Source], guard: Guardrails | None = None) -> None:
        self.by_n = {s.n: s for s in sources}
        self.guard = guard
        self.actions: list[Action] = []  # guardrail interventions, for the audit log
        # What the provider says its claims rest on: every span given for each source.
        self.quotes: dict[int, list[str]] = {}
        self._quote_of: dict[int, str] = {}  # the quote each citation shows
        self._pending = ""
        self._order: dict[int, int] = {}  # source n -> the number the person sees
        self._citations: list[Citation] = []
        self._kept: list[str] = []
        self.dropped = 0

    def feed(self, delta: str, quotes: Mapping[int, str] | None = None) -> list[str]:
        """The checked sentences this delta completes (each prefixed with its separator)."""
        for n, quote in (quotes or {}).items():
            if quote not in self.quotes.setdefault(n, []):
                self.quotes[n].append(quote)
        complete, self._pending = split_sentences(self._pending + delta)
        return [s for s in (self._check(c) for c in complete) if s]

    def finish(self) -> tuple[list[str], Answer]:
        """The last checked sentences, and the whole answer."""
        last = [s for s in (self._check(self._pending.strip()),) if s]
        self._pending = ""
        if not self._citations:
            return [], Answer(REFUSAL, (), True, self.dropped)
        text = " ".join(self._kept)
        return last, Answer(text, tuple(self._citations), False, self.dropped)

    def _check(self, sentence: str) -> str:
        if not sentence:
            return ""
        claim = MARKER.sub("", sentence)
        cited = dict.fromkeys(int(m.group(1)) for m in MARKER.finditer(sentence))
        valid = {n for n in cited if self._supported(n, claim)}
        if not valid:
            self.dropped += 1
            return ""
        if self.guard is not None:
            verdict = self.guard.sentence(sentence)
            self.actions.extend(verdict.actions)
            if verdict.text is None:
                return ""
            sentence = verdict.text
        seen: set[int] = set()

        def renumber(match: re.Match[str]) -> str:
            n = int(match.group(1))
            if n not in valid or n in seen:
                return ""
            seen.add(n)
            return f"[{self._number(n)}]"

        text = re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub(renumber, sentence))
        text = re.sub(r"\s{2,}", " ", text).strip()
        out = text if not self._kept else " " + text
        self._kept.append(text)
        return out

    def _supported(self, n: int, claim: str) -> bool:
        source = self.by_n.get(n)
        if source is None:
            return False
        given = self.quotes.get(n)
        quote = _closest(claim, given) if given else ""
        if not supports(claim, quote):  # a span the claim does not rest on proves nothing
            quote = supporting_sentence(claim, source.text)
        if not quote or quote not in source.text or INJECTION.search(quote):
            return False
        self._quote_of.setdefault(n, quote)
        return True

    def _number(self, n: int) -> int:
        if n not in self._order:
            # Renumbered 1..m in order of appearance so the person sees [1], [2], ...
            self._order[n] = len(self._order) + 1
            s = self.by_n[n]
            quote = self._quote_of[n]
            if self.guard is not None:
                quote = self.guard.quote(quote)
            self._citations.append(Citation(self._order[n], s.doc_id, s.title, s.url, quote))
        return self._order[n]


def _closest(claim: str, quotes: Sequence[str]) -> str:
    """Of the spans a provider gave for one source, the one this claim shares most words with
    (a stream may give the next claim's span before this claim is complete)."""
    words = _words(claim)
    return max(quotes, key=lambda q: len(words & _words(q)))


def validate(draft: Draft, sources: Sequence[Source]) -> Answer:
    check = CitationCheck(sources)
    check.feed(draft.text, draft.quotes)
    return check.finish()[1]
