"""FAQ-style labelled set: other projects' FAQs shipped in Debian, questions cut from answers.

    python -m bench.quality.faq   # rewrites data/faq.jsonl and data/faq-docs.jsonl.gz

Each FAQ entry becomes one document (its answer, the question removed) and one question (the
entry's own question, as its author wrote it); the question's only relevant document is its
answer. Answers are prose and often share few words with the question ("Why is lsof so slow?"
-> a paragraph about kernel name caches and stat(2) on NFS).

Sources (Debian 12 packages, /usr/share/doc/<package>/, licence from its copyright file):

* lsof 4.95.0-1 `00FAQ.gz` (Purdue licence: permissive, notice kept)
* valgrind 1:3.19.0-1 `FAQ.txt.gz` (GPL-2.0-or-later)
* zlib1g-dev 1:1.2.13.dfsg-1 `FAQ.gz` (Zlib)
* xz-utils 5.4.1-1 `faq.txt.gz` (public domain)
* procps 2:4.0.2-3 `FAQ.gz` (GPL-2.0-or-later)

sed's sedfaq.txt is left out: it carries no licence of its own. Every record: {"question",
"as", "relevant": [doc_id], "kind": "faq", "split"}; `split` is a SHA-256 of the document id
(bench.quality.answers.split_of). Output is byte-for-byte deterministic.
"""

from __future__ import annotations

import gzip
import json
import re
import textwrap
from pathlib import Path

from bench.quality.answers import ASKER, split_of

DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = DATA / "faq.jsonl"
DOCS = DATA / "faq-docs.jsonl.gz"
SOURCES = {  # package -> (file, parser, licence, project)
    "lsof": ("00FAQ.gz", "numbered", "Purdue", "lsof"),
    "valgrind": ("FAQ.txt.gz", "numbered", "GPL-2.0-or-later", "Valgrind"),
    "zlib1g-dev": ("FAQ.gz", "numbered", "Zlib", "zlib"),
    "xz-utils": ("faq.txt.gz", "qa", "public-domain", "XZ Utils"),
    "procps": ("FAQ.gz", "flush", "GPL-2.0-or-later", "procps"),
}
MIN_ANSWER_WORDS = 12
_NUMBERED = re.compile(r"^ ?(\d{1,2}(?:\.\d{1,2})*)\.?[ \t]+(\S.*)$")
_RULE = re.compile(r"^\s*[-=]{8,}\s*$")

Entry = tuple[str, str, str]  # (entry key, question, answer)


def _clean(lines: list[str]) -> str:
    body = [ln.rstrip() for ln in lines if not _RULE.match(ln)]
    text = textwrap.dedent("\n".join(body)).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text)


def _numbered(lines: list[str]) -> list[Entry]:
    """`N.N[.N] Question` headings (the table of contents repeats them: the body is after the
    last occurrence of the first heading); numbers must increase, so numbered lists inside an
    answer stay answer text."""
    heads = [(i, m.group(1)) for i, ln in enumerate(lines) if (m := _NUMBERED.match(ln))]
    if not heads:
        return []
    first = heads[0][1]
    start = max(i for i, n in heads if n == first)
    accepted: list[int] = []
    last: tuple[int, ...] = ()
    for i, n in heads:
        key = tuple(int(p) for p in n.split("."))
        if i >= start and key > last:
            accepted.append(i)
            last = key
    out = []
    for a, b in zip(accepted, [*accepted[1:], len(lines)], strict=True):
        m = _NUMBERED.match(lines[a])
        assert m
        q = [m.group(2).strip()]
        j = a + 1
        while j < b and lines[j].strip() and not _RULE.match(lines[j]):
            q.append(lines[j].strip())
            j += 1
        out.append((m.group(1), " ".join(q), _clean(lines[j:b])))
    return out


def _qa(lines: list[str]) -> list[Entry]:
    """`Q:` ... `A:` ... blocks (XZ Utils)."""
    out = []
    starts = [i for i, ln in enumerate(lines) if ln.startswith("Q:")]
    for n, (a, b) in enumerate(zip(starts, [*starts[1:], len(lines)], strict=True), 1):
        block = lines[a:b]
        k = next((i for i, ln in enumerate(block) if ln.startswith("A:")), None)
        if k is None:
            continue
        question = " ".join(ln.strip() for ln in block[:k])[2:].strip()
        answer = [block[k][2:], *block[k + 1:]]
        # A flush-left line after the answer is the next section's heading: not answer text.
        cut = next((i for i, ln in enumerate(answer[1:], 1)
                    if ln.strip() and not ln.startswith((" ", "\t"))), len(answer))
        out.append((str(n), question, _clean([ln.strip() for ln in answer[:cut]])))
    return out


def _flush(lines: list[str]) -> list[Entry]:
    """A flush-left line ending in `?`, its answer indented below it (procps)."""
    out = []
    heads = [i for i, ln in enumerate(lines)
             if ln.strip().endswith("?") and not ln.startswith((" ", "\t"))]
    for n, (a, b) in enumerate(zip(heads, [*heads[1:], len(lines)], strict=True), 1):
        answer = [ln for ln in lines[a + 1:b] if ln.startswith((" ", "\t")) or not ln.strip()]
        out.append((str(n), lines[a].strip(), _clean([ln.strip() for ln in answer])))
    return out


PARSERS = {"numbered": _numbered, "qa": _qa, "flush": _flush}


def build(root: Path = Path("/usr/share/doc")) -> tuple[list[dict[str, object]],
                                                        list[dict[str, str]]]:
    questions: list[dict[str, object]] = []
    docs: list[dict[str, str]] = []
    for package, (name, parser, licence, project) in SOURCES.items():
        raw = (root / package / name).read_bytes()
        text = gzip.decompress(raw).decode("utf-8", "replace")
        for key, question, answer in PARSERS[parser](text.expandtabs(8).splitlines()):
            if len(question.split()) < 3 or len(answer.split()) < MIN_ANSWER_WORDS:
                continue
            doc_id = f"faq:{package}/{key}"
            docs.append({"doc_id": doc_id, "title": f"{project} FAQ, entry {key}",
                         "text": answer, "license": licence,
                         "origin": f"/usr/share/doc/{package}/{name}"})
            questions.append({"question": question, "as": ASKER, "relevant": [doc_id],
                              "kind": "faq", "split": split_of(doc_id)})
    asked = [str(q["question"]).lower() for q in questions]
    questions = [q for q in questions if asked.count(str(q["question"]).lower()) == 1]
    return questions, docs


def write_set(questions: list[dict[str, object]], docs: list[dict[str, str]],
              questions_path: Path, docs_path: Path) -> dict[str, int]:
    """The set's two files, byte for byte the same on every run (sorted, gzip without a
    time stamp); returns the questions per split."""
    questions_path.write_text("".join(
        json.dumps(q, ensure_ascii=False) + "\n"
        for q in sorted(questions, key=lambda q: str(q["relevant"]))))
    payload = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n"
                      for d in sorted(docs, key=lambda d: d["doc_id"]))
    docs_path.write_bytes(gzip.compress(payload.encode(), mtime=0))
    return {s: sum(1 for q in questions if q["split"] == s) for s in ("tune", "heldout")}


def main() -> int:
    questions, docs = build()
    split = write_set(questions, docs, QUESTIONS, DOCS)
    per = {p: sum(1 for d in docs if d["doc_id"].startswith(f"faq:{p}/")) for p in SOURCES}
    print(f"{len(questions)} questions over {len(docs)} documents ({split}; {per})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
