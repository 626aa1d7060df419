"""Whether a number the question names falls in the range a table row opens with: "Up to 10%",
"10.1% to 20%", "Above 30%", "$5,000.01 to $25,000", "over 2 years". A question about a 15%
discount is answered by the "10.1% to 20%" row, not by the first row that says "discount"."""

from __future__ import annotations

import math
import re

_NUMBER = r"[$€£]?\s?(\d[\d,]*(?:\.\d+)?)\s?(?:%|k\b)?"
_BETWEEN = re.compile(rf"^(?:from\s+|between\s+)?{_NUMBER}\s*(?:to|-|–|—|and)\s*{_NUMBER}",
                      re.IGNORECASE)
_UP_TO = re.compile(rf"^(?:up to|under|below|less than|at most|max(?:imum)?|<=?|≤)\s*{_NUMBER}",
                    re.IGNORECASE)
_ABOVE = re.compile(rf"^(?:above|over|more than|greater than|at least|from|>=?|≥)\s*{_NUMBER}",
                    re.IGNORECASE)
_IN_QUESTION = re.compile(
    r"([$€£])?\s?(\d[\d,]*(?:\.\d+)?)\s?(%|percent\b|dollars?\b|usd\b|euros?\b|eur\b|"
    r"pounds?\b|gbp\b)?", re.IGNORECASE)


def _value(text: str) -> float:
    return float(text.replace(",", ""))


def row_range(cell: str) -> tuple[float, float] | None:
    """The (low, high) a row's first cell stands for, or None."""
    cell = cell.strip()
    if m := _BETWEEN.match(cell):
        return _value(m.group(1)), _value(m.group(2))
    if m := _UP_TO.match(cell):
        return -math.inf, _value(m.group(1))
    if m := _ABOVE.match(cell):
        return _value(m.group(1)), math.inf
    return None


def _unit(text: str) -> str:
    """"%", "money" or "" (a count): a 15% discount is never in a "$5,000 to $25,000" row."""
    text = text.lower()
    if "%" in text or "percent" in text:
        return "%"
    if re.search(r"[$€£]|dollar|usd|euro|eur\b|pound|gbp", text):
        return "money"
    return ""


def numbers(question: str) -> list[tuple[float, str]]:
    """Each number of the question with its unit."""
    return [(_value(m.group(2)), _unit((m.group(1) or "") + (m.group(3) or "")))
            for m in _IN_QUESTION.finditer(question)]


def in_range(question: str, cell: str) -> bool | None:
    """True: a number of the question, in the row's unit, is in its range; False: none is;
    None: the row has no range or the question no number in that unit."""
    bounds = row_range(cell)
    unit = _unit(cell)
    asked = [x for x, u in numbers(question) if u == unit]
    if bounds is None or not asked:
        return None
    low, high = bounds
    return any(low <= x <= high for x in asked)
