"""The ``bedrock`` provider over real HTTP against the fake Bedrock runtime (which verifies every SigV4 signature and
validates every body with botocore against the service model), and end to end: the ``openai`` SDK → the gateway →
the fake. The fake itself is first checked against boto3, the official AWS SDK."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import boto3
import httpx
import openai
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from switchyard.config import BedrockProviderConfig
from switchyard.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from switchyard.messages import (
    WIRE_OPENAI_CHAT,
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
    UsageUpdate,
)
from switchyard.providers import Target, build_provider
from switchyard.providers.bedrock import BedrockProvider
from switchyard.providers.bedrock_wire import render_request
from switchyard.providers.eventstream import EventStreamDecoder, FrameError
from tests.support.fake_bedrock import ACCESS_KEY, REGION, SECRET_KEY, FakeBedrock, encode_frame, event_frame
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TARGET = Target(deployment="claude", model=MODEL)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 59).decode()  # 67 bytes with a PNG signature
WEATHER = Tool("get_weather", "Weather for a city", {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"]})


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing of the machine's own AWS set-up may leak in, and nothing may probe an instance metadata endpoint."""
    import os

    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def served() -> Iterator[FakeBedrock]:
    fake = FakeBedrock()
    with fake.serve():
        yield fake


@pytest.fixture
def fake(served: FakeBedrock) -> Iterator[FakeBedrock]:
    served.reset()
    yield served
    served.reset()


def _config(fake: FakeBedrock, **kw: Any) -> BedrockProviderConfig:
    values: dict[str, Any] = {"type": "bedrock", "region": REGION, "endpoint_url": fake.base_url,
                              "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "timeout": 10.0}
    values.update(kw)
    return BedrockProviderConfig(**{k: v for k, v in values.items() if v is not None})


@pytest.fixture
async def provider(fake: FakeBedrock) -> AsyncIterator[BedrockProvider]:
    p = BedrockProvider("aws", _config(fake))
    yield p
    await p.aclose()


def _req(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="claude", messages=list(messages), wire=WIRE_OPENAI_CHAT, **kw)


def user(text: str) -> Message:
    return Message(Role.USER, [TextPart(text)])


async def _collect(p: BedrockProvider, req: ChatRequest, target: Target = TARGET) -> list[Chunk]:
    return [c async for c in p.stream(req, target)]


# --- the fake, held to the official SDK ----------------------------------------------------------------------


def test_fake_serves_boto3(fake: FakeBedrock) -> None:
    client = boto3.client("bedrock-runtime", region_name=REGION, endpoint_url=fake.base_url,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    out = client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hi there"}]}])
    assert out["output"]["message"]["content"] == [{"text": "Echo: hi there"}]
    assert out["stopReason"] == "end_turn" and out["usage"]["totalTokens"] == 5
    assert fake.last_request.raw_path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    # botocore's own event-stream parser decodes the fake's frames, tool use and all
    stream = client.converse_stream(
        modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hi"}]}],
        toolConfig={"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": WEATHER.parameters}}}]})
    events = list(stream["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[:2] == ["messageStart", "contentBlockStart"] and set(kinds[2:-3]) == {"contentBlockDelta"}
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    args = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e)
    assert json.loads(args) == {"city": "x", "days": 1}
    assert events[1]["contentBlockStart"]["start"]["toolUse"]["name"] == "get_weather"
    fake.fail_stream_after(2)
    with pytest.raises(EventStreamError, match="throttlingException"):
        list(client.converse_stream(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}])["stream"])
    with pytest.raises(ClientError, match=r"ValidationException.*alternate"):
        client.converse(modelId=MODEL, messages=[{"role": "assistant", "content": [{"text": "x"}]}])
    wrong = boto3.client("bedrock-runtime", region_name=REGION, endpoint_url=fake.base_url,
                         aws_access_key_id=ACCESS_KEY, aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError, match="signature we calculated does not match"):
        wrong.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "x"}]}])


