"""Shared pieces of the HTTP policy and emulator tests: a fake clock and a small tenant."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.http import Clock

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = "s3cret-token"


class FakeClock:
    """Time that moves only when the policy sleeps; records every sleep it asked for."""

    def __init__(self, jitter: float = 0.5) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()
        self.jitter = jitter

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.t += seconds

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    def clock(self) -> Clock:
        return Clock(monotonic=self.monotonic, sleep=self.sleep, now=self.now,
                     random=lambda: self.jitter)


def tenant(documents: int = 3) -> dict[str, Any]:
    return {
        "tokens": [TOKEN],
        "documents": {
            f"doc{i}.md": {"title": f"Doc {i}", "content": f"# Doc {i}\nbody {i}", "format": "md",
                           "read": ["user:ann@example.com"], "deny": []}
            for i in range(documents)
        },
        "groups": {"hr": ["user:ann@example.com"]},
        "page_size": 2,
    }
