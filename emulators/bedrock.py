"""Amazon Bedrock Runtime on loopback: Converse and ConverseStream, shaped like the real API so
boto3 talks to it through `endpoint_url`, with a scripted model for tests.

    POST /model/{modelId}/converse          JSON: output.message, stopReason, usage, metrics
    POST /model/{modelId}/converse-stream   application/vnd.amazon.eventstream frames:
                                            messageStart, contentBlockDelta..., contentBlockStop,
                                            messageStop, metadata (usage)

Every request must carry SigV4 headers (`Authorization: AWS4-HMAC-SHA256 Credential=...,
SignedHeaders=..., Signature=...` and `X-Amz-Date`): checked for shape, not verified (403
UnrecognizedClientException otherwise). Errors are the real ones: a JSON `{"message"}` body with
`x-amzn-ErrorType` (ValidationException 400, ResourceNotFoundException 404,
ModelErrorException 424, ThrottlingException 429, ServiceUnavailableException 503); throttling
is an ordinary fault, e.g. `Fault("/model/*", status=429, body=throttling_body())`.

The scripted model (deterministic) reads the prompt assistant.llm.bedrock writes: numbered
`<source n="..">` blocks and a `<question>`, and answers with the sentence of the sources that
shares most words with the question, followed by its `[n]`; with no overlap it says the sources
do not contain the answer. Tenant (all keys optional):

    {
      "models": ["anthropic.claude-3-haiku-20240307-v1:0"],   # ids accepted (absent: any)
      "chunk_size": 16,                                       # characters per stream delta
      "replies": [                                            # first match wins
        {"when": "vault", "text": "The code is 1234 [9]."},   # `when`: substring of the question
        {"when": "*", "error": "ModelErrorException", "message": "model failed", "times": 1},
        {"when": "boom", "text": "Half an ans", "stream_error": "modelStreamErrorException"}
      ]
    }

`times` (default: unlimited) counts uses of a reply.

    POST /guardrail/{id}/version/{version}/apply   ApplyGuardrail: tenant "guardrails":
        {"gr-1": {"versions": ["1", "DRAFT"], "blocked_words": ["nightjar"],
                  "anonymize_emails": true, "message": "Sorry, I cannot help with that."}}
      a blocked word (case-insensitive, in the INPUT or OUTPUT text) intervenes with the
      message as the output; an email address with anonymize_emails intervenes with the text
      masked as {EMAIL}; otherwise action NONE. Unknown id or version:
      ResourceNotFoundException. `GET /_admin/requests` returns the bodies
of the Converse requests seen (tests read the system prompt and the history the provider sent).
"""

from __future__ import annotations

import binascii
import json
import re
import struct
from typing import ClassVar

from emulators.base import Emulator, JsonObject, Request, Response

EVENTSTREAM = "application/vnd.amazon.eventstream"
STATUS = {"ValidationException": 400, "AccessDeniedException": 403,
          "UnrecognizedClientException": 403, "ResourceNotFoundException": 404,
          "ModelTimeoutException": 408, "ModelErrorException": 424,
          "ThrottlingException": 429, "InternalServerException": 500,
          "ServiceUnavailableException": 503, "ModelNotReadyException": 429}
_SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/\s]+/\d{8}/[\w-]+/[\w-]+/aws4_request, ?"
                    r"SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$")
_SOURCE = re.compile(r'<source n="(\d+)"[^>]*>\n?(.*?)\n?</source>', re.DOTALL)
_QUESTION = re.compile(r"<question>\n?(.*?)\n?</question>", re.DOTALL)
_WORD = re.compile(r"\w+")
NO_ANSWER = "The sources do not contain the answer to this question."


# -- AWS event stream framing ------------------------------------------------------------------

