"""The FAQ, Debian FAQ and manual-section labelled sets (bench/quality/faq.py, debfaq.py,
howto.py): their parsers on
small inputs in each source format, and the committed data's integrity."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from bench.quality.answers import split_of
from bench.quality.debfaq import entries
from bench.quality.faq import _flush, _numbered, _qa
from bench.quality.howto import _is_question, _sections
from bench.quality.sets import load_set

pytestmark = pytest.mark.unit
DATA = Path(__file__).resolve().parents[2] / "bench" / "quality" / "data"


def test_numbered_faq_skips_the_table_of_contents_and_keeps_inner_lists_as_answer() -> None:
    text = """Contents
1.1\tWhy is it slow?
1.2\tHow do I build it
\ton Solaris?

1.1\tWhy is it slow?

\tIt stats every file.
1.  first step of a list inside the answer
------------------------------------------
1.2\tHow do I build it
\ton Solaris?

\tRun Configure.
"""
    entries = _numbered(text.expandtabs(8).splitlines())
    assert [(k, q) for k, q, _ in entries] == [("1.1", "Why is it slow?"),
                                               ("1.2", "How do I build it on Solaris?")]
    assert "first step of a list" in entries[0][2] and "Why is it slow" not in entries[0][2]
    assert "-----" not in entries[0][2] and entries[1][2] == "Run Configure."


def test_qa_faq_stops_an_answer_at_the_next_flush_left_heading() -> None:
    lines = ["Q:  Can I recover a broken file?", "", "A:  Maybe, if it has blocks.",
             "    No tool exists yet.", "", "3. Next section", "Q:  Second?", "A:  Yes."]
    entries = _qa(lines)
    assert entries == [("1", "Can I recover a broken file?",
                        "Maybe, if it has blocks.\nNo tool exists yet."), ("2", "Second?", "Yes.")]
    assert _qa(["Q: no answer follows"]) == []


def test_flush_faq_takes_indented_answers_under_flush_questions() -> None:
    lines = ["Why signal 17?", "", "\tNo release had it.", "Trailing prose line", "What next?"]
    assert _flush(lines) == [("1", "Why signal 17?", "No release had it."), ("2", "What next?", "")]


def test_sections_carry_parent_headings_in_the_title_not_their_own() -> None:
    text = "# Guide\n\n## Building it\n\n### Building a debug build\n\nbody words\n" \
           "```\n## not a heading inside code\n```\n"
    secs = _sections("BUILDING.md", text)
    assert [(h, t) for h, t, _ in secs] == [("Building it", "Guide"),
                                            ("Building a debug build", "Guide / Building it")]
    assert "## not a heading" in secs[1][2] and "debug build" not in secs[1][2].split("\n")[0]
    assert _is_question("Building a debug build")
    assert not _is_question("`util.inspect()` options") and not _is_question("Short one")


def test_debian_faq_skips_the_indented_contents_and_joins_wrapped_questions() -> None:
    lines = ["1. Definitions", "    1.1. What is this FAQ?", "",
             "Chapter 1. Definitions and overview", "",
             "1.1.\u00a0What is this FAQ?", "", "    It answers questions.", "",
             "Chapter\u00a02.\u00a0Next chapter", "",
             "1.5. What is the difference between Debian and other Linux", "distributions?",
             "", "    Freedom.", "    See Section 1.1, \u201cWhat is this FAQ?\u201d.",
             "15.1. Hardening the system", "", "    More to come."]
    got = entries(lines)
    assert [(k, q, is_q) for k, q, _, is_q in got] == [
        ("1.1", "What is this FAQ?", True),
        ("1.5", "What is the difference between Debian and other Linux distributions?", True),
        ("15.1", "Hardening the system", False)]
    assert got[0][2] == "It answers questions."  # the next chapter's heading is not answer text
    assert "distributions?" not in got[1][2] and got[1][2].startswith("Freedom.")


def norm(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9_]+", s.lower()))


@pytest.mark.parametrize("name", ["faq", "howto", "debfaq"])
def test_committed_set_is_consistent(name: str) -> None:
    docs, questions = load_set(name)
    ids = [d for d, _, _ in docs]
    assert len(ids) == len(set(ids)) and len(questions) > 100
    text = {d: t for d, _, t in docs}
    records = [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines()]
    asked = [r["question"].lower() for r in records]
    assert len(asked) == len(set(asked))
    for r in records:
        assert set(r) >= {"question", "as", "relevant"} and r["relevant"]
        assert all(d in text for d in r["relevant"])
        assert r["split"] == split_of(r["relevant"][0])
        # The question was cut out: no answer opens with it as a line of its own (a few
        # answers use the phrase in their own prose, see the README).
        asked_line = norm(r["question"])
        assert all(norm(text[d].split("\n", 1)[0]) != asked_line for d in r["relevant"])
    halves = {r["split"] for r in records}
    assert halves == {"tune", "heldout"}
    rows = gzip.decompress((DATA / f"{name}-docs.jsonl.gz").read_bytes()).decode().splitlines()
    assert all(json.loads(row)["license"] and json.loads(row)["origin"] for row in rows)