def test_frames_decode_with_botocore() -> None:
    frame = event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}, 3)
    buf = EventStreamBuffer()
    buf.add_data(frame + encode_frame({":message-type": "exception", ":exception-type": "x"}, b"{}"))
    first, second = list(buf)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert json.loads(first.payload)["delta"] == {"text": "héllo"} and second.headers[":exception-type"] == "x"
    # our decoder, fed a byte at a time, finds the same frames; a corrupted frame fails its checksum
    decoder = EventStreamDecoder()
    frames = [f for i in range(len(frame)) for f in decoder.feed(frame[i:i + 1])]
    assert len(frames) == 1 and frames[0].event_type == "contentBlockDelta" and frames[0].message_type == "event"
    broken = frame[:-5] + bytes([frame[-5] ^ 1]) + frame[-4:]
    with pytest.raises(FrameError, match="Checksum"):
        EventStreamDecoder().feed(broken)
    total, headers_len, crc = struct.unpack(">III", frame[:12])
    assert total == len(frame) and crc == zlib.crc32(frame[:8]) and headers_len == 87  # three string headers


async def test_fake_rejects_tampering(fake: FakeBedrock, provider: BedrockProvider) -> None:
    url = provider.url(MODEL, "converse")
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    creds = await provider._frozen_credentials(TARGET)
    headers = provider.sign(url, body, {"content-type": "application/json"}, creds)
    async with httpx.AsyncClient() as client:
        ok = await client.post(url, content=body, headers=headers)
        assert ok.status_code == 200, ok.text
        tampered = await client.post(url, content=body.replace(b"hi", b"yo"), headers=headers)
        assert tampered.status_code == 403 and "signature we calculated" in tampered.json()["message"]
        assert tampered.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
        unsigned = await client.post(url, content=body, headers={"content-type": "application/json"})
        assert unsigned.status_code == 403
        bad = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "topK": 3}).encode()
        invalid = await client.post(url, content=bad, headers=provider.sign(url, bad, {}, creds))
        assert invalid.status_code == 400 and "Unknown parameter" in invalid.json()["message"]
        assert invalid.headers["x-amzn-errortype"].startswith("ValidationException")


# --- the provider against the fake ---------------------------------------------------------------------------


async def test_plain_chat(fake: FakeBedrock, provider: BedrockProvider) -> None:
    req = _req(Message(Role.SYSTEM, [TextPart("Be brief.")]), user("hello there"), max_tokens=50, temperature=0.2,
               top_p=0.9, stop=["STOP"], top_k=40)
    out = await provider.chat(req, TARGET)
    assert out.choices[0].message.text() == "Echo: hello there"
    assert out.choices[0].finish_reason is FinishReason.STOP and out.model == MODEL and out.id
    assert out.usage is not None and (out.usage.input_tokens, out.usage.output_tokens) == (4, 3)
    sent = fake.last_request
    assert sent.operation == "converse" and sent.model_id == MODEL
    assert sent.json == {"messages": [{"role": "user", "content": [{"text": "hello there"}]}],
                         "system": [{"text": "Be brief."}],
                         "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9,
                                             "stopSequences": ["STOP"]},
                         "additionalModelRequestFields": {"top_k": 40}}
    assert sent.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")


