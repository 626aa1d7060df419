"""Guardrails: each PII type (and what only looks like one), blocked words, denied topics (hit
and near miss), and their place in the streamed citation check: withheld sentences, redacted
quotes, audit actions that never hold the matched text."""

from __future__ import annotations

import pytest

from assistant.citations import CitationCheck
from assistant.guardrails import Guardrails
from assistant.llm.base import Source
from core.settings import DeniedTopicSettings, GuardrailSettings
from indexer.embedding.hashing import HashingEmbedder

pytestmark = pytest.mark.unit
ALL_PII = {"email": "redact", "phone": "redact", "credit_card": "redact", "iban": "redact",
           "us_ssn": "redact", "aws_access_key": "redact"}


def guard(**kw: object) -> Guardrails:
    return Guardrails.from_settings(GuardrailSettings.model_validate(kw), HashingEmbedder())


@pytest.mark.parametrize("kind,text", [
    ("email", "Write to jo.doe+hr@mail.example.co.uk today."),
    ("phone", "Call +49 30 1234 5678 now."),
    ("phone", "Call (415) 555-2671 now."),
    ("credit_card", "Card 4111 1111 1111 1111 was charged."),
    ("credit_card", "Card 5500-0000-0000-0004 was charged."),
    ("iban", "Pay DE89 3704 0044 0532 0130 00 by Friday."),
    ("iban", "Pay GB82WEST12345698765432 by Friday."),
    ("us_ssn", "SSN 123-45-6789 on file."),
    ("aws_access_key", "key AKIAIOSFODNN7EXAMPLE leaked"),
])
def test_each_pii_type_is_redacted(kind: str, text: str) -> None:
    verdict = guard(pii={kind: "redact"}).question(text)
    assert verdict.text is not None and f"[{kind.upper()} REDACTED]" in verdict.text
    assert [a.rule for a in verdict.actions] == [f"pii:{kind}"]
    assert all(a.action == "redacted" for a in verdict.actions)


@pytest.mark.parametrize("text", [
    "Card 4111 1111 1111 1112 fails Luhn.",        # not a card
    "Pay DE89 3704 0044 0532 0130 01 by Friday.",  # IBAN checksum wrong
    "The meeting is on 2026-12-02 at 10:30.",      # a date is not a phone number
    "SSN 000-12-3456 is not valid.",               # never issued
    "Revenue grew 12.5 % to 4 200 000 euros in 2025.",
    "Email the helpdesk at support (not an address).",
])
def test_lookalikes_are_left_alone(text: str) -> None:
    verdict = guard(pii=ALL_PII).question(text)
    assert verdict.text == text and verdict.actions == ()


def test_block_mode_stops_the_question_and_names_only_the_type() -> None:
    verdict = guard(pii={"us_ssn": "block"}).question("Whose SSN is 123-45-6789?")
    assert verdict.text is None and "123-45-6789" not in verdict.message
    assert "us ssn" in verdict.message
    assert [(a.stage, a.action, a.rule) for a in verdict.actions] == [
        ("question", "blocked", "pii:us_ssn")]


def test_blocked_words_match_whole_words_case_insensitively() -> None:
    g = guard(blocked_words=["Project Nightjar", "salary"])
    assert g.question("What is project  nightjar?").text is not None  # two spaces: no phrase
    blocked = g.question("What is PROJECT NIGHTJAR about?")
    assert blocked.text is None and "Nightjar" not in blocked.message
    assert g.question("What are the salaryband rules?").text is not None
    assert g.question("Salary for engineers?").text is None


def test_a_denied_topic_is_hit_by_a_close_question_and_missed_by_a_distant_one() -> None:
    g = guard(denied_topics=[DeniedTopicSettings(
        name="layoffs", description="planned layoffs and redundancies of staff",
        examples=["who is being laid off next quarter", "which teams face redundancies"],
        threshold=0.6).model_dump()])
    hit = g.question("who is being laid off next quarter?")
    assert hit.text is None and hit.message == "Questions about layoffs are not answered here."
    assert hit.actions[0].rule == "denied_topic:layoffs"
    near_miss = g.question("when does the canteen open on fridays?")
    assert near_miss.text is not None and near_miss.actions == ()


SOURCES = [Source(1, "docs:a.md", "A", "file:///a.md",
                  "Questions go to jo@acme.com or the desk. The desk opens at nine."),
           Source(2, "docs:b.md", "B", "file:///b.md", "The budget is secret until March.")]


def test_answer_sentences_are_redacted_withheld_and_quotes_redacted() -> None:
    check = CitationCheck(SOURCES, guard(pii={"email": "redact"}, blocked_words=["secret"]))
    out = check.feed("Questions go to jo@acme.com [1]. The budget is secret until March [2]. "
                     "The desk opens at nine [1].")
    _, answer = check.finish()
    assert answer.answer == "Questions go to [EMAIL REDACTED] [1]. The desk opens at nine [1]."
    assert "".join(out) + "".join(_) == answer.answer
    assert [c.doc_id for c in answer.citations] == ["docs:a.md"]  # the withheld [2] is gone
    assert "jo@acme.com" not in answer.citations[0].quote
    assert {(a.action, a.rule) for a in check.actions} == {("redacted", "pii:email"),
                                                           ("withheld", "blocked_word")}


def test_unknown_pii_types_and_bad_topics_are_config_errors() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GuardrailSettings.model_validate({"pii": {"passport": "redact"}})
    with pytest.raises(ValidationError):
        GuardrailSettings.model_validate({"pii": {"email": "mask"}})
    with pytest.raises(ValidationError):
        GuardrailSettings.model_validate({"denied_topics": [{"name": "x"}]})
