"""The Responses API through the gateway with the official openai SDK (create, stream, parse, tools over two turns
with previous_response_id, retrieve, delete, input_items, tenant isolation, zero retention, bad input), served by
an OpenAI Chat Completions upstream and by an Anthropic upstream (both fakes, over real HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import RunningGateway, base_config, run_gateway

KEY = "sk-test-keeper-0123456789"  # logging metadata: its responses are stored
OTHER = "sk-test-other-0123456789"  # another key, also storing
ZDR = "sk-test-zdr-0123456789"  # logging none: zero retention

WEATHER: Any = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def config(oa: str, an: str) -> dict[str, Any]:
    return base_config(
        providers={"oa": {"type": "openai", "base_url": f"{oa}/v1", "api_key": "sk-upstream-openai"},
                   "an": {"type": "anthropic", "base_url": an, "api_key": "sk-upstream-anthropic"},
                   "sim": {"type": "simulated", "output_tokens": 4}},
        deployments=[{"name": "gpt-4o-mini", "provider": "oa"},
                     {"name": "claude", "provider": "an", "model": "claude-sonnet-4-5"},
                     {"name": "sim", "provider": "sim"},
                     {"name": "small", "provider": "oa", "model": "gpt-4o-mini", "context_window": 120}],
        keys=[{"key": KEY, "name": "keeper", "logging": "metadata"},
              {"key": OTHER, "name": "other", "logging": "full"},
              {"key": ZDR, "name": "zdr"}],
    )


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI, fake_anthropic_server: FakeAnthropic) -> Iterator[RunningGateway]:
    assert fake_openai_server.base_url and fake_anthropic_server.base_url
    with run_gateway(config(fake_openai_server.base_url, fake_anthropic_server.base_url)) as running:
        yield running


def client_for(gw: RunningGateway, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)


@pytest.fixture
def client(gw: RunningGateway, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> Iterator[openai.OpenAI]:
    with client_for(gw) as c:
        yield c


MODELS = ["gpt-4o-mini", "claude"]


@pytest.mark.parametrize("model", MODELS)
def test_create_string_input(client: openai.OpenAI, model: str) -> None:
    r = client.responses.create(model=model, input="hello there", instructions="Be brief.", max_output_tokens=50,
                                metadata={"run": "1"})
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.output_text == "Echo: hello there"
    assert r.instructions == "Be brief." and r.metadata == {"run": "1"} and r.max_output_tokens == 50
    assert r.usage is not None and r.usage.output_tokens > 0 and r.usage.total_tokens >= r.usage.output_tokens
    assert r.output[0].type == "message" and r.output[0].role == "assistant"


def test_instructions_reach_upstream_as_system(client: openai.OpenAI, fake_openai: FakeOpenAI,
                                               fake_anthropic: FakeAnthropic) -> None:
    client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "hi"}], instructions="Rules.",
                            reasoning={"effort": "low"}, temperature=0.5)
    body = fake_openai.last_request.json
    assert body["messages"][0] == {"role": "system", "content": "Rules."}
    assert body["reasoning_effort"] == "low" and body["temperature"] == 0.5
    client.responses.create(model="claude", input="hi", instructions="Rules.")
    assert fake_anthropic.last_request.json["system"] in ("Rules.", [{"type": "text", "text": "Rules."}])


@pytest.mark.parametrize("model", MODELS)
def test_stream_event_sequence(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input="stream me please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in kinds
    tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done",
            "response.completed"]
    assert kinds[-4:] == tail
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Echo: stream me please" == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_stream_tool_call_events(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input="weather in Paris?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    call = next(o for o in final.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "x"}
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == call.arguments


class Weather(BaseModel):
    city: str
    celsius: int


@pytest.mark.parametrize("model", MODELS)
def test_parse_pydantic(client: openai.OpenAI, model: str) -> None:
    r = client.responses.parse(model=model, input="weather as JSON", text_format=Weather)
    assert isinstance(r.output_parsed, Weather)
    assert r.output_parsed.city == "x" and r.output_parsed.celsius == 1


def test_text_format_reaches_openai_upstream(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    client.responses.parse(model="gpt-4o-mini", input="x", text_format=Weather)
    rf = fake_openai.last_request.json["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "Weather"
    assert rf["json_schema"]["schema"]["required"] == ["city", "celsius"]


@pytest.mark.parametrize("model", MODELS)
def test_tools_two_turns_with_previous_response_id(client: openai.OpenAI, model: str, fake_openai: FakeOpenAI,
                                                    fake_anthropic: FakeAnthropic) -> None:
    fake_openai.answer_tool_results = True
    first = client.responses.create(model=model, input="weather in Paris?", tools=[WEATHER],
                                    tool_choice="auto", parallel_tool_calls=False)
    call = next(o for o in first.output if o.type == "function_call")
    second = client.responses.create(
        model=model, previous_response_id=first.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert second.previous_response_id == first.id
    assert second.output_text == "Echo: sunny, 21C"
    if model == "gpt-4o-mini":
        msgs = fake_openai.last_request.json["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "tool"]
        assert msgs[0]["content"] == "weather in Paris?"
        assert msgs[1]["tool_calls"][0]["id"] == call.call_id
        assert msgs[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21C"}
    else:
        msgs = fake_anthropic.last_request.json["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        assert msgs[1]["content"][-1]["type"] == "tool_use" and msgs[1]["content"][-1]["id"] == call.call_id
        assert msgs[2]["content"][0]["type"] == "tool_result"
    # a third turn chains through both
    third = client.responses.create(model=model, previous_response_id=second.id, input="and tomorrow?")
    assert third.output_text == "Echo: and tomorrow?"
    if model == "gpt-4o-mini":
        assert len(fake_openai.last_request.json["messages"]) == 5


def test_retrieve_delete_and_input_items(client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o-mini", input=[
        {"role": "user", "content": "first"}, {"role": "user", "content": [{"type": "input_text", "text": "two"}]}])
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text == "Echo: two"
    items = client.responses.input_items.list(r.id, order="asc")
    texts = [i.content[0].text for i in items.data if i.type == "message"]  # type: ignore[union-attr]
    assert texts == ["first", "two"]
    assert all(i.id for i in items.data)
    page = client.responses.input_items.list(r.id, limit=1)
    assert len(page.data) == 1 and page.has_more
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


def test_streamed_response_is_stored(client: openai.OpenAI) -> None:
    with client.responses.stream(model="claude", input="keep me") as stream:
        final = stream.get_final_response()
    got = client.responses.retrieve(final.id)
    assert got.output_text == "Echo: keep me"


def test_tenant_isolation(gw: RunningGateway, client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o-mini", input="mine")
    with client_for(gw, OTHER) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(r.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(r.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(r.id)
        with pytest.raises(openai.BadRequestError) as e:  # as OpenAI answers an id it does not know
            other.responses.create(model="gpt-4o-mini", input="x", previous_response_id=r.id)
        assert e.value.code == "previous_response_not_found"
    assert client.responses.retrieve(r.id).output_text == "Echo: mine"  # still there for its owner


def test_zero_retention_stores_nothing(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    with client_for(gw, ZDR) as zdr:
        r = zdr.responses.create(model="gpt-4o-mini", input="secret", store=True)
        assert r.output_text == "Echo: secret"
        raw = httpx.get(f"{gw.openai_base}/responses/{r.id}", headers={"authorization": f"Bearer {ZDR}"})
        assert raw.status_code == 404
        with pytest.raises(openai.BadRequestError) as e:
            zdr.responses.create(model="gpt-4o-mini", input="x", previous_response_id=r.id)
        assert "zero data retention" in e.value.message
    body = httpx.post(f"{gw.openai_base}/responses", headers={"authorization": f"Bearer {ZDR}"},
                      json={"model": "gpt-4o-mini", "input": "hi"}).json()
    assert body["store"] is False


def test_store_false_is_not_kept(client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o-mini", input="x", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"model": "gpt-4o-mini"}, "input", "Missing required parameter"),
    ({"model": "gpt-4o-mini", "input": 5}, "input", "expected a string or an array"),
    ({"model": "gpt-4o-mini", "input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role",
     "'robot'"),
    ({"model": "gpt-4o-mini", "input": "x", "tool_choice": "sometimes"}, "tool_choice", "'sometimes'"),
    ({"model": "gpt-4o-mini", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type", "'yaml'"),
    ({"model": "gpt-4o-mini", "input": "x", "truncation": "middle"}, "truncation", "'middle'"),
    ({"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "at least 1"),
    ({"model": "gpt-4o-mini", "input": "x", "previous_response_id": "resp_nope"}, "previous_response_id",
     "resp_nope"),
    ({"model": "gpt-4o-mini", "input": "x", "conversation": "conv_1"}, "conversation", "conversation"),
])
def test_bad_input_is_a_clear_error(gw: RunningGateway, body: dict[str, Any], param: str, words: str) -> None:
    r = httpx.post(f"{gw.openai_base}/responses", headers={"authorization": f"Bearer {KEY}"}, json=body)
    assert r.status_code in (400, 404), r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude", "sim"])
def test_builtin_tool_refused_by_name(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=model, input="search", tools=[{"type": "web_search"}])
    assert "'web_search'" in e.value.message and e.value.status_code == 400


def test_unauthenticated(gw: RunningGateway) -> None:
    r = httpx.post(f"{gw.openai_base}/responses", json={"model": "gpt-4o-mini", "input": "x"})
    assert r.status_code == 401
    r = httpx.get(f"{gw.openai_base}/responses/resp_x")
    assert r.status_code == 401


async def test_async_client_stream(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(base_url=gw.openai_base, api_key=KEY, max_retries=0) as c:
        stream = await c.responses.create(model="gpt-4o-mini", input="async hi", stream=True)
        kinds = [e.type async for e in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


def test_upstream_failure_mid_stream_is_response_failed(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.break_stream_after(2)
    stream = client.responses.create(model="gpt-4o-mini", input="one two three four five", stream=True)
    kinds = [e.type for e in stream]
    assert kinds[-2:] == ["error", "response.failed"]


def test_truncation_auto_drops_the_oldest_turns(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    history: Any = []
    for i in range(12):
        history += [{"role": "user", "content": f"question {i} " + "words " * 10},
                    {"role": "assistant", "content": f"answer {i} " + "words " * 10}]
    history.append({"role": "user", "content": "the last question"})
    with pytest.raises(openai.APIStatusError) as e:
        client.responses.create(model="small", input=history)
    assert 400 <= e.value.status_code < 500
    r = client.responses.create(model="small", input=history, instructions="Be brief.", truncation="auto")
    assert r.output_text == "Echo: the last question" and r.truncation == "auto"
    sent = fake_openai.last_request.json["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[-1]["content"] == "the last question"
    assert 2 < len(sent) < len(history)
