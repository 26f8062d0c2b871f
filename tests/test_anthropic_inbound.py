"""The official anthropic SDK, sync and async, through the gateway's Anthropic Messages endpoints, over real HTTP.

Two upstreams: the simulated provider, and the fake OpenAI server (so Anthropic requests are translated to OpenAI
Chat Completions and back). Rendering cases that no upstream here can produce (thinking blocks, redacted thinking,
interleaved tool-call deltas, raw Anthropic pass-through) are checked on the renderers directly, validated against
the SDK's own stream-event types and accumulator.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from switchyard.messages import (
    WIRE_ANTHROPIC_MESSAGES,
    ChatResponse,
    Choice,
    Chunk,
    FilePart,
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningPart,
    Role,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageUpdate,
)
from switchyard.messages import Message as NeutralMessage
from switchyard.protocols.anthropic_messages import parse_request, render_response
from switchyard.protocols.anthropic_stream import StreamRenderer
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

CAPS = ["chat", "tools", "json", "vision", "files"]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"},
                                                                                  "utc": {"type": "boolean"}}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image bytes").decode()
EVENTS: Any = TypeAdapter(RawMessageStreamEvent)


def gateway_config(upstream: str) -> dict[str, Any]:
    return base_config(
        providers={
            "sim": {"type": "simulated", "output_tokens": 5},
            "up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "k"},
        },
        deployments=[
            {"name": "claude-sim", "provider": "sim", "capabilities": CAPS},
            {"name": "gpt-4o-mini", "provider": "up", "capabilities": CAPS},
        ],
    )


@pytest.fixture(scope="module")
def recorder() -> ListRecorder:
    return ListRecorder()


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI, recorder: ListRecorder) -> Iterator[RunningGateway]:
    assert fake_openai_server.base_url is not None
    with run_gateway(gateway_config(fake_openai_server.base_url), recorder=recorder) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway, fake_openai: FakeOpenAI) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(gw: RunningGateway, fake_openai: FakeOpenAI) -> Any:
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs of an SSE body; each data must be JSON whose ``type`` is the event name."""
    out: list[tuple[str, dict[str, Any]]] = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = orjson.loads(lines["data"])
        assert data["type"] == lines["event"]
        out.append((lines["event"], data))
    return out