def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # type 7: a string with a 2-byte length
    return (struct.pack("!B", len(raw_name)) + raw_name + b"\x07"
            + struct.pack("!H", len(raw_value)) + raw_value)


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32 of those 8
    bytes), headers, payload, CRC32 of everything before it (what botocore checks)."""
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + raw_headers + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def event_frame(event_type: str, body: JsonObject) -> bytes:
    return encode_frame({":event-type": event_type, ":content-type": "application/json",
                         ":message-type": "event"}, json.dumps(body).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    return encode_frame({":exception-type": exception_type, ":content-type": "application/json",
                         ":message-type": "exception"}, json.dumps({"message": message}).encode())


def aws_error(code: str, message: str) -> Response:
    return Response.json({"message": message}, STATUS.get(code, 400),
                         {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/"})


def throttling_body() -> JsonObject:
    """A fault body botocore reads as ThrottlingException."""
    return {"__type": "ThrottlingException", "message": "Too many requests, please wait."}


# -- the scripted model ------------------------------------------------------------------------

def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if len(w) > 3}


def scripted_answer(prompt: str) -> str:
    """The sentence of the prompt's sources sharing most words with its question, cited."""
    question = _QUESTION.search(prompt)
    wanted = _words(question.group(1)) if question else set()
    best, best_n, best_overlap = "", 0, 0
    for m in _SOURCE.finditer(prompt):
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", m.group(2)):
            overlap = len(wanted & _words(sentence))
            if overlap > best_overlap:
                best, best_n, best_overlap = sentence.strip(), int(m.group(1)), overlap
    return f"{best} [{best_n}]" if best else NO_ANSWER


