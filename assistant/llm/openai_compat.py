"""An OpenAI-compatible chat endpoint (vLLM, Ollama, LiteLLM, ...), over plain HTTP (requests).

`POST {base_url}/chat/completions` with `stream: true`: the answer arrives as server-sent
events (`data: {json}` lines, a blank line after each event, `data: [DONE]` last); each chunk's
`choices[0].delta.content` is a text delta, `finish_reason` the stop reason and the final
chunk's `usage` (asked for with `stream_options.include_usage`) the token counts. With
`[llm] stream = false` one JSON answer is read instead.

The prompt is the Bedrock provider's (assistant.llm.prompt): the rules as the system message,
the earlier turns, then the numbered ACL-filtered sources and the question; citation
validation applies afterwards as for every provider. HTTP 429 and 5xx (and a refused
connection) are retried with bounded, doubling delays that honour `Retry-After` up to
`retry_max_seconds`, only before the first byte of an answer; every other failure, and a
stream that breaks or ends early, is a one-line ProviderError. The API key (from the variable
`api_key_env` names) is sent as `Authorization: Bearer` and appears in no message or log.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from assistant.llm.base import DraftDone, DraftEvent, Source, TextDelta, Turn, Usage
from assistant.llm.prompt import SYSTEM_PROMPT, user_prompt
from core.errors import ConfigError, ProviderError
from core.redact import redact_text
from core.settings import LlmSettings

RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# OpenAI finish reasons in the vocabulary of Bedrock's stopReason (what the audit records).
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "content_filtered",
                "tool_calls": "tool_use", "function_call": "tool_use"}
NAME = "the OpenAI-compatible endpoint"
MAX_LINE = 1024 * 1024  # one event line; a chunk of a few tokens is far below it
MAX_STREAM = 32 * 1024 * 1024  # a whole stream (max_tokens bounds a server that behaves)


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str  # up to and including /v1
    model: str
    api_key: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    max_retries: int = 4
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 8.0
    timeout_seconds: float = 60.0
    stream: bool = True


class OpenAICompatProvider:
    name = "openai"

    def __init__(self, config: OpenAIConfig, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._session = session or requests.Session()
        self._session.trust_env = False  # no proxy or netrc from the environment
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.usage_in_stream = True  # false once the server refused stream_options

    def request(self, question: str, sources: Sequence[Source],
                history: Sequence[Turn] = ()) -> dict[str, Any]:
        messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += [{"role": t.role, "content": t.text} for t in history if t.text]
        messages.append({"role": "user", "content": user_prompt(question, sources)})
        body: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                "temperature": self.config.temperature,
                                "max_tokens": self.config.max_tokens,
                                "stream": self.config.stream}
        if self.config.stream and self.usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def stream(self, question: str, sources: Sequence[Source],
               history: Sequence[Turn] = ()) -> Iterator[DraftEvent]:
        response = self._post(self.request(question, sources, history))
        try:
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if kind == "text/event-stream":
                yield from self._events(response)
            else:  # stream = false, or a server that answered a stream request whole
                yield from self._whole(response)
        finally:
            response.close()

    # -- HTTP ------------------------------------------------------------------------------
    def _post(self, body: dict[str, Any]) -> requests.Response:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"
                   if self.config.stream else "application/json",
                   "User-Agent": "clearance"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        delay = self.config.retry_base_seconds
        timeout = (min(10.0, self.config.timeout_seconds), self.config.timeout_seconds)
        attempt = 0
        while True:
            last = attempt >= self.config.max_retries
            try:
                response = self._session.post(self.url, json=body, headers=headers,
                                              timeout=timeout, stream=True,
                                              verify=self.config.ca_bundle or True,
                                              allow_redirects=False)
            except requests.exceptions.SSLError:
                raise ProviderError(f"{NAME} failed the TLS check (is ca_bundle right?)") \
                    from None
            except requests.exceptions.ConnectionError:
                if last:
                    raise ProviderError(f"{NAME} is unreachable at {self._where()} "
                                        "(retries exhausted)") from None
                wait = delay
            except requests.exceptions.Timeout:
                raise ProviderError(f"{NAME} did not answer within "
                                    f"{self.config.timeout_seconds:g}s") from None
            except requests.exceptions.RequestException as exc:
                raise ProviderError(f"{NAME} request failed: {type(exc).__name__}") from None
            else:
                if response.status_code == 200:
                    return response
                if response.status_code not in RETRIED_STATUS or last:
                    text = _read_small(response)
                    response.close()
                    if response.status_code in (400, 422) and "stream_options" in body \
                            and "stream_options" in text:
                        # An older server that refuses the field: ask again without it (no
                        # usage figures from it then), and never send it to this one again.
                        self.usage_in_stream = False
                        body = {k: v for k, v in body.items() if k != "stream_options"}
                        continue
                    raise ProviderError(self._describe(response.status_code, text))
                wait = _retry_after(response.headers.get("Retry-After"), delay)
                response.close()
            self._sleep(min(wait, self.config.retry_max_seconds))
            delay *= 2
            attempt += 1

    def _where(self) -> str:
        return redact_text(self.config.base_url)

    def _describe(self, status: int, body: str) -> str:
        what = {400: f"{NAME} rejected the request",
                401: f"{NAME} refused the API key",
                403: f"{NAME} refused access to the model",
                404: f"{NAME} has no model {self.config.model!r} (or no /chat/completions)",
                408: f"{NAME} timed out",
                413: f"{NAME} found the request too large",
                422: f"{NAME} rejected the request",
                429: f"{NAME} is rate-limiting requests (retries exhausted)"}.get(
                    status, f"{NAME} failed (retries exhausted)" if status in RETRIED_STATUS
                    else f"{NAME} failed")
        detail = self._clean(_error_message(body))
        return f"{what} (HTTP {status}): {detail}" if detail else f"{what} (HTTP {status})"

    def _clean(self, text: str) -> str:
        """One short line, no URL credentials and never the API key (a server may echo it)."""
        text = " ".join(text.split())[:200]
        if self.config.api_key and len(self.config.api_key) >= 3:
            text = text.replace(self.config.api_key, "***")
        return redact_text(text)

    # -- answers ---------------------------------------------------------------------------
    def _whole(self, response: requests.Response) -> Iterator[DraftEvent]:
        try:
            data = json.loads(_read_small(response, limit=8 * 1024 * 1024))
        except ValueError:
            raise ProviderError(f"{NAME} answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise ProviderError(f"{NAME} answered with an unexpected JSON shape")
        self._raise_error_object(data)
        choice = _first_choice(data)
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content = message.get("content") if isinstance(message, dict) else None
        if content is not None and not isinstance(content, str):
            raise ProviderError(f"{NAME} answered with an unexpected JSON shape")
        if content:
            yield TextDelta(content)
        yield DraftDone(_usage(data.get("usage")), _stop(choice.get("finish_reason")))

    def _events(self, response: requests.Response) -> Iterator[DraftEvent]:
        usage, stop, done = Usage(), None, False
        try:
            for data in _sse_data(_lines(response.iter_content(chunk_size=None))):
                if data.strip() == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise ProviderError(f"{NAME} sent a malformed stream "
                                        "(an event that is not JSON)") from None
                if not isinstance(chunk, dict):
                    raise ProviderError(f"{NAME} sent a malformed stream (an unexpected event)")
                self._raise_error_object(chunk)
                if chunk.get("usage"):
                    usage = _usage(chunk["usage"])
                choices = chunk.get("choices")
                if choices is None or choices == []:
                    continue
                choice = _first_choice(chunk)
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else None
                if text is not None and not isinstance(text, str):
                    raise ProviderError(f"{NAME} sent a malformed stream (content not text)")
                if text:
                    yield TextDelta(text)
                if choice.get("finish_reason"):
                    stop = _stop(choice["finish_reason"])
        except requests.exceptions.RequestException as exc:
            raise ProviderError(f"{NAME}'s stream broke off: {type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise ProviderError(f"{NAME} sent a malformed stream (not UTF-8)") from None
        if stop is None and not done:
            raise ProviderError(f"{NAME}'s stream ended before the answer did")
        yield DraftDone(usage, stop or "end_turn")

    def _raise_error_object(self, data: Mapping[str, Any]) -> None:
        """vLLM and LiteLLM report a failure midway as a chunk holding an `error` object."""
        error = data.get("error")
        if error:
            detail = self._clean(_error_message(json.dumps({"error": error})))
            raise ProviderError(f"the model failed: {detail}" if detail
                                else "the model failed")


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines as they arrive, ended by LF or CRLF (a CR split from its LF is still one end)."""
    buffer, total = b"", 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_STREAM:
            raise ProviderError(f"{NAME} sent a stream over {MAX_STREAM // (1024 * 1024)} MiB "
                                "(an answer is far smaller)")
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line.removesuffix(b"\r") for line in complete)
        if len(buffer) > MAX_LINE:
            raise ProviderError(f"{NAME} sent a malformed stream (a line over "
                                f"{MAX_LINE // 1024} KiB)")
    if buffer:
        yield buffer.removesuffix(b"\r")