def check_sequence(events: list[tuple[str, dict[str, Any]]]) -> Message:
    """Assert the Anthropic event grammar, validate every event against the SDK types, and fold them up."""
    names = [n for n, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    open_block: int | None = None
    expected = 0
    for name, data in events[2:-2]:
        if name == "content_block_start":
            assert open_block is None and data["index"] == expected
            open_block = expected
        elif name == "content_block_delta":
            assert data["index"] == open_block
        elif name == "content_block_stop":
            assert data["index"] == open_block
            open_block, expected = None, expected + 1
        else:
            raise AssertionError(f"unexpected {name} inside the message")
    assert open_block is None
    snapshot: Any = None
    bufs: dict[int, bytes] = {}
    for _, data in events:
        if data["type"] != "ping":
            snapshot = accumulate_event(event=EVENTS.validate_python(data), current_snapshot=snapshot,
                                        json_bufs=bufs)
    return Message.model_validate(snapshot.model_dump())


def post_stream(gw: RunningGateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + "/v1/messages", json={**body, "stream": True}, timeout=10,
                      headers={"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"})


# --- the simulated provider ----------------------------------------------------------------------------------


def test_plain_message_simulated(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model="claude-sim", max_tokens=100,
                                                   messages=[{"role": "user", "content": "Hello"}])
    msg = raw.parse()
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.model == "claude-sim" and msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert len(msg.content) == 1 and msg.content[0].type == "text" and len(msg.content[0].text.split()) == 5
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == 5
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    assert raw.headers["x-switchyard-simulated"] == "true"
    assert raw.headers["x-switchyard-deployment"] == "claude-sim"
    assert raw.headers["request-id"] == raw.headers["x-request-id"] == msg._request_id


def test_max_tokens_stops_the_reply(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="claude-sim", max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 2


def test_stream_simulated_sdk_and_exact_events(client: anthropic.Anthropic, gw: RunningGateway) -> None:
    with client.messages.stream(model="claude-sim", max_tokens=100,
                                messages=[{"role": "user", "content": "Hello"}]) as stream:
        kinds = [ev.type for ev in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5 and final.usage.input_tokens > 0
    assert final.content[0].type == "text" and len(final.content[0].text.split()) == 5

    resp = post_stream(gw, {"model": "claude-sim", "max_tokens": 100,
                            "messages": [{"role": "user", "content": "Hello"}]})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.content)
    assert [n for n, _ in events] == ["message_start", "ping", "content_block_start", *["content_block_delta"] * 5,
                                      "content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    assert events[2][1]["content_block"] == {"type": "text", "text": ""}
    assert events[3][1]["delta"]["type"] == "text_delta"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 5 and delta["usage"]["input_tokens"] > 0
    folded = check_sequence(events).content[0]
    assert folded.model_dump(exclude_none=True) == final.content[0].model_dump(exclude_none=True)


def test_simulated_tools_and_streamed_parallel_tools(client: anthropic.Anthropic, gw: RunningGateway) -> None:
    msg = client.messages.create(model="claude-sim", max_tokens=100, tools=[WEATHER, TIME],
                                 messages=[{"role": "user", "content": "Weather?"}])
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "sample"}),
                                                 ("get_time", {"tz": "sample", "utc": True})]
    with client.messages.stream(model="claude-sim", max_tokens=100, tools=[WEATHER, TIME],
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [(u.type, u.input) for u in uses]
    resp = post_stream(gw, {"model": "claude-sim", "max_tokens": 100, "tools": [WEATHER, TIME],
                            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
                            "messages": [{"role": "user", "content": "Weather?"}]})
    folded = check_sequence(sse_events(resp.content))
    assert [b.type for b in folded.content] == ["tool_use"] and folded.stop_reason == "tool_use"


async def test_async_client_create_and_stream(aclient: anthropic.AsyncAnthropic) -> None:
    msg = await aclient.messages.create(model="claude-sim", max_tokens=50,
                                        messages=[{"role": "user", "content": "async hello"}])
    assert msg.content[0].type == "text" and msg.usage.output_tokens == 5
    async with aclient.messages.stream(model="claude-sim", max_tokens=50,
                                       messages=[{"role": "user", "content": "async hello"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == text == msg.content[0].text
    raw = await aclient.messages.create(model="claude-sim", max_tokens=50, stream=True,
                                        messages=[{"role": "user", "content": "async hello"}])
    kinds = [ev.type async for ev in raw]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]


def test_count_tokens(client: anthropic.Anthropic) -> None:
    short = client.messages.count_tokens(model="claude-sim", messages=[{"role": "user", "content": "Hi"}])
    long = client.messages.count_tokens(model="claude-sim", system="You are a careful assistant. " * 20,
                                        tools=[WEATHER], messages=[{"role": "user", "content": "Hi " * 100}])
    assert 0 < short.input_tokens < long.input_tokens
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.type == "not_found_error" and "no-such-model" in info.value.message


# --- translation to an OpenAI upstream -----------------------------------------------------------------------


def test_translation_plain_and_parameters(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    msg = client.messages.create(
        model="gpt-4o-mini", max_tokens=50, system="Be brief.", stop_sequences=["STOP"], metadata={"user_id": "u-42"},
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40},  # older clients send these; this SDK cannot
        messages=[{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "Hi!"},
                  {"role": "user", "content": [{"type": "text", "text": "how are you"}]}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: how are you"
    assert msg.stop_reason == "end_turn" and msg.model == "gpt-4o-mini" and msg.id.startswith("msg_")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == 4
    body = fake_openai.last_request.json
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hello there"},
                                {"role": "assistant", "content": "Hi!"},
                                {"role": "user", "content": "how are you"}]
    assert (body["model"], body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (
        "gpt-4o-mini", 50, 0.5, 0.9, 40)
    assert body["stop"] == ["STOP"] and body["user"] == "u-42"
    assert "metadata" not in body and "system" not in body and "stop_sequences" not in body


def test_stop_sequences_truncate_upstream(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_reply("one two STOP three")
    msg = client.messages.create(model="gpt-4o-mini", max_tokens=50, stop_sequences=["STOP"],
                                 messages=[{"role": "user", "content": "count"}])
    assert msg.content[0].type == "text" and msg.content[0].text == "one two "
    assert fake_openai.last_request.json["stop"] == ["STOP"]


def test_system_blocks_with_cache_control(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    client.messages.create(
        model="gpt-4o-mini", max_tokens=50,
        system=[{"type": "text", "text": "Rule one. "},
                {"type": "text", "text": "Rule two.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "go"}],
    )
    assert fake_openai.last_request.json["messages"][0] == {"role": "system", "content": "Rule one. Rule two."}


def test_streaming_translation(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_reply("Streaming through the gateway works")
    with client.messages.stream(model="gpt-4o-mini", max_tokens=50,
                                messages=[{"role": "user", "content": "stream please"}]) as stream:
        names = [ev.type for ev in stream]
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "Streaming through the gateway works"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5 and final.usage.input_tokens > 0
    assert names[0] == "message_start" and names[-1] == "message_stop" and "text" in names
    body = fake_openai.last_request.json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_tools_and_tool_results_round_trip(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    question: Any = {"role": "user", "content": "Weather in Paris?"}
    msg = client.messages.create(model="gpt-4o-mini", max_tokens=100, tools=[WEATHER], messages=[question])
    assert msg.stop_reason == "tool_use"
    use = msg.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "x"}
    sent = fake_openai.last_request.json
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER["input_schema"]}}]

    follow = client.messages.create(
        model="gpt-4o-mini", max_tokens=100, tools=[WEATHER], tool_choice={"type": "none"},
        messages=[question, {"role": "assistant", "content": msg.content},
                  {"role": "user", "content": [
                      {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24C"},
                      {"type": "text", "text": "And tomorrow?"}]}],
    )
    assert follow.stop_reason == "end_turn" and follow.content[0].type == "text"
    msgs = fake_openai.last_request.json["messages"]
    assert msgs[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": use.id, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"x"}'}}]}
    assert msgs[2] == {"role": "tool", "tool_call_id": use.id, "content": "Sunny, 24C"}
    assert msgs[3] == {"role": "user", "content": "And tomorrow?"}
    assert fake_openai.last_request.json["tool_choice"] == "none"


def test_tool_result_blocks_error_flag_and_named_choice(client: anthropic.Anthropic,
                                                        fake_openai: FakeOpenAI) -> None:
    client.messages.create(
        model="gpt-4o-mini", max_tokens=100, tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "time?"},
                  {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                                    {"type": "tool_use", "id": "toolu_1", "name": "get_time",
                                                     "input": {"tz": "UTC"}}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                                "content": [{"type": "text", "text": "clock "},
                                                            {"type": "text", "text": "unavailable"}]}]}],
    )
    body = fake_openai.last_request.json
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["parallel_tool_calls"] is False
    assert body["messages"][1]["content"] == "Checking."
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "clock unavailable"}


def test_streaming_tool_calls_assemble_input(client: anthropic.Anthropic, fake_openai: FakeOpenAI,
                                             gw: RunningGateway) -> None:
    with client.messages.stream(model="gpt-4o-mini", max_tokens=100, tools=[WEATHER, TIME],
                                messages=[{"role": "user", "content": "both please"}]) as stream:
        json_deltas = [ev for ev in stream if ev.type == "input_json"]
        final = stream.get_final_message()
    assert len(json_deltas) > 2  # the arguments arrived in pieces
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "x"}), ("get_time", {"tz": "x", "utc": True})]
    assert all(u.id.startswith("call_") for u in uses) and final.stop_reason == "tool_use"
    folded = check_sequence(sse_events(post_stream(gw, {
        "model": "gpt-4o-mini", "max_tokens": 100, "tools": [WEATHER, TIME],
        "messages": [{"role": "user", "content": "both please"}]}).content))
    assert [b.input for b in folded.content if b.type == "tool_use"] == [u.input for u in uses]


def test_image_and_document_input(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
         "title": "report.pdf"},
        {"type": "text", "text": "Describe these."}]}])
    content = fake_openai.last_request.json["messages"][0]["content"]
    assert content[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert content[1] == {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    assert content[2] == {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{pdf}",
                                                   "filename": "report.pdf"}}
    assert content[3] == {"type": "text", "text": "Describe these."}


def test_thinking_parameter_and_history(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    msg = client.messages.create(
        model="gpt-4o-mini", max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "think"},
                  {"role": "assistant", "content": [
                      {"type": "thinking", "thinking": "Let me see.", "signature": "sig-abc"},
                      {"type": "redacted_thinking", "data": "opaque=="},
                      {"type": "text", "text": "Done thinking."}]},
                  {"role": "user", "content": "again"}],
    )
    assert msg.content[0].type == "text"
    body = fake_openai.last_request.json
    assert body["messages"][1] == {"role": "assistant", "content": "Done thinking."}  # reasoning stays ours
    assert "thinking" not in body


