"""Confluence storage format (XHTML with `ac:`/`ri:` elements) to headings and sections.

Kept: headings, paragraphs and lists, tables (cells joined by " | "), code blocks (the macro's
CDATA body), the visible text of macros (rich-text bodies, panel titles), link texts with their
targets made absolute against the site's base URL. Dropped: macro parameters, images,
emoticons, mentions' account ids (no text a reader sees).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import ClassVar
from urllib.parse import urljoin

from connectors.extract.limits import DEFAULT_LIMITS, Budget, Limits, TooLarge, alarm
from connectors.extract.text import Extracted, Sections, tidy
from core.errors import MalformedDocument

_HEADING = re.compile(r"h([1-6])")


class _Storage(HTMLParser):
    _BLOCK: ClassVar[set[str]] = {
        "p", "div", "li", "br", "ul", "ol", "pre", "blockquote", "table", "dt", "dd",
        "ac:rich-text-body", "ac:task", "ac:layout-cell", "hr"}
    _SKIP: ClassVar[set[str]] = {"ac:parameter", "ri:attachment", "ac:image", "ac:emoticon",
                                 "script", "style"}

    def __init__(self, budget: Budget, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.out = Sections(budget)
        self.base = base_url.rstrip("/") + "/" if base_url else ""
        self._skip = 0
        self._heading: int | None = None
        self._heading_text: list[str] = []
        self._line: list[str] = []
        self._code = 0
        self._href: list[str | None] = []
        self._link_page: list[str | None] = []
        self._link_text: list[list[str]] = []
        self._cells: list[str] | None = None
        self._macro_title: list[str] = []

    # -- tags --------------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "ac:parameter" and attr.get("ac:name") == "title":
            self._macro_title.append("")
            return
        if tag in self._SKIP:
            self._skip += 1
        elif _HEADING.fullmatch(tag):
            self._end_line()
            self._heading, self._heading_text = int(tag[1]), []
        elif tag == "ac:plain-text-body":
            self._end_line()
            self._code += 1
        elif tag == "a":
            self._href.append(attr.get("href"))
            self._link_text.append([])
        elif tag == "ac:link":
            self._link_page.append(None)
            self._link_text.append([])
        elif tag == "ri:page" and self._link_page:
            self._link_page[-1] = attr.get("ri:content-title")
        elif tag == "tr":
            self._end_line()
            self._cells = []
        elif tag in ("td", "th") and self._cells is not None:
            self._flush_cell()
        elif tag in self._BLOCK:
            self._end_line()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "ri:page" and self._link_page:
            self._link_page[-1] = dict(attrs).get("ri:content-title")
        elif tag == "br":
            self._end_line()

    def handle_endtag(self, tag: str) -> None:
        if tag == "ac:parameter" and self._macro_title and not self._skip:
            title = self._macro_title.pop()
            if title.strip():
                self._end_line()
                self._line.append(title)
                self._end_line()
            return
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif self._heading is not None and tag == f"h{self._heading}":
            self.out.heading(self._heading, "".join(self._heading_text))
            self._heading = None
        elif tag == "ac:plain-text-body":
            self._code = max(0, self._code - 1)
            self._end_line()
        elif tag == "a" and self._href:
            href, text = self._href.pop(), "".join(self._link_text.pop())
            self._emit(self._link(text, href))
        elif tag == "ac:link" and self._link_page:
            page, text = self._link_page.pop(), "".join(self._link_text.pop())
            self._emit(text.strip() or page or "")
        elif tag == "tr" and self._cells is not None:
            self._flush_cell()
            cells = [c for c in self._cells if c]
            self._cells = None
            if cells:
                self._line.append(" | ".join(cells))
            self._end_line()
        elif tag in self._BLOCK:
            self._end_line()

    def _link(self, text: str, href: str | None) -> str:
        text = text.strip()
        if not href or href.startswith(("#", "mailto:", "javascript:")):
            return text
        target = urljoin(self.base, href) if self.base else href
        return f"{text} ({target})" if text and text != target else target

    def _flush_cell(self) -> None:
        if self._cells is not None:
            cell = tidy("".join(self._line))
            self._line = []
            if cell:
                self._cells.append(cell)

    # -- text --------------------------------------------------------------------------------
    def handle_data(self, data: str) -> None:
        if self._macro_title:
            self._macro_title[-1] += data
            return
        if self._skip:
            return
        self._emit(data)

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA[") and not self._skip:
            text = data[len("CDATA["):]
            if self._code:
                self._end_line()
                for line in text.splitlines():
                    self.out.add(line)
                self.out.add("")
            else:
                self._emit(text)

    def _emit(self, text: str) -> None:
        if self._link_text:
            self._link_text[-1].append(text)
        elif self._heading is not None:
            self._heading_text.append(text)
        else:
            self._line.append(text)

    def _end_line(self) -> None:
        if self._cells is not None:
            return  # inside a table row: the row is one line
        text = "".join(self._line).strip()
        self._line = []
        if text:
            self.out.add(text)
            self.out.add("")

    def finish(self) -> Extracted:
        self._cells = None
        self._end_line()
        return self.out.result()


def storage(data: bytes, budget: Budget, base_url: str = "") -> Extracted:
    """The `confluence_storage` extractor (FORMATS[".confluence_storage"]): links stay as
    written unless a base URL is given (the connector gives the site's)."""
    parser = _Storage(budget, base_url)
    parser.feed(data.decode("utf-8", errors="replace"))
    parser.close()
    return parser.finish()


def extract_storage(xhtml: str, name: str, base_url: str,
                    limits: Limits = DEFAULT_LIMITS) -> Extracted:
    """Within the limits, as extract_bytes does for the other formats."""
    data = xhtml.encode("utf-8")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{name}: {len(data)} bytes, more than the {limits.max_bytes} allowed")
    budget = Budget(name, limits)
    try:
        with alarm(budget):
            result = storage(data, budget, base_url)
    except RecursionError as exc:
        raise MalformedDocument(f"{name}: nested too deeply to parse") from exc
    budget.check()
    return result
