"""Document text extraction shared by every connector: bytes in, a title and sections out.

    from connectors.extract import extract_bytes, Limits
    result = extract_bytes(data, "report.pdf")            # the format from the name's suffix
    result = extract_bytes(data, "export", fmt=".docx")   # or named
    result.title, result.sections, result.warnings

Formats: md, txt, html, pdf, docx, pptx, xlsx. Each document runs within `Limits` (bytes,
unpacked bytes, cells, characters, seconds; see limits.py for what each failure means).
Failures are `core.errors.MalformedDocument` (transient: a parser crash, a truncated file, a
timeout) or its subclass `NoText` (permanent: nothing to index, encrypted, too large).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from connectors.extract import confluence, office, text
from connectors.extract.limits import (
    DEFAULT_LIMITS,
    Budget,
    ExtractionTimeout,
    Limits,
    NoText,
    TooLarge,
    alarm,
)
from connectors.extract.office import preload
from connectors.extract.text import Extracted, tidy
from core.errors import MalformedDocument
from core.models import Section

Extractor = Callable[[bytes, Budget], Extracted]

# Suffix -> extractor; a connector may extend it (Confluence storage format, Docs export).
FORMATS: dict[str, Extractor] = {
    ".md": text.markdown,
    ".markdown": text.markdown,
    ".txt": text.plain_text,
    ".html": text.html,
    ".htm": text.html,
    ".pdf": office.pdf,
    ".docx": office.docx,
    ".pptx": office.pptx,
    ".xlsx": office.xlsx,
    ".confluence_storage": confluence.storage,
}


@dataclass(frozen=True)
class Extraction:
    title: str | None
    sections: list[Section]
    # Things left out within the limits (cells or characters past the cap).
    warnings: tuple[str, ...] = field(default=())


def format_of(name: str) -> str:
    return Path(name).suffix.lower()


def supported(name: str) -> bool:
    return format_of(name) in FORMATS


def extract_bytes(data: bytes, name: str, *, fmt: str | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> Extraction:
    """The title and sections of one document; `name` appears in every message."""
    if fmt is None:
        suffix = format_of(name)
    else:
        suffix = fmt.lower() if fmt.startswith(".") else f".{fmt.lower()}"
    extractor = FORMATS.get(suffix)
    if extractor is None:
        raise NoText(f"{name}: not a supported document format ({suffix or 'no suffix'})")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{name}: {len(data)} bytes, more than the {limits.max_bytes} allowed")
    budget = Budget(name, limits)
    try:
        with alarm(budget):
            title, sections = extractor(data, budget)
    except RecursionError as exc:  # deeply nested markup: a malformed document, not a crash
        raise MalformedDocument(f"{name}: nested too deeply to parse") from exc
    budget.check()
    return Extraction(title, sections, tuple(budget.warnings))


def extract_file(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> Extraction:
    """Like extract_bytes, from a file: its size is checked before it is read."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TooLarge(f"{path.name}: {size} bytes, more than the {limits.max_bytes} allowed")
    with path.open("rb") as handle:
        data = handle.read(limits.max_bytes + 1)  # a file that grew meanwhile is still capped
    return extract_bytes(data, path.name, limits=limits)


def title_from_name(path: Path | str) -> str:
    path = Path(path)
    stem = re.sub(r"[-_]+", " ", path.stem).strip()
    return stem[:1].upper() + stem[1:] if stem else path.name


__all__ = [
    "DEFAULT_LIMITS",
    "FORMATS",
    "Extracted",
    "Extraction",
    "ExtractionTimeout",
    "Extractor",
    "Limits",
    "NoText",
    "TooLarge",
    "extract_bytes",
    "extract_file",
    "format_of",
    "preload",
    "supported",
    "tidy",
    "title_from_name",
]
