"""The OpenAI-compatible provider through real requests against emulators/openai_compat.py on
loopback (TLS with the emulator's throwaway CA): SSE streaming, usage and stop reason, the
prompt and history it sends, retried 429/5xx with bounded delays, and every way the endpoint
can fail as one line without the API key."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from assistant.llm.base import DraftDone, Source, TextDelta, Turn, collect
from assistant.llm.openai_compat import (
    OpenAICompatProvider,
    OpenAIConfig,
    _lines,
    _retry_after,
    _sse_data,
    openai_provider,
)
from assistant.llm.prompt import SYSTEM_PROMPT
from core.errors import ConfigError, ProviderError
from core.settings import LlmSettings
from emulators.base import EmulatorServer, Fault
from emulators.openai_compat import OpenAICompatEmulator, rate_limit_body

pytestmark = pytest.mark.integration
MODEL = "llama-3.1-8b-instruct"
KEY = "sk-local-1f2e3d4c5b6a"
SOURCES = [
    Source(1, "docs:a.md", "Canteen", "file:///a.md",
           "The canteen opens at noon. It closes at three in the afternoon."),
    Source(2, "docs:b.md", "Parking", "file:///b.md",
           "Parking permits are issued by the front desk. They cost nothing."),
]


@pytest.fixture
def emulator() -> OpenAICompatEmulator:
    return OpenAICompatEmulator({"models": [MODEL], "api_keys": [KEY], "chunk_size": 5})


@pytest.fixture
def server(emulator: OpenAICompatEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as s:
        yield s


def provider(server: EmulatorServer, sleeps: list[float] | None = None, **kw: Any
             ) -> OpenAICompatProvider:
    cfg = OpenAIConfig(base_url=kw.pop("base_url", server.base_url + "/v1"),
                       model=kw.pop("model", MODEL), api_key=kw.pop("api_key", KEY),
                       ca_bundle=str(server.ca_bundle), retry_base_seconds=0.01, **kw)
    return OpenAICompatProvider(cfg, sleep=(sleeps.append if sleeps is not None
                                            else lambda _: None))


def reply(emulator: OpenAICompatEmulator, **kw: Any) -> None:
    emulator.tenant["replies"] = [{"when": "*", **kw}]


def test_the_stream_arrives_as_deltas_then_usage_and_stop_reason(server: EmulatorServer) -> None:
    events = list(provider(server).stream("When does the canteen open?", SOURCES))
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 2  # chunk_size 5: many events, parsed one by one
    done = events[-1]
    assert isinstance(done, DraftDone) and done.stop_reason == "end_turn"
    assert done.usage.input_tokens > 50 and done.usage.output_tokens == 6
    assert "".join(d.text for d in deltas) == "The canteen opens at noon. [1]"


def test_a_whole_answer_without_streaming_is_the_same_draft(server: EmulatorServer) -> None:
    streamed = collect(provider(server).stream("When does the canteen open?", SOURCES))
    whole = collect(provider(server, stream=False).stream("When does the canteen open?", SOURCES))
    assert whole == streamed


def test_the_request_carries_the_rules_the_sources_the_history_and_the_key(
        server: EmulatorServer, emulator: OpenAICompatEmulator) -> None:
    history = [Turn("user", "Where do I park?"), Turn("assistant", "At the front desk [2].")]
    collect(provider(server, temperature=0.2, max_tokens=300).stream(
        "Do they cost anything?", SOURCES, history))
    sent = emulator.requests[-1]
    assert sent["model"] == MODEL and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 300)
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == SYSTEM_PROMPT
    assert sent["messages"][1]["content"] == "Where do I park?"
    prompt = sent["messages"][-1]["content"]
    assert '<source n="2" title="Parking">' in prompt and "<question>\nDo they" in prompt
    assert sent["auth_scheme"] == "Bearer"


@pytest.mark.parametrize("finish,stop", [("length", "max_tokens"), ("stop", "end_turn"),
                                         ("content_filter", "content_filtered")])
def test_finish_reason_becomes_the_stop_reason(server: EmulatorServer,
                                               emulator: OpenAICompatEmulator, finish: str,
                                               stop: str) -> None:
    reply(emulator, finish_reason=finish)
    for streaming in (True, False):
        draft = collect(provider(server, stream=streaming).stream("canteen open", SOURCES))
        assert draft.stop_reason == stop


@pytest.mark.parametrize("status,body", [(429, rate_limit_body()),
                                         (503, {"error": {"message": "loading model"}}),
                                         (500, {"error": {"message": "engine crashed"}})])
def test_throttling_and_server_errors_are_retried_with_doubling_delays(
        server: EmulatorServer, emulator: OpenAICompatEmulator, status: int,
        body: dict[str, Any]) -> None:
    emulator.faults.add(Fault("/v1/chat/completions", status=status, body=body, times=3))
    sleeps: list[float] = []
    draft = collect(provider(server, sleeps).stream("When does the canteen open?", SOURCES))
    assert "[1]" in draft.text
    assert sleeps == [0.01, 0.02, 0.04]


def test_retry_after_is_honoured_but_capped(server: EmulatorServer,
                                            emulator: OpenAICompatEmulator) -> None:
    emulator.faults.add(Fault("/v1/*", status=429, retry_after="3", body=rate_limit_body()))
    emulator.faults.add(Fault("/v1/*", status=429, retry_after="3600", body=rate_limit_body()))
    sleeps: list[float] = []
    collect(provider(server, sleeps, retry_max_seconds=5.0).stream("canteen", SOURCES))
    assert sleeps == [3.0, 5.0]


def test_retries_are_bounded_then_one_line(server: EmulatorServer,
                                           emulator: OpenAICompatEmulator) -> None:
    emulator.faults.add(Fault("/v1/*", status=429, body=rate_limit_body(), times=None))
    sleeps: list[float] = []
    with pytest.raises(ProviderError, match="rate-limiting") as err:
        collect(provider(server, sleeps, max_retries=2).stream("canteen", SOURCES))
    assert len(sleeps) == 2 and "\n" not in str(err.value)
    assert "Rate limit reached" in str(err.value)
    assert emulator.counters.to_json()["requests"] == 3


def test_a_server_that_refuses_stream_options_is_asked_again_without_them(
        server: EmulatorServer, emulator: OpenAICompatEmulator) -> None:
    emulator.tenant["strict_fields"] = True
    sleeps: list[float] = []
    p = provider(server, sleeps, max_retries=0)
    first = collect(p.stream("When does the canteen open?", SOURCES))
    assert first.text == "The canteen opens at noon. [1]" and sleeps == []
    assert first.usage.output_tokens == 0  # that server sends no usage in a stream
    collect(p.stream("When does the canteen open?", SOURCES))
    assert emulator.counters.to_json()["requests"] == 3  # refused once, then never sent again
    assert "stream_options" not in emulator.requests[-1]
    emulator.tenant["replies"] = [{"when": "*", "error": 400, "message": "bad temperature"}]
    with pytest.raises(ProviderError, match="bad temperature"):
        collect(p.stream("canteen", SOURCES))


def test_a_wrong_key_is_one_line_that_never_holds_a_key(server: EmulatorServer,
                                                        emulator: OpenAICompatEmulator) -> None:
    wrong = "sk-wrong-9a8b7c6d5e4f"
    with pytest.raises(ProviderError, match="refused the API key") as err:
        collect(provider(server, api_key=wrong).stream("canteen", SOURCES))
    assert wrong not in str(err.value) and KEY not in str(err.value)
    assert emulator.counters.to_json()["requests"] == 1  # a 401 is not retried


def test_an_echoed_key_is_masked(server: EmulatorServer, emulator: OpenAICompatEmulator) -> None:
    # A proxy that quotes the request back in its error must not put the key on the screen.
    emulator.faults.add(Fault("/v1/*", status=400, body={
        "error": {"message": f"bad header Authorization: Bearer {KEY}"}}))
    with pytest.raises(ProviderError, match="rejected the request") as err:
        collect(provider(server).stream("canteen", SOURCES))
    assert KEY not in str(err.value) and "***" in str(err.value)


def test_an_unknown_model_is_named_and_not_retried(server: EmulatorServer,
                                                   emulator: OpenAICompatEmulator) -> None:
    with pytest.raises(ProviderError, match="has no model 'gpt-9'") as err:
        collect(provider(server, model="gpt-9").stream("canteen", SOURCES))
    assert "does not exist" in str(err.value)
    assert emulator.counters.to_json()["requests"] == 1


def test_a_model_error_is_retried_then_a_clear_line(server: EmulatorServer,
                                                    emulator: OpenAICompatEmulator) -> None:
    reply(emulator, error=500, message="CUDA out of memory\nTraceback (most recent call last)")
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as err:
        collect(provider(server, sleeps, max_retries=1).stream("canteen", SOURCES))
    message = str(err.value)
    assert "\n" not in message and "HTTP 500" in message and "CUDA out of memory" in message
    assert len(sleeps) == 1


@pytest.mark.parametrize("broken,match", [("malformed", "malformed stream"),
                                          ("truncated", "ended before the answer did"),
                                          ("error", "the model failed: the model failed midway")])
def test_a_broken_stream_is_one_line(server: EmulatorServer, emulator: OpenAICompatEmulator,
                                     broken: str, match: str) -> None:
    reply(emulator, text="The canteen opens at noon [1].", stream=broken)
    events = provider(server).stream("canteen", SOURCES)
    with pytest.raises(ProviderError, match=match) as err:
        list(events)
    assert "\n" not in str(err.value)


def test_nothing_listening_is_retried_then_one_line_without_the_key(
        emulator: OpenAICompatEmulator) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps: list[float] = []
    cfg = OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1", model=MODEL, api_key=KEY,
                       retry_base_seconds=0.01, max_retries=2)
    with pytest.raises(ProviderError, match="unreachable") as err:
        collect(OpenAICompatProvider(cfg, sleep=sleeps.append).stream("canteen", SOURCES))
    assert KEY not in str(err.value) and len(sleeps) == 2


def test_a_model_slower_than_the_timeout_is_one_line_not_a_retry(
        server: EmulatorServer, emulator: OpenAICompatEmulator) -> None:
    emulator.faults.add(Fault("/v1/chat/completions", latency=1.5))
    sleeps: list[float] = []
    with pytest.raises(ProviderError, match=r"did not answer within 0.3s"):
        collect(provider(server, sleeps, timeout_seconds=0.3).stream("canteen", SOURCES))
    assert sleeps == []  # a slow model is not hammered again


def test_an_untrusted_certificate_is_refused(server: EmulatorServer) -> None:
    cfg = OpenAIConfig(base_url=server.base_url + "/v1", model=MODEL, api_key=KEY)
    with pytest.raises(ProviderError, match="TLS check"):
        collect(OpenAICompatProvider(cfg).stream("canteen", SOURCES))


class _Scripted(BaseHTTPRequestHandler):
    """A server that answers every POST with the class's canned status, headers and body."""

    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"")
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, headers, body = self.answer
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("Handler", (_Scripted,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status,headers,body,match", [
    (200, {"Content-Type": "application/json"}, b"<html>oops</html>", "not JSON"),
    (200, {"Content-Type": "application/json"}, b"[1, 2]", "unexpected JSON shape"),
    (200, {"Content-Type": "application/json"}, b'{"choices": []}', "without a choice"),
    (200, {"Content-Type": "application/json"},
     b'{"choices": [{"message": {"content": 42}}]}', "unexpected JSON shape"),
    (200, {"Content-Type": "text/event-stream"}, b"data: [1]\n\n", "unexpected event"),
    (200, {"Content-Type": "text/event-stream"},
     b'data: {"choices": [{"delta": {"content": 7}}]}\n\n', "content not text"),
    (200, {"Content-Type": "text/event-stream"}, b"data: \xff\xfe\n\n", "not UTF-8"),
    (200, {"Content-Type": "text/event-stream"}, b"", "ended before"),
    (502, {"Content-Type": "text/html"}, b"<html><body>Bad gateway</body></html>",
     r"failed \(retries exhausted\) \(HTTP 502\)$"),
    (302, {"Location": "https://elsewhere.example/v1"}, b"", r"failed \(HTTP 302\)"),
])
def test_what_a_misbehaving_server_sends_is_one_line(
        scripted: tuple[str, type[_Scripted]], status: int, headers: dict[str, str],
        body: bytes, match: str) -> None:
    url, handler = scripted
    handler.answer = (status, headers, body)
    cfg = OpenAIConfig(base_url=url, model=MODEL, max_retries=0)
    with pytest.raises(ProviderError, match=match) as err:
        collect(OpenAICompatProvider(cfg).stream("canteen", SOURCES))
    assert "\n" not in str(err.value)


