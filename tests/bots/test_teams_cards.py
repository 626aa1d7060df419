"""Adaptive Card answers: numbered citations as title links with quotes, text shown as written
(a title or quote cannot make links of its own), feedback buttons only on real answers."""

from __future__ import annotations

import json
import re

import pytest

from apps.teams.cards import answer_card
from assistant.citations import Answer, Citation, refusal

pytestmark = pytest.mark.unit

FEEDBACK = {"clearance": "feedback", "c": "teams:abc", "q": "how many days?"}


def _answer(*citations: Citation) -> Answer:
    return Answer("Twenty-eight days [1].", citations, False)


def test_citations_are_numbered_title_links_with_quotes() -> None:
    card = answer_card("Twenty-eight days [1].", _answer(
        Citation(1, "sp:leave", "Leave policy", "https://intranet.example/leave", "28 days."),
        Citation(2, "sp:hr", "HR", "https://intranet.example/hr", "")), FEEDBACK)
    texts = [b["text"] for b in card["body"]]
    assert texts[1] == "\\[1\\] [Leave policy](https://intranet.example/leave)"
    assert texts[2] == "28 days." and card["body"][2]["isSubtle"] is True
    assert texts[3] == "\\[2\\] [HR](https://intranet.example/hr)"  # no empty quote block
    assert len(texts) == 4
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "file:///etc/passwd",
                                 "https://x.example/a) [evil](https://evil.example", ""])
def test_an_unsafe_or_odd_url_is_not_linked(url: str) -> None:
    card = answer_card("a", _answer(Citation(1, "d:1", "Title", url, "q")), None)
    assert card["body"][1]["text"] == "\\[1\\] Title"


def test_titles_and_quotes_cannot_inject_markdown() -> None:
    title = "[click](https://evil.example) *bold*"
    card = answer_card("see [here](https://evil.example)", _answer(
        Citation(1, "d:1", title, "https://ok.example/doc", "[x](https://evil.example)")),
        None)
    link = re.compile(r"(?<!\\)\]\((\S+?)(?<!\\)\)")  # markdown's "](url)", unescaped
    answer_text, title_line, quote = (b["text"] for b in card["body"])
    assert link.findall(answer_text) == [] and link.findall(quote) == []
    assert link.findall(title_line) == ["https://ok.example/doc"]  # the citation's own link


def test_a_refusal_has_no_citations_and_no_buttons() -> None:
    card = answer_card("No answer.", refusal(), FEEDBACK)
    assert len(card["body"]) == 1 and "actions" not in card


def test_feedback_data_stays_small() -> None:
    big = {**FEEDBACK, "q": "x" * 10_000}
    card = answer_card("a", _answer(Citation(1, "d:1", "T", "https://ok.example", "q")), big)
    data = card["actions"][0]["data"]
    assert len(json.dumps(data)) <= 2000 and data["vote"] == "up"
    assert [a["data"]["vote"] for a in card["actions"]] == ["up", "down"]
