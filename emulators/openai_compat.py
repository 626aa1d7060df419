"""An OpenAI-compatible chat endpoint on loopback (what vLLM, Ollama and LiteLLM serve), with
the scripted model of emulators/bedrock.py, for assistant/llm/openai_compat.py's tests.

    POST /v1/chat/completions   `stream: false`: one JSON chat.completion (choices[0].message,
                                finish_reason, usage); `stream: true`: text/event-stream,
                                `data: {chat.completion.chunk}` events (role, content deltas,
                                finish_reason, then usage when `stream_options.include_usage`)
                                and `data: [DONE]`
    GET  /v1/models             the tenant's models

With tenant `api_keys`, a request needs `Authorization: Bearer <one of them>` (401
`invalid_api_key` otherwise). Errors are OpenAI's shape, `{"error": {"message", "type",
"code"}}`: 400 invalid_request_error, 401, 404 model_not_found, 429 rate_limit_exceeded, 500,
503. Throttling is an ordinary fault, e.g. `Fault("/v1/*", status=429, retry_after="0",
body=rate_limit_body())`.

Tenant (all keys optional):

    {
      "models": ["llama-3.1-8b-instruct"],          # names accepted (absent: any)
      "api_keys": ["sk-local-test"],                 # absent: no key needed
      "chunk_size": 16,                              # characters per stream delta
      "strict_fields": false,                        # true: 400 for stream_options (old servers)
      "replies": [                                   # first match wins (as in bedrock.py)
        {"when": "vault", "text": "The code is 1234 [9]."},
        {"when": "*", "error": 500, "message": "model crashed", "times": 1},
        {"when": "long", "finish_reason": "length"},
        {"when": "boom", "text": "Half an ans", "stream": "malformed" | "truncated" | "error"}
      ]
    }

`stream` breaks a streamed answer after its text: `malformed` sends an event that is not JSON,
`truncated` ends the body with no finish_reason and no [DONE], `error` sends a chunk holding an
`error` object (how vLLM reports a failure midway). `GET /_admin/requests` returns the bodies
of the chat requests seen, with the Authorization header's scheme (never the key).
"""

from __future__ import annotations

import json
import re
import time
from typing import ClassVar

from emulators.base import Emulator, JsonObject, Request, Response
from emulators.bedrock import scripted_answer

_WORD = re.compile(r"\w+")
ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
          404: ("invalid_request_error", "model_not_found"),
          429: ("rate_limit_exceeded", "rate_limit_exceeded"), 500: ("server_error", None),
          503: ("server_error", None)}


def openai_error(status: int, message: str) -> Response:
    kind, code = ERRORS.get(status, ("server_error", None))
    return Response.json({"error": {"message": message, "type": kind, "param": None,
                                    "code": code}}, status)


def rate_limit_body() -> JsonObject:
    return {"error": {"message": "Rate limit reached, please retry.",
                      "type": "rate_limit_exceeded", "param": None,
                      "code": "rate_limit_exceeded"}}


