"""Amazon Bedrock Guardrails through bedrock-runtime ApplyGuardrail (`[llm] guardrail_id` and
`guardrail_version`), applied to the question (source INPUT) and to every checked sentence of the
answer (source OUTPUT), after the local guardrails.

An intervention that blocks stops the question before retrieval, or withholds the sentence; one
that masks (anonymized PII) replaces the text with the guardrail's output. The person never
sees the guardrail's own text or what it matched: only a fixed message naming the guardrail.
A failing guardrail call (throttled past the retries, unreachable, unknown guardrail) is a
ProviderError: fail closed, nothing unchecked is shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from assistant.llm.bedrock import RETRIED, BedrockConfig, _client, _code, _describe
from core.errors import ConfigError, ProviderError
from core.settings import LlmSettings


@dataclass(frozen=True)
class RemoteVerdict:
    text: str | None  # None: blocked; otherwise the (possibly masked) text
    intervened: bool
    masked: bool


class BedrockGuardrail:
    def __init__(self, guardrail_id: str, version: str, config: BedrockConfig, *,
                 session: Any | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.guardrail_id = guardrail_id
        self.version = version
        self.config = config
        self._sleep = sleep
        self._client = _client(config, session)

    @property
    def rule(self) -> str:
        return f"bedrock_guardrail:{self.guardrail_id}:{self.version}"

    def apply(self, text: str, source: Literal["INPUT", "OUTPUT"]) -> RemoteVerdict:
        response = self._call({"guardrailIdentifier": self.guardrail_id,
                               "guardrailVersion": self.version, "source": source,
                               "content": [{"text": {"text": text}}]})
        if not isinstance(response, dict) or response.get("action") not in (
                "NONE", "GUARDRAIL_INTERVENED"):
            raise ProviderError("Bedrock Guardrails gave an unreadable verdict")
        if response["action"] == "NONE":
            return RemoteVerdict(text, False, False)
        if _blocked(response.get("assessments")):
            return RemoteVerdict(None, True, False)
        outputs = response.get("outputs") or []
        masked = "".join(str(o.get("text", "")) for o in outputs if isinstance(o, dict))
        # An intervention without a readable masked text is treated as a block (fail closed).
        return RemoteVerdict(masked or None, True, bool(masked))

    def _call(self, request: dict[str, Any]) -> Any:
        delay = self.config.retry_base_seconds
        for attempt in range(self.config.max_retries + 1):
            try:
                return self._client.apply_guardrail(**request)
            except ClientError as exc:
                if _code(exc) not in RETRIED or attempt == self.config.max_retries:
                    raise ProviderError("Bedrock Guardrails: " + _describe(exc).replace(
                        "Bedrock model", "Bedrock guardrail")) from None
            except BotoCoreError as exc:
                raise ProviderError(f"Bedrock Guardrails is unreachable or misconfigured: "
                                    f"{type(exc).__name__}") from None
            self._sleep(min(delay, self.config.retry_max_seconds))
            delay *= 2
        raise AssertionError("unreachable")


def _blocked(assessments: Any) -> bool:
    """Whether any policy of the assessments BLOCKED (rather than masked)."""
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("action") == "BLOCKED" and node.get("detected", True) is not False:
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False
    return walk(assessments) or not isinstance(assessments, list)


def bedrock_guardrail(llm: LlmSettings, base_dir: Path) -> BedrockGuardrail | None:
    """The guardrail [llm] names, or None (ConfigError: id without version or no region)."""
    if not llm.guardrail_id and not llm.guardrail_version:
        return None
    if not llm.guardrail_id or not llm.guardrail_version:
        raise ConfigError("[llm] Bedrock Guardrails need both guardrail_id and "
                          "guardrail_version")
    if not llm.region:
        raise ConfigError("[llm] Bedrock Guardrails need region")
    ca_bundle = None
    if llm.ca_bundle:
        path = Path(llm.ca_bundle).expanduser()
        ca_bundle = str(path if path.is_absolute() else base_dir / path)
        if not Path(ca_bundle).is_file():
            raise ConfigError(f"[llm] ca_bundle {ca_bundle} is not a file")
    return BedrockGuardrail(llm.guardrail_id, llm.guardrail_version, BedrockConfig(
        model_id="", region=llm.region, endpoint_url=llm.endpoint_url, ca_bundle=ca_bundle,
        max_retries=llm.max_retries, retry_base_seconds=llm.retry_base_seconds,
        retry_max_seconds=llm.retry_max_seconds, timeout_seconds=llm.timeout_seconds))
