"""The providers' transport seam, in memory: each HTTP provider's request shape (URL, headers, body) and its one
mapping of transport failures and error replies, through a ``MockTransport`` (no sockets). The wire end of the
same code runs against the loopback fakes in tests/test_provider_*.py and through a proxy in tests/test_proxy.py.

Frames follow the providers' documented stream formats: OpenAI chat completion chunks ending in ``data: [DONE]``
(https://platform.openai.com/docs/api-reference/chat-streaming), Anthropic's message events
(https://docs.anthropic.com/en/api/messages-streaming), Gemini's ``GenerateContentResponse`` per ``data:`` frame
(https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent), and Bedrock's ConverseStream
event-stream frames (tests/support/fake_bedrock.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from switchyard.config import (
    AnthropicProviderConfig,
    BedrockProviderConfig,
    ConfigError,
    GeminiProviderConfig,
    OpenAIProviderConfig,
    parse_config,
)
from switchyard.errors import UpstreamError
from switchyard.messages import (
    WIRE_ANTHROPIC_MESSAGES,
    WIRE_OPENAI_CHAT,
    ChatRequest,
    Finish,
    FinishReason,
    Message,
    Role,
    TextDelta,
    TextPart,
)
from switchyard.providers import Target
from switchyard.providers.anthropic import AnthropicProvider
from switchyard.providers.gemini import GeminiProvider
from switchyard.providers.http_provider import HTTPProvider
from switchyard.providers.openai import OpenAIProvider
from switchyard.providers.transport import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    MockResponse,
    MockTransport,
    ProxyError,
    ReadTimeout,
    Request,
)

TARGET = Target(deployment="dep", model="the-model")


def chat_request(stream: bool = False, **kw: Any) -> ChatRequest:
    return ChatRequest(model="dep", wire=WIRE_OPENAI_CHAT, stream=stream,
                       messages=[Message(Role.USER, [TextPart("hello there")])], **kw)


def sse(*frames: Any) -> bytes:
    """Server-sent events: each frame is raw bytes, an object, or (event name, object)."""
    out = b""
    for f in frames:
        if isinstance(f, tuple):
            out += b"event: " + f[0].encode() + b"\ndata: " + orjson.dumps(f[1]) + b"\n\n"
        else:
            out += b"data: " + (f if isinstance(f, bytes) else orjson.dumps(f)) + b"\n\n"
    return out


def split(data: bytes, size: int = 7) -> list[bytes | BaseException]:
    """The stream cut at arbitrary places, as TCP may deliver it."""
    return [data[i:i + size] for i in range(0, len(data), size)]


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "the-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


OPENAI_STREAM = sse(_openai_chunk({"role": "assistant", "content": ""}), _openai_chunk({"content": "Hel"}),
                    _openai_chunk({"content": "lo"}), _openai_chunk({}, "stop"), b"[DONE]")
OPENAI_REPLY = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "the-model",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
ANTHROPIC_MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "the-model",
                     "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": 3, "output_tokens": 1}}
ANTHROPIC_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 1}}),
    ("message_stop", {"type": "message_stop"}))
GEMINI_REPLY = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}, "finishReason": "STOP",
                                "index": 0}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
                "modelVersion": "the-model"}
GEMINI_STREAM = sse({**GEMINI_REPLY, "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]},
                                                     "index": 0}]},
                    {**GEMINI_REPLY, "candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                                                     "finishReason": "STOP", "index": 0}]})

# provider type -> (make it, a whole reply, a whole stream)
PROVIDERS: dict[str, tuple[Callable[[MockTransport], HTTPProvider], dict[str, Any], bytes]] = {
    "openai": (lambda t: OpenAIProvider("up", OpenAIProviderConfig(type="openai", api_key="sk-up"), t),
               OPENAI_REPLY, OPENAI_STREAM),
    "anthropic": (lambda t: AnthropicProvider("up", AnthropicProviderConfig(type="anthropic", api_key="sk-ant"), t),
                  ANTHROPIC_MESSAGE, ANTHROPIC_STREAM),
    "gemini": (lambda t: GeminiProvider("up", GeminiProviderConfig(type="gemini", api_key="AIza"), t),
               GEMINI_REPLY, GEMINI_STREAM),
}


def answer(reply: MockResponse | BaseException) -> MockTransport:
    def handler(req: Request) -> MockResponse:
        if isinstance(reply, BaseException):
            raise reply
        return reply
    return MockTransport(handler)


async def run(provider: HTTPProvider, stream: bool) -> str:
    """The reply's text, whole or streamed."""
    if not stream:
        resp = await provider.chat(chat_request(), TARGET)
        return "".join(p.text for p in resp.choices[0].message.parts if isinstance(p, TextPart))
    text = ""
    async for chunk in provider.stream(chat_request(stream=True), TARGET):
        text += "".join(e.text for e in chunk.events if isinstance(e, TextDelta))
    return text


