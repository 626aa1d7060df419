"""The extractive answerer: picks the sentences that best answer the question from the sources,
verbatim, and cites them. Deterministic, offline, and unable to follow instructions in text."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from assistant.citations import INJECTION
from assistant.llm.base import Draft, DraftDone, DraftEvent, Source, TextDelta, Turn, collect
from indexer.chunking import split_sentences
from indexer.embedding import Embedder

_WORD = re.compile(r"\w+")
_STOP = frozenset((
    "a an and are as at be by can do does for from how i in is it many much of on or our the "
    "to was we what when where which who why will with you your"
).split())


def content_words(text: str) -> set[str]:
    # A 5-letter prefix is a cheap stem: "approvals" ~ "approval", "reviewed" ~ "review".
    return {w.lower()[:5] for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1}


@dataclass(frozen=True)
class Candidate:
    n: int
    sentence: str
    score: float


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(self, embedder: Embedder, min_evidence: float = 0.3, max_sentences: int = 3
                 ) -> None:
        self.embedder = embedder
        self.min_evidence = min_evidence
        self.max_sentences = max_sentences

    def candidates(self, question: str, sources: Sequence[Source]) -> list[Candidate]:
        pool = [(s.n, sentence) for s in sources for sentence in split_sentences(s.text)
                if len(_WORD.findall(sentence)) >= 4 and not sentence.rstrip().endswith("?")
                and not INJECTION.search(sentence)]
        if not pool:
            return []
        vectors = self.embedder.embed([question] + [sentence for _, sentence in pool])
        similarity = vectors[1:] @ vectors[0]
        wanted = content_words(question)
        out = []
        for (n, sentence), cos in zip(pool, similarity, strict=True):
            overlap = len(wanted & content_words(sentence)) / len(wanted) if wanted else 0.0
            out.append(Candidate(n, sentence, float(0.7 * cos + 0.3 * overlap)))
        out.sort(key=lambda c: (-c.score, c.n))
        return out

    def choose(self, question: str, sources: Sequence[Source]) -> list[Candidate]:
        """The sentences that answer, best first (none: the evidence is too weak)."""
        ranked = self.candidates(question, sources)
        if not ranked or ranked[0].score < self.min_evidence:
            return []
        chosen: list[Candidate] = []
        floor = max(self.min_evidence, ranked[0].score * 0.85)
        for c in ranked:
            if len(chosen) == self.max_sentences or c.score < floor:
                break
            # One sentence per source, and no near-repeats across sources.
            if any(c.n == o.n or _similar(c.sentence, o.sentence) for o in chosen):
                continue
            chosen.append(c)
        return chosen

    def draft(self, question: str, sources: Sequence[Source]) -> Draft:
        return collect(self.stream(question, sources))

    def stream(self, question: str, sources: Sequence[Source],
               history: Sequence[Turn] = ()) -> Iterator[DraftEvent]:
        """One delta per chosen sentence, with its quote (history is not needed: it answers
        the standalone question only)."""
        for i, c in enumerate(self.choose(question, sources)):
            yield TextDelta(("" if i == 0 else " ") + f"{c.sentence} [{c.n}]", {c.n: c.sentence})
        yield DraftDone()


def _similar(a: str, b: str) -> bool:
    wa, wb = content_words(a), content_words(b)
    return bool(wa and wb) and len(wa & wb) / min(len(wa), len(wb)) > 0.8
