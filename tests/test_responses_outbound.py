"""An ``openai`` provider with ``api: responses``, over real HTTP to the fake's Responses API: the gateway's own
Responses API passes through (whole and streamed, with a previous_response_id chain expanded into ``input``), and
chat completions and Anthropic messages are translated onto the Responses wire and back (whole and streamed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import RunningGateway, base_config, run_gateway

KEY = "sk-test-keeper-0123456789"
WEATHER: Any = {"type": "function", "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI) -> Iterator[RunningGateway]:
    cfg = base_config(
        providers={"oar": {"type": "openai", "base_url": f"{fake_openai_server.base_url}/v1", "api_key": "sk-up",
                           "api": "responses"}},
        deployments=[{"name": "gpt-r", "provider": "oar", "model": "gpt-5"}],
        keys=[{"key": KEY, "name": "keeper", "logging": "metadata"}],
    )
    with run_gateway(cfg) as running:
        yield running


@pytest.fixture
def client(gw: RunningGateway, fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=KEY, max_retries=0) as c:
        yield c


def test_same_wire_passes_through_whole(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    r = client.responses.create(model="gpt-r", input="hi", tools=[{"type": "web_search"}], tool_choice="none",
                                extra_body={"prompt_cache_key": "k"})
    assert r.output_text == "Echo: hi"
    sent = fake_openai.last_request
    assert sent.path == "/v1/responses"
    assert sent.json == {"model": "gpt-5", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "none",
                         "prompt_cache_key": "k"}
    assert r.model == "gpt-5"  # the upstream's own reply
    second = client.responses.create(model="gpt-r", input="again", previous_response_id=r.id)
    assert second.previous_response_id == r.id
    body = fake_openai.last_request.json
    assert "previous_response_id" not in body
    assert [i.get("role") for i in body["input"]] == ["user", "assistant", "user"]
    assert body["input"][1]["content"][0]["text"] == "Echo: hi"


def test_same_wire_passes_through_streamed(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    with client.responses.stream(model="gpt-r", input="stream this", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.function_call_arguments.delta" in [e.type for e in events]
    call = next(o for o in final.output if o.type == "function_call")
    assert json.loads(call.arguments) == {"city": "x"}
    assert fake_openai.last_request.json["stream"] is True
    # the streamed response was stored: a second turn continues it
    second = client.responses.create(model="gpt-r", previous_response_id=final.id, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "Echo: sunny"
    assert [i["type"] for i in fake_openai.last_request.json["input"]] == [
        "message", "function_call", "function_call_output"]


def test_chat_completions_translated_onto_responses(gw: RunningGateway, client: openai.OpenAI,
                                                    fake_openai: FakeOpenAI) -> None:
    r = client.chat.completions.create(model="gpt-r", max_tokens=40, messages=[
        {"role": "system", "content": "brief"}, {"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == "Echo: hello" and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens > 0
    body = fake_openai.last_request.json
    assert body["store"] is False and body["max_output_tokens"] == 40
    assert body["input"] == [{"type": "message", "role": "system", "content": "brief"},
                             {"type": "message", "role": "user", "content": [{"type": "input_text",
                                                                              "text": "hello"}]}]
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["parameters"]}}]
    stream = client.chat.completions.create(model="gpt-r", messages=[{"role": "user", "content": "weather?"}],
                                            tools=tools, stream=True)
    chunks = list(stream)
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or []) if c.choices]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == '{"city": "x"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-r", messages=[{"role": "user", "content": "x"}], stop=["y"])
    assert e.value.status_code == 400 and "stop" in e.value.message


def test_anthropic_messages_translated_onto_responses(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    with anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0) as c:
        msg = c.messages.create(model="gpt-r", max_tokens=64, messages=[{"role": "user", "content": "bonjour"}])
        assert msg.content[0].type == "text" and msg.content[0].text == "Echo: bonjour"
        with c.messages.stream(model="gpt-r", max_tokens=64,
                               messages=[{"role": "user", "content": "stream bonjour"}]) as s:
            text = "".join(s.text_stream)
    assert text == "Echo: stream bonjour"
    assert fake_openai.last_request.json["store"] is False
