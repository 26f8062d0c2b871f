"""Tests of the test infrastructure itself: the fake OpenAI upstream and the steady OpenAPI mock,
both driven by the official ``openai`` SDK pointed straight at them (no gateway involved)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from tests.support.fake_openai import FakeOpenAI, make_fake_openai
from tests.support.servers import ServerThread, run_process, serve_asgi, wait_http
from tests.support.steady import steady_diagnostics

WEATHER_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "days", "unit"],
        },
    },
}
TIME_TOOL: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
USER_MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = make_fake_openai()
    with fake.serve() as url:
        yield fake, url


@pytest.fixture
def fake(served: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    served[0].reset()
    return served[0]


@pytest.fixture
def client(served: tuple[FakeOpenAI, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served[1] + "/v1", api_key="sk-fake", max_retries=0, timeout=10) as c:
        yield c


def test_plain_chat(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="gpt-4o-mini", messages=USER_MSG, extra_body={"custom_flag": 1})
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.model == "gpt-4o-mini"
    choice = out.choices[0]
    assert choice.message.content == "Echo: hello there" and choice.message.refusal is None
    assert choice.finish_reason == "stop" and choice.logprobs is None
    assert out.usage is not None and out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert out.usage.prompt_tokens_details and out.usage.prompt_tokens_details.cached_tokens == 0
    assert out.system_fingerprint and out.service_tier == "default"
    req = fake.last_request
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer sk-fake"
    assert req.json["custom_flag"] == 1


def test_chat_options(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.set_reply("one two three four five")
    out = client.chat.completions.create(
        model="gpt-4o", messages=USER_MSG, n=2, max_tokens=3, logprobs=True, top_logprobs=2
    )
    assert [c.index for c in out.choices] == [0, 1]
    assert out.choices[1].message.content == "one two three " and out.choices[1].finish_reason == "length"
    lp = out.choices[0].logprobs
    assert lp is not None and lp.content is not None and [t.token for t in lp.content] == ["one ", "two ", "three "]
    assert len(lp.content[0].top_logprobs) == 2
    out = client.chat.completions.create(model="gpt-4o", messages=USER_MSG, stop=["three"])
    assert out.choices[0].message.content == "one two " and out.choices[0].finish_reason == "stop"
    fake.set_reply(None)
    schema: dict[str, object] = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    out = client.chat.completions.create(
        model="gpt-4o",
        messages=USER_MSG,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert json.loads(out.choices[0].message.content or "") == {"answer": "x"}


def test_streaming_with_usage(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=USER_MSG, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello there"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].usage is None
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_raw_sse_framing(served: tuple[FakeOpenAI, str]) -> None:
    body = {"model": "m", "messages": USER_MSG, "stream": True}
    with httpx.stream("POST", served[1] + "/v1/chat/completions", json=body) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = resp.read().decode()
    frames = raw.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    first = json.loads(frames[0].removeprefix("data: "))
    assert first["choices"][0] == {
        "index": 0,
        "delta": {"role": "assistant", "content": "", "refusal": None},
        "logprobs": None,
        "finish_reason": None,
    }
    assert "usage" not in first and "obfuscation" in first


def test_tool_calls(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="gpt-4o", messages=USER_MSG, tools=[WEATHER_TOOL, TIME_TOOL])
    msg = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls" and msg.content is None and msg.tool_calls
    assert [c.function.name for c in msg.tool_calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "x", "days": 1, "unit": "c"}  # type: ignore[union-attr]
    one = client.chat.completions.create(
        model="gpt-4o", messages=USER_MSG, tools=[WEATHER_TOOL, TIME_TOOL], parallel_tool_calls=False
    )
    assert len(one.choices[0].message.tool_calls or []) == 1
    none = client.chat.completions.create(model="gpt-4o", messages=USER_MSG, tools=[WEATHER_TOOL], tool_choice="none")
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content


def test_streamed_tool_calls(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="gpt-4o", messages=USER_MSG, tools=[WEATHER_TOOL, TIME_TOOL], stream=True)
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for tc in chunk.choices[0].delta.tool_calls or []:
            if tc.id is not None:  # first delta of a call: id, type, name, empty arguments
                assert tc.type == "function" and tc.function and tc.function.arguments == ""
                calls[tc.index] = {"id": tc.id, "name": tc.function.name or "", "args": ""}
            else:
                assert tc.function and tc.function.name is None
                calls[tc.index]["args"] += tc.function.arguments or ""
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["args"]) == {"city": "x", "days": 1, "unit": "c"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_embeddings(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 8
    assert fake.last_request.json["encoding_format"] == "float"
    default = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert fake.last_request.json["encoding_format"] == "base64"  # the SDK asks for base64 and decodes it
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    b64 = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="base64")
    assert isinstance(b64.data[0].embedding, str)  # explicit base64: the SDK hands back the string
    assert list(struct.unpack("<8f", base64.b64decode(b64.data[1].embedding))) == floats.data[1].embedding
    raw = httpx.post(f"{fake.base_url}/v1/embeddings", json={"model": "m", "input": [1, 2, 3], "dimensions": 4})
    data = raw.json()
    assert len(data["data"]) == 1 and len(data["data"][0]["embedding"]) == 4 and data["usage"]["prompt_tokens"] == 3
    raw = httpx.post(f"{fake.base_url}/v1/embeddings", json={"model": "m", "input": "a", "encoding_format": "base64"})
    decoded = struct.unpack("<8f", base64.b64decode(raw.json()["data"][0]["embedding"]))
    assert list(decoded) == floats.data[0].embedding


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
    assert client.models.retrieve("gpt-4o").owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_scripted_failures(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.fail_next(429, headers={"retry-after": "7"})
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER_MSG)
    assert info.value.response.headers["retry-after"] == "7" and info.value.code == "rate_limit_exceeded"
    fake.fail_next(503, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.models.list()
    assert client.models.list().data
    fake.hang_next(5)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.3).models.list()
    assert len(fake.requests_to("/models")) == 4


def test_broken_and_slow_streams(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.break_stream_after(2)
    got = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for chunk in client.chat.completions.create(model="gpt-4o", messages=USER_MSG, stream=True):
            got.append(chunk)
    assert len(got) == 2
    fake.stream_delay(0.01)
    assert len(list(client.chat.completions.create(model="gpt-4o", messages=USER_MSG, stream=True))) > 3


def test_azure_paths(fake: FakeOpenAI) -> None:
    url = f"{fake.base_url}/openai/deployments/my-gpt/chat/completions"
    resp = httpx.post(url, params={"api-version": "2024-10-21"}, headers={"api-key": "az"}, json={"messages": USER_MSG})
    assert resp.status_code == 200 and resp.json()["model"] == "my-gpt"
    req = fake.last_request
    assert req.params == {"api-version": "2024-10-21"} and req.headers["api-key"] == "az" and "model" not in req.json
    assert httpx.post(url, json={"messages": USER_MSG}).status_code == 404  # api-version is mandatory
    url = f"{fake.base_url}/openai/deployments/emb/embeddings?api-version=2024-10-21"
    assert httpx.post(url, json={"input": "hi"}).json()["data"][0]["object"] == "embedding"


def test_server_helpers() -> None:
    async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    with ServerThread(app) as server:
        assert wait_http(server.base_url + "/health").text == "ok"
    with serve_asgi(app) as url:
        assert httpx.get(url).text == "ok"
    with pytest.raises(RuntimeError, match="failed to start"):  # noqa: SIM117
        with run_process(["sh", "-c", "echo booting; exit 3"], "http://127.0.0.1:9/health", timeout=5):
            pass


def test_steady_accepts_valid_and_rejects_invalid(steady_url: str) -> None:
    with openai.OpenAI(base_url=steady_url, api_key="sk-steady", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=USER_MSG)
        assert raw.headers["x-steady-request-valid"] == "true" and steady_diagnostics(raw.headers) == []
        assert raw.parse().object == "chat.completion"
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="gpt-4o", messages=[], extra_body={"messages": "x"})
    resp = info.value.response
    assert resp.headers["x-steady-request-valid"] == "false"
    assert steady_diagnostics(resp.headers)[0] == {
        "code": "E3008",
        "path": "body.messages",
        "message": "Expected type array, got string",
    }
    assert resp.json()["steady"]["errors"][0]["code"] == "E3008"
