"""The LLM provider protocol.

A provider gets the question, numbered sources (text the caller may read, to be treated as
data) and the conversation's previous turns, and streams a draft whose claims carry `[n]`
markers: text deltas, then one `DraftDone` with token usage and the stop reason (the shape of
Haystack's streaming_callback, so the CLI, the web page's SSE and Slack's streamed replies sit
on one protocol). The assistant, not the provider, decides what reaches the user: it validates
every marker and quote (assistant.citations) as the draft streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class Source:
    n: int
    doc_id: str
    title: str
    url: str
    text: str


@dataclass(frozen=True)
class Turn:
    """One previous turn of a conversation, as the person saw it."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the draft; `quotes` (n -> verbatim span of source n) for providers
    that can say which span a claim rests on."""

    text: str
    quotes: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DraftDone:
    """The last event of a draft."""

    usage: Usage = Usage()
    stop_reason: str = "end_turn"


DraftEvent = TextDelta | DraftDone


@dataclass(frozen=True)
class Draft:
    """A whole draft (what a stream adds up to)."""

    text: str
    # n -> the verbatim span of source n the claim rests on (providers that can give one)
    quotes: dict[int, str] = field(default_factory=dict)
    usage: Usage = Usage()
    stop_reason: str = "end_turn"

    def events(self) -> Iterator[DraftEvent]:
        """This draft as a stream of one delta (tests, providers without streaming)."""
        if self.text:
            yield TextDelta(self.text, dict(self.quotes))
        yield DraftDone(self.usage, self.stop_reason)


class LlmProvider(Protocol):
    name: str

    def stream(self, question: str, sources: Sequence[Source],
               history: Sequence[Turn] = ()) -> Iterator[DraftEvent]: ...


def collect(events: Iterable[DraftEvent]) -> Draft:
    """The draft a stream adds up to."""
    parts: list[str] = []
    quotes: dict[int, str] = {}
    done = DraftDone()
    for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
            quotes.update(event.quotes)
        else:
            done = event
    return Draft("".join(parts), quotes, done.usage, done.stop_reason)