# --- the happy path, in memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_each_provider_answers_through_the_mock_transport(kind: str, stream: bool) -> None:
    make, whole, streamed = PROVIDERS[kind]
    transport = answer(MockResponse(json=whole) if not stream else MockResponse(chunks=split(streamed)))
    provider = make(transport)
    assert await run(provider, stream) == "Hello"
    assert [r.streamed for r in transport.requests] == [stream]
    assert all(s.closed for s in transport.streams)  # the stream was let go of
    await provider.aclose()
    assert transport.closed


async def test_openai_request_shape_and_header_precedence() -> None:
    transport = answer(MockResponse(json=OPENAI_REPLY))
    config = OpenAIProviderConfig(type="openai", api_key="sk-up", base_url="https://llm.internal/v1",
                                  organization="org-1", headers={"X-Team": "blue", "Authorization": "Bearer other",
                                                                 "Content-Type": "text/plain"})
    await OpenAIProvider("up", config, transport).chat(chat_request(temperature=0.5), TARGET)
    req = transport.requests[0]
    assert (req.method, req.url) == ("POST", "https://llm.internal/v1/chat/completions")
    # the configured headers are sent, under the provider's own (its key, its content type)
    assert req.headers["authorization"] == "Bearer sk-up" and req.headers["content-type"] == "application/json"
    assert req.headers["x-team"] == "blue" and req.headers["openai-organization"] == "org-1"
    body = req.json()
    assert body["model"] == "the-model" and body["temperature"] == 0.5 and "stream" not in body


async def test_openai_azure_urls_carry_the_deployment_and_api_version() -> None:
    transport = answer(MockResponse(chunks=split(OPENAI_STREAM)))
    config = OpenAIProviderConfig(type="openai", api_key="az-key", base_url="https://res.openai.azure.com",
                                  api_version="2024-10-21")
    provider = OpenAIProvider("az", config, transport)
    assert await run(provider, stream=True) == "Hello"
    req = transport.requests[0]
    assert req.url == "https://res.openai.azure.com/openai/deployments/the-model/chat/completions?api-version=2024-10-21"
    assert req.headers["api-key"] == "az-key" and "authorization" not in req.headers
    assert req.json()["stream"] is True


async def test_anthropic_request_shape_merges_beta_flags() -> None:
    transport = answer(MockResponse(chunks=split(ANTHROPIC_STREAM)))
    config = AnthropicProviderConfig(type="anthropic", api_key="sk-ant", beta=["a-1"], headers={"x-team": "blue"})
    provider = AnthropicProvider("ant", config, transport)
    req = ChatRequest(model="dep", wire=WIRE_ANTHROPIC_MESSAGES, stream=True, headers={"anthropic-beta": "b-2,a-1"},
                      messages=[Message(Role.USER, [TextPart("hi")])], max_tokens=10)
    async for _ in provider.stream(req, TARGET):
        pass
    sent = transport.requests[0]
    assert sent.url == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant" and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "a-1,b-2" and sent.headers["accept"] == "text/event-stream"
    assert sent.headers["x-team"] == "blue" and sent.json()["stream"] is True


async def test_gemini_urls_and_key_header() -> None:
    transport = answer(MockResponse(chunks=split(GEMINI_STREAM)))
    provider = GeminiProvider("gem", GeminiProviderConfig(type="gemini", api_key="AIza"), transport)
    await run(provider, stream=True)
    transport.handler = lambda req: MockResponse(json=GEMINI_REPLY)
    await run(provider, stream=False)
    base = "https://generativelanguage.googleapis.com/v1beta/models/the-model"
    assert [r.url for r in transport.requests] == [f"{base}:streamGenerateContent?alt=sse", f"{base}:generateContent"]
    assert transport.requests[0].headers["x-goog-api-key"] == "AIza"


