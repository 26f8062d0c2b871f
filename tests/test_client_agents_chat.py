"""The OpenAI Agents SDK in chat-completions mode against the gateway over HTTP: a tool-using agent over two turns.

The model is ``OpenAIChatCompletionsModel`` (turn one, ``Runner.run``) and then the SDK's provider with
``use_responses=False`` (what ``set_default_openai_api("chat_completions")`` selects; turn two, streamed), so every
call is a ``/v1/chat/completions``. The fakes script the tool call (``get_weather`` with a city) and echo the tool
result; the agent runs the tool itself, so the answer holds the city only if the call, the tool's output and the
whole history crossed the gateway intact. Both upstreams: the OpenAI wire, and the Anthropic wire (translated).
The SDK's Responses-API defaults are tested in ``tests/test_responses_clients.py``.
"""

from __future__ import annotations

import openai
import pytest

from tests.support.clients import KEY, MODELS, UPSTREAM_MODEL, Upstreams
from tests.support.gateway import RunningGateway

pytest.importorskip("agents")

from agents import OpenAIChatCompletionsModel, OpenAIProvider, RunConfig, Runner

from tests.support.weather_agent import weather_agent


@pytest.mark.parametrize("model", MODELS)
async def test_tool_agent_over_two_turns(client_gw: RunningGateway, client_upstreams: Upstreams, model: str) -> None:
    client = openai.AsyncOpenAI(base_url=client_gw.openai_base, api_key=KEY, max_retries=0)
    agent, calls = weather_agent(OpenAIChatCompletionsModel(model=model, openai_client=client))
    client_upstreams.script([("get_weather", {"city": "Paris"})])
    first = await Runner.run(agent, "What is the weather in Paris?")
    assert calls == ["Paris"]
    assert first.final_output == "Echo: sunny in Paris"

    # turn two: the whole history as input items, streamed, through the provider in chat-completions mode
    client_upstreams.script([("get_weather", {"city": "Rome"})])
    provider = OpenAIProvider(openai_client=client, use_responses=False)
    second_agent = agent.clone(model=model)
    result = Runner.run_streamed(second_agent, [*first.to_input_list(), {"role": "user", "content": "And Rome?"}],
                                 run_config=RunConfig(model_provider=provider))
    deltas = [e.data.delta async for e in result.stream_events()
              if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"]
    assert calls == ["Paris", "Rome"]
    assert result.final_output == "Echo: sunny in Rome" == "".join(deltas)

    bodies = client_upstreams.bodies(model)
    assert len(bodies) == 4 and all(b["model"] == UPSTREAM_MODEL[model] for b in bodies)
    assert [b.get("stream", False) for b in bodies] == [False, False, True, True]
    last = bodies[-1]["messages"]
    if model == "claude":
        assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user", "assistant", "user"]
        assert "Use your tools." in str(bodies[-1]["system"])
        uses = [b for m in last if isinstance(m["content"], list) for b in m["content"] if b["type"] == "tool_use"]
        assert [u["input"] for u in uses] == [{"city": "Paris"}, {"city": "Rome"}]
    else:
        roles = [m["role"] for m in last]
        assert roles == ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool"]
        assert last[-1]["content"] == "sunny in Rome"
        assert last[-1]["tool_call_id"] == last[-2]["tool_calls"][0]["id"]
    assert client_upstreams.paths == ["POST /v1/chat/completions"] * 4
    await client.close()
