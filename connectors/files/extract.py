"""Text extraction for the files connector: md, txt, html, pdf (pypdf), docx (python-docx).

Each extractor returns a title (first heading, or None) and sections with their heading path.
A file that cannot be parsed raises MalformedDocument; the sync skips and reports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from core.errors import MalformedDocument
from core.models import Section

Extracted = tuple[str | None, list[Section]]


class NoText(MalformedDocument):
    """The file is readable but holds no text (emptied, redacted, encrypted, an image PDF,
    binary data): not an error that a retry fixes, so its old text leaves the index."""

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n+")


def tidy(text: str) -> str:
    """Collapse runs of blanks inside lines and of empty lines, keep paragraph breaks."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


class _Sections:
    """Accumulates text under a heading path."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.sections: list[Section] = []
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
        self._buffer.append(text)

    def flush(self) -> None:
        body = tidy("\n".join(self._buffer))
        self._buffer = []
        if body:
            self.sections.append(Section(text=body, headings=tuple(t for _, t in self._path)))

    def result(self) -> Extracted:
        self.flush()
        return self.title, self.sections


def markdown(path: Path) -> Extracted:
    out = _Sections()
    in_fence = False
    for line in _read_text(path).splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _MD_HEADING.match(line)
        if match:
            out.heading(len(match.group(1)), match.group(2))
        else:
            out.add(line)
    return out.result()


def plain_text(path: Path) -> Extracted:
    body = tidy(_read_text(path))
    return None, [Section(text=body)] if body else []


class _HtmlText(HTMLParser):
    _BLOCK: ClassVar[set[str]] = {
        "p", "div", "li", "tr", "br", "section", "article", "table", "ul", "ol", "pre",
              "blockquote", "dt", "dd", "header", "footer", "main"}
    _SKIP: ClassVar[set[str]] = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out = _Sections()
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


def html(path: Path) -> Extracted:
    parser = _HtmlText()
    parser.feed(_read_text(path))
    parser.close()
    return parser.finish()


def pdf(path: Path) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise NoText(f"{path.name}: encrypted PDF")
        pages = [tidy(page.extract_text() or "") for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise MalformedDocument(f"{path.name}: unreadable PDF ({exc})") from exc
    text = "\n\n".join(p for p in pages if p)
    if not text:
        raise NoText(f"{path.name}: PDF has no extractable text")
    first_line = text.split("\n", 1)[0].strip()
    title = first_line if 0 < len(first_line) <= 120 else None
    body = text.split("\n", 1)[1].strip() if title and "\n" in text else text
    return title, [Section(text=body, headings=(title,) if title else ())]


def docx(path: Path) -> Extracted:
    import zipfile

    from docx import Document as open_docx

    try:
        document = open_docx(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise MalformedDocument(f"{path.name}: unreadable DOCX ({exc})") from exc
    out = _Sections()
    for para in document.paragraphs:
        style = (para.style.name if para.style is not None else "") or ""
        level = _docx_heading_level(style)
        if level is not None:
            out.heading(level, para.text)
        else:
            out.add(para.text)
            out.add("")
    for table in document.tables:
        for row in table.rows:
            out.add(" | ".join(tidy(cell.text) for cell in row.cells))
    return out.result()


def _docx_heading_level(style: str) -> int | None:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise NoText(f"{path.name}: binary data in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


EXTRACTORS: dict[str, Callable[[Path], Extracted]] = {
    ".md": markdown,
    ".markdown": markdown,
    ".txt": plain_text,
    ".html": html,
    ".htm": html,
    ".pdf": pdf,
    ".docx": docx,
}


def title_from_name(path: Path) -> str:
    stem = re.sub(r"[-_]+", " ", path.stem).strip()
    return stem[:1].upper() + stem[1:] if stem else path.name
