"""Adaptive Cards for answers: the text, numbered citations (title links and quotes) and
feedback buttons (Action.Submit: Teams posts their data back as a message's `value`)."""

from __future__ import annotations

import json
from typing import Any

from assistant.citations import Answer

MAX_CITATIONS = 8
MAX_VALUE_CHARS = 2000


def _plain(text: str) -> str:
    """Text that Adaptive Card markdown shows as written (no links or emphasis of its own)."""
    for ch in "\\[]()*_`#>~":
        text = text.replace(ch, "\\" + ch)
    return text


def _link(title: str, url: str) -> str:
    if url.startswith(("https://", "http://")) and not any(c in url for c in " ()<>\"'"):
        return f"[{_plain(title)}]({url})"
    return _plain(title)


def answer_card(text: str, answer: Answer | None,
                feedback: dict[str, str] | None) -> dict[str, Any]:
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": _plain(text)[:4000],
                                   "wrap": True}]
    cited = answer is not None and not answer.refused
    if cited and answer is not None:
        for c in answer.citations[:MAX_CITATIONS]:
            body.append({"type": "TextBlock", "wrap": True, "spacing": "Medium",
                         "text": f"\\[{c.n}\\] {_link((c.title or c.doc_id)[:200], c.url)}"})
            if c.quote:
                body.append({"type": "TextBlock", "wrap": True, "isSubtle": True,
                             "size": "Small", "spacing": "None",
                             "text": _plain(c.quote[:400])})
    card: dict[str, Any] = {"type": "AdaptiveCard", "version": "1.4", "body": body,
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json"}
    if cited and feedback is not None:
        data = dict(feedback)
        while len(json.dumps(data)) > MAX_VALUE_CHARS and data.get("q"):
            data["q"] = data["q"][: len(data["q"]) // 2]
        card["actions"] = [
            {"type": "Action.Submit", "title": "Helpful", "data": {**data, "vote": "up"}},
            {"type": "Action.Submit", "title": "Not helpful", "data": {**data, "vote": "down"}}]
    return card