def sse(data: JsonObject | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


def _prompt(body: JsonObject) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


class OpenAICompatEmulator(Emulator):
    name: ClassVar[str] = "openai"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        self.requests: list[JsonObject] = []
        self._uses: dict[int, int] = {}
        super().__init__(tenant)

    def validate(self, tenant: JsonObject) -> None:
        unknown = set(tenant) - {"models", "api_keys", "chunk_size", "replies",
                                 "strict_fields"}
        if unknown:
            raise ValueError(f"unknown tenant key(s) {sorted(unknown)}")
        chunk = tenant.get("chunk_size", 16)
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError("chunk_size is a positive integer")
        for key in ("models", "api_keys"):
            value = tenant.get(key, [])
            if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
                raise ValueError(f"{key} is a list of strings")
        replies = tenant.get("replies", [])
        if not isinstance(replies, list) or not all(
                isinstance(r, dict) and isinstance(r.get("when", "*"), str) for r in replies):
            raise ValueError("replies is a list of objects with a 'when' string")
        for r in replies:
            if r.get("stream") not in (None, "malformed", "truncated", "error"):
                raise ValueError("a reply's stream is malformed, truncated or error")

    def setup(self) -> None:
        self.route("POST", "/v1/chat/completions", self.chat)
        self.route("GET", "/v1/models", self.models)

    def admin(self, request: Request, rest: str) -> Response | None:
        if rest == "requests" and request.method == "GET":
            return Response.json({"requests": self.requests})
        return None

    # -- API -------------------------------------------------------------------------------
    def models(self, request: Request) -> Response:
        problem = self._authorize(request)
        if problem is not None:
            return problem
        return Response.json({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "emulator"}
            for m in self.tenant.get("models") or []]})

    def chat(self, request: Request) -> Response:
        problem = self._authorize(request)
        if problem is not None:
            return problem
        try:
            body = request.json()
        except ValueError:
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                or not body["messages"] or not isinstance(body.get("model"), str):
            return openai_error(400, "'model' and a non-empty 'messages' are required")
        if self.tenant.get("strict_fields"):  # how older vLLM/LiteLLM refuse a new field
            extra = sorted(set(body) - {"model", "messages", "temperature", "max_tokens",
                                        "stream"})
            if extra:
                return openai_error(400, f"extra fields not permitted: {', '.join(extra)}")
        models = self.tenant.get("models") or []
        if models and body["model"] not in models:
            return openai_error(404, f"The model `{body['model']}` does not exist.")
        auth = request.headers.get("authorization", "")
        self.requests.append({**body, "auth_scheme": auth.split(" ")[0] if auth else None})
        reply = self._reply(body)
        if "error" in reply:
            return openai_error(int(reply["error"]), str(reply.get("message", "error")))
        text = str(reply["text"])
        finish = str(reply.get("finish_reason", "stop"))
        usage = self._usage(body, text)
        created, ident = int(time.time()), f"chatcmpl-{len(self.requests)}"
        if not body.get("stream"):
            return Response.json({
                "id": ident, "object": "chat.completion", "created": created,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": text}}],
                "usage": usage})

        def chunk(delta: JsonObject, finish_reason: str | None = None) -> bytes:
            return sse({"id": ident, "object": "chat.completion.chunk", "created": created,
                        "model": body["model"], "choices": [
                            {"index": 0, "delta": delta, "finish_reason": finish_reason}]})

        size = int(self.tenant.get("chunk_size", 16))
        frames = [b": keep-alive\n\n", chunk({"role": "assistant", "content": ""})]
        frames += [chunk({"content": text[i:i + size]}) for i in range(0, len(text), size)]
        broken = reply.get("stream")
        if broken == "malformed":
            frames.append(b'data: {"choices": [{"delta": {"content": "x"\n\n')
        elif broken == "error":
            frames.append(sse({"error": {"message": "the model failed midway",
                                         "type": "server_error", "code": 500}}))
        elif broken != "truncated":
            frames.append(chunk({}, finish))
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                frames.append(sse({"id": ident, "object": "chat.completion.chunk",
                                   "created": created, "model": body["model"], "choices": [],
                                   "usage": usage}))
            frames.append(sse("[DONE]"))
        return Response(200, b"".join(frames), {"Content-Type": "text/event-stream",
                                                "Cache-Control": "no-cache"})

    # -- helpers ---------------------------------------------------------------------------
    def _authorize(self, request: Request) -> Response | None:
        keys = self.tenant.get("api_keys") or []
        if keys and request.bearer not in keys:
            return openai_error(401, "Incorrect API key provided.")
        return None

    def _reply(self, body: JsonObject) -> JsonObject:
        prompt = _prompt(body)
        question = re.search(r"<question>\n?(.*?)\n?</question>", prompt, re.DOTALL)
        asked = (question.group(1) if question else prompt).lower()
        for i, reply in enumerate(self.tenant.get("replies") or []):
            times = reply.get("times")
            if times is not None and self._uses.get(i, 0) >= int(times):
                continue
            when = str(reply.get("when", "*"))
            if when == "*" or when.lower() in asked:
                self._uses[i] = self._uses.get(i, 0) + 1
                return dict(reply) if "error" in reply or "text" in reply \
                    else {**reply, "text": scripted_answer(prompt)}
        return {"text": scripted_answer(prompt)}

    @staticmethod
    def _usage(body: JsonObject, text: str) -> JsonObject:
        # A token is a word here, as in the Bedrock emulator.
        sent = "\n".join(str(m.get("content", "")) for m in body.get("messages") or []
                         if isinstance(m, dict))
        prompt, completion = len(_WORD.findall(sent)), len(_WORD.findall(text))
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}