def test_unknown_fields_and_server_blocks_are_accepted(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    msg = client.messages.create(
        model="claude-sim", max_tokens=50, service_tier="auto",
        messages=[{"role": "user", "content": "search"},
                  {"role": "assistant", "content": [
                      {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}},
                      {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                      {"type": "text", "text": "Found it."}]},
                  {"role": "user", "content": "thanks"}],
    )
    assert msg.stop_reason == "end_turn"


def test_mid_stream_failure_is_an_error_event(client: anthropic.Anthropic, fake_openai: FakeOpenAI,
                                              gw: RunningGateway) -> None:
    fake_openai.break_stream_after(3)
    with pytest.raises(anthropic.APIStatusError) as info, client.messages.stream(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "a b c d e f"}]) as stream:
        for _ in stream:
            pass
    assert info.value.type == "api_error"
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "error"
    fake_openai.break_stream_after(3)
    events = sse_events(post_stream(gw, {"model": "gpt-4o-mini", "max_tokens": 50,
                                         "messages": [{"role": "user", "content": "a b c d e f"}]}).content)
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    assert "message_stop" not in [n for n, _ in events]
    assert events[-1][1]["error"]["type"] == "api_error" and events[-1][1]["request_id"].startswith("req_")


def test_client_disconnect_ends_the_response_and_the_rest_is_read_for_its_usage(
        gw: RunningGateway, fake_openai: FakeOpenAI, recorder: ListRecorder) -> None:
    fake_openai.stream_delay(0.25)  # 20+ frames: several seconds if read to the end
    before = len(recorder.records)
    started = time.monotonic()
    with httpx.Client(timeout=10) as http, http.stream(
        "POST", gw.url + "/v1/messages", headers={"x-api-key": MASTER_KEY},
        json={"model": "gpt-4o-mini", "stream": True, "max_tokens": 100,
              "messages": [{"role": "user", "content": " ".join(["word"] * 20)}]},
    ) as resp:
        assert next(resp.iter_lines()) == "event: message_start"
    assert time.monotonic() - started < 20 * 0.25  # the client was not kept waiting
    deadline = time.monotonic() + 30
    while len(recorder.records) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    rec = recorder.records[before]
    assert rec.status == "cancelled" and rec.usage.output_tokens == 21  # the upstream's own count


