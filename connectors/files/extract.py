"""The files connector's view of the shared extraction (connectors/extract/): a path in, a
title and sections out, within the default limits. Kept so that connector.py's imports stand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from connectors.extract import FORMATS, Extracted, NoText, extract_file, tidy, title_from_name

log = logging.getLogger(__name__)


def from_path(path: Path) -> Extracted:
    result = extract_file(path)
    for warning in result.warnings:  # cells or characters past the cap were left out
        log.warning("%s", warning)
    return result.title, result.sections


EXTRACTORS: dict[str, Callable[[Path], Extracted]] = dict.fromkeys(FORMATS, from_path)

__all__ = ["EXTRACTORS", "Extracted", "NoText", "from_path", "tidy", "title_from_name"]
