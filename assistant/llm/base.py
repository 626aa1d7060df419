"""The LLM provider protocol.

A provider gets the question and numbered sources (text the caller may read, to be treated as
data) and returns a draft whose claims carry `[n]` markers. The assistant, not the provider,
decides what reaches the user: it validates every marker and quote (assistant.citations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Source:
    n: int
    doc_id: str
    title: str
    url: str
    text: str


@dataclass(frozen=True)
class Draft:
    text: str
    # n -> the verbatim span of source n the claim rests on (providers that can give one)
    quotes: dict[int, str] = field(default_factory=dict)


class LlmProvider(Protocol):
    name: str

    def draft(self, question: str, sources: Sequence[Source]) -> Draft: ...