def test_bearer_auth_and_no_version_header(gw: RunningGateway) -> None:
    resp = httpx.post(gw.url + "/v1/messages", headers={"authorization": f"Bearer {MASTER_KEY}"},
                      json={"model": "claude-sim", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200 and resp.json()["type"] == "message"


# --- renderers, for what no upstream here produces -----------------------------------------------------------


def render(chunks: list[Chunk], model: str = "m") -> list[tuple[str, dict[str, Any]]]:
    r = StreamRenderer(model)
    return sse_events(b"".join(r.feed(c) for c in chunks) + r.end())


def test_stream_thinking_redacted_text_and_usage() -> None:
    events = render([
        Chunk([StreamStart("abc", "claude-x", 0, usage=Usage(input_tokens=100, cached_tokens=30))]),
        Chunk([ReasoningDelta("Let me "), ReasoningDelta("think.")]),
        Chunk([ReasoningDelta(signature="sig-1")]),
        Chunk([ReasoningDelta(redacted="opaque==")]),
        Chunk([TextDelta("Answer"), TextDelta("!", choice=1)]),  # choice 1 is dropped
        Chunk([Finish(FinishReason.STOP_SEQUENCE, stop_sequence="END")]),
        Chunk([UsageUpdate(Usage(input_tokens=100, output_tokens=12, cached_tokens=30, cache_write_tokens=20))]),
    ])
    msg = check_sequence(events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == 70
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text"]
    assert msg.content[0].type == "thinking" and msg.content[0].thinking == "Let me think."
    assert msg.content[0].signature == "sig-1"
    assert msg.content[1].type == "redacted_thinking" and msg.content[1].data == "opaque=="
    assert msg.content[2].type == "text" and msg.content[2].text == "Answer"
    assert (msg.stop_reason, msg.stop_sequence, msg.id, msg.model) == ("stop_sequence", "END", "msg_abc", "claude-x")
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (50, 12)
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (30, 20)


def test_stream_interleaved_tool_calls_never_interleave_blocks() -> None:
    events = render([
        Chunk([StreamStart("x", "", 0)]),
        Chunk([TextDelta("Calling.")]),
        Chunk([ToolCallStart(0, "call_a", "a"), ToolCallStart(1, "call_b", "b")]),
        Chunk([ToolCallDelta(0, '{"x":'), ToolCallDelta(1, '{"y":')]),
        Chunk([ToolCallDelta(1, "2}"), ToolCallDelta(0, "1}")]),
        Chunk([Finish(FinishReason.TOOL_CALLS)]),
    ])
    msg = check_sequence(events)
    assert msg.model == "m" and msg.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in msg.content] == [
        ("text", None), ("tool_use", {"x": 1}), ("tool_use", {"y": 2})]


def test_stream_raw_anthropic_frames_pass_through() -> None:
    frames = [("message_start", {"type": "message_start", "message": {"id": "msg_up", "extra": 1}}),
              ("ping", {"type": "ping"}),
              ("message_stop", {"type": "message_stop"})]
    chunks = [Chunk([], wire=WIRE_ANTHROPIC_MESSAGES, raw={"event": n, "data": d}) for n, d in frames]
    r = StreamRenderer("m")
    out = b"".join(r.feed(c) for c in chunks) + r.end()
    assert sse_events(out) == frames


def test_render_response_blocks_and_passthrough() -> None:
    parts: list[Any] = [ReasoningPart("hmm", signature="s"), ReasoningPart(redacted="r"), TextPart("Hi"),
                        ToolCallPart("call_1", "f", '{"a": [1]}'), ToolCallPart("call_2", "g", "not json")]
    resp = ChatResponse("chatcmpl-1", "", 0, [Choice(0, NeutralMessage(Role.ASSISTANT, parts),
                                                      FinishReason.TOOL_CALLS)], Usage(10, 5, cached_tokens=4))
    msg = Message.model_validate(orjson.loads(render_response(resp, "asked")))
    assert msg.id == "msg_chatcmpl-1" and msg.model == "asked" and msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text", "tool_use", "tool_use"]
    assert [getattr(b, "input", None) for b in msg.content[3:]] == [{"a": [1]}, {}]
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens) == (6, 4)
    raw = {"id": "msg_up", "type": "message", "anything": ["kept"]}
    same = ChatResponse("x", "m", 0, [], None, wire=WIRE_ANTHROPIC_MESSAGES, raw=raw)
    assert orjson.loads(render_response(same)) == raw


def test_output_config_becomes_response_format_and_effort(client: anthropic.Anthropic,
                                                          fake_openai: FakeOpenAI) -> None:
    schema: Any = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    msg = client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "q"}],
                                 output_config={"effort": "low", "format": {"type": "json_schema", "schema": schema}})
    assert msg.content[0].type == "text" and orjson.loads(msg.content[0].text) == {"answer": "x"}
    body = fake_openai.last_request.json
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert body["reasoning_effort"] == "low" and "output_config" not in body