def _sse_data(lines: Iterator[bytes]) -> Iterator[str]:
    """The data of each server-sent event: `data:` lines joined by newlines, dispatched at a
    blank line (or the end); comments (`:`), `event:`, `id:` and `retry:` are skipped."""
    parts: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8")
        if not line:
            if parts:
                yield "\n".join(parts)
                parts = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            parts.append(value[1:] if value.startswith(" ") else value)
    if parts:
        yield "\n".join(parts)


def _first_choice(data: Mapping[str, Any]) -> dict[str, Any]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderError(f"{NAME} answered without a choice")
    first: dict[str, Any] = choices[0]
    return first


def _stop(reason: Any) -> str:
    if not isinstance(reason, str) or not reason:
        return "end_turn"
    return STOP_REASONS.get(reason, reason[:40])


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
            else 0

    return Usage(count("prompt_tokens"), count("completion_tokens"))


def _read_small(response: requests.Response, limit: int = 65_536) -> str:
    try:
        body = response.raw.read(limit, decode_content=True) if response.raw else b""
    except Exception:  # a body cut off midway: the status line already says enough
        return ""
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else ""


def _error_message(body: str) -> str:
    """The `error.message` of an OpenAI-style error body; plain text as it is; HTML dropped."""
    try:
        data = json.loads(body)
    except ValueError:
        return "" if "<" in body[:200] else body
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or "")
        if isinstance(error, str):
            return error
    return ""


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait: the server's Retry-After (seconds or an HTTP date) or our own delay."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else default
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return default


