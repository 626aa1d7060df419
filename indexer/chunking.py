"""Structure-aware chunking.

Sections keep their heading path as context; small neighbouring sections are merged, long ones
split on paragraph, then sentence, then word boundaries, with a sentence overlap between
consecutive pieces of one section. What the embedder sees is `title / headings` + body, sized
to fit the model's window; what is stored and quoted is the body, verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.models import Chunk, Document, Section

TokenCounter = Callable[[str], int]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")


@dataclass(frozen=True)
class ChunkingPolicy:
    max_tokens: int = 230      # body + context must stay under the model window (256)
    target_tokens: int = 200   # stop merging once a chunk reaches this size
    overlap_tokens: int = 40   # carried from the end of one piece into the next


def context_line(title: str, headings: Sequence[str]) -> str:
    parts = [title, *[h for h in headings if h != title]]
    return " / ".join(p for p in parts if p)


def embedding_text(title: str, chunk: Chunk) -> str:
    """What the embedder sees: the title and heading path, then the passage."""
    return f"{context_line(title, chunk.headings)}\n{chunk.text}"


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def _split_long(text: str, limit: int, count: TokenCounter) -> list[str]:
    """Pieces of at most `limit` tokens: paragraphs, then sentences, then words."""
    if count(text) <= limit:
        return [text]
    for pattern in (r"\n\s*\n", None):
        units = re.split(pattern, text) if pattern else split_sentences(text)
        units = [u.strip() for u in units if u.strip()]
        if len(units) > 1:
            return [p for u in units for p in _split_long(u, limit, count)]
    words = text.split()
    pieces: list[str] = []
    current: list[str] = []
    for word in words:
        if current and count(" ".join([*current, word])) > limit:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def _tail(text: str, tokens: int, count: TokenCounter) -> str:
    """The last whole sentences of `text` that fit in `tokens`."""
    kept: list[str] = []
    for sentence in reversed(split_sentences(text)):
        if count(" ".join([sentence, *kept])) > tokens:
            break
        kept.insert(0, sentence)
    return " ".join(kept)


def _pack(units: list[str], budget: int, policy: ChunkingPolicy, count: TokenCounter) -> list[str]:
    """Greedily pack units (each <= budget) into chunks, overlapping by whole sentences."""
    chunks: list[str] = []
    current: list[str] = []
    for unit in units:
        candidate = "\n\n".join([*current, unit])
        if current and count(candidate) > budget:
            chunks.append("\n\n".join(current))
            overlap = _tail(chunks[-1], policy.overlap_tokens, count)
            current = [overlap] if overlap and count(f"{overlap}\n\n{unit}") <= budget else []
        current.append(unit)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _memoised(count: TokenCounter) -> TokenCounter:
    """`count` remembering its answers: chunking one document asks for the same texts again
    (a section, then the group it stays alone in, then the one unit it packs; the context line
    of every group under the same headings), and each ask is a tokenizer run."""
    known: dict[str, int] = {}

    def counted(text: str) -> int:
        n = known.get(text)
        if n is None:
            n = known[text] = count(text)
        return n

    return counted


def chunk_document(doc: Document, count: TokenCounter,
                   policy: ChunkingPolicy = ChunkingPolicy()) -> list[Chunk]:
    count = _memoised(count)  # per document: counts are a pure function of the text
    chunks: list[Chunk] = []
    # A blank section would become an empty chunk (embedded from its context line alone).
    sections = [s for s in doc.sections if s.text.strip()]
    for group in _merge_small(sections, policy, count):
        context = count(context_line(doc.title, group.headings)) + 2
        budget = max(32, policy.max_tokens - context)
        units = _split_long(group.text, budget, count)
        for body in _pack(units, budget, policy, count):
            chunks.append(Chunk(doc.doc_id, len(chunks), body, group.headings))
    return chunks


def _merge_small(sections: Sequence[Section], policy: ChunkingPolicy,
                 count: TokenCounter) -> list[Section]:
    """Merge neighbouring short sections; a merged section keeps its sub-headings inline."""
    merged: list[Section] = []
    size = 0
    for section in sections:
        tokens = count(section.text)
        if merged and size + tokens <= policy.target_tokens and tokens < policy.target_tokens:
            last = merged[-1]
            common = _common_prefix(last.headings, section.headings)
            extra = section.headings[len(common):]
            inline = "\n".join([*extra, section.text]) if extra else section.text
            merged[-1] = Section(text=f"{last.text}\n\n{inline}", headings=common or last.headings)
            size += tokens + count(" ".join(extra))
        else:
            merged.append(section)
            size = tokens
    return merged


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
    out = []
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        out.append(x)
    return tuple(out)