def test_parse_keeps_meta_for_a_same_wire_provider() -> None:
    cache: Any = {"type": "ephemeral"}
    body: Any = {
        "model": "m", "max_tokens": 9, "stream": True, "service_tier": "auto",
        "system": [{"type": "text", "text": "S", "cache_control": cache}],
        "tools": [{**WEATHER, "cache_control": cache}, {"type": "web_search_20250305", "name": "web_search"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}},
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "t", "signature": "sig"}, {"type": "redacted_thinking", "data": "r"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"},
                 "cache_control": cache}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                          "content": [{"type": "text", "text": "err"}]}]}],
    }
    req = parse_request(body)
    assert (req.wire, req.raw, req.extra, req.stream, req.max_tokens) == (WIRE_ANTHROPIC_MESSAGES, body,
                                                                          {"service_tier": "auto"}, True, 9)
    assert req.reasoning_budget == 1024
    system, user, assistant, result = req.messages
    assert system.role is Role.SYSTEM and system.parts == [TextPart("S", meta={"cache_control": cache})]
    assert user.parts == [FilePart(data=base64.b64encode(b"hello").decode(), media_type="text/plain"),
                          FilePart(file_id="file_1", meta={"anthropic_block": "image"})]
    assert assistant.parts == [ReasoningPart("t", signature="sig"), ReasoningPart(redacted="r"),
                               ToolCallPart("toolu_1", "get_weather", '{"city":"Oslo"}', meta={"cache_control": cache})]
    assert result.role is Role.USER and result.parts == [ToolResultPart("toolu_1", [TextPart("err")], is_error=True)]
    assert req.tools is not None and req.tools[0].meta == {"cache_control": cache}
    assert req.tools[1].meta == {"anthropic_server_tool": body["tools"][1]}
    count = parse_request({k: v for k, v in body.items() if k != "max_tokens"}, count_only=True)
    assert count.max_tokens is None and len(count.messages) == 4


