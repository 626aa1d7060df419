"""A source's text as answerable units: each prose sentence and each table row, with the
verbatim span of the source it comes from (the quote) and the words shown for it (the prose).

The prose reads on its own: Markdown markup (`**`, list markers, `|`) is left out, a table row
is read under its header ("Discount 10.1% to 20%: Sales Manager, same day") and a header row
is never a unit, a sentence whose subject was in the sentence before ("She summarised ...") is
given that subject, and one that cannot stand alone ("Say that ...", "This is ...") is not a
unit at all. The quote is never rewritten: it is always a substring of the source's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_LINE_MARK = re.compile(r"^\s{0,3}(?:#{1,6}\s+|>\s?|[-*+\u2022]\s+|\d{1,3}[.)]\s+)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")
_INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"\1"), (re.compile(r"__(.+?)__"), r"\1"),
           (re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])"), r"\1"),
           (re.compile(r"`([^`\n]*)`"), r"\1"), (re.compile(r"~~(.+?)~~"), r"\1"),
           (re.compile(r"!?\[([^\]\n]*)\]\([^)\s]*\)"), r"\1")]
# A sentence written for a reader who has just read the one before it.
_NEEDS_BEFORE = re.compile(
    r"^(?:It|Its|This|That|These|Those|They|Their|Them|Such|Both|Otherwise|Instead|Then|"
    r"Here|Above|Below|As a result|In that case|If so|If not|For this reason)\b")
# Words to say to someone else ("Say that ...", "Tell them ..."): a talk track, not a fact.
_TALK_TRACK = re.compile(
    r"^(?:Say|Tell|Mention|Explain|Reply|Respond|Answer|Remind|Stress|Point out|Acknowledge)"
    r"\b(?:\s+\w+){0,2}?\s+(?:that\b|:)", re.IGNORECASE)
_PERSONAL = re.compile(r"^(He|She)\b")
_NAME_SUBJECT = re.compile(
    r"(?:^|[.;]\s+)((?:[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?)(?:\s+[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?)"
    r"{1,2})(?:\s*\([^)]*\))?,?\s+(?:[a-z]+ed|said|says|asked|asks|told|will|was|is|has|had|"
    r"thinks|wants|notes|reports|presents)\b")
_CONNECTIVE = re.compile(r"^(?:Also|However|In addition|Moreover|Additionally|Furthermore),\s+")
_THIS_NOUN = re.compile(r"^(This|That) ([a-z]+)\b")
# "This policy explains ...": what the document is about, never an answer from it.
_ABOUT_ITSELF = re.compile(r"\s+(?:explains|describes|sets|covers|lists|outlines|summari[sz]es|"
                           r"contains|gives|tells|shows|defines|is|was|page|document)\b")
_END = re.compile(r"[.!?:;)\"'\u201d]$")


@dataclass(frozen=True)
class Unit:
    """One answerable piece of source `n`, at `start` in its text."""

    n: int
    start: int
    quote: str    # verbatim span of the source
    prose: str    # what the answer shows
    match: str    # what the question is matched against (row cells named by their header)
    row: bool = False
    key: str = ""  # a row's first cell (a range such as "10.1% to 20%" is read from it)


def plain(text: str) -> str:
    """`text` without inline Markdown markup."""
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    text = text.replace("**", "").replace("`", "")
    return re.sub(r"\s+", " ", text).strip()


def _cells(line: str) -> list[str]:
    inner = line.strip()
    if inner.startswith("|"):
        inner = inner[1:]
    if inner.endswith("|"):
        inner = inner[:-1]
    return [plain(c) for c in inner.split("|")]


def _is_table(line: str) -> bool:
    s = line.strip()
    return (s.startswith("|") and s.endswith("|") and len(s) > 1) or " | " in s


def _lower_first(cell: str) -> str:
    return cell[0].lower() + cell[1:] if len(cell) > 1 and cell[1:2].islower() else cell


def row_prose(header: list[str], cells: list[str]) -> tuple[str, str]:
    """A row read under its header, and the same row with every cell named (for matching)."""
    filled = [c for c in cells if c]
    if not filled:
        return "", ""
    if len(header) != len(cells):
        header = []
    first, rest = cells[0], [c for c in cells[1:] if c]
    lead = first
    if header and header[0] and re.search(r"\d", first):
        lead = f"{header[0]} {_lower_first(first)}"
    prose = f"{lead}: {', '.join(rest)}" if first and rest else ", ".join(filled)
    names = header or [""] * len(cells)
    named = "; ".join(f"{h}: {c}" if h else c for h, c in zip(names, cells, strict=True) if c)
    return prose, named


def units(n: int, title: str, text: str) -> list[Unit]:
    out: list[Unit] = []
    lines = list(_lines(text))
    i = 0
    paragraph: list[str] = []  # earlier sentences of this paragraph (for a lost subject)
    label: str | None = None  # the heading or term line just before this one
    while i < len(lines):
        start, line = lines[i]
        if not line.strip():
            label = None
            paragraph = []
            i += 1
            continue
        if _is_table(line):
            j = i
            while j < len(lines) and lines[j][1].strip() and _is_table(lines[j][1]):
                j += 1
            out += _table(n, lines[i:j])
            label = None
            paragraph = []
            i = j
            continue
        found = _prose(n, title, start, line, paragraph, label)
        label = None if found is not None else line.strip()
        out += found or []
        i += 1
    return out


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Logical lines with their offsets: a paragraph hard-wrapped over several lines is one
    line (still a verbatim span, newlines and all)."""
    physical = text.split("\n")
    offset, i = 0, 0
    while i < len(physical):
        j = i
        while j + 1 < len(physical) and _continues(physical[j], physical[j + 1]):
            j += 1
        line = "\n".join(physical[i:j + 1])
        yield offset, line
        offset += len(line) + 1
        i = j + 1


