"""Binary formats: pdf (pypdf), docx (python-docx), pptx (python-pptx), xlsx (openpyxl)."""

from __future__ import annotations

import importlib
import io
import re
import threading
import zipfile
from typing import Any

from connectors.extract.limits import Budget, NoText, TooLarge
from connectors.extract.text import Extracted, Sections, tidy
from core.errors import MalformedDocument
from core.models import Section

# An encrypted (or pre-2007 binary) Office file is an OLE compound file, not a zip.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


# The parsers imported lazily below, heaviest first (pypdf and python-docx take ~0.1 s each).
PARSERS = ("pypdf", "docx", "pptx", "openpyxl")
_preload_lock = threading.Lock()
_preloading: threading.Thread | None = None


def preload() -> threading.Thread:
    """Import the parsers in a background thread, once per process, and return it.

    Called where a sync starts: the imports run beside the identity pass, the walk and the
    first plain-text documents, so the first PDF or DOCX of the first page waits for none (the
    model has nothing to do until that page is extracted). An import that fails here is left
    to the extraction that needs it, which reports it for its document as always.
    """
    global _preloading
    with _preload_lock:
        if _preloading is None:
            # Not a daemon: a short sync can end while an import is still running, and a
            # daemon thread stopped mid-import at interpreter exit aborted the process
            # ("FATAL: exception not rethrown", exit -6, seen once under load after a sync
            # that had already committed). Exit waits for the imports instead (< 1 s).
            _preloading = threading.Thread(target=_import_parsers, name="preload-parsers",
                                           daemon=False)
            _preloading.start()
        return _preloading


def _import_parsers() -> None:
    for name in PARSERS:
        try:
            importlib.import_module(name)
        except Exception:
            continue


def pdf(data: bytes, budget: Budget) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    pages: list[str] = []
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise NoText(f"{budget.name}: encrypted PDF")
        for page in reader.pages:
            budget.check()
            pages.append(tidy(page.extract_text() or ""))
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError,
            RecursionError, AssertionError) as exc:
        raise MalformedDocument(f"{budget.name}: unreadable PDF ({type(exc).__name__})") from exc
    out = Sections(budget)
    text = "\n\n".join(p for p in pages if p)
    if not text:
        raise NoText(f"{budget.name}: PDF has no extractable text")
    first_line = text.split("\n", 1)[0].strip()
    title = first_line if 0 < len(first_line) <= 120 else None
    body = text.split("\n", 1)[1].strip() if title and "\n" in text else text
    if title:
        out.heading(1, title)
    out.add(body)
    return out.result()


def _open_ooxml(data: bytes, budget: Budget, kind: str) -> None:
    """Refuse what is not a sound, reasonably sized OOXML zip before a parser unpacks it."""
    if data.startswith(_OLE_MAGIC):
        raise NoText(f"{budget.name}: encrypted or legacy binary {kind} (no readable text)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MalformedDocument(f"{budget.name}: unreadable {kind} (not a sound zip)") from exc
    if unpacked > budget.limits.max_unpacked_bytes:
        raise TooLarge(f"{budget.name}: {kind} unpacks to {unpacked} bytes, more than "
                       f"{budget.limits.max_unpacked_bytes}")


_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError, AttributeError, IndexError,
    EOFError)


def docx(data: bytes, budget: Budget) -> Extracted:
    from docx import Document as open_docx

    _open_ooxml(data, budget, "DOCX")
    try:
        document = open_docx(io.BytesIO(data))
        out = Sections(budget)
        # python-docx resolves `para.style` by scanning the style part each time (and twice
        # for a paragraph without a style of its own): the largest cost of reading a DOCX.
        # Resolved once per style id instead, with python-docx's own rule.
        names: dict[str | None, str] = {}
        for para in document.paragraphs:
            style_id = para._p.style
            style = names.get(style_id)
            if style is None:
                found = para.style
                style = names[style_id] = (found.name if found is not None else "") or ""
            level = _docx_heading_level(style)
            if level is not None:
                out.heading(level, para.text)
            else:
                out.add(para.text)
                out.add("")
        for table in document.tables:
            for row in table.rows:
                out.add(" | ".join(tidy(cell.text) for cell in row.cells))
    except _PARSE_ERRORS as exc:
        raise MalformedDocument(f"{budget.name}: unreadable DOCX ({type(exc).__name__})") from exc
    return out.result()


def _docx_heading_level(style: str) -> int | None:
    if style == "Title":
        return 1
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


def pptx(data: bytes, budget: Budget) -> Extracted:
    """One section per slide under its title (or "Slide N"), speaker notes included."""
    from pptx import Presentation

    _open_ooxml(data, budget, "PPTX")
    try:
        deck = Presentation(io.BytesIO(data))
        out = Sections(budget)
        first_title: str | None = None
        for number, slide in enumerate(deck.slides, start=1):
            title_shape = slide.shapes.title
            title = tidy(title_shape.text_frame.text) if title_shape is not None else ""
            first_title = first_title or title or None
            out.heading(1, title or f"Slide {number}")
            for shape in slide.shapes:
                if shape is not title_shape:
                    _pptx_shape(shape, out)
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                out.add(slide.notes_slide.notes_text_frame.text)
        core_title = tidy(deck.core_properties.title or "")
    except _PARSE_ERRORS as exc:
        raise MalformedDocument(f"{budget.name}: unreadable PPTX ({type(exc).__name__})") from exc
    return core_title or first_title, out.result()[1]


def _pptx_shape(shape: Any, out: Sections) -> None:
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        out.add(shape.text_frame.text)
        out.add("")
    if getattr(shape, "has_table", False) and shape.has_table:
        for row in shape.table.rows:
            out.add(" | ".join(tidy(cell.text) for cell in row.cells))
    for inner in getattr(shape, "shapes", ()):  # a group shape
        _pptx_shape(inner, out)


def xlsx(data: bytes, budget: Budget) -> Extracted:
    """One section per sheet (under its name), one line per non-empty row; at most
    `max_cells` cells are read, whatever size the sheet claims."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    _open_ooxml(data, budget, "XLSX")
    errors: tuple[type[BaseException], ...] = (*_PARSE_ERRORS, InvalidFileException)
    out = Sections(budget)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            title = tidy(book.properties.title or "") or None
            for sheet in book.worksheets:
                if not _xlsx_sheet(sheet, out, budget):
                    break
        finally:
            book.close()
    except errors as exc:
        raise MalformedDocument(f"{budget.name}: unreadable XLSX ({type(exc).__name__})") from exc
    sections = out.result()[1]
    return title, sections


def _xlsx_sheet(sheet: Any, out: Sections, budget: Budget) -> bool:
    """Read one sheet into `out`; False once the cell cap is reached."""
    out.heading(1, str(sheet.title))
    # The declared dimension can claim a million rows of blanks: size the sheet by its data.
    if hasattr(sheet, "reset_dimensions"):
        sheet.reset_dimensions()
    for row in sheet.iter_rows(values_only=True):
        if not budget.take_cells(len(row)):
            return False
        values = [str(v).strip() for v in row if v is not None and str(v).strip()]
        if values:
            out.add(" | ".join(values))
        if out.full:
            return False
    return True


__all__ = ["Section", "docx", "pdf", "pptx", "xlsx"]
