"""The extractive answer reads on its own: lost subjects repaired or the sentence skipped, table
rows under their header (never a bare header row), no Markdown markup in the prose, quotes still
verbatim spans of the source, the shortest set of passages in source order, and numbers
preferred when the question asks for one."""

from __future__ import annotations

import pytest

from assistant.citations import validate
from assistant.llm.base import Source
from assistant.llm.extractive import ExtractiveAnswerer, asks_for_number, identifiers
from assistant.llm.passages import plain, standalone, units
from assistant.llm.ranges import in_range
from indexer.embedding.hashing import HashingEmbedder

pytestmark = pytest.mark.unit

TABLE = ("Discounts are measured on the first-year fee.\n\n"
         "| Discount | Who approves | Typical turnaround |\n| --- | --- | --- |\n"
         "| Up to 10% | Account Executive | immediate |\n"
         "| 10.1% to 20% | **Sales Manager** | same day |\n")
MINUTES = ("Erin Walsh reported that revenue closed at $118 million. Black Friday set a record "
           "of 2,400 checkouts per minute. She summarised the outage of 14 November: 47 "
           "minutes and $96,500 in credits.")
BATTLECARD = ("Acknowledge it. Say that a configuration change caused 47 minutes of degraded "
              "checkout, and that all actions were completed. This is a sensitive topic.")


def prose_of(text: str, title: str = "Doc") -> list[str]:
    return [u.prose for u in units(1, title, text)]


def test_a_table_row_reads_under_its_header_and_the_header_row_is_no_unit() -> None:
    found = units(1, "Discount Policy", TABLE)
    rows = [u for u in found if u.row]
    assert [u.prose for u in rows] == ["Discount up to 10%: Account Executive, immediate",
                                       "Discount 10.1% to 20%: Sales Manager, same day"]
    assert not any("Who approves" in u.prose or "---" in u.quote for u in found)
    # The quote is the row as the source has it, markup and all.
    assert rows[1].quote == "| 10.1% to 20% | **Sales Manager** | same day |"
    assert all(TABLE[u.start:u.start + len(u.quote)] == u.quote for u in found)


def test_rows_without_a_markdown_rule_take_the_first_row_as_header() -> None:
    text = "Region | Office | Opens\nEU | Dublin | 8:00\nUS | Portland | 7:30\n"
    assert prose_of(text) == ["EU: Dublin, 8:00", "US: Portland, 7:30"]


def test_a_header_row_alone_is_never_an_answer() -> None:
    assert prose_of("| Discount | Who approves | Typical turnaround |\n| --- | --- | --- |\n") \
        == []


def test_a_lost_subject_is_repaired_from_the_sentence_before() -> None:
    shown = prose_of(MINUTES)
    assert "Erin Walsh summarised the outage of 14 November: 47 minutes and $96,500 in " \
           "credits." in shown
    assert not any(p.startswith("She ") for p in shown)
    [unit] = [u for u in units(1, "Minutes", MINUTES) if "summarised" in u.prose]
    assert unit.quote.startswith("She summarised") and unit.quote in MINUTES


@pytest.mark.parametrize("sentence", [
    "Say that a configuration change caused 47 minutes of degraded checkout.",
    "Tell them that the outage is over.",
    "This is a blameless postmortem.",
    "It describes what happened to our systems.",
    "They will provide one from Q1 2026.",
    "She asked for a report.",  # no one named before it
])
def test_a_sentence_that_cannot_stand_alone_is_skipped(sentence: str) -> None:
    assert standalone(sentence, "Postmortem", []) is None


def test_this_document_becomes_its_title_unless_it_only_says_what_it_is_about() -> None:
    assert standalone("This policy applies to all employees from 1 January.", "Expenses Policy",
                      []) == "The Expenses Policy applies to all employees from 1 January."
    assert standalone("This policy explains what is covered.", "Expenses Policy", []) is None


def test_markdown_markup_is_left_out_of_the_prose() -> None:
    text = ("## How to claim\n1. Submit every claim in **SpendWise** within `30 days`.\n"
            "- Read the [travel policy](https://x.example/travel) first.\n"
            "> Receipts of *$25 or more* are needed.\n")
    shown = prose_of(text)
    assert shown == ["Submit every claim in SpendWise within 30 days.",
                     "Read the travel policy first.", "Receipts of $25 or more are needed."]
    assert all(u.quote in text for u in units(1, "Doc", text))
    assert plain("a **b** __c__ `d` ~~e~~") == "a b c d e"


def test_a_heading_line_is_context_not_an_answer() -> None:
    assert prose_of("How to claim\nSubmit every claim within 30 days.") == [
        "Submit every claim within 30 days."]


@pytest.mark.parametrize(("question", "numeric"), [
    ("How many days of leave do I get?", True), ("When does the office open?", True),
    ("What is the price of the Growth plan?", True), ("Who approves discounts?", False),
    ("Where is the printer?", False)])
def test_number_and_date_questions_are_recognised(question: str, numeric: bool) -> None:
    assert asks_for_number(question) is numeric


