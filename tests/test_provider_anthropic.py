"""The ``anthropic`` provider over real HTTP against a fake Messages API: called directly, and end to end from the
official ``openai`` SDK (and the ``anthropic`` SDK, same-wire) through a running gateway."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from switchyard.config import AnthropicProviderConfig
from switchyard.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from switchyard.messages import (
    WIRE_ANTHROPIC_MESSAGES,
    WIRE_OPENAI_CHAT,
    AudioPart,
    ChatRequest,
    Chunk,
    FilePart,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormat,
    Role,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageUpdate,
    merge_usage,
)
from switchyard.providers import Target, anthropic_wire
from switchyard.providers.anthropic import AnthropicProvider
from switchyard.server import anthropic_routes
from switchyard.sse import SSEDecoder
from tests.support.fake_anthropic import FakeAnthropic, validate_event
from tests.support.gateway import USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

API_KEY = "sk-ant-upstream-secret"
MODEL = "claude-sonnet-4-5"
TARGET = Target(deployment="claude", model=MODEL)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16).decode()
WEATHER = Tool("get_weather", "Current weather in a city",
               {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIME = Tool("get_time", None, {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]})


def user(text: str) -> Message:
    return Message(Role.USER, [TextPart(text)])


def chat_request(*messages: Message, **kw: Any) -> ChatRequest:
    kw.setdefault("messages", list(messages) or [user("hello there")])
    return ChatRequest(model="claude", wire=WIRE_OPENAI_CHAT, **kw)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=API_KEY)
    with fake.serve():
        yield fake


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    fake_server.reset()
    yield fake_server
    assert fake_server.violations == [], "the fake sent frames the anthropic SDK types reject"
    fake_server.reset()


@pytest.fixture
async def provider(fake: FakeAnthropic) -> AsyncIterator[AnthropicProvider]:
    config = AnthropicProviderConfig(type="anthropic", api_key=API_KEY, base_url=fake.base_url or "",
                                     beta=["files-api-2025-04-14", "context-1m-2025-08-07"])
    p = AnthropicProvider("anth", config)
    yield p
    await p.aclose()


async def collect(provider: AnthropicProvider, req: ChatRequest) -> list[Chunk]:
    return [c async for c in provider.stream(req, TARGET)]


def events_of(chunks: list[Chunk], kind: type[Any]) -> list[Any]:
    return [e for c in chunks for e in c.events if isinstance(e, kind)]


# --- direct: chat ---------------------------------------------------------------------------------------------


async def test_chat_headers_body_and_reply(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    resp = await provider.chat(chat_request(Message(Role.SYSTEM, [TextPart("Be brief.")]), user("hello there")),
                               TARGET)
    sent = fake.last_request
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "files-api-2025-04-14,context-1m-2025-08-07"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.json == {"model": MODEL, "max_tokens": 4096, "system": "Be brief.",
                         "messages": [{"role": "user", "content": "hello there"}]}
    [choice] = resp.choices
    assert choice.message.text() == "Echo: hello there"
    assert choice.finish_reason is FinishReason.STOP
    assert resp.id.startswith("msg_") and resp.model == MODEL and resp.created > 0
    assert resp.wire == WIRE_ANTHROPIC_MESSAGES and resp.raw == fake.sent[-1]
    assert resp.usage is not None and resp.usage.output_tokens == 3 and resp.usage.input_tokens > 0


async def test_translated_request_is_a_proper_anthropic_body(provider: AnthropicProvider,
                                                             fake: FakeAnthropic) -> None:
    cache = {"type": "ephemeral"}
    req = chat_request(
        Message(Role.SYSTEM, [TextPart("You are terse.", meta={"cache_control": cache})]),
        Message(Role.USER, [TextPart("Weather in Paris and the time there?"),
                            ImagePart(data=PNG, media_type=None), ImagePart(url="https://example.com/a.jpg"),
                            FilePart(data=base64.b64encode(b"%PDF-1.4").decode(), media_type="application/pdf",
                                     filename="a.pdf")]),
        Message(Role.ASSISTANT, [ReasoningPart("Two tools.", signature="sig-1"), ReasoningPart(redacted="opaque"),
                                 ReasoningPart("unsigned, from another vendor"), TextPart(""),
                                 ToolCallPart("toolu_01", "get_weather", '{"city": "Paris"}'),
                                 ToolCallPart("toolu_02", "get_time", "")]),
        Message(Role.TOOL, [ToolResultPart("toolu_01", [TextPart("18C")])]),
        Message(Role.TOOL, [ToolResultPart("toolu_02", [TextPart("boom")], is_error=True)]),
        user("Thanks. Summarise."),
        tools=[WEATHER, TIME], tool_choice=ToolChoice("auto"), parallel_tool_calls=False, stop=["STOP"],
        temperature=0.5, top_p=0.9, top_k=40, max_tokens=20000, user="user-42", reasoning_budget=2048,
        response_format=ResponseFormat("json_schema", name="x", schema={"type": "object"}),
    )
    body = anthropic_wire.render_request(req, MODEL, provider="anth", default_max_tokens=4096, stream=False)
    assert body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": cache}]
    first, assistant, results = body["messages"]
    assert first["role"] == "user"
    assert first["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                "data": PNG}}
    assert first["content"][2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}
    assert first["content"][3]["type"] == "document" and first["content"][3]["title"] == "a.pdf"
    assert first["content"][3]["source"]["media_type"] == "application/pdf"
    assert assistant == {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Two tools.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
    ]}
    assert results == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_02", "content": "boom", "is_error": True},
        {"type": "text", "text": "Thanks. Summarise."},
    ]}
    assert body["tools"][0] == {"name": "get_weather", "description": "Current weather in a city",
                                "input_schema": WEATHER.parameters}
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert body["stop_sequences"] == ["STOP"]
    assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (0.5, 0.9, 40, 20000)
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert "stream" not in body
    # the fake (which applies the API's documented rules) accepts it
    resp = await provider.chat(req, TARGET)
    assert fake.last_request.json == body
    reasoning = resp.choices[0].message.parts[0]
    assert isinstance(reasoning, ReasoningPart) and reasoning.text.startswith("The user wrote: 18C boom Thanks.")
    assert reasoning.signature == fake.sent[-1]["content"][0]["signature"]


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    (ToolChoice("required"), None, {"type": "any"}),
    (ToolChoice("tool", "get_time"), False, {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}),
    (ToolChoice("none"), False, {"type": "none"}),
    (None, None, None),
])
def test_tool_choice(choice: ToolChoice | None, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    req = chat_request(tools=[WEATHER, TIME], tool_choice=choice, parallel_tool_calls=parallel)
    body = anthropic_wire.render_request(req, MODEL, provider="anth", default_max_tokens=4096, stream=False)
    assert body.get("tool_choice") == expected


@pytest.mark.parametrize(("effort", "max_tokens", "thinking", "sent_max"), [
    ("low", None, {"type": "enabled", "budget_tokens": 1024}, 4096),
    ("medium", None, {"type": "enabled", "budget_tokens": 4096}, 8192),
    ("high", None, {"type": "enabled", "budget_tokens": 16384}, 20480),
    ("high", 8000, {"type": "enabled", "budget_tokens": 7999}, 8000),
    ("none", None, {"type": "disabled"}, 4096),
])
def test_reasoning_effort_budgets(effort: str, max_tokens: int | None, thinking: dict[str, Any],
                                  sent_max: int) -> None:
    req = chat_request(reasoning_effort=effort, max_tokens=max_tokens)
    body = anthropic_wire.render_request(req, MODEL, provider="anth", default_max_tokens=4096, stream=False)
    assert body["thinking"] == thinking and body["max_tokens"] == sent_max


@pytest.mark.parametrize(("kw", "param"), [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"seed": 7}, "seed"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": -0.5}, "frequency_penalty"),
    ({"temperature": 1.5}, "temperature"),
    ({"response_format": ResponseFormat("json_object")}, "response_format"),
    ({"metadata": {"tenant": "a"}}, "metadata"),
    ({"reasoning_effort": "high", "max_tokens": 500}, "reasoning_effort"),
    ({"messages": [Message(Role.USER, [AudioPart(data="AAAA", format="wav")])]}, "messages"),
])
async def test_untranslatable_parameters_are_refused_by_name(provider: AnthropicProvider, fake: FakeAnthropic,
                                                             kw: dict[str, Any], param: str) -> None:
    req = chat_request(**kw)
    with pytest.raises(UnsupportedParameter) as info:
        await provider.chat(req, TARGET)
    assert info.value.status == 400 and info.value.param == param
    assert "'anth'" in info.value.message
    with pytest.raises(UnsupportedParameter):
        await collect(provider, req)
    assert fake.requests == []


async def test_same_wire_passthrough_keeps_unknown_fields(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    raw = {"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
           "future_field": {"nested": [1, 2]}, "service_tier": "auto", "stream": False}
    req = ChatRequest(model="claude", messages=[user("ignored")], wire=WIRE_ANTHROPIC_MESSAGES, raw=raw, n=5)
    resp = await provider.chat(req, TARGET)
    assert fake.last_request.json == {**{k: v for k, v in raw.items() if k != "stream"}, "model": MODEL}
    assert resp.raw == fake.sent[-1]
    chunks = await collect(provider, ChatRequest(model="claude", messages=[], wire=WIRE_ANTHROPIC_MESSAGES,
                                                 raw=raw, stream=True))
    assert fake.last_request.json == {**raw, "model": MODEL, "stream": True}
    assert [c.raw for c in chunks] == [{"event": n, "data": d} for n, d in fake.sent[-1]]


async def test_thinking_and_redacted_thinking(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.redact_thinking = True
    resp = await provider.chat(chat_request(reasoning_budget=1024, max_tokens=2048), TARGET)
    thinking, redacted, text = resp.choices[0].message.parts
    assert isinstance(thinking, ReasoningPart) and thinking.signature and thinking.text.startswith("The user wrote")
    assert isinstance(redacted, ReasoningPart) and redacted.redacted
    assert isinstance(text, TextPart) and text.text == "Echo: hello there"
    assert resp.usage is not None and resp.usage.reasoning_tokens > 0
    chunks = await collect(provider, chat_request(reasoning_budget=1024, max_tokens=2048, stream=True))
    deltas = events_of(chunks, ReasoningDelta)
    assert "".join(d.text for d in deltas) == thinking.text
    assert [d.signature for d in deltas if d.signature] == [thinking.signature]
    assert [d.redacted for d in deltas if d.redacted] == [redacted.redacted]
    assert "".join(d.text for d in events_of(chunks, TextDelta)) == "Echo: hello there"


@pytest.mark.parametrize(("forced", "reason"), [("refusal", FinishReason.REFUSAL), ("pause_turn", FinishReason.PAUSE),
                                                ("max_tokens", FinishReason.LENGTH)])
async def test_stop_reasons(provider: AnthropicProvider, fake: FakeAnthropic, forced: str,
                            reason: FinishReason) -> None:
    fake.stop_reason = forced
    assert (await provider.chat(chat_request(), TARGET)).choices[0].finish_reason is reason
    assert [f.reason for f in events_of(await collect(provider, chat_request(stream=True)), Finish)] == [reason]


async def test_stop_sequence_and_length(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    resp = await provider.chat(chat_request(user("one two three four"), stop=["three"]), TARGET)
    assert resp.choices[0].finish_reason is FinishReason.STOP_SEQUENCE
    assert resp.choices[0].stop_sequence == "three"
    assert resp.choices[0].message.text() == "Echo: one two "
    [finish] = events_of(await collect(provider, chat_request(user("one two three"), stop=["two"], stream=True)),
                         Finish)
    assert finish == Finish(FinishReason.STOP_SEQUENCE, stop_sequence="two")
    resp = await provider.chat(chat_request(user("one two three four"), max_tokens=2), TARGET)
    assert resp.choices[0].finish_reason is FinishReason.LENGTH


async def test_cache_usage(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    system = Message(Role.SYSTEM, [TextPart("A long shared preamble " * 10, meta={"cache_control":
                                                                                 {"type": "ephemeral"}})])
    first = await provider.chat(chat_request(system, user("hello there")), TARGET)
    second = await provider.chat(chat_request(system, user("hello there")), TARGET)
    raw1, raw2 = fake.sent[-2]["usage"], fake.sent[-1]["usage"]
    assert raw1["cache_creation_input_tokens"] == 40 and raw1["cache_read_input_tokens"] == 0
    assert raw2["cache_read_input_tokens"] == 40 and raw2["cache_creation_input_tokens"] == 0
    assert first.usage == Usage(input_tokens=42, output_tokens=3, cache_write_tokens=40)
    assert second.usage == Usage(input_tokens=42, output_tokens=3, cached_tokens=40)
    chunks = await collect(provider, chat_request(system, user("hello there"), stream=True))
    total = Usage()
    for u in events_of(chunks, UsageUpdate):
        merge_usage(total, u.usage)
    assert total == Usage(input_tokens=42, output_tokens=3, cached_tokens=40)
    [start] = events_of(chunks, StreamStart)
    assert start.usage is not None and start.usage.input_tokens == 42 and start.usage.cached_tokens == 40


# --- direct: streams ------------------------------------------------------------------------------------------


async def test_stream_text(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    chunks = await collect(provider, chat_request(stream=True))
    assert fake.last_request.json["stream"] is True
    assert fake.last_request.headers["accept"] == "text/event-stream"
    names = [c.raw["event"] for c in chunks if c.raw]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    assert all(c.wire == WIRE_ANTHROPIC_MESSAGES for c in chunks)
    assert [c.raw for c in chunks] == [{"event": n, "data": d} for n, d in fake.sent[-1]]
    start = chunks[0].events[0]
    assert isinstance(start, StreamStart) and start.id.startswith("msg_") and start.model == MODEL
    assert "".join(t.text for t in events_of(chunks, TextDelta)) == "Echo: hello there"
    assert events_of(chunks, Finish) == [Finish(FinishReason.STOP)]
    assert events_of(chunks, UsageUpdate)[-1].usage.output_tokens == 3


async def test_stream_tool_calls(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    chunks = await collect(provider, chat_request(user("Paris?"), tools=[WEATHER, TIME], stream=True))
    starts = events_of(chunks, ToolCallStart)
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_time")]
    assert all(s.id.startswith("toolu_") for s in starts)
    args = ["".join(d.arguments for d in events_of(chunks, ToolCallDelta) if d.index == i) for i in (0, 1)]
    assert [json.loads(a) for a in args] == [{"city": "x"}, {"tz": "x"}]
    assert events_of(chunks, Finish) == [Finish(FinishReason.TOOL_CALLS)]
    resp = await provider.chat(chat_request(user("Paris?"), tools=[WEATHER, TIME], parallel_tool_calls=False), TARGET)
    [call] = resp.choices[0].message.parts
    assert isinstance(call, ToolCallPart) and call.name == "get_weather" and json.loads(call.arguments) == {"city": "x"}
    assert resp.choices[0].finish_reason is FinishReason.TOOL_CALLS


def test_stream_parser_edge_cases() -> None:
    """The documented minimal message_delta usage, citations deltas, and server-tool JSON that is not a call."""
    p = anthropic_wire.StreamParser()
    p.feed("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "server_tool_use", "id": "srvtoolu_1",
                                                     "name": "web_search", "input": {}}})
    chunk = p.feed("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "input_json_delta", "partial_json": '{"q":'}})
    assert chunk.events == []
    chunk = p.feed("content_block_start", {"type": "content_block_start", "index": 1,
                                           "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f",
                                                             "input": {}}})
    assert chunk.events == [ToolCallStart(index=0, id="toolu_9", name="f")]
    chunk = p.feed("content_block_delta", {"type": "content_block_delta", "index": 2,
                                           "delta": {"type": "citations_delta", "citation": {}}})
    assert chunk.events == []
    chunk = p.feed("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                         "stop_sequence": None},
                                     "usage": {"output_tokens": 15}})
    assert chunk.events == [Finish(FinishReason.STOP), UsageUpdate(Usage(output_tokens=15))]
    assert not p.done
    p.feed("message_stop", {"type": "message_stop"})
    assert p.done


# --- direct: errors -------------------------------------------------------------------------------------------


async def test_overloaded_529_is_retryable(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.fail_next(529, times=2)
    with pytest.raises(UpstreamError) as info:
        await provider.chat(chat_request(), TARGET)
    e = info.value
    assert (e.upstream_status, e.status, e.retryable, e.upstream_type) == (529, 502, True, "overloaded_error")
    assert "Overloaded" in e.message and e.provider == "anth" and e.deployment == "claude"
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat_request(stream=True))
    assert info.value.upstream_status == 529 and info.value.retryable


@pytest.mark.parametrize(("status", "headers", "client_status", "retryable"), [
    (429, {"retry-after": "7"}, 429, True),
    (400, {}, 400, False),
    (401, {}, 502, False),
    (500, {}, 502, True),
])
async def test_error_statuses(provider: AnthropicProvider, fake: FakeAnthropic, status: int, headers: dict[str, str],
                              client_status: int, retryable: bool) -> None:
    fake.fail_next(status, headers=headers)
    with pytest.raises(UpstreamError) as info:
        await provider.chat(chat_request(), TARGET)
    assert (info.value.status, info.value.retryable, info.value.upstream_status) == (client_status, retryable, status)
    if headers:
        assert info.value.retry_after == 7 and info.value.headers["retry-after"] == "7"


async def test_error_event_mid_stream(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.error_stream_after(4)
    seen: list[Chunk] = []
    with pytest.raises(UpstreamError) as info:
        async for chunk in provider.stream(chat_request(stream=True), TARGET):
            seen.append(chunk)
    assert len(seen) == 4
    e = info.value
    assert e.retryable and e.upstream_type == "overloaded_error" and "mid-stream" in e.message
    fake.error_stream_after(1, "invalid_request_error", "bad thing")
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat_request(stream=True))
    assert not info.value.retryable and info.value.status == 400 and "bad thing" in info.value.message


async def test_stream_cut_short(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    fake.break_stream_after(3)
    with pytest.raises(UpstreamError) as info:
        await collect(provider, chat_request(stream=True))
    assert info.value.retryable and info.value.status == 502


async def test_connection_refused_and_bad_replies(fake: FakeAnthropic) -> None:
    closed = AnthropicProviderConfig(type="anthropic", api_key=API_KEY, base_url="http://127.0.0.1:9")
    p = AnthropicProvider("gone", closed)
    try:
        with pytest.raises(UpstreamError) as info:
            await p.chat(chat_request(), TARGET)
        assert info.value.retryable and "could not connect" in info.value.message
    finally:
        await p.aclose()
    fake.fail_next(200, body="not json")
    cfg = AnthropicProviderConfig(type="anthropic", api_key=API_KEY, base_url=fake.base_url or "")
    p = AnthropicProvider("anth", cfg)
    try:
        with pytest.raises(UpstreamError, match="not JSON"):
            await p.chat(chat_request(), TARGET)
    finally:
        await p.aclose()


async def test_fake_enforces_tool_result_placement(provider: AnthropicProvider, fake: FakeAnthropic) -> None:
    """A tool result with no tool_use before it is what the real API refuses; the fake refuses it too."""
    raw = {"model": "c", "max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}]}
    req = ChatRequest(model="c", messages=[], wire=WIRE_ANTHROPIC_MESSAGES, raw=raw)
    with pytest.raises(UpstreamError) as info:
        await provider.chat(req, TARGET)
    assert info.value.status == 400 and "tool_use_id" in info.value.message
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        await provider.chat(chat_request(Message(Role.ASSISTANT, [ToolCallPart("t", "f", "{oops")])), TARGET)


def test_fake_frames_are_checked_against_sdk_types() -> None:
    validate_event("ping", {"type": "ping"})
    validate_event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with pytest.raises(ValueError):
        validate_event("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "thinking", "thinking": ""}})
    with pytest.raises(ValueError):
        validate_event("message_stop", {"type": "message_delta"})


# --- end to end: openai SDK -> gateway -> anthropic provider -> fake ------------------------------------------


@pytest.fixture(scope="module")
def recorder() -> ListRecorder:
    return ListRecorder()


@pytest.fixture(scope="module")
def gw(fake_server: FakeAnthropic, recorder: ListRecorder) -> Iterator[RunningGateway]:
    config = base_config(
        providers={"anth": {"type": "anthropic", "api_key": API_KEY, "base_url": fake_server.base_url}},
        deployments=[{"name": "claude", "provider": "anth", "model": MODEL,
                      "capabilities": ["chat", "tools", "json", "vision"]}],
    )
    with run_gateway(config, recorder=recorder) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway, fake: FakeAnthropic) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


OPENAI_WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                        "parameters": WEATHER.parameters}}


def test_e2e_plain_and_system(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    resp = client.chat.completions.create(model="claude", messages=[
        {"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hello there"}])
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == MODEL and resp.object == "chat.completion"
    assert fake.last_request.json["system"] == "Answer in French."
    assert fake.last_request.json["messages"] == [{"role": "user", "content": "hello there"}]
    assert fake.last_request.headers["x-api-key"] == API_KEY


def test_e2e_stream_with_usage(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hello there"}],
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 3 and usage.prompt_tokens == 2


def test_e2e_tools_and_multi_turn(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    resp = client.chat.completions.create(model="claude", messages=messages, tools=[OPENAI_WEATHER])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    toolu = fake.sent[-1]["content"][0]["id"]
    assert call.id == toolu and toolu.startswith("toolu_")
    assert json.loads(call.function.arguments) == {"city": "x"}
    assert fake.last_request.json["tools"] == [{"name": "get_weather", "description": "Weather",
                                                "input_schema": WEATHER.parameters}]
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"}]
    final = client.chat.completions.create(model="claude", messages=messages, tools=[OPENAI_WEATHER])
    assert final.choices[0].message.content == "Echo: 18 degrees"
    assert fake.last_request.json["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": toolu, "name": "get_weather",
                                           "input": {"city": "x"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": toolu, "content": "18 degrees"}]},
    ]


def test_e2e_streaming_tools(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "Paris?"}],
                                            tools=[OPENAI_WEATHER], tool_choice="required", stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += tc.id or ""
                entry["name"] += (tc.function.name or "") if tc.function else ""
                entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
            finish = choice.finish_reason or finish
    assert fake.last_request.json["tool_choice"] == {"type": "any"}
    assert list(calls) == [0] and calls[0]["id"].startswith("toolu_") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "x"}
    assert finish == "tool_calls"


def test_e2e_image_input(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}])
    assert fake.last_request.json["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_e2e_cached_usage_mapping(client: openai.OpenAI, fake: FakeAnthropic, recorder: ListRecorder) -> None:
    fake.extra_usage.update({"cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200})
    resp = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hello there"}])
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 2 + 1000 + 200
    assert resp.usage.prompt_tokens_details is not None and resp.usage.prompt_tokens_details.cached_tokens == 1000
    assert resp.usage.completion_tokens == 3 and resp.usage.total_tokens == 1205
    rec = recorder.records[-1]
    assert rec.usage == Usage(input_tokens=1202, output_tokens=3, cached_tokens=1000, cache_write_tokens=200)
    assert rec.provider == "anth" and rec.status == "ok"


def test_e2e_unsupported_n(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], n=2)
    body: Any = info.value.body
    assert body["param"] == "n" and body["code"] == "unsupported_parameter"
    assert "n=2" in body["message"] and "'anth'" in body["message"]
    assert fake.requests == []


def test_e2e_upstream_overloaded(client: openai.OpenAI, fake: FakeAnthropic) -> None:
    fake.fail_next(529)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502 and "Overloaded" in info.value.message


# --- end to end: anthropic SDK -> gateway -> fake (same wire) --------------------------------------------------

needs_inbound = pytest.mark.skipif(not anthropic_routes.ROUTES, reason="the inbound Anthropic protocol is not built")


@needs_inbound
def test_e2e_anthropic_sdk_passthrough(gw: RunningGateway, fake: FakeAnthropic) -> None:
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as sdk:
        msg = sdk.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                  extra_body={"future_field": {"keep": [1, "two"]}, "top_k": 5})
    sent = fake.last_request
    assert sent.json["future_field"] == {"keep": [1, "two"]} and sent.json["top_k"] == 5
    assert sent.json["model"] == MODEL and sent.headers["x-api-key"] == API_KEY
    assert msg.to_dict(mode="json") == orjson.loads(orjson.dumps(fake.sent[-1]))


@needs_inbound
def test_e2e_anthropic_sdk_stream_events_unchanged(gw: RunningGateway, fake: FakeAnthropic) -> None:
    fake.redact_thinking = True
    body = {"model": "claude", "max_tokens": 3000, "stream": True, "thinking": {"type": "enabled",
                                                                                "budget_tokens": 1024},
            "messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "get_weather",
                                                                       "input_schema": WEATHER.parameters}],
            "unknown_flag": True}
    with httpx.stream("POST", gw.url + "/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": USER_KEY, "anthropic-version": "2023-06-01"}) as resp:
        assert resp.status_code == 200
        decoder = SSEDecoder()
        received = [(ev.event, json.loads(ev.data)) for raw in resp.iter_raw() for ev in decoder.feed(raw)]
    assert fake.last_request.json == {**body, "model": MODEL}
    assert received == [tuple(e) for e in fake.sent[-1]]
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as sdk:
        events = list(sdk.messages.create(model="claude", max_tokens=3000, messages=[{"role": "user", "content": "hi"}],
                                          thinking={"type": "enabled", "budget_tokens": 1024}, stream=True,
                                          extra_body={"unknown_flag": True}))
    upstream = [d for name, d in fake.sent[-1] if name != "ping"]  # the SDK skips pings
    assert [e.to_dict(mode="json") for e in events] == orjson.loads(orjson.dumps(upstream))
    assert fake.last_request.json["unknown_flag"] is True


@needs_inbound
def test_e2e_client_beta_flags_reach_the_upstream(gw: RunningGateway, fake: FakeAnthropic) -> None:
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as sdk:
        sdk.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                            extra_headers={"anthropic-beta": "context-1m-2025-08-07,fine-grained-tool-streaming"})
    assert fake.last_request.headers["anthropic-beta"].split(",")[-2:] == [
        "context-1m-2025-08-07", "fine-grained-tool-streaming"]
