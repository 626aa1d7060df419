"""Shared extraction (connectors/extract): every format from small files made here, malformed
ones, and the size, cell, character and time limits."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from connectors.extract import (
    FORMATS,
    ExtractionTimeout,
    Limits,
    NoText,
    TooLarge,
    extract_bytes,
    extract_file,
)
from connectors.extract.limits import Budget
from connectors.files.connector import FilesConnector
from core.errors import MalformedDocument

pytestmark = pytest.mark.unit


# -- makers ----------------------------------------------------------------------------------
def make_pptx() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])  # title and content
    slide.shapes.title.text = "Quarterly plan"
    slide.placeholders[1].text = "Hire two engineers"
    slide.notes_slide.notes_text_frame.text = "Mention the budget freeze"
    second = deck.slides.add_slide(deck.slide_layouts[6])  # blank: no title
    table = second.shapes.add_table(2, 2, Inches(1), Inches(1), Inches(4), Inches(1)).table
    table.cell(0, 0).text, table.cell(0, 1).text = "region", "revenue"
    table.cell(1, 0).text, table.cell(1, 1).text = "north", "42"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_xlsx(rows: int = 3, cols: int = 2, title: str | None = None) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Budget"
    sheet.append(["item", "cost"])
    for r in range(rows):
        sheet.append([f"r{r}c{c}" for c in range(cols)])
    other = book.create_sheet("Staff")
    other.append(["ann", "engineer"])
    if title:
        book.properties.title = title
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def make_docx() -> bytes:
    from docx import Document

    doc = Document()
    doc.add_heading("Leave policy", level=1)
    doc.add_paragraph("Twenty days a year.")
    doc.add_heading("Carry-over", level=2)
    doc.add_paragraph("Five days into the next year.")
    table = doc.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "grade", "days"
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def make_pdf(lines: list[str], pages: int = 1) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for p in range(pages):
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 10, f"{line} {p}" if pages > 1 else line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def encrypt_pdf(data: bytes) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password="pw", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def texts(result: object) -> str:
    return "\n".join(s.text for s in result.sections)  # type: ignore[attr-defined]


# -- the formats -------------------------------------------------------------------------------
def test_pptx_slides_are_sections_under_their_titles_with_notes_and_tables():
    result = extract_bytes(make_pptx(), "plan.pptx")
    assert result.title == "Quarterly plan"
    by_heading = {s.headings: s.text for s in result.sections}
    assert "Hire two engineers" in by_heading[("Quarterly plan",)]
    assert "Mention the budget freeze" in by_heading[("Quarterly plan",)]
    assert "north | 42" in by_heading[("Slide 2",)]


def test_xlsx_sheets_are_sections_and_rows_are_lines():
    result = extract_bytes(make_xlsx(title="Costs 2026"), "costs.xlsx")
    assert result.title == "Costs 2026"
    by_heading = {s.headings: s.text for s in result.sections}
    assert by_heading[("Budget",)].splitlines()[:2] == ["item | cost", "r0c0 | r0c1"]
    assert by_heading[("Staff",)] == "ann | engineer"
    assert result.warnings == ()


def test_docx_headings_paragraphs_and_tables():
    result = extract_bytes(make_docx(), "leave.docx")
    assert result.title == "Leave policy"
    by_heading = {s.headings: s.text for s in result.sections}
    assert by_heading[("Leave policy",)] == "Twenty days a year."
    assert "Five days" in by_heading[("Leave policy", "Carry-over")]
    assert "grade | days" in texts(result)


def test_pdf_first_line_is_the_title():
    result = extract_bytes(make_pdf(["Travel rules", "Book economy class."]), "travel.pdf")
    assert result.title == "Travel rules" and "economy" in texts(result)


@pytest.mark.parametrize(("name", "data", "title", "needle"), [
    ("a.md", b"# Top\nintro\n## Sub\n```\n# not a heading\n```\n", "Top", "not a heading"),
    ("a.txt", "caf\u00e9 au lait".encode(), None, "caf\u00e9"),
    ("a.html", b"<html><head><title>T</title><style>x{}</style></head><body><h1>H</h1>"
               b"<p>para</p><script>evil()</script></body></html>", "H", "para"),
])
def test_text_formats(name, data, title, needle):
    result = extract_bytes(data, name)
    assert result.title == title and needle in texts(result)
    assert "evil" not in texts(result)


def test_the_format_can_be_named_apart_from_the_name():
    assert extract_bytes(b"# T\nbody", "page-1234", fmt="md").title == "T"
    with pytest.raises(NoText, match="not a supported"):
        extract_bytes(b"data", "image.png")


# -- malformed ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "maker"), [
    ("deck.pptx", make_pptx), ("sheet.xlsx", make_xlsx), ("memo.docx", make_docx)])
def test_a_truncated_office_file_is_malformed_not_no_text(name, maker):
    data = maker()
    with pytest.raises(MalformedDocument) as caught:
        extract_bytes(data[: len(data) // 2], name)
    assert not isinstance(caught.value, NoText)  # transient: a half-written file may heal


@pytest.mark.parametrize("name", ["deck.pptx", "sheet.xlsx", "memo.docx"])
def test_an_encrypted_office_file_has_no_text(name):
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    with pytest.raises(NoText, match="encrypted"):
        extract_bytes(ole, name)


def test_an_encrypted_pdf_has_no_text():
    with pytest.raises(NoText, match="encrypted PDF"):
        extract_bytes(encrypt_pdf(make_pdf(["Secret plan"])), "plan.pdf")


def test_a_truncated_pdf_is_malformed():
    data = make_pdf(["Travel rules", "Book economy class."])
    with pytest.raises(MalformedDocument):
        extract_bytes(data[:200], "travel.pdf")


def test_a_zip_that_is_not_a_document_is_malformed():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(MalformedDocument) as caught:
        extract_bytes(out.getvalue(), "fake.docx")
    assert not isinstance(caught.value, NoText)


# -- limits ---------------------------------------------------------------------------------
def test_past_max_bytes_is_too_large_a_permanent_no_text(tmp_path: Path):
    with pytest.raises(TooLarge, match="more than the 10 allowed"):
        extract_bytes(b"x" * 11, "big.txt", limits=Limits(max_bytes=10))
    big = tmp_path / "big.md"
    big.write_bytes(b"# x\n" + b"y" * 100)
    with pytest.raises(TooLarge) as caught:
        extract_file(big, limits=Limits(max_bytes=50))
    assert isinstance(caught.value, NoText)


def test_a_zip_bomb_is_refused_before_it_is_unpacked():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"0" * 5_000_000)  # compresses to a few KB
    data = out.getvalue()
    assert len(data) < 50_000
    with pytest.raises(TooLarge, match="unpacks to 5000000 bytes"):
        extract_bytes(data, "bomb.xlsx", limits=Limits(max_unpacked_bytes=1_000_000))


def test_a_huge_sheet_is_read_up_to_the_cell_cap():
    result = extract_bytes(make_xlsx(rows=400, cols=50), "huge.xlsx",
                           limits=Limits(max_cells=1000))
    cells = sum(line.count("|") + 1 for s in result.sections for line in s.text.splitlines())
    assert 0 < cells <= 1000
    assert result.warnings == ("huge.xlsx: only the first 1000 cells are indexed",)
    assert "Staff" not in {h for s in result.sections for h in s.headings}


def test_a_sheet_claiming_a_million_rows_costs_only_its_real_cells():
    data = make_xlsx(rows=2)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename.endswith("sheet1.xml"):
                body = body.replace(b'<dimension ref="A1:B3"/>',
                                    b'<dimension ref="A1:XFD1048576"/>')
                assert b"XFD1048576" in body
            dst.writestr(item, body)
    result = extract_bytes(out.getvalue(), "claims.xlsx", limits=Limits(max_cells=100))
    assert result.warnings == () and "r1c1" in texts(result)


def test_past_max_chars_the_rest_is_left_out_with_a_warning():
    result = extract_bytes(("word " * 1000).encode(), "long.txt", limits=Limits(max_chars=100))
    assert texts(result) == ("word " * 20).strip()
    assert result.warnings == ("long.txt: only the first 100 characters are indexed",)


class Ticking:
    """A clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.mark.parametrize(("name", "data"), [
    ("many.md", "\n".join(f"line {i}" for i in range(50)).encode()),
    ("pages.pdf", None),
])
def test_past_the_time_limit_is_a_transient_timeout(name, data):
    data = data if data is not None else make_pdf(["page"], pages=12)
    with pytest.raises(ExtractionTimeout, match="more than 5 s") as caught:
        extract_bytes(data, name, limits=Limits(max_seconds=5, clock=Ticking()))
    assert not isinstance(caught.value, NoText)