def _prompt_text(body: JsonObject) -> str:
    """The text of the last user message."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return "".join(str(c.get("text", "")) for c in message.get("content") or []
                           if isinstance(c, dict))
    return ""


def _all_text(body: JsonObject) -> str:
    parts = [str(s.get("text", "")) for s in body.get("system") or [] if isinstance(s, dict)]
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            parts += [str(c.get("text", "")) for c in message.get("content") or []
                      if isinstance(c, dict)]
    return "\n".join(parts)


class BedrockEmulator(Emulator):
    name: ClassVar[str] = "bedrock"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        self.requests: list[JsonObject] = []
        self._uses: dict[int, int] = {}
        super().__init__(tenant)

    def validate(self, tenant: JsonObject) -> None:
        unknown = set(tenant) - {"models", "chunk_size", "replies", "guardrails"}
        if unknown:
            raise ValueError(f"unknown tenant key(s) {sorted(unknown)}")
        chunk = tenant.get("chunk_size", 16)
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError("chunk_size is a positive integer")
        models = tenant.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ValueError("models is a list of model ids")
        replies = tenant.get("replies", [])
        if not isinstance(replies, list) or not all(
                isinstance(r, dict) and isinstance(r.get("when", "*"), str) for r in replies):
            raise ValueError("replies is a list of objects with a 'when' string")
        guardrails = tenant.get("guardrails", {})
        if not isinstance(guardrails, dict) or not all(
                isinstance(g, dict) for g in guardrails.values()):
            raise ValueError("guardrails maps a guardrail id to an object")

    def setup(self) -> None:
        self.route("POST", "/model/{model_id}/converse", self.converse)
        self.route("POST", "/model/{model_id}/converse-stream", self.converse_stream)
        self.route("POST", "/guardrail/{guardrail_id}/version/{version}/apply",
                   self.apply_guardrail)

    def admin(self, request: Request, rest: str) -> Response | None:
        if rest == "requests" and request.method == "GET":
            return Response.json({"requests": self.requests})
        return None

    # -- API -------------------------------------------------------------------------------
    def converse(self, request: Request) -> Response:
        problem, body = self._accept(request)
        if problem is not None:
            return problem
        reply = self._reply(body)
        if "error" in reply:
            return aws_error(str(reply["error"]), str(reply.get("message", reply["error"])))
        text = str(reply["text"])
        return Response.json({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": str(reply.get("stop_reason", "end_turn")),
            "usage": self._usage(body, text), "metrics": {"latencyMs": 1}})

    def converse_stream(self, request: Request) -> Response:
        problem, body = self._accept(request)
        if problem is not None:
            return problem
        reply = self._reply(body)
        if "error" in reply:
            return aws_error(str(reply["error"]), str(reply.get("message", reply["error"])))
        text, size = str(reply["text"]), int(self.tenant.get("chunk_size", 16))
        frames = [event_frame("messageStart", {"role": "assistant"})]
        frames += [event_frame("contentBlockDelta", {"contentBlockIndex": 0,
                                                     "delta": {"text": text[i:i + size]}})
                   for i in range(0, len(text), size)]
        if "stream_error" in reply:
            frames.append(exception_frame(str(reply["stream_error"]), "the model failed midway"))
        else:
            frames += [event_frame("contentBlockStop", {"contentBlockIndex": 0}),
                       event_frame("messageStop",
                                   {"stopReason": str(reply.get("stop_reason", "end_turn"))}),
                       event_frame("metadata", {"usage": self._usage(body, text),
                                                "metrics": {"latencyMs": 1}})]
        return Response(200, b"".join(frames), {"Content-Type": EVENTSTREAM})

    def apply_guardrail(self, request: Request) -> Response:
        if not _SIGV4.match(request.headers.get("authorization", "")) \
                or "x-amz-date" not in request.headers:
            return aws_error("UnrecognizedClientException",
                             "The security token included in the request is invalid.")
        guardrail = (self.tenant.get("guardrails") or {}).get(request.params["guardrail_id"])
        if not isinstance(guardrail, dict) or request.params["version"] not in \
                [str(v) for v in guardrail.get("versions", ["DRAFT", "1"])]:
            return aws_error("ResourceNotFoundException", "The guardrail was not found.")
        try:
            body = request.json()
        except ValueError:
            body = None
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(body, dict) or body.get("source") not in ("INPUT", "OUTPUT") \
                or not isinstance(content, list) or not content:
            return aws_error("ValidationException", "source and content are required")
        self.requests.append({"guardrail": request.params["guardrail_id"], **body})
        text = "\n".join(str((c.get("text") or {}).get("text", "")) for c in content
                         if isinstance(c, dict) and isinstance(c.get("text"), dict))
        usage = {"topicPolicyUnits": 0, "contentPolicyUnits": 0, "wordPolicyUnits": 1,
                 "sensitiveInformationPolicyUnits": 1, "sensitiveInformationPolicyFreeUnits": 0,
                 "contextualGroundingPolicyUnits": 0}
        words = [str(w) for w in guardrail.get("blocked_words", [])
                 if str(w).lower() in text.lower()]
        if words:
            return Response.json({
                "usage": usage, "action": "GUARDRAIL_INTERVENED",
                "outputs": [{"text": str(guardrail.get("message", "Blocked."))}],
                "assessments": [{"wordPolicy": {"customWords": [
                    {"match": w, "action": "BLOCKED", "detected": True} for w in words]}}]})
        email = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
        if guardrail.get("anonymize_emails") and email.search(text):
            return Response.json({
                "usage": usage, "action": "GUARDRAIL_INTERVENED",
                "outputs": [{"text": email.sub("{EMAIL}", text)}],
                "assessments": [{"sensitiveInformationPolicy": {"piiEntities": [
                    {"match": "", "type": "EMAIL", "action": "ANONYMIZED", "detected": True}]}}]})
        return Response.json({"usage": usage, "action": "NONE", "outputs": [],
                              "assessments": [{}]})

    # -- helpers ---------------------------------------------------------------------------
    def _accept(self, request: Request) -> tuple[Response | None, JsonObject]:
        if not _SIGV4.match(request.headers.get("authorization", "")) \
                or "x-amz-date" not in request.headers:
            return aws_error("UnrecognizedClientException",
                             "The security token included in the request is invalid."), {}
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                or not body["messages"]:
            return aws_error("ValidationException", "messages: a non-empty list is required"), {}
        models = self.tenant.get("models") or []
        if models and request.params["model_id"] not in models:
            return aws_error("ResourceNotFoundException", "Model not found."), {}
        self.requests.append({"model_id": request.params["model_id"], **body})
        return None, body

    def _reply(self, body: JsonObject) -> JsonObject:
        prompt = _prompt_text(body)
        question = _QUESTION.search(prompt)
        asked = (question.group(1) if question else prompt).lower()
        for i, reply in enumerate(self.tenant.get("replies") or []):
            when = str(reply.get("when", "*"))
            times = reply.get("times")
            if times is not None and self._uses.get(i, 0) >= int(times):
                continue
            if when == "*" or when.lower() in asked:
                self._uses[i] = self._uses.get(i, 0) + 1
                return dict(reply) if "error" in reply or "text" in reply \
                    else {**reply, "text": scripted_answer(prompt)}
        return {"text": scripted_answer(prompt)}

    @staticmethod
    def _usage(body: JsonObject, text: str) -> JsonObject:
        # A token is a word here: deterministic, and enough to check usage is carried through.
        inputs, outputs = len(_WORD.findall(_all_text(body))), len(_WORD.findall(text))
        return {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs}

