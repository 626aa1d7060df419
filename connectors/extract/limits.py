"""What one document may cost to extract: bytes, unpacked bytes, cells, characters and seconds.

A document over a size limit is `TooLarge` (a `NoText`: retrying the same bytes cannot help, so
its old text leaves the index). An extraction past its time limit is `ExtractionTimeout` (a plain
`MalformedDocument`: a loaded machine may manage next time, so connectors treat it as transient).
The time limit is checked between units (page, paragraph, slide, row) and, in the main thread, by
a SIGALRM timer that interrupts pure-Python parsing (pypdf); a single call inside a C extension
(lxml parsing one XML part) runs to its end before the limit is noticed.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from core.errors import MalformedDocument


class NoText(MalformedDocument):
    """The file is readable but holds no text (emptied, redacted, encrypted, an image PDF,
    binary data): not an error that a retry fixes, so its old text leaves the index."""


class TooLarge(NoText):
    """The document is past a size limit (bytes, unpacked bytes): it is not indexed."""


class ExtractionTimeout(MalformedDocument):
    """Extraction ran past its time limit (transient: the document is tried again later)."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 64 * 1024 * 1024  # the file as stored
    max_unpacked_bytes: int = 512 * 1024 * 1024  # the members of a docx/pptx/xlsx zip, together
    max_seconds: float = 60.0
    max_cells: int = 500_000  # spreadsheet cells read; the rest is left out (a warning says so)
    max_chars: int = 10_000_000  # text kept; the rest is left out (a warning says so)
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


DEFAULT_LIMITS = Limits()


class Budget:
    """One document's extraction: its name (for messages), limits, deadline and warnings."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.started = limits.clock()
        self.cells = 0
        self.chars = 0
        self.warnings: list[str] = []

    def check(self) -> None:
        """Raise ExtractionTimeout once the document has used its time."""
        if self.limits.clock() - self.started > self.limits.max_seconds:
            raise self.timeout()

    def timeout(self) -> ExtractionTimeout:
        return ExtractionTimeout(
            f"{self.name}: extraction took more than {self.limits.max_seconds:g} s")

    def take_cells(self, count: int) -> bool:
        """Count `count` more cells; False once past the cap (the caller stops reading)."""
        self.cells += count
        if self.cells > self.limits.max_cells:
            self.warn(f"{self.name}: only the first {self.limits.max_cells} cells are indexed")
            return False
        return True

    def take_chars(self, count: int) -> int:
        """Count `count` more characters; returns how many of them fit under the cap."""
        room = max(0, self.limits.max_chars - self.chars)
        self.chars += count
        if count > room:
            self.warn(f"{self.name}: only the first {self.limits.max_chars} characters "
                      f"are indexed")
        return min(count, room)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


@contextmanager
def alarm(budget: Budget) -> Iterator[None]:
    """Interrupt runaway pure-Python parsing after the time limit (main thread only, and only
    when nobody else owns SIGALRM); elsewhere the cooperative checks are the limit."""
    usable = (threading.current_thread() is threading.main_thread()
              and hasattr(signal, "setitimer")
              and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None))
    if not usable or budget.limits.clock is not time.monotonic:
        yield
        return

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise budget.timeout()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(budget.limits.max_seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
