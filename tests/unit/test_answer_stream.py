"""The streaming provider protocol and the streamed citation check: deltas in, checked
sentences out, the answer with its final citation list last; the same verdict as `validate`."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence

import pytest

from apps.cli.output import stream_answer
from assistant.answer import AnswerDelta, AnswerDone, AnswerEvent
from assistant.citations import REFUSAL, Answer, CitationCheck, split_sentences, validate
from assistant.llm.base import Draft, DraftDone, DraftEvent, Source, TextDelta, Turn, Usage, collect
from assistant.llm.extractive import ExtractiveAnswerer
from indexer.embedding import load_embedder

pytestmark = pytest.mark.unit

SOURCES = [
    Source(1, "docs:a.md", "A", "file:///a.md", "The canteen opens at noon. It closes at three."),
    Source(2, "docs:b.md", "B", "file:///b.md", "Parking permits are issued by the front desk."),
]


def feed_all(deltas: Sequence[str]) -> tuple[list[str], Answer]:
    check = CitationCheck(SOURCES)
    out: list[str] = []
    for d in deltas:
        out += check.feed(d)
    last, answer = check.finish()
    return out + last, answer


def test_a_sentence_is_released_only_once_its_markers_have_arrived() -> None:
    check = CitationCheck(SOURCES)
    assert check.feed("The canteen closes at three.") == []
    assert check.feed(" [1]") == []  # the marker may still be followed by another
    assert check.feed(" Parking permits are issued by the front desk [2].") == [
        "The canteen closes at three. [1]"]
    last, answer = check.finish()
    assert last == [" Parking permits are issued by the front desk [2]."]
    assert not answer.refused
    assert [c.doc_id for c in answer.citations] == ["docs:a.md", "docs:b.md"]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_any_split_of_the_stream_gives_the_same_answer_as_validate(size: int) -> None:
    text = ("Permits come from the front desk [2]. The vault code is 1234 [9]. "
            "Lunch is served all night [1]. The canteen closes at three [1].")
    streamed, answer = feed_all([text[i:i + size] for i in range(0, len(text), size)])
    assert answer == validate(Draft(text), SOURCES)
    assert "".join(streamed) == answer.answer
    assert answer.answer == (
        "Permits come from the front desk [1]. The canteen closes at three [2].")
    assert answer.dropped == 2


def test_markers_inside_a_sentence_do_not_end_it() -> None:
    complete, rest = split_sentences("Permits [2] come from the desk and lunch [1] is at noon. Ne")
    assert complete == ["Permits [2] come from the desk and lunch [1] is at noon."]
    assert rest == "Ne"


def test_the_same_source_cited_twice_must_support_each_claim() -> None:
    answer = validate(Draft("The canteen opens at noon [1]. The canteen serves free champagne "
                            "to every visitor on Fridays [1]."), SOURCES)
    assert answer.answer == "The canteen opens at noon [1]."
    assert answer.dropped == 1


def test_a_stream_with_no_supported_sentence_is_the_refusal() -> None:
    streamed, answer = feed_all(["Bicycles are ", "welcome [2]. The moon is ", "cheese [7]."])
    assert streamed == []
    assert answer.refused and answer.answer == REFUSAL


def test_collect_adds_a_stream_up() -> None:
    events: list[DraftEvent] = [TextDelta("a [1]", {1: "q"}), TextDelta(" b [2]"),
                                DraftDone(Usage(10, 4), "max_tokens")]
    draft = collect(events)
    assert draft == Draft("a [1] b [2]", {1: "q"}, Usage(10, 4), "max_tokens")
    assert collect(draft.events()) == draft


def test_the_extractive_answerer_streams_one_sentence_per_delta_with_its_quote() -> None:
    answerer = ExtractiveAnswerer(load_embedder("hashing"), min_evidence=0.0)
    history = [Turn("user", "hello"), Turn("assistant", "hi")]
    events = list(answerer.stream("When does the canteen open?", SOURCES, history))
    assert isinstance(events[-1], DraftDone)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert deltas and all(len(d.quotes) == 1 for d in deltas)
    assert collect(events).text == answerer.draft("When does the canteen open?", SOURCES).text


def test_the_terminal_prints_sentences_as_they_come_then_the_sources() -> None:
    answer = validate(Draft("The canteen closes at three [1]."), SOURCES)

    def events() -> Iterator[AnswerEvent]:
        yield AnswerDelta("The canteen closes\x1b[31m at three [1].")
        yield AnswerDone(answer)

    out = io.StringIO()
    assert stream_answer(events(), out) == answer
    printed = out.getvalue()
    assert printed.startswith("The canteen closes\\x1b[31m at three [1].\n")  # escaped
    assert "Sources:\n  [1] A (docs:a.md)" in printed


def test_a_stream_without_its_final_event_fails_closed() -> None:
    from core.errors import StoreError

    with pytest.raises(StoreError):
        stream_answer(iter([AnswerDelta("x")]), io.StringIO())