async def test_openai_stream_stops_at_done_and_lets_go_of_the_stream() -> None:
    # anything after [DONE] is never read: the consumer stops there and the stream is closed at once
    transport = answer(MockResponse(chunks=[OPENAI_STREAM, ConnectionReset("never reached")]))
    provider = PROVIDERS["openai"][0](transport)
    chunks = [c async for c in provider.stream(chat_request(stream=True), TARGET)]
    assert isinstance(chunks[-1].events[-1], Finish) and chunks[-1].events[-1].reason is FinishReason.STOP
    assert transport.streams[0].closed


# --- one mapping of failures -------------------------------------------------------------------------------------

OPENAI_ERROR = {"error": {"message": "Bad temperature", "type": "invalid_request_error", "param": "temperature",
                          "code": None}}
FAILURES: dict[str, tuple[MockResponse | BaseException, int, bool, str]] = {
    # name: (what the transport does, our status, retryable, words of our message)
    "429 keeps Retry-After": (MockResponse(429, {"Retry-After": "7"}, json={"error": {"message": "slow down"}}),
                              429, True, "returned HTTP 429: slow down"),
    "503 is a 502": (MockResponse(503, body=b"upstream overloaded"), 502, True, "returned HTTP 503"),
    "400 names the parameter": (MockResponse(400, json=OPENAI_ERROR), 400, False, "Bad temperature"),
    "407 from the upstream is a 502": (MockResponse(407, body=b"proxy says no"), 502, True, "HTTP 407"),
    "connect failure": (ConnectFailed("refused"), 502, True, "could not connect to provider 'up'"),
    "connect timeout": (ConnectTimeout("slow"), 504, True, "timed out connecting to provider 'up'"),
    "proxy wants credentials": (ProxyError("the proxy http://p:3128 refused", proxy="http://p:3128", status=407),
                                502, True, "its proxy refused the gateway's credentials (HTTP 407"),
    "proxy unreachable": (ProxyError("no route", proxy="http://p:3128"), 502, True, "its proxy could not be reached"),
}


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("failure", FAILURES)
async def test_failures_map_to_one_set_of_errors(kind: str, stream: bool, failure: str) -> None:
    reply, status, retryable, words = FAILURES[failure]
    transport = answer(reply)
    with pytest.raises(UpstreamError) as e:
        await run(PROVIDERS[kind][0](transport), stream)
    err = e.value
    assert (err.status, err.retryable, err.provider, err.deployment) == (status, retryable, "up", "dep")
    assert words in err.message
    if status == 429:
        assert err.retry_after == 7 and err.headers["retry-after"] == "7"
    if failure == "400 names the parameter":
        assert err.param == "temperature"
    assert "p:3128" not in err.message  # the proxy is in the log's exception, not in the caller's message
    assert all(s.closed for s in transport.streams)


@pytest.mark.parametrize("kind", PROVIDERS)
@pytest.mark.parametrize(("cut", "status", "words"), [
    (ConnectionReset("reset by peer"), 502, "was reset"),
    (ReadTimeout("nothing for 5 s"), 504, "timed out waiting for provider 'up'"),
], ids=["reset", "read timeout"])
async def test_a_stream_cut_midway_is_named_and_closed(kind: str, cut: BaseException, status: int,
                                                       words: str) -> None:
    streamed = PROVIDERS[kind][2]
    transport = answer(MockResponse(chunks=[streamed[:60], cut]))
    with pytest.raises(UpstreamError) as e:
        await run(PROVIDERS[kind][0](transport), stream=True)
    assert (e.value.status, e.value.retryable) == (status, True) and words in e.value.message
    assert transport.streams[0].closed


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_a_reply_that_is_not_json_is_a_retryable_502(kind: str) -> None:
    transport = answer(MockResponse(body=b"<html>gateway</html>"))
    with pytest.raises(UpstreamError, match="sent a reply that is not JSON") as e:
        await run(PROVIDERS[kind][0](transport), stream=False)
    assert (e.value.status, e.value.retryable) == (502, True)


