"""Guardrails from `[guardrails]`, applied to the question before retrieval and to every checked
sentence of the answer before it reaches the person: blocked words and phrases, denied topics
(matched by embedding similarity to their description and examples), and personal data
(redacted or blocked per type).

An answer is screened sentence by sentence because it streams: a sentence that trips a block
rule is withheld (never sent), PII is redacted in the sentence and in its citation's quote.
Every intervention is an `Action` for the audit log; the person gets a message that names the
rule, never the blocked text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from core.settings import GuardrailSettings
from indexer.embedding import Embedder

PiiType = Literal["email", "phone", "credit_card", "iban", "us_ssn", "aws_access_key"]


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _iban_ok(raw: str) -> bool:
    iban = raw.replace(" ", "")
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return 15 <= len(iban) <= 34 and int(number) % 97 == 1


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@dataclass(frozen=True)
class Detector:
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = lambda _: True


# Order matters: a card number is checked before it can look like a phone number.
DETECTORS: dict[str, Detector] = {
    "aws_access_key": Detector(re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    "email": Detector(re.compile(
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    "iban": Detector(re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
                     _iban_ok),
    "credit_card": Detector(re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
                            lambda s: 13 <= len(_digits(s)) <= 19 and _luhn(_digits(s))),
    "us_ssn": Detector(re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    # 9 to 15 digits: dates (8 digits) and years are not phone numbers, nor is an SSN shape.
    "phone": Detector(re.compile(r"(?<![\w+])\+?\(?\d[\d ()./-]{7,18}\d(?!\w)"),
                      lambda s: 9 <= len(_digits(s)) <= 15
                      and not re.fullmatch(r"\d{3}-\d{2}-\d{4}", s)),  # SSN-shaped
}


class RemoteVerdictLike(Protocol):
    @property
    def text(self) -> str | None: ...
    @property
    def masked(self) -> bool: ...


class RemoteGuardrail(Protocol):
    """A guardrail service (assistant.llm.bedrock_guardrail.BedrockGuardrail)."""

    @property
    def rule(self) -> str: ...

    def apply(self, text: str, source: Literal["INPUT", "OUTPUT"]) -> RemoteVerdictLike: ...


@dataclass(frozen=True)
class Action:
    """One intervention, as the audit log records it (never the matched text)."""

    stage: Literal["question", "answer"]
    action: Literal["blocked", "redacted", "withheld"]
    rule: str  # "blocked_word", "denied_topic:<name>", "pii:<type>"

    def to_json(self) -> dict[str, str]:
        return {"stage": self.stage, "action": self.action, "rule": self.rule}


@dataclass(frozen=True)
class Verdict:
    text: str | None  # None: blocked
    actions: tuple[Action, ...] = ()
    message: str = ""


@dataclass
class DeniedTopic:
    name: str
    vectors: np.ndarray
    threshold: float


@dataclass
class Guardrails:
    blocked: re.Pattern[str] | None
    pii: dict[str, Literal["redact", "block"]]
    topics: list[DeniedTopic] = field(default_factory=list)
    embedder: Embedder | None = None
    # Amazon Bedrock Guardrails (ApplyGuardrail), after the local rules
    remote: RemoteGuardrail | None = None

    @classmethod
    def from_settings(cls, cfg: GuardrailSettings, embedder: Embedder) -> Guardrails:
        words = [w.strip() for w in cfg.blocked_words if w.strip()]
        blocked = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)",
                             re.IGNORECASE) if words else None
        topics = [DeniedTopic(t.name, embedder.embed([t.description, *t.examples]), t.threshold)
                  for t in cfg.denied_topics]
        return cls(blocked, {str(k): v for k, v in cfg.pii.items()}, topics,
                   embedder if topics else None)

    @property
    def active(self) -> bool:
        return bool(self.blocked or self.pii or self.topics or self.remote)

    def question(self, text: str) -> Verdict:
        if self.blocked is not None and self.blocked.search(text):
            return Verdict(None, (Action("question", "blocked", "blocked_word"),),
                           "This question contains a term that is not allowed here.")
        redacted, actions, blocked_by = self._pii(text, "question")
        if blocked_by:
            return Verdict(None, actions, "This question contains personal data "
                                          f"({blocked_by.replace('_', ' ')}) and was not sent.")
        topic = self._topic(redacted)
        if topic is not None:
            return Verdict(None, (*actions, Action("question", "blocked",
                                                   f"denied_topic:{topic}")),
                           f"Questions about {topic} are not answered here.")
        if self.remote is not None:
            remote = self.remote.apply(redacted, "INPUT")
            if remote.text is None:
                return Verdict(None, (*actions, Action("question", "blocked", self.remote.rule)),
                               "This question was stopped by the organisation's guardrail.")
            if remote.masked:
                actions = (*actions, Action("question", "redacted", self.remote.rule))
                redacted = remote.text
        return Verdict(redacted, actions)

    def sentence(self, text: str) -> Verdict:
        """One checked sentence of the answer: withheld, redacted or as it is."""
        if self.blocked is not None and self.blocked.search(text):
            return Verdict(None, (Action("answer", "withheld", "blocked_word"),))
        redacted, actions, blocked_by = self._pii(text, "answer")
        if blocked_by:
            return Verdict(None, (Action("answer", "withheld", f"pii:{blocked_by}"),))
        if self.remote is not None:
            remote = self.remote.apply(redacted, "OUTPUT")
            if remote.text is None:
                return Verdict(None, (*actions, Action("answer", "withheld", self.remote.rule)))
            if remote.masked:
                actions = (*actions, Action("answer", "redacted", self.remote.rule))
                redacted = remote.text
        return Verdict(redacted, actions)

    def quote(self, text: str) -> str:
        """A citation's quote with every configured PII type redacted (blocked types too)."""
        for name, detector in DETECTORS.items():
            if name in self.pii:
                text = _replace(detector, name, text)
        if self.remote is not None:
            remote = self.remote.apply(text, "OUTPUT")
            text = "[WITHHELD BY GUARDRAIL]" if remote.text is None else remote.text
        return text

    def _pii(self, text: str, stage: Literal["question", "answer"]
             ) -> tuple[str, tuple[Action, ...], str]:
        actions: list[Action] = []
        for name, detector in DETECTORS.items():
            mode = self.pii.get(name)
            if mode is None:
                continue
            found = _replace(detector, name, text)
            if found == text:
                continue
            if mode == "block":
                return text, (*actions, Action(stage, "blocked", f"pii:{name}")), name
            actions.append(Action(stage, "redacted", f"pii:{name}"))
            text = found
        return text, tuple(actions), ""

    def _topic(self, text: str) -> str | None:
        if not self.topics or self.embedder is None:
            return None
        vector = self.embedder.embed([text])[0]
        for topic in self.topics:
            if float(np.max(topic.vectors @ vector)) >= topic.threshold:
                return topic.name
        return None


def _replace(detector: Detector, name: str, text: str) -> str:
    label = f"[{name.upper()} REDACTED]"
    return detector.pattern.sub(lambda m: label if detector.valid(m.group()) else m.group(), text)


def from_settings(cfg: GuardrailSettings, embedder: Embedder,
                  remote: RemoteGuardrail | None = None) -> Guardrails | None:
    guard = Guardrails.from_settings(cfg, embedder)
    guard.remote = remote
    return guard if guard.active else None

