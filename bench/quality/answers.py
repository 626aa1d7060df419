"""A labelled answer set (`answer_contains`) from text we did not write, for answer quality.

    python -m bench.quality.answers   # rewrites data/answers.jsonl, data/answer-docs.jsonl.gz

Two kinds of question, both derived mechanically from each document's own structure:

* `option` (Debian man pages of coreutils and git, from data/manpages.jsonl.gz): an option's
  tag line and the description under it, e.g. `-l, --link` / "hard link files instead of
  copying" -> "What does the --link option of cp do?", answer_contains the description's first
  four words. Tests a definition the answer must read under its tag.
* `table` (Markdown shipped in Debian's /usr/share/doc: Node.js API and contributing docs
  (MIT), libffi's README (MIT), systemd's UIDS-GIDS.md (LGPL-2.1-or-later), zstd's README
  (BSD-3-Clause)): a row of a Markdown table, e.g. `| AArch64 | Linux | GCC |` under
  `| Architecture | Operating System | Compiler |` -> "In libffi README, what is the Operating
  System for AArch64?", answer_contains "Linux". Tests rows read under their header.

Every record: {"question", "as", "relevant": [doc_id], "answer_contains": [...], "kind",
"split"}; `split` ("tune" or "heldout") is a SHA-256 of the relevant document's id, so no
held-out document was looked at while tuning. Documents are public (read by everyone).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

from assistant.llm.passages import plain
from bench.quality.dataset import load_dataset

DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = DATA / "answers.jsonl"
DOCS = DATA / "answer-docs.jsonl.gz"
ASKER = "reader@example.com"
MARKDOWN = {  # package -> (licence, files under /usr/share/doc/<package>)
    "nodejs": ("MIT", ["api/dns.md", "api/util.md", "api/webcrypto.md", "api/http2.md",
                       "api/intl.md", "api/url.md", "api/documentation.md",
                       "contributing/strategic-initiatives.md",
                       "contributing/diagnostic-tooling-support-tiers.md",
                       "contributing/security-release-process.md", "BUILDING.md"]),
    "libffi8": ("MIT", ["README.md.gz"]),
    "systemd": ("LGPL-2.1-or-later", ["UIDS-GIDS.md.gz"]),
    "zstd": ("BSD-3-Clause", ["README.md.gz"]),
}
_OPTION = re.compile(r"^(?:-\w, )*(--[a-z][\w-]+)(?:\[?=\S*)?$")
_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12], 16)


def split_of(doc_id: str) -> str:
    return "heldout" if _h("split", doc_id) % 2 else "tune"


def option_questions() -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    ds = load_dataset()
    out, docs = [], []
    for doc_id, title, text in ds.documents:
        if ds.packages.get(doc_id) not in ("coreutils", "git-man") or len(text.split()) > 4000:
            continue
        lines = text.split("\n")
        found = []
        names = [m.group(1) for line in lines if (m := _OPTION.match(line.strip()))]
        for i, line in enumerate(lines[:-1]):
            m = _OPTION.match(line.strip())
            desc = lines[i + 1].strip()
            if not m or names.count(m.group(1)) != 1 or not desc or desc.startswith("-"):
                continue
            words = desc.split()
            if len(words) < 4:
                continue
            found.append((m.group(1), " ".join(words[:4]).rstrip(",.;:")))
        if len(found) < 2:
            continue
        found.sort(key=lambda f: _h(doc_id, f[0]))
        command = title.split("(")[0]
        rid = f"man:{doc_id}"
        for option, fact in found[:2]:
            out.append({"question": f"What does the {option} option of {command} do?",
                        "as": ASKER, "relevant": [rid], "answer_contains": [fact],
                        "kind": "option", "split": split_of(rid)})
        docs.append({"doc_id": rid, "title": title, "text": text,
                     "license": ds.licenses.get(doc_id, ""),
                     "origin": "data/manpages.jsonl.gz"})
    out.sort(key=lambda q: _h(str(q["question"])))
    keep = out[:200]
    kept_docs = {str(r) for q in keep for r in q["relevant"]}  # type: ignore[attr-defined]
    return keep, [d for d in docs if d["doc_id"] in kept_docs]


def _cells(line: str) -> list[str]:
    inner = line.strip().strip("|")
    return [plain(c).strip() for c in inner.split("|")]


def read_doc(package: str, name: str) -> str:
    path = Path("/usr/share/doc") / package / name
    raw = path.read_bytes()
    return (gzip.decompress(raw) if name.endswith(".gz") else raw).decode("utf-8")


def table_questions() -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    out, docs = [], []
    for package, (licence, names) in MARKDOWN.items():
        for name in names:
            text = read_doc(package, name)
            first = next((ln for ln in text.splitlines() if ln.startswith("# ")), "")
            stem = name.removesuffix(".gz").removesuffix(".md").rsplit("/", 1)[-1]
            title = first[2:].strip() or f"{package.rstrip('0123456789')} {stem}"
            doc_id = f"md:{package}/{name.removesuffix('.gz')}"
            lines = text.splitlines()
            found = []
            for i in range(len(lines) - 2):
                if not (lines[i].lstrip().startswith("|") and _RULE.match(lines[i + 1])):
                    continue
                header = _cells(lines[i])
                j = i + 2
                rows = []
                while j < len(lines) and lines[j].lstrip().startswith("|"):
                    rows.append(_cells(lines[j]))
                    j += 1
                firsts = [r[0] for r in rows]
                for row in rows:
                    if len(row) != len(header) or len(header) < 2 or firsts.count(row[0]) != 1:
                        continue
                    key, value, column = row[0], row[1], header[1]
                    if not (2 <= len(key) <= 40 and 1 <= len(value) <= 40 and column
                            and header[0]) or re.search(r"http|\[|\]|\^", value + key):
                        continue
                    found.append((key, column, value))
            if not found:
                continue
            found.sort(key=lambda f: _h(doc_id, f[0]))
            for key, column, value in found[:6]:
                out.append({"question": f"In {title}, what is the {column} for {key}?",
                            "as": ASKER, "relevant": [doc_id], "answer_contains": [value],
                            "kind": "table", "split": split_of(doc_id)})
            docs.append({"doc_id": doc_id, "title": title, "text": text, "license": licence,
                         "origin": f"/usr/share/doc/{package}/{name}"})
    return out, docs


def main() -> int:
    options, option_docs = option_questions()
    tables, table_docs = table_questions()
    asked = [str(q["question"]) for q in options + tables]
    # A question asked twice (two tables with the same row) has no single answer: dropped.
    questions = sorted((q for q in options + tables if asked.count(str(q["question"])) == 1),
                       key=lambda q: (str(q["kind"]), str(q["question"])))
    QUESTIONS.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    payload = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n"
                      for d in sorted(option_docs + table_docs, key=lambda d: d["doc_id"]))
    DOCS.write_bytes(gzip.compress(payload.encode(), mtime=0))
    by = {(k, s): sum(1 for q in questions if q["kind"] == k and q["split"] == s)
          for k in ("option", "table") for s in ("tune", "heldout")}
    print(f"{len(questions)} questions over {len(option_docs) + len(table_docs)} documents: "
          + ", ".join(f"{k}/{s} {n}" for (k, s), n in by.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