ANSWERER = ExtractiveAnswerer(HashingEmbedder(), min_evidence=0.0)
SOURCES = [
    Source(1, "docs:discount.md", "Discount Policy", "file:///d.md", TABLE),
    Source(2, "docs:minutes.md", "Minutes", "file:///m.md", MINUTES),
    Source(3, "docs:card.md", "Battlecard", "file:///c.md", BATTLECARD),
]


def test_the_answer_never_shows_markup_or_a_header_row_and_quotes_stay_verbatim() -> None:
    for question in ("Who approves a discount of 15%?", "Who approves discounts?",
                     "What is the typical turnaround for discounts?"):
        answer = validate(ANSWERER.draft(question, SOURCES), SOURCES)
        assert not answer.refused, question
        assert "|" not in answer.answer and "**" not in answer.answer, answer
        assert "Who approves | Typical" not in answer.answer
        for c in answer.citations:
            assert c.quote in next(s.text for s in SOURCES if s.doc_id == c.doc_id)


def test_a_talk_track_is_never_the_answer() -> None:
    draft = ANSWERER.draft("What caused the 47 minutes of degraded checkout?", SOURCES)
    assert "Say that" not in draft.text and "This is" not in draft.text


def test_a_number_question_prefers_the_passage_holding_one() -> None:
    sources = [Source(1, "docs:o.md", "Office", "file:///o.md",
                      "The Berlin office opening is handled by the facilities team. "
                      "The Berlin office opens at 7:30 on weekdays.")]
    chosen = ANSWERER.choose("When does the Berlin office open?", sources)
    assert chosen[0].sentence == "The Berlin office opens at 7:30 on weekdays."


def test_the_answer_is_the_shortest_set_in_source_order() -> None:
    text = ("Parking permits are issued by the front desk. The canteen opens at noon. "
            "Permits cost ten euros a month.")
    sources = [Source(1, "docs:p.md", "Parking", "file:///p.md", text)]
    chosen = ANSWERER.choose("Who issues parking permits and what do permits cost?", sources)
    # Two passages cover the question; the canteen adds nothing it asked for.
    assert [c.sentence for c in chosen] == ["Parking permits are issued by the front desk.",
                                            "Permits cost ten euros a month."]
    one = ANSWERER.choose("Who issues parking permits?", sources)
    assert [c.sentence for c in one] == ["Parking permits are issued by the front desk."]


def test_a_hard_wrapped_paragraph_is_one_sentence_and_its_quote_spans_the_wrap() -> None:
    text = ("The first item of the array\nis the name, the second item is the value.\n"
            "Corporate cards\nEmployees who travel often may ask for a card.\n")
    found = units(1, "Doc", text)
    assert [u.prose for u in found] == [
        "The first item of the array is the name, the second item is the value.",
        "Employees who travel often may ask for a card."]
    assert found[0].quote == "The first item of the array\nis the name, the second item is " \
                             "the value." and found[0].quote in text


def test_a_definition_is_read_with_its_term_and_a_list_intro_is_no_answer() -> None:
    text = ("-l, --link\nhard link files instead of copying\n\n"
            "The key generating algorithms supported include:\n")
    assert prose_of(text) == ["-l, --link: Hard link files instead of copying"]


def test_a_name_spelled_exactly_beats_a_near_miss() -> None:
    text = ("-b, --bytes=LIST\nselect only these bytes\n\n"
            "--complement\ncomplement the set of selected bytes, characters or fields\n")
    sources = [Source(1, "docs:cut.1", "cut(1)", "file:///cut.1", text)]
    chosen = ANSWERER.choose("What does the --bytes option of cut do?", sources)
    assert chosen[0].sentence == "-b, --bytes=LIST: Select only these bytes"
    assert identifiers("What is the Name for 0x0a in HTTP/2 on 14 November 2025?") == [
        "0x0a", "HTTP"]


@pytest.mark.parametrize(("question", "row"), [
    ("Who approves a 15% discount?", "Discount 10.1% to 20%: Sales Manager, same day"),
    ("Who approves a discount of 5%?", "Discount up to 10%: Account Executive, immediate"),
])
def test_the_row_whose_range_holds_the_number_answers(question: str, row: str) -> None:
    chosen = ANSWERER.choose(question, SOURCES[:1])
    assert chosen[0].sentence == row


@pytest.mark.parametrize(("question", "cell", "fits"), [
    ("a 15% discount", "10.1% to 20%", True), ("a 15% discount", "Up to 10%", False),
    ("a 35% discount", "Above 30%", True), ("$30,000 contract", "$25,000.01 to $100,000", True),
    ("5000 dollars", "Up to $5,000", True),
    ("expenses over 5000 dollars", "Above 30%", None),  # dollars are not a percentage
    ("a 15% discount", "Team meal", None), ("who approves?", "Up to 10%", None)])
def test_ranges_compare_numbers_of_the_same_unit_only(question: str, cell: str,
                                                       fits: bool | None) -> None:
    assert in_range(question, cell) is fits


def test_a_one_word_heading_is_not_a_term() -> None:
    assert prose_of("Renewals\nRenewal discounts may not exceed the current discount.\n\n"
                    "SIGKILL\nkill the process at once\n") == [
        "Renewal discounts may not exceed the current discount.",
        "SIGKILL: Kill the process at once"]
