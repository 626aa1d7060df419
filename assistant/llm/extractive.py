"""The extractive answerer: picks the passages that best answer the question from the sources,
cites them with a verbatim quote, and shows them as readable prose (assistant.llm.passages).
Deterministic, offline, and unable to follow instructions in text.

The answer is the shortest set of passages that answers: the best one, then only those that
add a word of the question the others did not cover, shown in source order per document. A
question about a number or a date prefers passages that hold one."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from assistant.citations import INJECTION
from assistant.llm.base import Draft, DraftDone, DraftEvent, Source, TextDelta, Turn, collect
from assistant.llm.passages import Unit, units
from assistant.llm.ranges import in_range
from indexer.embedding import Embedder

_WORD = re.compile(r"\w+")
_STOP = frozenset((
    "a an and are as at be by can do does for from how i in is it many much of on or our the "
    "to was we what when where which who why will with you your"
).split())
_MONTHS = ("january february march april may june july august september october november "
           "december monday tuesday wednesday thursday friday saturday sunday").split()
_NUMBER_WORDS = ("one two three four five six seven eight nine ten eleven twelve fifteen twenty "
                 "thirty forty fifty sixty hundred thousand million billion dozen half "
                 "once twice daily weekly monthly quarterly yearly annually").split()
_HOLDS_NUMBER = re.compile(r"\d|\b(?:" + "|".join(_MONTHS + _NUMBER_WORDS) + r")\b",
                           re.IGNORECASE)
_ASKS_NUMBER = re.compile(
    r"\b(?:how (?:many|much|long|often|old|far|big|soon|large|high|low)|when|until|since|"
    r"what(?: is| are| was| were)?(?: the)? (?:date|day|time|year|month|percentage|percent|"
    r"amount|limit|price|cost|size|number|rate|fee|value|deadline)|which (?:date|day|year|month)|"
    r"deadline)\b", re.IGNORECASE)
# For a question asking for a number, a passage without one counts for this share of its score.
NUMBERLESS_WEIGHT = 0.75
OTHER_DOCUMENT_RATIO = 0.85
# "--bytes", "0x0a", "AES-CTR", "SIGKILL": fuzzy similarity blurs them; an exact spelling counts.
_IDENTIFIER = re.compile(r"(?<![\w-])(?:--?[A-Za-z][\w-]*|\w*[\d_]\w*(?:[.-]\w+)*|"
                         r"[A-Z][A-Z0-9]+(?:-[A-Z0-9]+)*)(?![\w-])")
IDENTIFIER_WEIGHT = 0.25
RANGE_WEIGHT = 0.2
OUT_OF_RANGE_WEIGHT = 0.8


def content_words(text: str) -> set[str]:
    # A 5-letter prefix of the singular is a cheap stem: "approvals" ~ "approval", "meals" ~
    # "meal", "reviewed" ~ "review".
    return {_stem(w.lower()) for w in _WORD.findall(text) if w.lower() not in _STOP and len(w) > 1}


def _stem(word: str) -> str:
    return (word[:-1] if len(word) > 3 and word.endswith("s") else word)[:5]


def identifiers(question: str) -> list[str]:
    """Names a passage must spell exactly to be about them: options, codes, versions."""
    found = (m.group(0).strip(".") for m in _IDENTIFIER.finditer(question))
    # A bare number or year is no name (number questions are weighed on their own).
    return list(dict.fromkeys(f for f in found if re.search(r"[A-Za-z]", f)))


def asks_for_number(question: str) -> bool:
    return bool(_ASKS_NUMBER.search(question))


@dataclass(frozen=True)
class Candidate:
    unit: Unit
    score: float
    words: frozenset[str] = frozenset()  # content words of the passage and its title

    @property
    def n(self) -> int:
        return self.unit.n

    @property
    def sentence(self) -> str:
        return self.unit.prose


class ExtractiveAnswerer:
    name = "extractive"

    def __init__(self, embedder: Embedder, min_evidence: float = 0.3, max_sentences: int = 3,
                 companion_ratio: float = 0.65) -> None:
        self.embedder = embedder
        self.min_evidence = min_evidence
        self.max_sentences = max_sentences
        # A passage joins the best one only with this share of its score (and new words).
        self.companion_ratio = companion_ratio

    def candidates(self, question: str, sources: Sequence[Source]) -> list[Candidate]:
        titles = {s.n: s.title for s in sources}
        pool = [u for s in sources for u in units(s.n, s.title, s.text)
                if len(_WORD.findall(u.prose)) >= 4 and not u.prose.rstrip().endswith("?")
                and not INJECTION.search(u.quote)]
        if not pool:
            return []
        vectors = self.embedder.embed([question] + [u.match for u in pool])
        similarity = vectors[1:] @ vectors[0]
        wanted = content_words(question)
        numeric = asks_for_number(question)
        names = [re.compile(rf"(?<![\w-]){re.escape(i)}(?![\w-])") for i in identifiers(question)]
        out = []
        for u, cos in zip(pool, similarity, strict=True):
            words = content_words(u.match) | content_words(titles[u.n])
            overlap = len(wanted & words) / len(wanted) if wanted else 0.0
            score = float(0.7 * cos + 0.3 * overlap)
            fits = in_range(question, u.key) if u.row else None
            if fits is not None:  # the row whose range holds the question's number
                score = score + RANGE_WEIGHT if fits else score * OUT_OF_RANGE_WEIGHT
            if names:
                exact = sum(1 for pattern in names if pattern.search(u.match))
                score += IDENTIFIER_WEIGHT * exact / len(names)
            if numeric and not _HOLDS_NUMBER.search(u.prose):
                score *= NUMBERLESS_WEIGHT
            out.append(Candidate(u, score, frozenset(words)))
        out.sort(key=lambda c: (-c.score, c.n, c.unit.start))
        return out

    def choose(self, question: str, sources: Sequence[Source]) -> list[Candidate]:
        """The passages that answer, in source order per document (none: the evidence is too
        weak)."""
        ranked = self.candidates(question, sources)
        if not ranked or ranked[0].score < self.min_evidence:
            return []
        wanted = content_words(question)
        chosen = [ranked[0]]
        covered = wanted & ranked[0].words
        floor = max(self.min_evidence, ranked[0].score * self.companion_ratio)
        # Another document must come closer to the best passage to join it.
        other_floor = max(floor, ranked[0].score * OTHER_DOCUMENT_RATIO)
        doc_of = {s.n: s.doc_id for s in sources}
        best_doc = doc_of.get(ranked[0].n)
        for c in ranked[1:]:
            if len(chosen) == self.max_sentences or c.score < floor or covered >= wanted:
                break
            if doc_of.get(c.n) != best_doc and c.score < other_floor:
                continue
            adds = (wanted & c.words) - covered
            # Shortest answer: a passage must add something the question asked for.
            if not adds or any(_similar(c.sentence, o.sentence) for o in chosen):
                continue
            chosen.append(c)
            covered |= adds
        return _in_source_order(chosen, sources)

    def draft(self, question: str, sources: Sequence[Source]) -> Draft:
        return collect(self.stream(question, sources))

    def stream(self, question: str, sources: Sequence[Source],
               history: Sequence[Turn] = ()) -> Iterator[DraftEvent]:
        """One delta per chosen passage, with its quote (history is not needed: it answers
        the standalone question only)."""
        for i, c in enumerate(self.choose(question, sources)):
            prose = c.sentence if re.search(r"[.!?]$", c.sentence) else c.sentence + "."
            yield TextDelta(("" if i == 0 else " ") + f"{prose} [{c.n}]", {c.n: c.unit.quote})
        yield DraftDone()


def _in_source_order(chosen: list[Candidate], sources: Sequence[Source]) -> list[Candidate]:
    """Documents in the order of their best passage; passages of one document as it has them."""
    doc_of = {s.n: s.doc_id for s in sources}
    rank: dict[str, int] = {}
    for c in chosen:
        rank.setdefault(doc_of.get(c.n, ""), len(rank))
    return sorted(chosen, key=lambda c: (rank[doc_of.get(c.n, "")], c.n, c.unit.start))


def _similar(a: str, b: str) -> bool:
    wa, wb = content_words(a), content_words(b)
    return bool(wa and wb) and len(wa & wb) / min(len(wa), len(wb)) > 0.8