def test_mid_conversation_system_messages(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    """The SDK's SystemMessageParam (Claude Code sends them between turns) lands in place on an OpenAI upstream."""
    msg = client.messages.create(
        model="gpt-4o-mini", max_tokens=50, system="Be brief.",
        messages=[{"role": "user", "content": "hello there"},
                  {"role": "system", "content": [{"type": "text", "text": "Tools: none today."}]},
                  {"role": "assistant", "content": "Hi!"},
                  {"role": "system", "content": "Remember: French."},
                  {"role": "user", "content": "how are you"}],
    )
    assert msg.content[0].type == "text" and msg.content[0].text == "Echo: how are you"
    assert fake_openai.last_request.json["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"},
        {"role": "system", "content": "Tools: none today."}, {"role": "assistant", "content": "Hi!"},
        {"role": "system", "content": "Remember: French."}, {"role": "user", "content": "how are you"}]


def test_context_management_is_dropped_for_translation(client: anthropic.Anthropic, fake_openai: FakeOpenAI) -> None:
    client.messages.create(model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                           extra_body={"context_management": {"edits": [{"type": "clear_thinking_20251015"}]}},
                           extra_headers={"anthropic-beta": "context-management-2025-06-27"})
    body = fake_openai.last_request.json
    assert "context_management" not in body and "anthropic-beta" not in fake_openai.last_request.headers
