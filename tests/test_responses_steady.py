"""The outbound Responses wire (an ``openai`` provider with ``api: responses``) against `steady`, a mock that serves
OpenAI's own OpenAPI description and rejects any request that breaks it: neutral requests render to valid
``POST /responses`` bodies (translated from another protocol, and passed through from the gateway's own Responses
API), and steady's random, schema-valid replies parse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from switchyard.config import OpenAIProviderConfig
from switchyard.errors import UnsupportedParameter
from switchyard.messages import (
    AudioPart,
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from switchyard.providers import Target, build_provider
from switchyard.providers.openai_responses import OpenAIResponsesProvider
from switchyard.providers.openai_responses_wire import render_request
from tests.support.gateway import RunningGateway, base_config, run_gateway
from tests.support.servers import serve_asgi
from tests.support.steady import steady_diagnostics
from tests.test_openai_steady import PNG_1PX, DiagnosingProxy

KEY = "sk-test-keeper-0123456789"


def translated() -> ChatRequest:
    return ChatRequest(
        model="ignored",
        wire="test.neutral",
        messages=[
            Message(Role.SYSTEM, [TextPart("be exact")]),
            Message(Role.SYSTEM, [TextPart("and brief")], meta={"openai_role": "developer"}),
            Message(Role.USER, [
                TextPart("look"),
                ImagePart(data=PNG_1PX, media_type="image/png", detail="high"),
                ImagePart(url="https://example.com/cat.png"),
                FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
            ]),
            Message(Role.ASSISTANT, [ReasoningPart(text="hmm", meta={"openai_reasoning": {"id": "rs_1"}}),
                                     TextPart("calling"),
                                     ToolCallPart(id="call_9", name="lookup", arguments='{"q": "x"}')]),
            Message(Role.TOOL, [ToolResultPart(tool_call_id="call_9", content=[TextPart("found")])]),
            Message(Role.USER, [TextPart("thanks")]),
        ],
        max_tokens=32, temperature=0.5, top_p=0.5, top_logprobs=1, parallel_tool_calls=False,
        tools=[Tool(name="lookup", description="d", parameters={"type": "object", "properties": {}}, strict=False),
               Tool(name="web_search", meta={"openai_builtin_tool": {"type": "web_search"}})],
        tool_choice=ToolChoice("tool", "lookup"),
        response_format=ResponseFormat("json_schema", name="r", schema={"type": "object"}, strict=False),
        reasoning_effort="medium", user="u", metadata={"k": "v"},
    )


def test_translated_request_is_a_valid_responses_body(steady_url: str) -> None:
    body = render_request(translated(), "gpt-4o", provider="steady")
    resp = httpx.post(f"{steady_url}/responses", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert steady_diagnostics(resp.headers) == []
    assert body["store"] is False and body["max_output_tokens"] == 32
    kinds = [i.get("type") for i in body["input"]]
    assert kinds == ["message", "message", "message", "reasoning", "message", "function_call",
                     "function_call_output", "message"]
    assert body["tool_choice"] == {"type": "function", "name": "lookup"}
    assert body["tools"][1] == {"type": "web_search"}


def test_untranslatable_fields_are_refused_by_name() -> None:
    req = translated()
    req.stop = ["x"]
    with pytest.raises(UnsupportedParameter) as e:
        render_request(req, "gpt-4o", provider="steady")
    assert e.value.param == "stop"
    req = translated()
    req.messages.append(Message(Role.USER, [AudioPart(data="UklGRg==", format="wav")]))
    assert render_request(req, "m", provider="p")["input"][-1]["content"][0]["type"] == "input_audio"


def test_api_responses_builds_the_responses_provider() -> None:
    cfg = OpenAIProviderConfig(type="openai", base_url="http://127.0.0.1:9", api="responses")
    assert isinstance(build_provider("r", cfg), OpenAIResponsesProvider)


async def test_provider_parses_random_replies(steady_url: str) -> None:
    cfg = OpenAIProviderConfig(type="openai", base_url=steady_url, api_key="sk", api="responses")
    provider = build_provider("steady", cfg)
    try:
        for _ in range(5):
            resp = await provider.chat(translated(), Target("d", "gpt-4o"))
            assert resp.raw is not None and len(resp.choices) == 1
    finally:
        await provider.aclose()


@pytest.fixture(scope="module")
def proxy(steady_url: str) -> Iterator[DiagnosingProxy]:
    p = DiagnosingProxy(steady_url)
    with serve_asgi(p.app) as url:
        p.url = url  # type: ignore[attr-defined]
        yield p


@pytest.fixture(scope="module")
def gw(proxy: DiagnosingProxy) -> Iterator[RunningGateway]:
    cfg = base_config(
        providers={"steady": {"type": "openai", "base_url": proxy.url, "api_key": "sk-steady",  # type: ignore[attr-defined]
                              "api": "responses"}},
        deployments=[{"name": "gpt-4o", "provider": "steady"}],
        keys=[{"key": KEY, "name": "keeper", "logging": "full"}],
    )
    with run_gateway(cfg) as running:
        yield running


def test_same_wire_passes_through(gw: RunningGateway, proxy: DiagnosingProxy) -> None:
    """The gateway's Responses API to a Responses upstream: the client's body goes up as sent (but for model), and
    the upstream's response comes back; unknown fields survive; the chain of previous_response_id is expanded."""
    proxy.take()
    extra: Any = {"prompt_cache_key": "k1", "service_tier": "auto"}
    with openai.OpenAI(base_url=gw.openai_base, api_key=KEY, max_retries=0) as client:
        first = client.responses.create(model="gpt-4o", input="hello", instructions="brief",
                                        tools=[{"type": "web_search"}], include=["reasoning.encrypted_content"],
                                        truncation="auto", extra_body=extra)
        assert first.object == "response"
        second = client.responses.create(model="gpt-4o", input="again", previous_response_id=first.id)
        assert second.previous_response_id == first.id
    seen = proxy.take()
    assert [p for p, _ in seen] == ["/responses", "/responses"]
    assert all(d == [] for _, d in seen), seen
