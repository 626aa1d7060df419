"""Chunking: token budget, heading context, overlap on long sections, verbatim text, no empties."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from core.acl import Acl
from core.models import Chunk, Document, Section, make_document
from indexer.chunking import (
    ChunkingPolicy,
    chunk_document,
    context_line,
    embedding_text,
    split_sentences,
)

pytestmark = pytest.mark.unit

SMALL = ChunkingPolicy(max_tokens=60, target_tokens=45, overlap_tokens=15)
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def sentences(n: int, start: int = 0, length: int = 9) -> str:
    """n distinct sentences of `length` words each, e.g. 'S3 alpha bravo ... golf.'"""
    out = []
    for i in range(start, start + n):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(length - 1)]
        out.append(f"S{i} " + " ".join(words) + ".")
    return " ".join(out)


def doc(*sections: Section, title: str = "Handbook") -> Document:
    return make_document("kb:handbook.md", title, "file:///handbook.md", sections,
                         Acl.single(["everyone"]))


def norm(text: str) -> str:
    return " ".join(text.split())


def strip_heading_lines(text: str, headings: set[str]) -> str:
    """A merged chunk carries its sub-headings as lines of their own: drop those lines."""
    return "\n".join(line for line in text.split("\n") if line.strip() not in headings)


def check_invariants(d: Document, chunks: list[Chunk], count: Any, policy: ChunkingPolicy) -> None:
    assert chunks, "a document with text must give at least one chunk"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    headings = {h for s in d.sections for h in s.headings}
    body = norm(" ".join(s.text for s in d.sections))
    for c in chunks:
        assert c.doc_id == d.doc_id
        assert c.text.strip(), f"empty chunk {c.ordinal}"
        assert c.text == c.text.strip()
        context = count(context_line(d.title, c.headings)) + 2
        budget = max(32, policy.max_tokens - context)
        assert count(c.text) <= budget, (count(c.text), budget, c.text)
        # Verbatim: the stored passage is the document's own words, in order, never rewritten.
        assert norm(strip_heading_lines(c.text, headings)) in body, c.text
        # The heading path of a chunk is the (common prefix of the) path of a real section.
        assert any(s.headings[:len(c.headings)] == c.headings for s in d.sections)
    # Nothing is lost: every sentence of the document is inside some chunk (a sentence longer
    # than a whole chunk is cut on words, so it is inside the chunks read in order).
    chunk_text = [norm(c.text) for c in chunks]
    for s in d.sections:
        for sentence in split_sentences(s.text):
            if count(sentence) <= 32:
                assert any(norm(sentence) in t for t in chunk_text), sentence
            else:
                assert norm(sentence) in " ".join(chunk_text), sentence


def test_small_document_is_one_chunk_with_its_heading_path(embedder: Any) -> None:
    d = doc(Section("Leave is 25 days a year.", ("Handbook", "Leave")))
    chunks = chunk_document(d, embedder.count_tokens, SMALL)
    assert chunks == [Chunk(d.doc_id, 0, "Leave is 25 days a year.", ("Handbook", "Leave"))]
    assert embedding_text(d.title, chunks[0]) == "Handbook / Leave\nLeave is 25 days a year."
    check_invariants(d, chunks, embedder.count_tokens, SMALL)


def test_headings_are_kept_as_context_and_sections_with_different_paths_stay_apart(
        embedder: Any) -> None:
    d = doc(
        Section(sentences(5, 0), ("Handbook", "Leave")),
        Section(sentences(5, 10), ("Handbook", "Leave", "Parental leave")),
        Section(sentences(5, 20), ("Handbook", "Expenses")),
    )
    count = embedder.count_tokens
    chunks = chunk_document(d, count, SMALL)
    check_invariants(d, chunks, count, SMALL)
    by_sentence = {}
    for c in chunks:
        for n in re.findall(r"S(\d+) ", c.text):
            by_sentence.setdefault(int(n), set()).add(c.headings)
    assert by_sentence[0] == {("Handbook", "Leave")}
    assert by_sentence[12] == {("Handbook", "Leave", "Parental leave")}
    assert by_sentence[22] == {("Handbook", "Expenses")}
    for c in chunks:
        line = embedding_text(d.title, c).split("\n", 1)[0]
        assert line == context_line(d.title, c.headings)
        assert line.startswith("Handbook")  # title shown once even when it is also a heading
        assert line.count("Handbook") == 1


def test_small_neighbours_merge_keeping_sub_headings_inline(embedder: Any) -> None:
    d = doc(
        Section("Leave is 25 days.", ("Leave",)),
        Section("Ask your manager first.", ("Leave", "Requesting")),
        Section("Unused days carry over.", ("Leave", "Carry over")),
    )
    count = embedder.count_tokens
    chunks = chunk_document(d, count, SMALL)
    check_invariants(d, chunks, count, SMALL)
    assert len(chunks) == 1
    assert chunks[0].headings == ("Leave",)
    assert chunks[0].text == ("Leave is 25 days.\n\nRequesting\nAsk your manager first.\n\n"
                              "Carry over\nUnused days carry over.")


def test_long_section_is_split_within_budget_with_sentence_overlap(embedder: Any) -> None:
    count = embedder.count_tokens
    d = doc(Section(sentences(40), ("Policy",)))
    chunks = chunk_document(d, count, SMALL)
    check_invariants(d, chunks, count, SMALL)
    assert len(chunks) >= 4
    for prev, nxt in itertools.pairwise(chunks):
        assert nxt.headings == ("Policy",)
        first = split_sentences(nxt.text)[0]
        # The next piece starts with a whole sentence that ended the previous one.
        assert first in split_sentences(prev.text), (prev.text, nxt.text)
        overlap = [s for s in split_sentences(nxt.text) if s in split_sentences(prev.text)]
        assert 0 < count(" ".join(overlap)) <= SMALL.overlap_tokens
    # Consecutive sentence numbers: no sentence skipped between pieces.
    numbers = [int(n) for c in chunks for n in re.findall(r"S(\d+) ", c.text)]
    assert sorted(set(numbers)) == list(range(40))


def test_long_paragraphs_and_a_sentence_longer_than_the_budget(embedder: Any) -> None:
    count = embedder.count_tokens
    run_on = " ".join(WORDS * 6)  # one "sentence" far over budget: split on words
    text = f"{sentences(6)}\n\n{run_on}\n\n{sentences(6, 50)}"
    d = doc(Section(text, ("Runs",)))
    chunks = chunk_document(d, count, SMALL)
    check_invariants(d, chunks, count, SMALL)
    assert norm(run_on) in norm(" ".join(c.text for c in chunks))


def test_pipeline_default_policy_fits_the_model_window(embedder: Any) -> None:
    count = embedder.count_tokens
    policy = ChunkingPolicy(max_tokens=min(230, embedder.max_tokens - 26),
                            target_tokens=min(200, embedder.max_tokens - 56))
    d = doc(
        Section(sentences(80), ("Handbook", "Very long section")),
        Section("Short tail.", ("Handbook", "Tail")),
        title="Employee handbook",
    )
    chunks = chunk_document(d, count, policy)
    check_invariants(d, chunks, count, policy)
    assert len(chunks) > 2
    for c in chunks:
        assert count(embedding_text(d.title, c)) <= policy.max_tokens <= embedder.max_tokens


def test_no_empty_chunks_from_blank_sections(embedder: Any) -> None:
    count = embedder.count_tokens
    d = doc(Section("   ", ("Empty",)), Section("Real text here.", ("Real",)),
            Section("\n\n", ("Blank",)), Section("", ("Nothing",)))
    chunks = chunk_document(d, count, SMALL)
    assert [c.text for c in chunks] == ["Real text here."]
    assert chunks[0].headings == ("Real",)
    assert chunk_document(doc(Section("  \n ", ("Empty",))), count, SMALL) == []


@pytest.mark.parametrize("n", [1, 3, 7, 15, 31])
def test_invariants_across_sizes(embedder: Any, n: int) -> None:
    count = embedder.count_tokens
    sections = [Section(sentences(i % 5 + 1, i * 10), ("Guide", f"Part {i}")) for i in range(n)]
    sections.append(Section(sentences(n + 2, 500, length=12), ("Guide", "Appendix")))
    d = doc(*sections, title="Guide")
    chunks = chunk_document(d, count, SMALL)
    check_invariants(d, chunks, count, SMALL)

