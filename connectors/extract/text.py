"""Text formats (md, txt, html) and the section builder every extractor shares."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import ClassVar

from connectors.extract.limits import Budget, NoText
from core.models import Section

Extracted = tuple[str | None, list[Section]]

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n+")


def tidy(text: str) -> str:
    """Collapse runs of blanks inside lines and of empty lines, keep paragraph breaks."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


class Sections:
    """Accumulates text under a heading path, within the document's budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.title: str | None = None
        self.sections: list[Section] = []
        self.full = False  # the character cap is reached: the rest is dropped
        self._path: list[tuple[int, str]] = []
        self._buffer: list[str] = []

    def heading(self, level: int, text: str) -> None:
        text = tidy(text)
        if not text:
            return
        self.flush()
        if self.title is None:
            self.title = text
        self._path = [(lv, t) for lv, t in self._path if lv < level] + [(level, text)]

    def add(self, text: str) -> None:
        if self.full:
            return
        self.budget.check()
        fits = self.budget.take_chars(len(text))
        if fits < len(text):
            self.full = True
            text = text[:fits]
        self._buffer.append(text)

    def flush(self) -> None:
        body = tidy("\n".join(self._buffer))
        self._buffer = []
        if body:
            self.sections.append(Section(text=body, headings=tuple(t for _, t in self._path)))

    def result(self) -> Extracted:
        self.flush()
        return self.title, self.sections


def decode(data: bytes, budget: Budget) -> str:
    if b"\x00" in data[:4096]:
        raise NoText(f"{budget.name}: binary data in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def markdown(data: bytes, budget: Budget) -> Extracted:
    out = Sections(budget)
    in_fence = False
    for line in decode(data, budget).splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _MD_HEADING.match(line)
        if match:
            out.heading(len(match.group(1)), match.group(2))
        else:
            out.add(line)
    return out.result()


def plain_text(data: bytes, budget: Budget) -> Extracted:
    out = Sections(budget)
    out.add(decode(data, budget))
    return None, out.result()[1]


class _HtmlText(HTMLParser):
    _BLOCK: ClassVar[set[str]] = {
        "p", "div", "li", "tr", "br", "section", "article", "table", "ul", "ol", "pre",
        "blockquote", "dt", "dd", "header", "footer", "main"}
    _SKIP: ClassVar[set[str]] = {"script", "style", "noscript", "template", "head"}

    def __init__(self, budget: Budget) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Sections(budget)
        self.page_title: str | None = None
        self._skip = 0
        self._heading: int | None = None
        self._heading_text: list[str] = []
        self._in_title = False
        self._line: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in self._SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._end_line()
            self._heading, self._heading_text = int(tag[1]), []
        elif tag in self._BLOCK:
            self._end_line()
        elif tag in ("td", "th"):
            self._line.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif self._heading is not None and tag == f"h{self._heading}":
            self.out.heading(self._heading, "".join(self._heading_text))
            self._heading = None
        elif tag in self._BLOCK:
            self._end_line()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.page_title = (self.page_title or "") + data
        if self._skip:
            return
        if self._heading is not None:
            self._heading_text.append(data)
        else:
            self._line.append(data)

    def _end_line(self) -> None:
        text = "".join(self._line).strip()
        self._line = []
        if text:
            self.out.add(text)
            self.out.add("")

    def finish(self) -> Extracted:
        self._end_line()
        title, sections = self.out.result()
        page_title = tidy(self.page_title or "") or None
        return title or page_title, sections


def html(data: bytes, budget: Budget) -> Extracted:
    parser = _HtmlText(budget)
    parser.feed(decode(data, budget))
    parser.close()
    return parser.finish()
