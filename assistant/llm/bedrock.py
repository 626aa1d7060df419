"""Amazon Bedrock through boto3's bedrock-runtime Converse and ConverseStream.

Credentials come from the standard AWS chain (environment, profiles, SSO, instance and task
roles); `endpoint_url` points at a VPC endpoint or, in tests, at emulators/bedrock.py (trusted
through `ca_bundle`). Throttling and unavailability are retried here with bounded, doubling
delays (botocore's own retries are off, so the bound is ours alone); every other failure becomes
a one-line ProviderError. The model sees only the ACL-filtered sources, numbered, as data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from assistant.llm.base import DraftDone, DraftEvent, Source, TextDelta, Turn, Usage
from assistant.llm.prompt import SYSTEM_PROMPT, escape, user_prompt  # noqa: F401 (re-exported)
from core.errors import ConfigError, ProviderError
from core.settings import LlmSettings

RETRIED = frozenset({"ThrottlingException", "ServiceUnavailableException",
                     "ModelNotReadyException", "throttlingException",
                     "serviceUnavailableException"})


@dataclass(frozen=True)
class BedrockConfig:
    model_id: str
    region: str
    endpoint_url: str | None = None
    ca_bundle: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    max_retries: int = 4
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 8.0
    timeout_seconds: float = 60.0
    stream: bool = True


class BedrockProvider:
    name = "bedrock"

    def __init__(self, config: BedrockConfig, *, session: Any | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._client = _client(config, session)

    def request(self, question: str, sources: Sequence[Source],
                history: Sequence[Turn]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [
            {"role": t.role, "content": [{"text": t.text}]} for t in history if t.text]
        messages.append({"role": "user", "content": [{"text": user_prompt(question, sources)}]})
        return {"modelId": self.config.model_id, "messages": messages,
                "system": [{"text": SYSTEM_PROMPT}],
                "inferenceConfig": {"maxTokens": self.config.max_tokens,
                                    "temperature": self.config.temperature}}

    def stream(self, question: str, sources: Sequence[Source],
               history: Sequence[Turn] = ()) -> Iterator[DraftEvent]:
        request = self.request(question, sources, history)
        if not self.config.stream:
            yield from self._converse(request)
            return
        response = self._call(self._client.converse_stream, request)
        yield from self._events(response["stream"])

    def _converse(self, request: dict[str, Any]) -> Iterator[DraftEvent]:
        response = self._call(self._client.converse, request)
        content = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        if text:
            yield TextDelta(text)
        yield DraftDone(_usage(response.get("usage")), str(response.get("stopReason", "")))

    def _events(self, stream: Any) -> Iterator[DraftEvent]:
        usage, stop = Usage(), "end_turn"
        try:
            for event in stream:
                if "contentBlockDelta" in event:
                    text = event["contentBlockDelta"].get("delta", {}).get("text")
                    if text:
                        yield TextDelta(str(text))
                elif "messageStop" in event:
                    stop = str(event["messageStop"].get("stopReason", stop))
                elif "metadata" in event:
                    usage = _usage(event["metadata"].get("usage"))
        except ClientError as exc:  # an exception frame in the stream
            raise ProviderError(_describe(exc)) from None
        except BotoCoreError as exc:
            raise ProviderError(f"Bedrock stream failed: {type(exc).__name__}") from None
        yield DraftDone(usage, stop)

    def _call(self, method: Callable[..., Any], request: dict[str, Any]) -> Any:
        delay = self.config.retry_base_seconds
        for attempt in range(self.config.max_retries + 1):
            try:
                return method(**request)
            except ClientError as exc:
                if _code(exc) not in RETRIED or attempt == self.config.max_retries:
                    raise ProviderError(_describe(exc)) from None
            except BotoCoreError as exc:  # no credentials, unreachable endpoint, bad TLS
                raise ProviderError(f"Bedrock is unreachable or misconfigured: "
                                    f"{type(exc).__name__}") from None
            self._sleep(min(delay, self.config.retry_max_seconds))
            delay *= 2
        raise AssertionError("unreachable")  # the loop returns or raises


def bedrock_provider(llm: LlmSettings, base_dir: Path) -> BedrockProvider:
    """The provider [llm] describes (ConfigError: no model or no region)."""
    model = llm.inference_profile or llm.model_id
    if not model:
        raise ConfigError("[llm] provider 'bedrock' needs model_id (or inference_profile)")
    if not llm.region:
        raise ConfigError("[llm] provider 'bedrock' needs region")
    ca_bundle = None
    if llm.ca_bundle:
        path = Path(llm.ca_bundle).expanduser()
        ca_bundle = str(path if path.is_absolute() else base_dir / path)
        if not Path(ca_bundle).is_file():
            raise ConfigError(f"[llm] ca_bundle {ca_bundle} is not a file")
    return BedrockProvider(BedrockConfig(
        model_id=model, region=llm.region, endpoint_url=llm.endpoint_url, ca_bundle=ca_bundle,
        temperature=llm.temperature, max_tokens=llm.max_tokens, max_retries=llm.max_retries,
        retry_base_seconds=llm.retry_base_seconds, retry_max_seconds=llm.retry_max_seconds,
        timeout_seconds=llm.timeout_seconds, stream=llm.stream))


def _client(config: BedrockConfig, session: Any | None) -> Any:
    botocore_config = Config(
        retries={"total_max_attempts": 1},  # ours are bounded and counted in _call
        read_timeout=config.timeout_seconds, connect_timeout=min(10.0, config.timeout_seconds),
        user_agent_extra="clearance")
    verify: bool | str = config.ca_bundle or True
    try:
        return (session or boto3.session.Session()).client(
            "bedrock-runtime", region_name=config.region, endpoint_url=config.endpoint_url,
            verify=verify, config=botocore_config)
    except Exception as exc:  # botocore raises several types for a bad region or endpoint
        raise ConfigError(f"[llm] cannot set up the Bedrock client: {type(exc).__name__}") \
            from None


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: Any) -> str:
    code = _code(exc) or "error"
    message = " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())[:200]
    what = {"ThrottlingException": "Bedrock is throttling requests (retries exhausted)",
            "ServiceUnavailableException": "Bedrock is unavailable (retries exhausted)",
            "AccessDeniedException": "access to the Bedrock model was denied",
            "ResourceNotFoundException": "the Bedrock model was not found",
            "ValidationException": "Bedrock rejected the request",
            "ModelErrorException": "the Bedrock model failed"}.get(code, f"Bedrock failed ({code})")
    return f"{what}: {message}" if message else what


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(int(raw.get("inputTokens") or 0), int(raw.get("outputTokens") or 0))