def test_a_json_answer_to_a_stream_request_is_read_whole(
        scripted: tuple[str, type[_Scripted]]) -> None:
    url, handler = scripted
    handler.answer = (200, {"Content-Type": "application/json"}, json.dumps({
        "choices": [{"message": {"content": "Noon [1]."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": "lots"}}).encode())
    draft = collect(OpenAICompatProvider(OpenAIConfig(base_url=url, model=MODEL)).stream(
        "canteen", SOURCES))
    assert draft.text == "Noon [1]." and draft.usage.input_tokens == 9
    assert draft.usage.output_tokens == 0  # a count that is not a number counts nothing


def test_an_endless_line_is_refused_before_it_fills_memory() -> None:
    endless = (b"data: " + b"x" * 65536 for _ in range(100))
    with pytest.raises(ProviderError, match="a line over 1024 KiB"):
        list(_lines(endless))


def test_an_endless_stream_is_refused_before_it_fills_memory() -> None:
    endless = (b'data: {"choices": [{"delta": {"content": "x"}}]}\n\n' * 1000
               for _ in range(10_000))
    with pytest.raises(ProviderError, match="a stream over 32 MiB"):
        list(_lines(endless))


@pytest.mark.parametrize("value,expected", [("2", 2.0), ("-5", 0.0), ("nan", 0.25),
                                            ("inf", 0.25), ("soon", 0.25), (None, 0.25),
                                            ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_values(value: str | None, expected: float) -> None:
    assert _retry_after(value, 0.25) == expected


def test_sse_events_join_data_lines_and_skip_comments_and_fields() -> None:
    raw = [b": hello\r\n", b"event: message\r\nid: 7\r\nda", b"ta: one\r\ndata:two\r\n\r\n",
           b"retry: 10\n\ndata: three"]
    assert list(_sse_data(_lines(iter(raw)))) == ["one\ntwo", "three"]


def test_the_config_needs_a_set_key_and_refuses_it_over_plain_http(tmp_path: Any) -> None:
    llm = LlmSettings(provider="openai", base_url="http://10.0.0.5:8000/v1", model_id=MODEL)
    assert openai_provider(llm, tmp_path, {}).config.api_key is None  # no key: fine
    keyed = llm.model_copy(update={"api_key_env": "LLM_KEY"})
    with pytest.raises(ConfigError, match="LLM_KEY, which is not set"):
        openai_provider(keyed, tmp_path, {})
    with pytest.raises(ConfigError, match="in clear") as err:
        openai_provider(keyed, tmp_path, {"LLM_KEY": KEY})
    assert KEY not in str(err.value)
    loopback = keyed.model_copy(update={"base_url": "http://127.0.0.1:8000/v1"})
    made = openai_provider(loopback, tmp_path, {"LLM_KEY": KEY})
    assert made.config.api_key == KEY and KEY not in repr(made.config)
    with pytest.raises(ConfigError, match="ca_bundle"):
        openai_provider(loopback.model_copy(update={"ca_bundle": "missing.pem"}), tmp_path,
                        {"LLM_KEY": KEY})


def test_requests_does_not_read_proxies_from_the_environment(
        server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # would swallow the request
    draft = collect(provider(server).stream("When does the canteen open?", SOURCES))
    assert "[1]" in draft.text


@pytest.mark.parametrize("name", ["openai", "bedrock"])
def test_the_model_emulators_load_their_example_tenants(name: str) -> None:
    from emulators.base import registered
    from emulators.cli import example_tenant

    emulator = registered()[name].from_file(example_tenant(name))
    assert emulator.tenant["models"] and emulator.tenant["replies"]