async def test_stop_reasons_and_cache_usage(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.reply = "one two three four"
    fake.cache_read_tokens, fake.cache_write_tokens = 100, 20
    out = await provider.chat(_req(user("x"), max_tokens=2), TARGET)
    assert out.choices[0].finish_reason is FinishReason.LENGTH and out.choices[0].message.text() == "one two "
    assert out.usage is not None and out.usage.cached_tokens == 100 and out.usage.cache_write_tokens == 20
    assert out.usage.input_tokens == 1 + 100 + 20
    out = await provider.chat(_req(user("x"), stop=["three"]), TARGET)
    assert out.choices[0].finish_reason is FinishReason.STOP_SEQUENCE


async def test_model_ids_are_path_quoted(fake: FakeBedrock, provider: BedrockProvider) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    out = await provider.chat(_req(user("hi")), Target(deployment="p", model=arn))
    assert out.choices[0].message.text() == "Echo: hi"  # the signature over the double-encoded path held
    assert fake.last_request.model_id == arn and "%2F" in fake.last_request.raw_path


async def test_stream(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.cache_read_tokens = 7
    chunks = await _collect(provider, _req(user("stream this please")))
    events = [e for c in chunks for e in c.events]
    assert isinstance(events[0], StreamStart) and events[0].model == MODEL
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Echo: stream this please"
    finish = [e for e in events if isinstance(e, Finish)]
    assert len(finish) == 1 and finish[0].reason is FinishReason.STOP
    usage = [e.usage for e in events if isinstance(e, UsageUpdate)]
    assert len(usage) == 1 and usage[0].output_tokens == 4 and usage[0].cached_tokens == 7
    assert all(c.raw is None and c.wire is None for c in chunks)
    assert fake.last_request.operation == "converse-stream"


async def test_tools(fake: FakeBedrock, provider: BedrockProvider) -> None:
    time_tool = Tool("get_time", None, None)
    req = _req(user("weather?"), tools=[WEATHER, time_tool], tool_choice=ToolChoice("auto"))
    out = await provider.chat(req, TARGET)
    calls = [p for p in out.choices[0].message.parts if isinstance(p, ToolCallPart)]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": "x", "days": 1} and json.loads(calls[1].arguments) == {}
    assert out.choices[0].finish_reason is FinishReason.TOOL_CALLS
    tc = fake.last_request.json["toolConfig"]
    assert tc["toolChoice"] == {"auto": {}}
    assert tc["tools"][0] == {"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                                           "inputSchema": {"json": WEATHER.parameters}}}
    assert tc["tools"][1]["toolSpec"]["inputSchema"] == {"json": {"type": "object", "properties": {}}}
    await provider.chat(_req(user("w"), tools=[WEATHER, time_tool], tool_choice=ToolChoice("tool", "get_time")),
                        TARGET)
    assert fake.last_request.json["toolConfig"]["toolChoice"] == {"tool": {"name": "get_time"}}
    await provider.chat(_req(user("w"), tools=[WEATHER], tool_choice=ToolChoice("required")), TARGET)
    assert fake.last_request.json["toolConfig"]["toolChoice"] == {"any": {}}
    out = await provider.chat(_req(user("w"), tools=[WEATHER], tool_choice=ToolChoice("none")), TARGET)
    assert "toolConfig" not in fake.last_request.json and out.choices[0].message.text() == "Echo: w"


async def test_stream_tools(fake: FakeBedrock, provider: BedrockProvider) -> None:
    tools = [WEATHER, Tool("get_time", None, {"type": "object", "properties": {}})]
    events = [e for c in await _collect(provider, _req(user("w"), tools=tools)) for e in c.events]
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(s.index, s.name) for s in starts] == [(0, "get_weather"), (1, "get_time")]
    assert all(s.id.startswith("tooluse_") for s in starts)
    args = {i: "".join(e.arguments for e in events if isinstance(e, ToolCallDelta) and e.index == i) for i in (0, 1)}
    assert json.loads(args[0]) == {"city": "x", "days": 1} and json.loads(args[1]) == {}
    assert [e.reason for e in events if isinstance(e, Finish)] == [FinishReason.TOOL_CALLS]


async def test_tool_results_multi_turn(fake: FakeBedrock, provider: BedrockProvider) -> None:
    history = [
        Message(Role.SYSTEM, [TextPart("Use tools.")]),
        user("weather in Paris and the time?"),
        Message(Role.ASSISTANT, [TextPart("Let me look."),
                                 ToolCallPart("tooluse_a", "get_weather", '{"city": "Paris", "days": 1}'),
                                 ToolCallPart("tooluse_b", "get_time", "")]),
        Message(Role.TOOL, [ToolResultPart("tooluse_a", [TextPart("sunny, 21C")])]),
        Message(Role.TOOL, [ToolResultPart("tooluse_b", [TextPart("clock broke")], is_error=True)]),
        user("thanks!"),
    ]
    out = await provider.chat(_req(*history, tools=[WEATHER, Tool("get_time")]), TARGET)
    assert out.choices[0].message.text() == "Echo: [tooluse_a: sunny, 21C] [tooluse_b: clock broke] thanks!"
    sent = fake.last_request.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][1] == {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather",
                                                 "input": {"city": "Paris", "days": 1}}}
    assert sent[1]["content"][2]["toolUse"]["input"] == {}
    assert sent[2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_a", "content": [{"text": "sunny, 21C"}]}},
        {"toolResult": {"toolUseId": "tooluse_b", "content": [{"text": "clock broke"}], "status": "error"}},
        {"text": "thanks!"},
    ]
    with pytest.raises(UnsupportedParameter, match="tool_choice 'none'"):
        render_request(_req(*history, tools=[WEATHER], tool_choice=ToolChoice("none")), provider="aws")
    bad = Message(Role.ASSISTANT, [ToolCallPart("t", "get_weather", "[1, 2]")])
    with pytest.raises(InvalidRequest, match="JSON object"):
        render_request(_req(user("x"), bad), provider="aws")


