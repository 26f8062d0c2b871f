"""The ``gemini`` provider, over real HTTP: directly against a fake Gemini API, and end to end from the official
``openai`` (and, once its routes exist, ``anthropic``) SDK through the gateway to that fake."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from google.genai import types

from switchyard.config.providers import GeminiProviderConfig
from switchyard.errors import UnsupportedParameter, UpstreamError
from switchyard.messages import (
    WIRE_ANTHROPIC_MESSAGES,
    WIRE_OPENAI_CHAT,
    WIRE_OPENAI_EMBEDDINGS,
    ChatRequest,
    Chunk,
    EmbeddingRequest,
    Finish,
    FinishReason,
    ImagePart,
    LogprobsDelta,
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
    UsageUpdate,
    merge_usage,
)
from switchyard.messages import Usage as NeutralUsage
from switchyard.providers import build_provider
from switchyard.providers.base import Target
from switchyard.providers.gemini import GeminiProvider
from switchyard.providers.gemini_wire import SKIP_SIGNATURE, gemini_schema, split_call_id
from tests.support.fake_gemini import BLOCK_OUTPUT, BLOCK_PROMPT, FakeGemini, make_fake_gemini
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway

KEY = "gemini-test-key"
FLASH = Target("flash", "gemini-2.5-flash")
PRO3 = Target("pro3", "gemini-3-pro-preview")
EMBED = Target("embed", "gemini-embedding-001")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
WEATHER = Tool("get_weather", "Current weather in a city", {
    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
    "properties": {"city": {"type": "string", "format": "email"}, "unit": {"$ref": "#/$defs/unit"},
                   "days": {"type": ["integer", "null"], "exclusiveMinimum": 0}},
    "required": ["city", "ghost"], "$defs": {"unit": {"enum": ["c", "f"]}},
}, strict=True)
WEATHER_OAI: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city", "strict": True, "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
        "additionalProperties": False}}}
TIME_OAI: Any = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}}}}


def user(text: str, **kw: Any) -> ChatRequest:
    return ChatRequest(model="gem", messages=[Message(Role.USER, [TextPart(text)])], wire="test", **kw)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeGemini]:
    fake = make_fake_gemini(api_key=KEY)
    with fake.serve():
        yield fake


@pytest.fixture
def fake(fake_server: FakeGemini) -> Iterator[FakeGemini]:
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
async def prov(fake: FakeGemini) -> AsyncIterator[GeminiProvider]:
    assert fake.base_url
    p = build_provider("gem", GeminiProviderConfig(type="gemini", base_url=fake.base_url, api_key=KEY))
    assert isinstance(p, GeminiProvider)
    yield p
    await p.aclose()


async def collect(it: AsyncIterator[Chunk]) -> list[Any]:
    return [ev async for chunk in it for ev in chunk.events]


def body(fake: FakeGemini) -> dict[str, Any]:
    b = fake.last_request.json
    assert isinstance(b, dict)
    return b


# --- the fake itself -----------------------------------------------------------------------------------------


def test_fake_speaks_the_documented_wire(fake: FakeGemini) -> None:
    url = f"{fake.base_url}/v1beta/models/gemini-2.5-flash:generateContent"

    def post(body: dict[str, Any], path: str = url) -> httpx.Response:
        return httpx.post(path, headers={"x-goog-api-key": KEY}, json=body)

    def turn(part: dict[str, Any]) -> list[Any]:
        return [{"role": "user", "parts": [part]}]

    ok = post({"contents": turn({"text": "hi"}), "generationConfig": {"responseLogprobs": True}})
    resp = types.GenerateContentResponse.model_validate(ok.json())
    assert resp.text == "Echo: hi" and resp.candidates and resp.candidates[0].finish_reason == "STOP"
    assert resp.usage_metadata and resp.usage_metadata.prompt_token_count
    assert httpx.post(url + "?key=" + KEY, json={"contents": turn({"text": "x"})}).is_success
    bad = post({"contents": turn({"txt": "x"})})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    tools = [{"functionDeclarations": [{"name": "f", "parameters": schema}]}]
    bad = post({"contents": turn({"text": "x"}), "tools": tools})
    assert bad.status_code == 400 and "additionalProperties" in bad.json()["error"]["message"]
    assert httpx.post(url, json={}).json()["error"]["status"] == "PERMISSION_DENIED"
    sse_url = url.replace(":generateContent", ":streamGenerateContent?alt=sse")
    stream = post({"contents": turn({"text": "a b c"})}, sse_url)
    frames = [types.GenerateContentResponse.model_validate_json(line[6:]) for line in stream.text.split("\r\n\r\n")
              if line.startswith("data: ")]
    assert "".join(f.text or "" for f in frames) == "Echo: a b c" and "[DONE]" not in stream.text
    array = post({"contents": turn({"text": "a b c"})}, sse_url.replace("?alt=sse", ""))  # no alt=sse: one JSON array
    assert [types.GenerateContentResponse.model_validate(f).text for f in array.json()] == [f.text for f in frames]
    embed_url = f"{fake.base_url}/v1beta/models/gemini-embedding-001:embedContent"
    one = post({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 3}, embed_url)
    embedding = types.ContentEmbedding.model_validate(one.json()["embedding"])
    assert embedding.values is not None and len(embedding.values) == 3
    assert post({"contents": turn({"text": "x"})}, embed_url.replace("embedContent", "generateContent")).status_code \
        == 404


# --- the provider against the fake ---------------------------------------------------------------------------


async def test_plain_chat_and_request_shape(prov: GeminiProvider, fake: FakeGemini) -> None:
    fake.cached_tokens, fake.thoughts_tokens = 2, 3
    req = ChatRequest(model="gem", wire="test", messages=[
        Message(Role.SYSTEM, [TextPart("Be brief.")]), Message(Role.USER, [TextPart("hello there")]),
        Message(Role.ASSISTANT, [TextPart("Hi!")]), Message(Role.USER, [TextPart("how are you")]),
    ], temperature=0.5, top_p=0.9, top_k=20, max_tokens=50, stop=["zzz"], seed=7, presence_penalty=0.1,
        frequency_penalty=0.2, user="u-1", metadata={"a": "b"})
    resp = await prov.chat(req, FLASH)
    rec = fake.last_request
    assert rec.path == "/v1beta/models/gemini-2.5-flash:generateContent" and rec.headers["x-goog-api-key"] == KEY
    b = body(fake)
    assert b["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in b["contents"]] == ["user", "model", "user"]
    assert b["generationConfig"] == {"temperature": 0.5, "topP": 0.9, "topK": 20, "maxOutputTokens": 50, "seed": 7,
                                     "presencePenalty": 0.1, "frequencyPenalty": 0.2, "stopSequences": ["zzz"]}
    (choice,) = resp.choices
    assert choice.message.text() == "Echo: how are you" and choice.finish_reason is FinishReason.STOP
    assert resp.usage is not None and resp.usage.cached_tokens == 2 and resp.usage.reasoning_tokens == 3
    assert resp.usage.output_tokens == 4 + 3 and resp.usage.input_tokens >= 2
    assert resp.model == "gemini-2.5-flash" and resp.raw is not None and resp.raw["responseId"] == resp.id


async def test_candidates_logprobs_json_and_thinking(prov: GeminiProvider, fake: FakeGemini) -> None:
    schema = {"$schema": "x", "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    resp = await prov.chat(user("count", n=2, logprobs=True, top_logprobs=2, reasoning_effort="low",
                                response_format=ResponseFormat("json_schema", "r", schema)), FLASH)
    gen = body(fake)["generationConfig"]
    assert gen["candidateCount"] == 2 and gen["responseLogprobs"] is True and gen["logprobs"] == 2
    assert gen["responseMimeType"] == "application/json" and "$schema" not in gen["responseJsonSchema"]
    assert gen["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
    assert [c.index for c in resp.choices] == [0, 1]
    parts = resp.choices[1].message.parts
    assert isinstance(parts[0], ReasoningPart) and parts[0].text
    assert orjson.loads(resp.choices[1].message.text()) == {"n": 1}
    assert resp.usage is not None and resp.usage.reasoning_tokens > 0
    top = resp.choices[0].logprobs["content"][0]
    assert top["token"] == '{"n":1}' and len(top["top_logprobs"]) == 2
    await prov.chat(user("x", reasoning_effort="high"), PRO3)
    assert body(fake)["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "HIGH", "includeThoughts": True}
    await prov.chat(user("x", reasoning_budget=0, response_format=ResponseFormat("json_object")), FLASH)
    gen = body(fake)["generationConfig"]
    assert gen == {"responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": 0,
                                                                              "includeThoughts": False}}
    with pytest.raises(UnsupportedParameter) as e:
        await prov.chat(user("x", reasoning_effort="extreme"), FLASH)
    assert e.value.param == "reasoning_effort"


async def test_stream_plain(prov: GeminiProvider, fake: FakeGemini) -> None:
    events = await collect(prov.stream(user("one two three four", stream=True, logprobs=True), FLASH))
    assert isinstance(events[0], StreamStart) and events[0].model == "gemini-2.5-flash"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Echo: one two three four"
    assert [e.reason for e in events if isinstance(e, Finish)] == [FinishReason.STOP]
    usage = NeutralUsage()
    for e in events:
        if isinstance(e, UsageUpdate):
            merge_usage(usage, e.usage)
    assert usage.output_tokens == 5 and usage.input_tokens > 0
    assert fake.last_request.params == {"alt": "sse"}
    assert not any(isinstance(e, LogprobsDelta) for e in events)  # the fake only sends them non-streaming


async def test_tools_schema_and_choice(prov: GeminiProvider, fake: FakeGemini) -> None:
    time_tool = Tool("get_time", None, {"type": "object", "properties": {}})
    resp = await prov.chat(user("weather?", tools=[WEATHER, time_tool], tool_choice=ToolChoice("tool", "get_weather")),
                           FLASH)
    b = body(fake)
    decl, bare = b["tools"][0]["functionDeclarations"]
    assert decl["parameters"] == {
        "type": "OBJECT", "required": ["city"],
        "properties": {"city": {"type": "STRING"}, "unit": {"enum": ["c", "f"]},
                       "days": {"type": "INTEGER", "nullable": True}},
    }
    assert bare == {"name": "get_time"}
    assert b["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    (call,) = resp.choices[0].message.parts
    assert isinstance(call, ToolCallPart) and call.name == "get_weather" and call.id.startswith("call_")
    assert orjson.loads(call.arguments) == {"city": "x"}
    assert resp.choices[0].finish_reason is FinishReason.TOOL_CALLS
    again = await prov.chat(user("weather?", tools=[WEATHER, time_tool], tool_choice=ToolChoice("tool", "get_weather")),
                            FLASH)
    assert again.choices[0].message.parts[0] != call  # a fresh response id, fresh call ids
    for choice, mode in (("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")):
        await prov.chat(user("x", tools=[WEATHER], tool_choice=ToolChoice(choice)), FLASH)  # type: ignore[arg-type]
        assert body(fake)["toolConfig"]["functionCallingConfig"] == {"mode": mode}
    single = await prov.chat(user("both", tools=[WEATHER, time_tool], parallel_tool_calls=False), FLASH)
    assert [p.name for p in single.choices[0].message.parts if isinstance(p, ToolCallPart)] == ["get_weather"]


def test_schema_subset() -> None:
    s = gemini_schema({"type": "object", "properties": {
        "a": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "b": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "c": {"const": 3}, "d": {"type": "array", "items": {"type": "string", "format": "date-time"}},
        "e": {"allOf": [{"type": "object", "properties": {"x": {"type": "boolean"}}}], "examples": [{"x": True}]},
    }, "patternProperties": {"^x": {}}}, param="tools", provider="p")
    assert s == {"type": "OBJECT", "properties": {
        "a": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}, "b": {"type": "NUMBER", "nullable": True},
        "c": {"enum": ["3"]}, "d": {"type": "ARRAY", "items": {"type": "STRING", "format": "date-time"}},
        "e": {"type": "OBJECT", "properties": {"x": {"type": "BOOLEAN"}}, "example": {"x": True}},
    }}
    with pytest.raises(UnsupportedParameter):
        gemini_schema({"$ref": "#/$defs/n", "$defs": {"n": {"properties": {"next": {"$ref": "#/$defs/n"}}}}},
                      param="tools", provider="p")


async def test_tool_results_round_trip(prov: GeminiProvider, fake: FakeGemini) -> None:
    first = await prov.chat(user("weather and time?", tools=[WEATHER, Tool("get_time")]), FLASH)
    calls = first.choices[0].message.parts
    assert [c.name for c in calls if isinstance(c, ToolCallPart)] == ["get_weather", "get_time"]
    req = user("weather and time?", tools=[WEATHER, Tool("get_time")])
    req.messages += [first.choices[0].message,
                     Message(Role.TOOL, [ToolResultPart(calls[0].id, [TextPart('{"temp": 21}')])]),  # type: ignore
                     Message(Role.TOOL, [ToolResultPart(calls[1].id, [TextPart("noon")])]),  # type: ignore
                     Message(Role.USER, [ImagePart(data=PNG)])]
    resp = await prov.chat(req, FLASH)
    contents = body(fake)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][0] == {"functionCall": {"name": "get_weather", "args": {"city": "x"}}}
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
        {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
    ]
    assert resp.choices[0].message.text() == 'Got: {"get_weather":{"temp":21},"get_time":{"content":"noon"}}'
    err = user("x")
    err.messages += [Message(Role.ASSISTANT, [ToolCallPart("c1", "f", "{}")]),
                     Message(Role.TOOL, [ToolResultPart("c1", [TextPart("boom")], is_error=True)])]
    await prov.chat(err, FLASH)
    assert body(fake)["contents"][-1]["parts"] == [{"functionResponse": {"name": "f", "response": {"error": "boom"}}}]


async def test_gemini3_thought_signatures(prov: GeminiProvider, fake: FakeGemini) -> None:
    first = await prov.chat(user("weather?", tools=[WEATHER]), PRO3)
    (call,) = first.choices[0].message.parts
    assert isinstance(call, ToolCallPart)
    base, sig = split_call_id(call.id)
    assert base.startswith("call_") and sig in fake.issued_signatures and "=" not in call.id
    req = user("weather?", tools=[WEATHER])
    req.messages += [first.choices[0].message, Message(Role.TOOL, [ToolResultPart(call.id, [TextPart("sunny")])])]
    second = await prov.chat(req, PRO3)  # the fake refuses an unsigned or altered signature
    sent = body(fake)["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] == sig and "id" not in sent["functionCall"]
    sig_part, text = second.choices[0].message.parts
    assert isinstance(sig_part, ReasoningPart) and sig_part.signature in fake.issued_signatures
    assert isinstance(text, TextPart)
    req.messages += [second.choices[0].message, Message(Role.USER, [TextPart("thanks")])]
    await prov.chat(req, PRO3)
    assert body(fake)["contents"][3]["parts"] == [{"text": text.text, "thoughtSignature": sig_part.signature}]
    foreign = user("x")  # history from another model: no signature to send, so the documented stand-in goes
    foreign.messages += [Message(Role.ASSISTANT, [ReasoningPart("unsigned musing"), ToolCallPart("t1", "f", "")]),
                         Message(Role.TOOL, [ToolResultPart("t1", [TextPart("ok")])])]
    await prov.chat(foreign, PRO3)
    assert body(fake)["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}},
                                                   "thoughtSignature": SKIP_SIGNATURE}]
    await prov.chat(foreign, FLASH)
    assert body(fake)["contents"][1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]


async def test_stream_tools_and_signatures(prov: GeminiProvider, fake: FakeGemini) -> None:
    events = await collect(prov.stream(user("?", stream=True, tools=[WEATHER, Tool("get_time")],
                                            reasoning_effort="medium"), PRO3))
    kinds = [type(e) for e in events if not isinstance(e, UsageUpdate)]
    assert kinds[:4] == [StreamStart, ReasoningDelta, ToolCallStart, ToolCallDelta]
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_time")]
    assert split_call_id(starts[0].id)[1] in fake.issued_signatures and split_call_id(starts[1].id)[1] is None
    assert orjson.loads(deltas[0].arguments) == {"city": "x"} and orjson.loads(deltas[1].arguments) == {}
    assert [e.reason for e in events if isinstance(e, Finish)] == [FinishReason.TOOL_CALLS]
    events = await collect(prov.stream(user("?", stream=True, tools=[WEATHER, Tool("get_time")],
                                            parallel_tool_calls=False), FLASH))
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["get_weather"]


async def test_media(prov: GeminiProvider, fake: FakeGemini) -> None:
    from switchyard.messages import AudioPart, FilePart

    req = ChatRequest(model="gem", wire="test", messages=[Message(Role.USER, [
        TextPart("look"), ImagePart(data=PNG, media_type="image/png"), ImagePart(url="gs://bucket/cat.jpg"),
        ImagePart(url="data:image/svg+xml,%3Csvg%2F%3E"), FilePart(data="JVBERi0=", media_type="application/pdf"),
        FilePart(file_id="files/abc123", media_type="application/pdf"), AudioPart(data="UklGRg==", format="wav"),
    ])])
    await prov.chat(req, FLASH)
    assert body(fake)["contents"][0]["parts"][1:] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"fileUri": "gs://bucket/cat.jpg", "mimeType": "image/jpeg"}},
        {"inlineData": {"mimeType": "image/svg+xml", "data": base64.b64encode(b"<svg/>").decode()}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
        {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123",
                      "mimeType": "application/pdf"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]
    bad = ChatRequest(model="gem", wire="test",
                      messages=[Message(Role.USER, [ImagePart(url="https://example.com/cat.png")])])
    with pytest.raises(UnsupportedParameter) as e:
        await prov.chat(bad, FLASH)
    assert e.value.param == "messages" and "'gem'" in e.value.message
    with pytest.raises(UnsupportedParameter):
        await prov.chat(ChatRequest(model="g", wire="t", messages=[Message(Role.USER, [FilePart(file_id="file-x")])]),
                        FLASH)


async def test_safety_blocks(prov: GeminiProvider, fake: FakeGemini) -> None:
    resp = await prov.chat(user(f"please {BLOCK_PROMPT}"), FLASH)
    assert resp.choices[0].finish_reason is FinishReason.CONTENT_FILTER and resp.choices[0].message.parts == []
    assert resp.raw is not None and resp.raw["promptFeedback"]["blockReason"] == "SAFETY"
    resp = await prov.chat(user(f"say {BLOCK_OUTPUT}"), FLASH)
    assert resp.choices[0].finish_reason is FinishReason.CONTENT_FILTER and resp.choices[0].message.parts == []
    for text in (BLOCK_PROMPT, BLOCK_OUTPUT):
        events = await collect(prov.stream(user(text, stream=True), FLASH))
        assert [e.reason for e in events if isinstance(e, Finish)] == [FinishReason.CONTENT_FILTER]


async def test_errors(prov: GeminiProvider, fake: FakeGemini) -> None:
    fake.fail_next(429, headers={"retry-after": "3"})
    with pytest.raises(UpstreamError) as e:
        await prov.chat(user("x"), FLASH)
    assert e.value.status == 429 and e.value.retryable and e.value.retry_after == 3
    assert e.value.headers["retry-after"] == "3" and "quota" in e.value.message
    fake.fail_next(429, retry_delay="7s")  # Gemini's own way: google.rpc.RetryInfo in the body
    with pytest.raises(UpstreamError) as e:
        await anext(aiter(prov.stream(user("x", stream=True), FLASH)))
    assert e.value.status == 429 and e.value.retry_after == 7
    fake.fail_next(503)
    with pytest.raises(UpstreamError) as e:
        await prov.chat(user("x"), FLASH)
    assert e.value.status == 502 and e.value.retryable and "overloaded" in e.value.message
    with pytest.raises(UpstreamError) as e:
        await prov.chat(user("x", tools=[Tool("bad name!")]), FLASH)
    assert e.value.status == 400 and not e.value.retryable and "Invalid function name" in e.value.message
    with pytest.raises(UpstreamError) as e:
        await prov.chat(user("x"), Target("nope", "no-such-model"))
    assert e.value.status == 404
    fake.break_stream_after(2)
    with pytest.raises(UpstreamError, match="ended the stream early") as e:
        await collect(prov.stream(user("a b c d e f g h", stream=True), FLASH))
    assert e.value.retryable
    assert fake.base_url
    wrong = GeminiProvider("wrong", GeminiProviderConfig(type="gemini", base_url=fake.base_url, api_key="bad"))
    with pytest.raises(UpstreamError) as e:
        await wrong.chat(user("x"), FLASH)
    assert e.value.status == 502 and not e.value.retryable and "API key not valid" in e.value.message
    await wrong.aclose()
    with pytest.raises(UnsupportedParameter) as u:
        await prov.chat(ChatRequest(model="g", wire=WIRE_OPENAI_CHAT, messages=[Message(Role.USER, [TextPart("x")])],
                                    extra={"logit_bias": {"50256": -100}, "store": True}), FLASH)
    assert u.value.param == "logit_bias"
    with pytest.raises(UnsupportedParameter) as u:  # any foreign protocol's unmodelled field is refused by name
        await prov.chat(ChatRequest(model="g", wire=WIRE_ANTHROPIC_MESSAGES,
                                    messages=[Message(Role.USER, [TextPart("x")])], extra={"mcp_servers": [{}]}), FLASH)
    assert u.value.param == "mcp_servers"
    await prov.chat(ChatRequest(model="g", wire=WIRE_ANTHROPIC_MESSAGES, messages=[Message(Role.USER, [TextPart("x")])],
                                extra={"service_tier": "auto"}), FLASH)  # harmless: it only steers billing


async def test_embeddings(prov: GeminiProvider, fake: FakeGemini) -> None:
    resp = await prov.embed(EmbeddingRequest(model="e", input=["a", "b c"], wire=WIRE_OPENAI_EMBEDDINGS, dimensions=4),
                            EMBED)
    assert fake.last_request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert body(fake) == {"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 4}
        for t in ("a", "b c")]}
    assert [e.index for e in resp.data] == [0, 1] and all(len(e.vector) == 4 for e in resp.data)
    assert resp.usage.input_tokens > 0
    b64 = await prov.embed(EmbeddingRequest(model="e", input=["a", "b c"], wire=WIRE_OPENAI_EMBEDDINGS,
                                            dimensions=4, encoding_format="base64"), EMBED)
    assert isinstance(b64.data[1].vector, str)
    assert list(struct.unpack("<4f", base64.b64decode(b64.data[1].vector))) == resp.data[1].vector
    with pytest.raises(UnsupportedParameter) as e:
        await prov.embed(EmbeddingRequest(model="e", input=[[1, 2]], wire=WIRE_OPENAI_EMBEDDINGS, single=True), EMBED)
    assert e.value.param == "input"


# --- end to end: official SDKs -> gateway -> gemini provider -> fake Gemini ----------------------------------


@pytest.fixture(scope="module")
def gw(fake_server: FakeGemini) -> Iterator[RunningGateway]:
    assert fake_server.base_url
    caps = ["chat", "tools", "json", "vision"]
    cfg = base_config(
        providers={"google": {"type": "gemini", "base_url": fake_server.base_url, "api_key": KEY}},
        deployments=[{"name": "flash", "provider": "google", "model": "gemini-2.5-flash", "capabilities": caps},
                     {"name": "pro3", "provider": "google", "model": "gemini-3-pro-preview", "capabilities": caps},
                     {"name": "limited", "provider": "google", "model": "gemini-2.5-flash"},  # may cool down
                     {"name": "embed", "provider": "google", "model": "gemini-embedding-001",
                      "capabilities": ["embeddings"]}],
    )
    with run_gateway(cfg) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway, fake: FakeGemini) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


def test_e2e_plain_and_system(client: openai.OpenAI, fake: FakeGemini) -> None:
    resp = client.chat.completions.create(model="flash", messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello there"}], max_tokens=20)
    assert resp.choices[0].message.content == "Echo: hello there" and resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 3 and resp.usage.prompt_tokens > 0
    b = body(fake)
    assert b["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert b["generationConfig"] == {"maxOutputTokens": 20}


def test_e2e_stream_with_usage(client: openai.OpenAI, fake: FakeGemini) -> None:
    chunks = list(client.chat.completions.create(model="flash", messages=[{"role": "user", "content": "a b c d"}],
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: a b c d"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5 and not chunks[-1].choices


def test_e2e_tools_and_results(client: openai.OpenAI, fake: FakeGemini) -> None:
    messages: list[Any] = [{"role": "user", "content": "weather and time?"}]
    resp = client.chat.completions.create(model="pro3", messages=messages, tools=[WEATHER_OAI, TIME_OAI])
    msg = resp.choices[0].message
    assert resp.choices[0].finish_reason == "tool_calls" and msg.tool_calls
    calls = [(c.function.name, orjson.loads(c.function.arguments)) for c in msg.tool_calls]  # type: ignore[union-attr]
    assert calls == [("get_weather", {"city": "x"}), ("get_time", {"tz": "x"})]
    decl = body(fake)["tools"][0]["functionDeclarations"][0]
    assert "additionalProperties" not in decl["parameters"] and "strict" not in decl
    messages.append(msg.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": '{"temp": 19}'},
                 {"role": "tool", "tool_call_id": msg.tool_calls[1].id, "content": "noon"}]
    final = client.chat.completions.create(model="pro3", messages=messages, tools=[WEATHER_OAI, TIME_OAI])
    assert final.choices[0].message.content == 'Got: {"get_weather":{"temp":19},"get_time":{"content":"noon"}}'
    sent = body(fake)["contents"]
    assert sent[1]["parts"][0]["thoughtSignature"] in fake.issued_signatures


def test_e2e_stream_tools(client: openai.OpenAI, fake: FakeGemini) -> None:
    chunks = list(client.chat.completions.create(model="flash", messages=[{"role": "user", "content": "weather?"}],
                                                 tools=[WEATHER_OAI], tool_choice="required", stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    assert orjson.loads("".join(d.function.arguments or "" for d in deltas if d.function)) == {"city": "x"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    assert body(fake)["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_e2e_images(client: openai.OpenAI, fake: FakeGemini) -> None:
    content: Any = [{"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    resp = client.chat.completions.create(model="flash", messages=[{"role": "user", "content": content}])
    assert resp.choices[0].message.content == "Echo: what is this"
    assert body(fake)["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}
    content[1]["image_url"]["url"] = "https://example.com/cat.png"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="flash", messages=[{"role": "user", "content": content}])
    assert "google" in str(e.value) and e.value.body["param"] == "messages"  # type: ignore[index]


def test_e2e_content_filter_and_rate_limit(client: openai.OpenAI, fake: FakeGemini) -> None:
    resp = client.chat.completions.create(model="flash", messages=[{"role": "user", "content": BLOCK_PROMPT}])
    assert resp.choices[0].finish_reason == "content_filter" and not resp.choices[0].message.content
    chunks = list(client.chat.completions.create(model="flash", stream=True,
                                                 messages=[{"role": "user", "content": BLOCK_OUTPUT}]))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "content_filter"]
    fake.fail_next(429, retry_delay="2s")
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="limited", messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "2"


def test_e2e_embeddings(client: openai.OpenAI, fake: FakeGemini) -> None:
    resp = client.embeddings.create(model="embed", input=["a", "b"], dimensions=4)
    assert [len(d.embedding) for d in resp.data] == [4, 4]
    b64 = client.embeddings.create(model="embed", input="a", dimensions=4)  # the SDK asks for base64 and decodes
    assert b64.data[0].embedding == resp.data[0].embedding


def test_e2e_anthropic_sdk(gw: RunningGateway, fake: FakeGemini) -> None:
    from switchyard.server.anthropic_routes import ROUTES

    if not ROUTES:
        pytest.skip("the Anthropic-compatible routes (server/anthropic_routes.py) are not there yet")
    import anthropic

    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as c:
        msg = c.messages.create(model="flash", max_tokens=50, system="Be brief.",
                                messages=[{"role": "user", "content": "hello there"}])
        assert msg.content[0].type == "text" and msg.content[0].text == "Echo: hello there"
        assert msg.stop_reason == "end_turn"
        assert body(fake)["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        tool: Any = {"name": "get_weather", "input_schema": WEATHER_OAI["function"]["parameters"]}
        first = c.messages.create(model="pro3", max_tokens=50, tools=[tool],
                                  messages=[{"role": "user", "content": "weather?"}])
        use = next(b for b in first.content if b.type == "tool_use")
        assert first.stop_reason == "tool_use" and use.input == {"city": "x"}
        history: list[Any] = [{"role": "user", "content": "weather?"},
                              {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                            "content": "sunny"}]}]
        final = c.messages.create(model="pro3", max_tokens=50, tools=[tool], messages=history)
        assert final.content[-1].type == "text"
        assert final.content[-1].text == 'Got: {"get_weather":{"content":"sunny"}}'
        with c.messages.stream(model="pro3", max_tokens=2000, tools=[tool], messages=history[:1],
                               thinking={"type": "enabled", "budget_tokens": 1024}) as s:
            streamed = s.get_final_message()
        assert [b.type for b in streamed.content] == ["thinking", "tool_use"] and streamed.stop_reason == "tool_use"
        assert body(fake)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
        history[1]["content"] = [b.model_dump() for b in streamed.content]
        history[2]["content"][0]["tool_use_id"] = streamed.content[1].id  # type: ignore[union-attr]
        c.messages.create(model="pro3", max_tokens=2000, tools=[tool], messages=history,
                          thinking={"type": "enabled", "budget_tokens": 1024})
        sent = body(fake)["contents"][1]["parts"]  # unsigned thought summaries stay behind; the call keeps its sig
        assert [list(p) for p in sent] == [["functionCall", "thoughtSignature"]]
