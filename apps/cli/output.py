"""Terminal rendering for the CLI (JSON shapes live with the models)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from assistant.answer import AnswerDelta, AnswerEvent
from assistant.citations import Answer
from core.errors import StoreError
from core.models import Hit
from indexer.sync import SyncReport

# C0/C1 controls (newline and ESC included), line/paragraph separators, bidi overrides and
# isolates, and lone surrogates (undecodable bytes): each could forge or hide terminal lines.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(
        code, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def text(value: object) -> str:
    """`value` as terminal-safe text: every control character shows as an escape, so a title,
    a file name or an error message cannot start a line of its own or recolour the screen."""
    return _UNSAFE.sub(_escape, str(value))


def prose(value: str) -> str:
    """Running text (snippets, quotes, answers) on one line: whitespace runs become one space."""
    return text(" ".join(value.split()))


def hits_json(hits: list[Hit]) -> dict[str, Any]:
    return {"hits": [{"doc_id": h.doc_id, "title": h.title, "url": h.url, "score": h.score,
                      "snippet": h.snippet} for h in hits]}


def print_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up per call: tests and pipes swap the stream
    # JSON escapes controls itself; a non-UTF-8 stream gets \\u escapes instead of bytes.
    utf8 = (getattr(out, "encoding", None) or "").lower().replace("-", "") == "utf8"
    out.write(json.dumps(data, ensure_ascii=not utf8) + "\n")
    out.flush()


def print_hits(hits: list[Hit], out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up per call: tests and pipes swap the stream
    if not hits:
        out.write("No documents you can access match.\n")
    top = hits[0].score if hits else 0.0
    for i, h in enumerate(hits, 1):
        # Rank and a score relative to the best hit: raw scores carry corpus statistics.
        relative = h.score / top if top > 0 else 0.0
        out.write(f"{i:>2}. {text(h.title)}  [{text(h.doc_id)}]  relevance {relative:.2f}\n"
                  f"    {prose(h.snippet)}\n")


def print_answer(answer: Answer, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # looked up per call: tests and pipes swap the stream
    out.write(prose(answer.answer) + "\n")
    print_sources(answer, out)


def stream_answer(events: Iterable[AnswerEvent], out: TextIO | None = None) -> Answer:
    """Each checked sentence as it arrives, then the sources (the final event's list)."""
    out = out or sys.stdout
    answer: Answer | None = None
    wrote = False
    for event in events:
        if isinstance(event, AnswerDelta):
            out.write((" " if wrote else "") + prose(event.text))
            out.flush()
            wrote = True
        else:
            answer = event.answer
    if answer is None:  # a stream always ends with its answer; fail closed if it did not
        raise StoreError("the answer stream ended without its final event")
    if not wrote:
        out.write(prose(answer.answer))
    out.write("\n")
    print_sources(answer, out)
    return answer


def print_sources(answer: Answer, out: TextIO) -> None:
    if answer.citations:
        out.write("\nSources:\n")
        for c in answer.citations:
            out.write(f"  [{c.n}] {text(c.title)} ({text(c.doc_id)})\n"
                      f"       \"{prose(c.quote)}\"\n")


def summary(report: SyncReport) -> str:
    parts = [f"{report.connector}: {report.mode} sync {report.status}",
             f"{report.documents} documents", f"{report.indexed} indexed",
             f"{report.acl_updated} ACL-only updates", f"{report.unchanged} unchanged",
             f"{report.deleted} deleted", f"{report.chunks_embedded} chunks embedded",
             f"{report.error_count} errors", f"{report.readable_by_nobody} readable by nobody",
             f"{report.duration:.1f}s"]
    if report.resumed:
        parts.append("resumed from checkpoint")
    return text(", ".join(parts))


class TerminalProgress:
    """One self-overwriting line on a terminal; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0

    def __call__(self, report: SyncReport) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        rate = report.documents / max(report.duration, 1e-6)
        self.stream.write(
            f"\r{text(report.connector)}: {report.documents} documents ({rate:.1f}/s), "
            f"{report.chunks_embedded} chunks embedded, {report.error_count} errors\x1b[K")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