def _continues(line: str, following: str) -> bool:
    """`following` goes on with the sentence `line` wraps (not a new item, row or heading)."""
    now, then = line.strip(), following.strip()
    if not now or not then or _is_table(now) or _is_table(then) or _LINE_MARK.match(following) \
            or _is_term(now) or now.startswith("#"):
        return False
    return then[0].islower() or (len(now.split()) > 8 and not re.search(r"[.!?:]$", now))


def _table(n: int, block: list[tuple[int, str]]) -> list[Unit]:
    rows = block
    header: list[str] = []
    if len(block) >= 2 and _TABLE_RULE.match(block[1][1]):
        header, rows = _cells(block[0][1]), block[2:]
    elif len(block) >= 2:  # "a | b" rows (office, Confluence): the first row names the columns
        header, rows = _cells(block[0][1]), block[1:]
    out = []
    for start, line in rows:
        if _TABLE_RULE.match(line):
            continue
        prose, named = row_prose(header, _cells(line))
        if len(_WORD.findall(prose)) < 2:
            continue
        quote = line.strip()
        cells = _cells(line)
        out.append(Unit(n, start + line.index(quote), quote, prose, named, row=True,
                        key=cells[0] if cells else ""))
    return out


def _is_term(label: str | None) -> bool:
    """A definition-list term ("-l, --link", "SIGKILL", "stat()"): the next line is its
    definition. A one-word heading ("Renewals") is not one."""
    if label is None:
        return False
    word = label.strip()
    return word.startswith("-") or (len(word.split()) == 1 and (
        word.isupper() or word[0].islower() or bool(re.search(r"[\d_().'\"]", word))))


def _prose(n: int, title: str, start: int, line: str, paragraph: list[str],
           label: str | None = None) -> list[Unit] | None:
    """The units of one line (None: the line is a heading or a term, context for the next)."""
    mark = _LINE_MARK.match(line)
    body_at = mark.end() if mark else 0
    body = line[body_at:]
    if not body.strip():
        return []
    if mark is not None and mark.group().lstrip().startswith("#"):
        return None  # a Markdown heading: context, not an answer
    term = _is_term(label)
    if mark is None and not term and not _END.search(body.strip()) and len(body.split()) <= 8:
        return None  # a heading line: context, not an answer
    out: list[Unit] = []
    at = 0
    for piece in _SENTENCE_END.split(body):
        at = body.index(piece, at)
        quote = piece.strip()
        if not quote:
            continue
        offset = start + body_at + at + piece.index(quote)
        prose = standalone(plain(quote), title, paragraph)
        paragraph.append(plain(quote))
        if prose is not None and prose.endswith(":"):
            prose = None  # "... supported include:": it introduces the answer, it is not one
        if prose is not None and label and not out:
            # The line under a term defines it; under a heading, the heading is context.
            shown = f"{plain(label)}: {prose}" if term else prose
            out.append(Unit(n, offset, quote, shown, f"{plain(label)}: {prose}"))
        elif prose is not None:
            out.append(Unit(n, offset, quote, prose, prose))
        at += len(piece)
    return out


def standalone(sentence: str, title: str, before: list[str]) -> str | None:
    """`sentence` as it reads on its own, or None when it cannot stand alone."""
    sentence = _CONNECTIVE.sub("", sentence)
    sentence = sentence[:1].upper() + sentence[1:]
    if _TALK_TRACK.match(sentence):
        return None
    personal = _PERSONAL.match(sentence)
    if personal:
        names = [m.group(1) for s in before for m in _NAME_SUBJECT.finditer(s)]
        return f"{names[-1]}{sentence[personal.end():]}" if names else None
    this = _THIS_NOUN.match(sentence)
    if this and title and title.lower().split()[-1:] == [this.group(2)] \
            and not _ABOUT_ITSELF.match(sentence[this.end():]):
        return f"The {title}{sentence[this.end():]}"  # "This policy ..." in "Expenses Policy"
    if _NEEDS_BEFORE.match(sentence):
        return None
    return sentence
