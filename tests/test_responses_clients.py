"""Real Responses API clients through the gateway: the OpenAI Agents SDK with its defaults (the Responses API), a
tool-using agent over several turns, and LangChain's ChatOpenAI with ``use_responses_api=True``; each against an
OpenAI Chat Completions upstream and an Anthropic upstream (fakes, over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import RunningGateway, run_gateway
from tests.test_responses_e2e import KEY, config

agents = pytest.importorskip("agents")
langchain_openai = pytest.importorskip("langchain_openai")

MODELS = ["gpt-4o-mini", "claude"]


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI, fake_anthropic_server: FakeAnthropic) -> Iterator[RunningGateway]:
    assert fake_openai_server.base_url and fake_anthropic_server.base_url
    with run_gateway(config(fake_openai_server.base_url, fake_anthropic_server.base_url)) as running:
        yield running


@pytest.fixture
def upstreams(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> tuple[FakeOpenAI, FakeAnthropic]:
    fake_openai.answer_tool_results = True
    return fake_openai, fake_anthropic


def _paths(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> list[str]:
    return [r.path for r in fake_openai.requests] + [r.path for r in fake_anthropic.requests]


@pytest.mark.parametrize("model", MODELS)
async def test_agents_sdk_tool_agent_over_several_turns(gw: RunningGateway, model: str,
                                                        upstreams: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    from agents import OpenAIResponsesModel, Runner

    from tests.support.weather_agent import weather_agent

    client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key=KEY, max_retries=0)
    agent, calls = weather_agent(OpenAIResponsesModel(model=model, openai_client=client))
    first = await Runner.run(agent, "What is the weather in Paris?")
    assert calls == ["x"]  # the fakes call a tool with a sample of its schema
    assert first.final_output == "Echo: sunny in x"
    # the next turn carries the whole history as input items (tool call, tool output, answer), as the SDK sends it
    second = await Runner.run(agent, [*first.to_input_list(), {"role": "user", "content": "And in Rome?"}])
    assert len(calls) == 2
    assert second.final_output == "Echo: sunny in x"
    fake_openai, fake_anthropic = upstreams
    if model == "gpt-4o-mini":
        roles = [m["role"] for m in fake_openai.last_request.json["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool"]
    else:
        msgs = fake_anthropic.last_request.json["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
    await client.close()


async def test_agents_sdk_default_client_streamed(gw: RunningGateway,
                                                  upstreams: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    from agents import Agent, Runner, set_default_openai_client, set_tracing_disabled

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=gw.openai_base, api_key=KEY, max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)  # the SDK's defaults: the Responses API
    agent = Agent(name="plain", instructions="Answer.", model="claude")
    result = Runner.run_streamed(agent, "hello agent")
    texts = [e.data.delta async for e in result.stream_events()
             if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]
    assert "".join(texts) == "Echo: hello agent" == result.final_output
    await client.close()


@pytest.mark.parametrize("model", MODELS)
def test_langchain_use_responses_api(gw: RunningGateway, model: str,
                                     upstreams: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=model, base_url=gw.openai_base, api_key=KEY, use_responses_api=True,  # type: ignore[arg-type]
                     max_retries=0)
    out = llm.invoke("hello langchain")
    assert out.text == "Echo: hello langchain" if isinstance(out.text, str) else out.text() == "Echo: hello langchain"
    pieces = [c for c in llm.stream("stream langchain")]
    assert "".join(_text(c) for c in pieces) == "Echo: stream langchain"

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    tooled = llm.bind_tools([get_weather])
    history: list[Any] = [HumanMessage("weather in Paris?")]
    ai = tooled.invoke(history)
    assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather"
    call = ai.tool_calls[0]
    history += [ai, ToolMessage(get_weather(**call["args"]), tool_call_id=call["id"])]
    final = tooled.invoke(history)
    assert _text(final) == "Echo: sunny in x"


def _text(msg: Any) -> str:
    t = msg.text
    return t if isinstance(t, str) else str(t())
