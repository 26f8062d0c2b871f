"""The official openai SDK, sync and async, through the gateway to a fake OpenAI upstream, over real HTTP."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY, USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}


def gateway_config(upstream: str) -> dict[str, Any]:
    return base_config(
        providers={
            "up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream-secret"},
            "azure": {"type": "openai", "base_url": upstream, "api_key": "azure-secret", "api_version": "2024-10-21"},
            "sim": {"type": "simulated", "output_tokens": 5},
        },
        deployments=[
            {"name": "gpt-4o-mini", "provider": "up", "capabilities": ["chat", "tools", "json", "vision"]},
            {"name": "mini-alias", "provider": "up", "model": "gpt-4o-mini"},
            {"name": "embed-small", "provider": "up", "model": "text-embedding-3-small",
             "capabilities": ["embeddings"]},
            {"name": "azure-4o", "provider": "azure", "model": "my-azure-deployment"},
            {"name": "azure-embed", "provider": "azure", "model": "my-embed-deployment",
             "capabilities": ["embeddings"]},
            {"name": "sim-small", "provider": "sim"},
        ],
        routes={"fast": {"targets": ["gpt-4o-mini", "sim-small"], "strategy": "priority"}},
        keys=[{"key": USER_KEY, "name": "user"}, {"key": "sk-test-limited-0123", "name": "limited",
                                                     "models": ["sim-small"]}],
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
def client(gw: RunningGateway, fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(gw: RunningGateway, fake_openai: FakeOpenAI) -> Any:
    async with openai.AsyncOpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


def test_plain_chat(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "Echo: hello there"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    assert raw.headers["x-switchyard-deployment"] == "gpt-4o-mini"
    assert raw.headers["x-request-id"].startswith("req_")
    sent = fake_openai.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream-secret"  # our key, never the caller's
    assert sent.json["model"] == "gpt-4o-mini"


def test_caller_request_id_is_echoed(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "abc-123"}
    )
    assert raw.headers["x-request-id"] == "abc-123"


def test_deployment_alias_sends_upstream_model_id(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    client.chat.completions.create(model="mini-alias", messages=[{"role": "user", "content": "x"}])
    assert fake_openai.last_request.json["model"] == "gpt-4o-mini"


def test_every_modelled_parameter_reaches_the_upstream(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three"}],
        n=2,
        stop=["\n\n"],
        seed=7,
        logprobs=True,
        top_logprobs=2,
        max_completion_tokens=50,
        reasoning_effort="low",
        user="user-42",
        metadata={"team": "search"},
        temperature=0.3,
        top_p=0.9,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    )
    assert len(resp.choices) == 2
    lp = resp.choices[0].logprobs
    assert lp is not None and lp.content and lp.content[0].top_logprobs
    body = fake_openai.last_request.json
    for key, value in {"n": 2, "stop": ["\n\n"], "seed": 7, "logprobs": True, "top_logprobs": 2,
                       "max_completion_tokens": 50, "reasoning_effort": "low", "user": "user-42",
                       "metadata": {"team": "search"}, "temperature": 0.3, "top_p": 0.9}.items():
        assert body[key] == value, key


def test_legacy_max_tokens_truncates(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a b c d e f g h"}], max_tokens=2
    )
    assert resp.choices[0].finish_reason == "length"
    assert fake_openai.last_request.json["max_tokens"] == 2


def test_unknown_fields_pass_through(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x", "brand_new_message_field": 1}],  # type: ignore[misc]
        extra_body={"brand_new_param": {"nested": [1, 2]}, "service_tier": "flex"},
    )
    body = fake_openai.last_request.json
    assert body["brand_new_param"] == {"nested": [1, 2]}
    assert body["service_tier"] == "flex"
    assert body["messages"][0]["brand_new_message_field"] == 1


def test_parallel_tool_calls(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather and time in Paris"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="auto",
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert fake_openai.last_request.json["tool_choice"] == "auto"
    # the conversation continues with the tool results
    follow = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "user", "content": "weather and time in Paris"},
            choice.message.model_dump(exclude_none=True),  # type: ignore[misc]
            *({"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in calls),
        ],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="none",
    )
    assert follow.choices[0].message.content
    sent = fake_openai.last_request.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[2]["tool_call_id"] == calls[0].id


def test_named_tool_choice_and_no_parallel_calls(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "time please"}],
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    assert len(resp.choices[0].message.tool_calls or []) == 1
    body = fake_openai.last_request.json
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert body["parallel_tool_calls"] is False


def test_response_formats(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    resp = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "json"}], response_format={"type": "json_object"}
    )
    assert resp.choices[0].message.content and resp.choices[0].message.content.startswith("{")
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    resp = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "json"}],
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
    )
    assert '"answer"' in (resp.choices[0].message.content or "")
    assert fake_openai.last_request.json["response_format"]["json_schema"]["schema"] == schema


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me please"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_streaming_without_usage_hides_the_usage_we_asked_for(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "abc"}], stream=True
    ) as resp:
        body = resp.read().decode()
    assert '"usage"' not in body
    assert body.rstrip().endswith("data: [DONE]")
    # ...although the gateway asked the upstream for it, to account for the call
    assert fake_openai.last_request.json["stream_options"] == {"include_usage": True}


def test_streaming_tool_calls(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "weather in Paris"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                if tc.function and tc.function.name:
                    names[tc.index] = tc.function.name
                args[tc.index] = args.get(tc.index, "") + ((tc.function.arguments or "") if tc.function else "")
            finish = choice.finish_reason or finish
    assert names == {0: "get_weather"}
    assert '"city"' in args[0]
    assert finish == "tool_calls"


def test_embeddings(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    one = client.embeddings.create(model="embed-small", input="hello")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 8
    many = client.embeddings.create(model="embed-small", input=["a", "b", "c"], dimensions=4)
    assert [d.index for d in many.data] == [0, 1, 2] and len(many.data[2].embedding) == 4
    assert fake_openai.last_request.json["dimensions"] == 4
    # the SDK asks for base64 by default when numpy is absent; ask explicitly and decode by hand too
    raw = client.embeddings.with_raw_response.create(model="embed-small", input=[[1, 2, 3]],
                                                     encoding_format="base64")
    b64 = raw.http_response.json()["data"][0]["embedding"]
    floats = struct.unpack(f"<{len(base64.b64decode(b64)) // 4}f", base64.b64decode(b64))
    assert len(floats) == 8
    assert fake_openai.last_request.json["input"] == [[1, 2, 3]]


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "embed-small", "sim-small", "fast"} <= ids
    assert client.models.retrieve("fast").owned_by == "switchyard"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_models_list_is_limited_to_what_the_key_may_use(gw: RunningGateway) -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key="sk-test-limited-0123", max_retries=0) as c:
        assert [m.id for m in c.models.list()] == ["sim-small"]
        with pytest.raises(openai.PermissionDeniedError) as info:
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert info.value.code == "model_not_allowed"


def test_azure_deployment_url_and_api_key_header(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    resp = client.chat.completions.create(model="azure-4o", messages=[{"role": "user", "content": "hi azure"}])
    assert resp.choices[0].message.content == "Echo: hi azure"
    sent = fake_openai.last_request
    assert sent.path == "/openai/deployments/my-azure-deployment/chat/completions"
    assert sent.params == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "azure-secret"
    assert "authorization" not in sent.headers
    client.embeddings.create(model="azure-embed", input="x")
    assert fake_openai.last_request.path == "/openai/deployments/my-embed-deployment/embeddings"


def test_simulated_responses_are_marked(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="sim-small", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-switchyard-simulated"] == "true"
    again = client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == again.choices[0].message.content  # deterministic


def test_route_serves_from_its_first_target(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-switchyard-deployment"] == "gpt-4o-mini"


def test_master_key_works_too(gw: RunningGateway) -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key=MASTER_KEY, max_retries=0) as c:
        assert c.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "x"}]).choices


async def test_async_client_plain_stream_and_embeddings(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
    assert resp.choices[0].message.content == "Echo: a"
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "b c"}], stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "Echo: b c" and usage is not None
    emb = await aclient.embeddings.create(model="embed-small", input=["x", "y"])
    assert len(emb.data) == 2
    models = [m.id async for m in aclient.models.list()]
    assert "gpt-4o-mini" in models


def test_calls_are_recorded_without_payloads(client: openai.OpenAI, recorder: ListRecorder) -> None:
    before = len(recorder.records)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "secret prompt"}])
    rec = recorder.records[before]
    assert (rec.status, rec.deployment, rec.provider, rec.principal_id) == ("ok", "gpt-4o-mini", "up", "key:user")
    assert rec.usage.input_tokens > 0 and rec.attempts == 1
    assert "secret prompt" not in repr(rec)


def test_client_disconnect_ends_the_response_and_the_rest_is_read_for_its_usage(
        gw: RunningGateway, fake_openai: FakeOpenAI, recorder: ListRecorder) -> None:
    """The client leaves after the first chunk: its response ends at once, and the gateway reads the rest of the
    upstream stream (ledger.drain_timeout) so that the call is charged the usage the upstream reports. Cutting the
    upstream at once (drain_timeout: 0) is in test_cut_streams."""
    fake_openai.stream_delay(0.25)  # 20+ frames: several seconds if read to the end
    before = len(recorder.records)
    started = time.monotonic()
    with httpx.Client(timeout=10) as http, http.stream(
        "POST", gw.openai_base + "/chat/completions",
        headers={"authorization": f"Bearer {USER_KEY}"},
        json={"model": "gpt-4o-mini", "stream": True,
              "messages": [{"role": "user", "content": " ".join(["word"] * 20)}]},
    ) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith("data: ")
    assert time.monotonic() - started < 20 * 0.25  # the client was not kept waiting
    deadline = time.monotonic() + 30
    while len(recorder.records) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    rec = recorder.records[before]
    assert rec.status == "cancelled" and rec.http_status == 499
    assert rec.usage.output_tokens == 21  # "Echo: " and 20 words: the fake's own count, from its last chunk


def test_a_reused_caller_request_id_keeps_every_record(client: openai.OpenAI, recorder: ListRecorder) -> None:
    before = len(recorder.records)
    for _ in range(2):
        client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"x-request-id": "retry-1"})
    a, b = recorder.records[before:before + 2]
    assert a.client_request_id == b.client_request_id == "retry-1"
    assert a.request_id != b.request_id and a.request_id.startswith("req_")