async def test_images_and_documents(fake: FakeBedrock, provider: BedrockProvider) -> None:
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    msg = Message(Role.USER, [TextPart("what is this?"), ImagePart(data=PNG, media_type="image/png"),
                              ImagePart(data=PNG), ImagePart(url="s3://bucket/cat.jpeg"),
                              FilePart(data=pdf, media_type="application/pdf", filename="Q3 report (final).pdf")])
    out = await provider.chat(_req(msg), TARGET)
    assert out.choices[0].message.text() == ("Echo: what is this? [image png 67 bytes] [image png 67 bytes] "
                                             "[image jpeg 0 bytes] [document pdf Q3 report (final)]")
    content = fake.last_request.json["messages"][0]["content"]
    assert content[1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert content[3] == {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpeg"}}}}
    with pytest.raises(UnsupportedParameter, match="image URL") as e:
        await provider.chat(_req(Message(Role.USER, [ImagePart(url="https://example.com/cat.png")])), TARGET)
    assert e.value.param == "messages[0].content[0]" and "'aws'" in e.value.message
    # the fake checks the bytes against the declared format, as Bedrock does
    with pytest.raises(UpstreamError, match="does not match the specified image format") as e2:
        await provider.chat(_req(Message(Role.USER, [ImagePart(data=PNG, media_type="image/gif")])), TARGET)
    assert e2.value.status == 400 and not e2.value.retryable and e2.value.upstream_type == "ValidationException"


async def test_reasoning(fake: FakeBedrock, provider: BedrockProvider) -> None:
    req = _req(user("think"), reasoning_budget=1024, max_tokens=2048)
    out = await provider.chat(req, TARGET)
    reasoning = out.choices[0].message.parts[0]
    assert isinstance(reasoning, ReasoningPart) and reasoning.text == "The user said: think" and reasoning.signature
    assert fake.last_request.json["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}}
    events = [e for c in await _collect(provider, req) for e in c.events if isinstance(e, ReasoningDelta)]
    assert "".join(e.text for e in events) == "The user said: think"
    assert [e.signature for e in events if e.signature] == [reasoning.signature]
    # signed reasoning goes back in later turns; unsigned reasoning (not verifiable upstream) does not
    history = _req(user("think"), Message(Role.ASSISTANT, [reasoning, ReasoningPart("unsigned"), TextPart("ok")]),
                   user("more"), reasoning_budget=1024, max_tokens=2048)
    await provider.chat(history, TARGET)
    assert fake.last_request.json["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": reasoning.text, "signature": reasoning.signature}}},
        {"text": "ok"}]
    with pytest.raises(UpstreamError, match="budget_tokens") as e:  # Bedrock's own rule, reported as a 400
        await provider.chat(_req(user("x"), reasoning_budget=4096, max_tokens=1024), TARGET)
    assert e.value.status == 400