def test_a_runaway_parser_is_interrupted_by_the_alarm(monkeypatch):
    def spin(data: bytes, budget: Budget) -> tuple[None, list[object]]:
        # A parser stuck in pure Python (it never runs the cooperative checks); it gives up by
        # itself after 20 s so that a broken alarm fails this test instead of hanging it.
        give_up = time.monotonic() + 20
        while time.monotonic() < give_up:
            pass
        return None, []

    monkeypatch.setitem(FORMATS, ".spin", spin)
    with pytest.raises(ExtractionTimeout):
        extract_bytes(b"x", "stuck.spin", limits=Limits(max_seconds=0.2))


def test_budget_within_time_passes():
    result = extract_bytes(b"# T\nbody", "t.md", limits=Limits(max_seconds=100, clock=Ticking()))
    assert result.title == "T"


# -- the files connector uses it ---------------------------------------------------------------
def test_the_files_connector_indexes_pptx_and_xlsx_and_fails_them_as_defined(tmp_path: Path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / ".access.json").write_text(json.dumps({"read": ["user:ann@example.com"]}))
    (root / "plan.pptx").write_bytes(make_pptx())
    (root / "costs.xlsx").write_bytes(make_xlsx())
    (root / "broken.xlsx").write_bytes(make_xlsx()[:300])
    (root / "locked.pptx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    pages = list(FilesConnector("share", root).documents())
    docs = {d.doc_id: d for p in pages for d in p.documents}
    failures = {f.doc_id: f for p in pages for f in p.failures}
    assert docs["share:plan.pptx"].title == "Quarterly plan"
    assert docs["share:costs.xlsx"].title == "Costs"  # from the file name: no title property
    assert failures["share:broken.xlsx"].transient is True
    assert failures["share:locked.pptx"].transient is False


def test_docx_style_of_each_paragraph_follows_python_docx_also_for_unknown_style_ids():
    """Styles are resolved once per style id: a paragraph without a style, one naming a style
    the document lacks (python-docx falls back to the default paragraph style) and one naming a
    character style are body text; Title and Heading n are headings, however often repeated."""
    import io

    from docx import Document as new_docx

    document = new_docx()
    document.add_paragraph("Handbook", style="Title")
    for n in range(3):
        document.add_paragraph(f"Part {n}", style="Heading 1")
        document.add_paragraph(f"Body {n} plain.")
        document.add_paragraph(f"Detail {n}", style="Heading 2")
        document.add_paragraph(f"Listed {n}.", style="List Bullet")
    ghost = document.add_paragraph("Ghost style text.")
    ghost._p.style = "NoSuchStyle"  # a style id the styles part does not define
    document.add_paragraph("Character style text.")._p.style = "DefaultParagraphFont"
    buffer = io.BytesIO()
    document.save(buffer)
    result = extract_bytes(buffer.getvalue(), "handbook.docx")
    by_heading = {s.headings: s.text for s in result.sections}
    assert result.title == "Handbook"
    assert by_heading[("Part 1",)] == "Body 1 plain."
    assert by_heading[("Part 1", "Detail 1")] == "Listed 1."
    last = by_heading[("Part 2", "Detail 2")]
    assert "Ghost style text." in last and "Character style text." in last


def test_preload_imports_the_parsers_once_in_the_background() -> None:
    from connectors.extract import office, preload

    thread = preload()
    assert preload() is thread  # one per process
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert all(name in sys.modules for name in office.PARSERS)


def test_preload_leaves_a_failing_import_to_the_extraction(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.extract import office

    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    monkeypatch.setattr(office, "PARSERS", ("clearance_no_such_parser", "colorsys"))
    office._import_parsers()  # no exception: the extraction that needs it reports it
    assert "clearance_no_such_parser" not in sys.modules
    assert "colorsys" in sys.modules  # the parsers after a failing one are still imported


def test_a_process_that_ends_during_the_preload_waits_for_it(tmp_path: Path) -> None:
    """A short sync can be done before the parsers are; the process must finish the imports
    at exit rather than have a thread stopped mid-import (which aborted it once, exit -6)."""
    marker = tmp_path / "imported"
    (tmp_path / "slow_parser.py").write_text(
        "import time, pathlib\n"
        "time.sleep(1.0)\n"
        f"pathlib.Path({str(marker)!r}).write_text('done')\n")
    script = ("import connectors.extract.office as office\n"
              "office.PARSERS = ('slow_parser',)\n"
              "office.preload()\n")  # the process ends here, with the import under way
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "done"