async def test_gemini_reads_retry_delay_from_the_error_body() -> None:
    body = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
                      "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}}
    transport = answer(MockResponse(429, json=body))
    with pytest.raises(UpstreamError) as e:
        await run(PROVIDERS["gemini"][0](transport), stream=True)
    assert (e.value.status, e.value.retry_after, e.value.upstream_type) == (429, 12, "RESOURCE_EXHAUSTED")


async def test_bedrock_signs_the_configured_headers_and_keeps_the_encoded_url(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("botocore")
    from switchyard.providers.bedrock import BedrockProvider
    from tests.support.fake_bedrock import event_frame

    for var in ("AWS_PROFILE", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    frames = (event_frame("messageStart", {"role": "assistant"})
              + event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}, 1)
              + event_frame("messageStop", {"stopReason": "end_turn"}, 2)
              + event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
                                         "metrics": {"latencyMs": 5}}, 3))
    transport = answer(MockResponse(headers={"x-amzn-requestid": "req-1"}, chunks=split(frames, 50)))
    config = BedrockProviderConfig(type="bedrock", region="us-east-1", access_key_id="AKIDEXAMPLE",
                                   secret_access_key="secret", headers={"x-team": "blue"})
    provider = BedrockProvider("aws", config, transport)
    text = ""
    async for chunk in provider.stream(chat_request(stream=True), Target("dep", "anthropic.claude-v2:1")):
        text += "".join(e.text for e in chunk.events if isinstance(e, TextDelta))
    assert text == "Hello"
    sent = transport.requests[0]
    assert sent.url == "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-v2%3A1/converse-stream"
    assert sent.headers["x-team"] == "blue" and "x-team" in sent.headers["authorization"]  # among SignedHeaders
    transport.handler = lambda req: MockResponse(424, {"x-amzn-errortype": "ModelErrorException:http://internal"},
                                                 json={"message": "the model failed"})
    with pytest.raises(UpstreamError) as e:
        await provider.chat(chat_request(), Target("dep", "anthropic.claude-v2:1"))
    assert (e.value.status, e.value.retryable, e.value.upstream_type) == (502, True, "ModelErrorException")


# --- the config of providers ------------------------------------------------------------------------------------


def _problems(provider: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config({"providers": {"up": {"type": "openai", **provider}}}, "<test>", {})
    return str(e.value)


def test_provider_transport_keys_are_checked_without_echoing_secrets(tmp_path: Path) -> None:
    assert "providers.up.proxy: proxy scheme socks5:// is not supported" in _problems(
        {"proxy": "socks5://user:hunter2@proxy:1080"})
    bad = _problems({"proxy": "http://user:hunter2@proxy:notaport"})
    assert "providers.up.proxy" in bad and "hunter2" not in bad
    assert "providers.up.ca_file: no such file" in _problems({"ca_file": str(tmp_path / "missing.pem")})
    crlf = _problems({"headers": {"x-token": "s3cret\r\nx-evil: 1"}})
    assert "providers.up.headers: x-token: a header value cannot hold a line break" in crlf and "s3cret" not in crlf
    assert "providers.up.headers: Host: the gateway sets this header itself" in _problems({"headers": {"Host": "x"}})
    assert "is not a header name" in _problems({"headers": {"bad name": "x"}})
    with pytest.raises(ConfigError, match="unknown key"):  # a provider that makes no HTTP calls takes no proxy
        parse_config({"providers": {"sim": {"type": "simulated", "proxy": "http://p:1"}}}, "<test>", {})
    ok = parse_config({"providers": {"up": {"type": "openai", "proxy": "none", "headers": {"x-team": "blue"}},
                                     "env": {"type": "anthropic", "proxy": ""}}}, "<test>", {})
    assert ok.providers["up"].proxy == "none" and ok.providers["env"].proxy is None


def test_a_ca_file_that_is_not_a_bundle_fails_when_the_provider_is_built(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"providers\.up\.ca_file: cannot load"):
        OpenAIProvider("up", OpenAIProviderConfig(type="openai", ca_file=str(junk)))
