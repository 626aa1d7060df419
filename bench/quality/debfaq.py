"""Debian FAQ labelled set: the Debian GNU/Linux FAQ's questions, cut from their answers.

    python -m bench.quality.debfaq   # rewrites data/debfaq.jsonl and data/debfaq-docs.jsonl.gz

Source: Debian's `debian-faq` package (11.1, "The Debian GNU/Linux FAQ", version 11.0, January
2021), the plain-text rendering /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz. Licence
(/usr/share/doc/debian-faq/copyright): Copyright (C) 1996-2021 Software in the Public Interest,
verbatim and modified copies permitted provided the copyright and permission notice are
preserved (bench/quality/README.md carries it). Same conventions as bench.quality.faq: each
numbered entry whose heading is a question (ends in `?`) becomes one document (its answer, the
heading removed; title "Debian FAQ, entry N.N" only) and one question (the heading, its wrapped
lines joined); the question's only relevant document is its answer. Entries that are not
questions ("15.1. Hardening the system") stay in the index as distractors. Answers of fewer
than 12 words, and questions asked twice, are left out. `split` is a SHA-256 of the document id
(bench.quality.answers.split_of). Output is byte-for-byte deterministic.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from bench.quality.answers import ASKER, split_of
from bench.quality.faq import MIN_ANSWER_WORDS, _clean, write_set

DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = DATA / "debfaq.jsonl"
DOCS = DATA / "debfaq-docs.jsonl.gz"
SOURCE = Path("/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")
LICENCE = "debian-faq (verbatim-and-modified copies with notice, SPI)"
# Body headings start flush left ("3.1.4. If I were ..."); the table of contents is indented.
_HEAD = re.compile(r"^(\d{1,2}(?:\.\d{1,2})+)\.[ \t]+(\S.*)$")
_CHAPTER = re.compile(r"^Chapter \d+\. ")

Entry = tuple[str, str, str, bool]  # (key, heading, answer, heading is a question)


def entries(lines: list[str]) -> list[Entry]:
    """Numbered entries in the body; a heading runs until its first blank line."""
    lines = [ln.replace("\u00a0", " ") for ln in lines]  # the text puts NBSP after numbers
    heads = [i for i, ln in enumerate(lines) if _HEAD.match(ln)]
    out = []
    for a, b in zip(heads, [*heads[1:], len(lines)], strict=True):
        m = _HEAD.match(lines[a])
        assert m
        head = [m.group(2).strip()]
        j = a + 1
        while j < b and lines[j].strip():
            head.append(lines[j].strip())
            j += 1
        body = [ln for ln in lines[j:b] if not _CHAPTER.match(ln)]
        heading = " ".join(head)
        out.append((m.group(1), heading, _clean(body), heading.endswith("?")))
    return out


def build(source: Path = SOURCE) -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    text = gzip.decompress(source.read_bytes()).decode("utf-8")
    questions: list[dict[str, object]] = []
    docs: list[dict[str, str]] = []
    for key, heading, answer, is_question in entries(text.expandtabs(8).splitlines()):
        if len(answer.split()) < MIN_ANSWER_WORDS:
            continue
        doc_id = f"debfaq:{key}"
        docs.append({"doc_id": doc_id, "title": f"Debian FAQ, entry {key}", "text": answer,
                     "license": LICENCE, "origin": str(source)})
        if is_question and len(heading.split()) >= 3:
            questions.append({"question": heading, "as": ASKER, "relevant": [doc_id],
                              "kind": "faq", "split": split_of(doc_id)})
    asked = [str(q["question"]).lower() for q in questions]
    questions = [q for q in questions if asked.count(str(q["question"]).lower()) == 1]
    return questions, docs


def main() -> int:
    questions, docs = build()
    split = write_set(questions, docs, QUESTIONS, DOCS)
    print(f"{len(questions)} questions over {len(docs)} documents ({split})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