def openai_provider(llm: LlmSettings, base_dir: Path,
                    environ: Mapping[str, str]) -> OpenAICompatProvider:
    """The provider [llm] describes (ConfigError: no base_url or model, an unset key)."""
    if not llm.base_url:
        raise ConfigError("[llm] provider 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
    if not llm.model_id:
        raise ConfigError("[llm] provider 'openai' needs model_id (the served model's name)")
    parts = urlsplit(llm.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("[llm] base_url must be an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("[llm] base_url must not carry credentials, a query or a fragment "
                          "(the key goes in the variable api_key_env names)")
    api_key = None
    if llm.api_key_env:
        api_key = environ.get(llm.api_key_env)
        if not api_key:
            raise ConfigError(f"[llm] api_key_env names {llm.api_key_env}, which is not set")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            raise ConfigError("[llm] base_url is plain http to a host that is not loopback: "
                              "the API key would travel in clear; use https")
    ca_bundle = None
    if llm.ca_bundle:
        path = Path(llm.ca_bundle).expanduser()
        ca_bundle = str(path if path.is_absolute() else base_dir / path)
        if not Path(ca_bundle).is_file():
            raise ConfigError(f"[llm] ca_bundle {ca_bundle} is not a file")
    return OpenAICompatProvider(OpenAIConfig(
        base_url=llm.base_url, model=llm.model_id, api_key=api_key, ca_bundle=ca_bundle,
        temperature=llm.temperature, max_tokens=llm.max_tokens, max_retries=llm.max_retries,
        retry_base_seconds=llm.retry_base_seconds, retry_max_seconds=llm.retry_max_seconds,
        timeout_seconds=llm.timeout_seconds, stream=llm.stream))
