"""Manual-section labelled set: a section's own heading asks for its body (Node.js docs).

    python -m bench.quality.howto   # rewrites data/howto.jsonl and data/howto-docs.jsonl.gz

Source: the Markdown manuals shipped in Debian's `nodejs` package under /usr/share/doc/nodejs
(API reference prose, BUILDING, contributing and release how-tos; MIT licence; the changelogs
are left out). Every `##`-`####`
section with at least 30 words of body becomes a document: title = the file's `#` title plus
the heading path of the section's parents (never its own heading), text = the body without its
heading. A question is a section heading of 4+ words with no code in it ("Building Node.js
with FIPS-compliant OpenSSL", "Reporting a bug in a third-party module"); relevant = every
section with that heading (a repeated heading is one question with all its sections). Documents
whose heading was not chosen stay in the index as distractors (up to 1,500 documents in all,
by a SHA-256 of the id). Up to 500 questions, chosen by a
SHA-256 of the heading; `split` is a SHA-256 of the first relevant document id. Deterministic.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

from bench.quality.answers import ASKER, split_of

DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = DATA / "howto.jsonl"
DOCS = DATA / "howto-docs.jsonl.gz"
ROOT = Path("/usr/share/doc/nodejs")
LICENCE = "MIT"
MAX_QUESTIONS = 500
MAX_DOCS = 1500  # relevant sections plus distractors chosen by hash
_HEADING = re.compile(r"^(#{1,4}) +(.+?) *#*$")


def _sections(rel: str, text: str) -> list[tuple[str, str, str]]:
    """(heading, title, body) per `##`-`####` section of one Markdown file."""
    out = []
    lines = text.splitlines()
    top = ""
    path: list[str] = []
    fence = False
    current: tuple[int, str] | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            out.append((current[1], " / ".join([top or rel, *path[:current[0] - 2]]),
                        "\n".join(body).strip()))

    for line in lines:
        if line.lstrip().startswith("```"):
            fence = not fence
        m = None if fence else _HEADING.match(line)
        if m is None:
            body.append(line)
            continue
        close()
        level, heading = len(m.group(1)), m.group(2).strip()
        body = []
        if level == 1:
            top, path, current = heading, [], None
            continue
        path = [*path[:level - 2], heading]
        current = (level, heading)
    close()
    return out


def _is_question(heading: str) -> bool:
    return (len(heading.split()) >= 4 and not re.search(r"[`<>\[\]()=]|\bv\d|^\d", heading))


def build(root: Path = ROOT) -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    docs: list[dict[str, str]] = []
    by_heading: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path in sorted(root.rglob("*.md")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("changelogs/") or rel == "CHANGELOG.md":
            continue  # release notes: commit lists, another shape
        seen: dict[str, int] = defaultdict(int)
        for heading, title, body in _sections(rel, path.read_text("utf-8")):
            if len(body.split()) < 30:
                continue
            slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")[:60]
            seen[slug] += 1
            doc_id = f"md:nodejs/{rel}#{slug}" + (f"-{seen[slug]}" if seen[slug] > 1 else "")
            docs.append({"doc_id": doc_id, "title": title, "text": body, "license": LICENCE,
                         "origin": f"/usr/share/doc/nodejs/{rel}"})
            if _is_question(heading):
                by_heading[heading.lower()].append((doc_id, heading))
    headings = sorted(by_heading, key=lambda h: hashlib.sha256(h.encode()).hexdigest())
    questions: list[dict[str, object]] = []
    for key in headings[:MAX_QUESTIONS]:
        relevant = sorted(d for d, _ in by_heading[key])
        original = min(by_heading[key])[1]  # as written in the first relevant section
        questions.append({"question": original, "as": ASKER, "relevant": relevant,
                          "kind": "howto", "split": split_of(relevant[0])})
    wanted = {str(r) for q in questions for r in q["relevant"]}  # type: ignore[attr-defined]
    others = sorted((d for d in docs if d["doc_id"] not in wanted),
                    key=lambda d: hashlib.sha256(d["doc_id"].encode()).hexdigest())
    kept = [d for d in docs if d["doc_id"] in wanted] + others[:MAX_DOCS - len(wanted)]
    return sorted(questions, key=lambda q: str(q["relevant"])), kept


def main() -> int:
    questions, docs = build()
    QUESTIONS.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    payload = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n"
                      for d in sorted(docs, key=lambda d: d["doc_id"]))
    DOCS.write_bytes(gzip.compress(payload.encode(), mtime=0))
    split = {s: sum(1 for q in questions if q["split"] == s) for s in ("tune", "heldout")}
    multi = sum(1 for q in questions if len(str(q["relevant"]).split(",")) > 1)
    print(f"{len(questions)} questions over {len(docs)} documents ({split}; "
          f"{multi} with 2+ relevant)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
