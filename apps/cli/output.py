"""Terminal rendering for the CLI (JSON shapes live with the models)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from assistant.citations import Answer
from core.models import Hit
from indexer.sync import SyncReport


def hits_json(hits: list[Hit]) -> dict[str, Any]:
    return {"hits": [{"doc_id": h.doc_id, "title": h.title, "url": h.url, "score": h.score,
                      "snippet": h.snippet} for h in hits]}


def print_json(data: Any, out: TextIO = sys.stdout) -> None:
    out.write(json.dumps(data, ensure_ascii=False) + "\n")
    out.flush()


def print_hits(hits: list[Hit], out: TextIO = sys.stdout) -> None:
    if not hits:
        out.write("No documents you can access match.\n")
    for i, h in enumerate(hits, 1):
        snippet = " ".join(h.snippet.split())
        out.write(f"{i:>2}. {h.title}  [{h.doc_id}]  score {h.score:.4f}\n    {snippet}\n")


def print_answer(answer: Answer, out: TextIO = sys.stdout) -> None:
    out.write(answer.answer + "\n")
    if answer.citations:
        out.write("\nSources:\n")
        for c in answer.citations:
            out.write(f"  [{c.n}] {c.title} ({c.doc_id})\n       \"{' '.join(c.quote.split())}\"\n")


def summary(report: SyncReport) -> str:
    parts = [f"{report.connector}: {report.mode} sync {report.status}",
             f"{report.documents} documents", f"{report.indexed} indexed",
             f"{report.acl_updated} ACL-only updates", f"{report.unchanged} unchanged",
             f"{report.deleted} deleted", f"{report.chunks_embedded} chunks embedded",
             f"{report.error_count} errors", f"{report.readable_by_nobody} readable by nobody",
             f"{report.duration:.1f}s"]
    if report.resumed:
        parts.append("resumed from checkpoint")
    return ", ".join(parts)


class TerminalProgress:
    """One self-overwriting line on a terminal; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self._last = 0.0

    def __call__(self, report: SyncReport) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        rate = report.documents / max(report.duration, 1e-6)
        self.stream.write(
            f"\r{report.connector}: {report.documents} documents ({rate:.1f}/s), "
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