async def test_structured_output_and_effort(fake: FakeBedrock, provider: BedrockProvider) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    req = _req(user("x"), response_format=ResponseFormat("json_schema", name="thing", schema=schema),
               reasoning_effort="high")
    await provider.chat(req, TARGET)
    assert fake.last_request.json["outputConfig"] == {"effort": "high", "textFormat": {
        "type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(schema, separators=(",", ":")),
                                                            "name": "thing"}}}}


@pytest.mark.parametrize(("kw", "param"), [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "top_logprobs"), ({"seed": 1}, "seed"),
    ({"presence_penalty": 0.5}, "presence_penalty"), ({"frequency_penalty": 0.1}, "frequency_penalty"),
    ({"parallel_tool_calls": False, "tools": [WEATHER]}, "parallel_tool_calls"), ({"temperature": 1.5}, "temperature"),
    ({"response_format": ResponseFormat("json_object")}, "response_format"),
    ({"reasoning_effort": "minimal"}, "reasoning_effort"),
])
def test_unsupported_parameters(kw: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as e:
        render_request(_req(user("x"), **kw), provider="aws")
    assert e.value.param == param and "provider 'aws'" in e.value.message and e.value.status == 400


@pytest.mark.parametrize(("error", "status", "retryable"), [
    ("ThrottlingException", 429, True), ("ServiceUnavailableException", 502, True),
    ("ModelErrorException", 502, True), ("ValidationException", 400, False), ("AccessDeniedException", 502, False),
    ("ModelTimeoutException", 502, True),
])
async def test_upstream_errors(fake: FakeBedrock, provider: BedrockProvider, error: str, status: int,
                               retryable: bool) -> None:
    fake.fail_next(error, "scripted " + error)
    with pytest.raises(UpstreamError) as e:
        await provider.chat(_req(user("x")), TARGET)
    assert (e.value.status, e.value.retryable, e.value.upstream_type) == (status, retryable, error)
    assert f"scripted {error}" in e.value.message and e.value.provider == "aws"
    fake.fail_next(error)  # streams fail the same way, from the first __anext__
    with pytest.raises(UpstreamError) as e:
        await provider.stream(_req(user("x")), TARGET).__anext__()
    assert (e.value.status, e.value.retryable) == (status, retryable)


async def test_mid_stream_failures(fake: FakeBedrock, provider: BedrockProvider) -> None:
    fake.fail_stream_after(3)
    got: list[Chunk] = []
    with pytest.raises(UpstreamError, match="mid-stream: ThrottlingException: Too many tokens") as e:
        async for chunk in provider.stream(_req(user("a b c d e")), TARGET):
            got.append(chunk)
    assert (e.value.status, e.value.retryable, e.value.upstream_status) == (429, True, 429)
    assert len(got) == 3 and isinstance(got[0].events[0], StreamStart)
    fake.fail_stream_after(0, "serviceUnavailableException", "down")  # before any event: fails over
    with pytest.raises(UpstreamError, match="ServiceUnavailableException: down") as e:
        await provider.stream(_req(user("x")), TARGET).__anext__()
    assert e.value.retryable and e.value.status == 502
    fake.fail_stream_after(4, None)
    with pytest.raises(UpstreamError, match="ended the stream early"):
        await _collect(provider, _req(user("a b c d e")))


# --- credentials and configuration ---------------------------------------------------------------------------


async def test_credentials(fake: FakeBedrock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                           caplog: pytest.LogCaptureFixture) -> None:
    fake.session_token = "fake-session-token"
    p = BedrockProvider("aws", _config(fake, session_token="fake-session-token"))
    assert (await p.chat(_req(user("temporary")), TARGET)).choices[0].message.text() == "Echo: temporary"
    assert fake.last_request.headers["x-amz-security-token"] == "fake-session-token"
    await p.aclose()
    fake.session_token = None
    wrong = BedrockProvider("aws", _config(fake, secret_access_key="wrong"))
    with pytest.raises(UpstreamError, match="signature we calculated does not match") as e:
        await wrong.chat(_req(user("x")), TARGET)
    assert e.value.status == 502 and not e.value.retryable
    await wrong.aclose()
    # the AWS credential chain: environment variables, then a named profile from the shared credentials file
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    env = build_provider("aws", _config(fake, access_key_id=None, secret_access_key=None, region=None))
    assert isinstance(env, BedrockProvider) and env.region == REGION
    await env.start()  # resolves the chain ahead of the first call
    assert (await env.chat(_req(user("env")), TARGET)).choices[0].message.text() == "Echo: env"
    await env.aclose()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (tmp_path / "no-credentials").write_text(
        f"[team]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    prof = BedrockProvider("aws", _config(fake, access_key_id=None, secret_access_key=None, profile="team"))
    assert (await prof.chat(_req(user("profile")), TARGET)).choices[0].message.text() == "Echo: profile"
    await prof.aclose()
    none = BedrockProvider("aws", _config(fake, access_key_id=None, secret_access_key=None))
    await none.start()
    assert "no usable AWS credentials" in caplog.text  # start-up goes on; the calls report it
    with pytest.raises(UpstreamError, match="no usable AWS credentials") as e:
        await none.chat(_req(user("x")), TARGET)
    assert e.value.retryable and e.value.status == 502  # another deployment may serve the call
    await none.aclose()


def test_configuration_errors(fake: FakeBedrock) -> None:
    with pytest.raises(ValueError, match=r"providers\.aws\.region"):
        BedrockProvider("aws", _config(fake, region=None))
    with pytest.raises(ValueError, match="both access_key_id and secret_access_key"):
        BedrockProvider("aws", _config(fake, secret_access_key=None))
    with pytest.raises(ValueError, match="session_token"):
        BedrockProvider("aws", _config(fake, access_key_id=None, secret_access_key=None, session_token="t"))
    p = BedrockProvider("aws", _config(fake, endpoint_url=None, region="eu-west-3"))
    assert p.url("a.b:0", "converse") == "https://bedrock-runtime.eu-west-3.amazonaws.com/model/a.b%3A0/converse"


# --- end to end: the openai SDK → the gateway → the fake ----------------------------------------------------


@pytest.fixture(scope="module")
def gw(served: FakeBedrock) -> Iterator[RunningGateway]:
    providers = {"aws": {"type": "bedrock", "region": REGION, "endpoint_url": served.base_url,
                         "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}}
    deployments = [{"name": "claude", "provider": "aws", "model": MODEL,
                    "capabilities": ["chat", "tools", "vision", "json", "files", "reasoning"]}]
    with run_gateway(base_config(providers=providers, deployments=deployments)) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(gw: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0, timeout=10) as client:
        yield client


def test_e2e_plain_and_system(fake: FakeBedrock, gateway: openai.OpenAI) -> None:
    out = gateway.chat.completions.create(model="claude", max_tokens=20, messages=[
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello gateway"}])
    assert out.choices[0].message.content == "Echo: hello gateway" and out.choices[0].finish_reason == "stop"
    assert out.usage is not None and out.usage.prompt_tokens == 5 and out.usage.completion_tokens == 3
    assert fake.last_request.json["system"] == [{"text": "You are terse."}]
    assert fake.last_request.json["inferenceConfig"] == {"maxTokens": 20}


def test_e2e_stream_with_usage(fake: FakeBedrock, gateway: openai.OpenAI) -> None:
    chunks = list(gateway.chat.completions.create(model="claude", stream=True, stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "stream it"}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: stream it"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_e2e_tools_and_results(fake: FakeBedrock, gateway: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER.parameters}}]
    messages: Any = [{"role": "user", "content": "weather in Oslo?"}]
    out = gateway.chat.completions.create(model="claude", messages=messages, tools=tools, tool_choice="required")
    call = (out.choices[0].message.tool_calls or [])[0]
    assert out.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "x", "days": 1}  # type: ignore[union-attr]
    messages += [out.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "snow"}]
    final = gateway.chat.completions.create(model="claude", messages=messages, tools=tools)
    assert final.choices[0].message.content == f"Echo: [{call.id}: snow]"
    sent = fake.last_request.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"] and "toolResult" in sent[2]["content"][0]


def test_e2e_stream_tools(fake: FakeBedrock, gateway: openai.OpenAI) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER.parameters}}]
    chunks = list(gateway.chat.completions.create(model="claude", stream=True, tools=tools,
                                                  messages=[{"role": "user", "content": "weather?"}]))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    args = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(args) == {"city": "x", "days": 1}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_e2e_image(fake: FakeBedrock, gateway: openai.OpenAI) -> None:
    content: Any = [{"type": "text", "text": "describe"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    out = gateway.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
    assert out.choices[0].message.content == "Echo: describe [image png 67 bytes]"
    url: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError, match="image URL") as e:
        gateway.chat.completions.create(model="claude", messages=[{"role": "user", "content": url}])
    assert e.value.status_code == 400


def test_e2e_errors(fake: FakeBedrock, gateway: openai.OpenAI) -> None:
    fake.fail_next("ThrottlingException")
    with pytest.raises(openai.RateLimitError, match="Too many requests"):
        gateway.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="seed"):
        gateway.chat.completions.create(model="claude", seed=3, messages=[{"role": "user", "content": "x"}])


# --- end to end: the anthropic SDK → the gateway → the fake -------------------------------------------------


def test_e2e_anthropic_sdk(fake: FakeBedrock, gw: RunningGateway) -> None:
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER.parameters,
                   "cache_control": {"type": "ephemeral"}}]
    first: Any = {"role": "user", "content": "weather in Rome?"}
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0, timeout=10) as client:
        msg = client.messages.create(model="claude", max_tokens=2048, system="Be brief.", tools=tools,
                                     thinking={"type": "enabled", "budget_tokens": 1024}, messages=[first])
        assert [b.type for b in msg.content] == ["thinking", "tool_use"] and msg.stop_reason == "tool_use"
        thinking, tool_use = msg.content
        assert thinking.type == "thinking" and thinking.signature and tool_use.type == "tool_use"
        assert tool_use.input == {"city": "x", "days": 1}
        sent = fake.last_request.json
        assert sent["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default"}}
        assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
        # the signed thinking block and the tool call go back with the tool's result
        history: Any = [first, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id,
                                                      "content": "rain"}]}]
        with client.messages.stream(model="claude", max_tokens=2048, tools=tools, messages=history,
                                    thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
            final = stream.get_final_message()
        assert [b.type for b in final.content] == ["thinking", "text"] and final.stop_reason == "end_turn"
        assert final.content[1].type == "text" and final.content[1].text == f"Echo: [{tool_use.id}: rain]"
        assert final.usage.output_tokens > 0
        assistant = fake.last_request.json["messages"][1]["content"]
        assert assistant[0] == {"reasoningContent": {"reasoningText": {"text": thinking.thinking,
                                                                       "signature": thinking.signature}}}
        assert assistant[1]["toolUse"]["toolUseId"] == tool_use.id
