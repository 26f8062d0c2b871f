"""LangChain's ``ChatOpenAI`` (Chat Completions) and ``ChatAnthropic`` (Messages) against the gateway over HTTP.

Each runs plain, streaming, with tools (``bind_tools``: the tool call comes back parsed, and its result goes back
for the answer), and with structured output (``with_structured_output`` on a pydantic model, both methods). Each
client meets both upstreams: ``gpt-4o-mini`` on the fake OpenAI API, ``claude`` on the fake Anthropic API, so one
of the two runs crosses the gateway's translation. The fakes script what the model says (the tool call and its
arguments, the JSON), so a gateway that drops or mangles any part of it fails the assertions.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from tests.support.clients import KEY, MODELS, UPSTREAM_MODEL, Upstreams
from tests.support.gateway import RunningGateway

pytest.importorskip("langchain_openai")
pytest.importorskip("langchain_anthropic")

from langchain_anthropic import ChatAnthropic
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI

KINDS = ["ChatOpenAI", "ChatAnthropic"]
CALL = ("get_weather", {"city": "Paris", "unit": "celsius"})


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"]) -> str:
    """The weather in a city, in the unit asked for."""
    return f"21 degrees {unit} and sunny in {city}"


class Forecast(BaseModel):
    """A weather forecast."""

    city: str
    sky: Literal["sunny", "cloudy"]
    high_c: int


def make(kind: str, model: str, gw: RunningGateway) -> BaseChatModel:
    if kind == "ChatOpenAI":
        return ChatOpenAI(model=model, base_url=gw.openai_base, api_key=KEY, max_retries=0,  # type: ignore[arg-type]
                          stream_usage=True)
    return ChatAnthropic(model=model, base_url=gw.url, api_key=KEY, max_retries=0,  # type: ignore[call-arg,arg-type]
                         max_tokens=256)


def text(msg: BaseMessage) -> str:
    t: Any = msg.text
    return t if isinstance(t, str) else str(t())


both = pytest.mark.parametrize("model", MODELS)
kinds = pytest.mark.parametrize("kind", KINDS)


@kinds
@both
def test_plain(client_gw: RunningGateway, client_upstreams: Upstreams, kind: str, model: str) -> None:
    out = make(kind, model, client_gw).invoke("hello from langchain")
    assert isinstance(out, AIMessage)
    assert text(out) == "Echo: hello from langchain"
    assert out.usage_metadata and out.usage_metadata["output_tokens"] == 4  # the fakes count words
    assert client_upstreams.paths == ["POST /v1/chat/completions" if kind == "ChatOpenAI" else "POST /v1/messages"]
    [body] = client_upstreams.bodies(model)
    assert body["model"] == UPSTREAM_MODEL[model]


@kinds
@both
def test_streaming(client_gw: RunningGateway, client_upstreams: Upstreams, kind: str, model: str) -> None:
    chunks = list(make(kind, model, client_gw).stream("stream this to me please"))
    pieces = [text(c) for c in chunks if text(c)]
    assert "".join(pieces) == "Echo: stream this to me please"
    assert len(pieces) >= 3  # it arrived in pieces, as the upstream streamed it, not in one block
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert isinstance(total, AIMessageChunk) and total.usage_metadata
    assert total.usage_metadata["output_tokens"] == 6
    [body] = client_upstreams.bodies(model)
    assert body["stream"] is True


def _tool_turns(llm: BaseChatModel, client_upstreams: Upstreams, model: str, streaming: bool) -> None:
    client_upstreams.script([CALL])
    tooled = llm.bind_tools([get_weather])
    history: list[BaseMessage] = [HumanMessage("What is the weather in Paris?")]
    if streaming:
        acc: Any = None
        for c in tooled.stream(history):
            acc = c if acc is None else acc + c
        ai = acc
    else:
        ai = tooled.invoke(history)
    assert isinstance(ai, AIMessage)
    [call] = ai.tool_calls
    assert (call["name"], call["args"]) == CALL and call["id"]
    # the tool's definition reached the upstream whole
    first = client_upstreams.bodies(model)[0]
    if model == "claude":
        [tool] = first["tools"]
        assert tool["name"] == "get_weather" and tool["input_schema"]["properties"]["unit"]["enum"] == [
            "celsius", "fahrenheit"]
    else:
        [tool] = first["tools"]
        assert tool["function"]["name"] == "get_weather"
        assert tool["function"]["parameters"]["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    history += [ai, ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])]
    final = tooled.invoke(history)
    assert text(final) == "Echo: 21 degrees celsius and sunny in Paris"  # the fakes echo the tool result
    assert not final.tool_calls


@kinds
@both
def test_tools(client_gw: RunningGateway, client_upstreams: Upstreams, kind: str, model: str) -> None:
    _tool_turns(make(kind, model, client_gw), client_upstreams, model, streaming=False)


@kinds
@both
def test_tools_streaming(client_gw: RunningGateway, client_upstreams: Upstreams, kind: str, model: str) -> None:
    _tool_turns(make(kind, model, client_gw), client_upstreams, model, streaming=True)


@kinds
@both
def test_structured_output_function_calling(client_gw: RunningGateway, client_upstreams: Upstreams, kind: str,
                                            model: str) -> None:
    client_upstreams.script([("Forecast", {"city": "Oslo", "sky": "cloudy", "high_c": 7})])
    llm = make(kind, model, client_gw).with_structured_output(Forecast, method="function_calling")
    assert llm.invoke("Forecast for Oslo?") == Forecast(city="Oslo", sky="cloudy", high_c=7)


@kinds
@both
def test_structured_output_json_schema(client_gw: RunningGateway, client_upstreams: Upstreams, kind: str,
                                       model: str) -> None:
    llm = make(kind, model, client_gw).with_structured_output(Forecast, method="json_schema")
    # the fakes answer a JSON schema with a sample of it (first enum value, "x", 1): only a schema that reached
    # the upstream whole gives this answer
    assert llm.invoke("Forecast for Oslo?") == Forecast(city="x", sky="sunny", high_c=1)
    [body] = client_upstreams.bodies(model)
    schema = (body["output_config"]["format"] if model == "claude" else body["response_format"]["json_schema"])
    schema = schema["schema"]
    assert set(schema["properties"]) == {"city", "sky", "high_c"}
