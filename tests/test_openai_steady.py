"""Our outbound OpenAI requests against `steady`, a mock that serves OpenAI's own OpenAPI description and rejects
any request that breaks it. Its random, schema-valid replies must come back through the gateway and parse in the
official SDK's strict mode.

A small recording proxy stands between the gateway and steady: steady answers some spec violations (union
mismatches, out-of-range numbers) with 200 plus diagnostic headers, so the proxy keeps those headers and each
test asserts there were none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from switchyard.config import OpenAIProviderConfig
from switchyard.messages import (
    AudioPart,
    ChatRequest,
    EmbeddingRequest,
    FilePart,
    ImagePart,
    Message,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
)
from switchyard.providers import Target
from switchyard.providers.openai import OpenAIProvider
from switchyard.providers.openai_wire import render_request
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.servers import serve_asgi
from tests.support.steady import steady_diagnostics

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


class DiagnosingProxy:
    """Forwards every request to steady and keeps the diagnostics steady attached to each answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.seen: list[tuple[str, list[dict[str, str]]]] = []
        self.app = Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST"])])

    async def forward(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k in ("content-type", "authorization", "accept")}
        async with httpx.AsyncClient(timeout=30) as client:  # one per request: it lives in the server's loop
            resp = await client.request(request.method, f"{self.upstream}/{request.path_params['path']}",
                                        content=await request.body(), headers=headers)
        self.seen.append((request.url.path, steady_diagnostics(resp.headers)))
        return Response(resp.content, status_code=resp.status_code,
                        media_type=resp.headers.get("content-type", "application/json"))

    def take(self) -> list[tuple[str, list[dict[str, str]]]]:
        out, self.seen = self.seen, []
        return out


@pytest.fixture(scope="module")
def proxy(steady_url: str) -> Iterator[DiagnosingProxy]:
    p = DiagnosingProxy(steady_url)
    with serve_asgi(p.app) as url:
        p.url = url  # type: ignore[attr-defined]
        yield p


@pytest.fixture(scope="module")
def gw(proxy: DiagnosingProxy) -> Iterator[RunningGateway]:
    cfg = base_config(
        providers={"steady": {"type": "openai", "base_url": proxy.url, "api_key": "sk-steady"}},  # type: ignore[attr-defined]
        deployments=[
            {"name": "gpt-4o", "provider": "steady", "capabilities": ["chat", "tools", "json", "vision", "files",
                                                                       "audio"]},
            {"name": "text-embedding-3-small", "provider": "steady", "capabilities": ["embeddings"]},
        ],
    )
    with run_gateway(cfg) as running:
        yield running


@pytest.fixture
def strict_client(gw: RunningGateway, proxy: DiagnosingProxy) -> Iterator[openai.OpenAI]:
    proxy.take()
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0,
                       _strict_response_validation=True) as c:
        yield c


def assert_clean(proxy: DiagnosingProxy, path: str) -> None:
    seen = proxy.take()
    assert seen, "the request never reached steady"
    for got_path, diags in seen:
        assert got_path == path
        assert diags == [], diags


TOOLS: Any = [
    {"type": "function", "function": {"name": "lookup", "description": "Look a thing up", "strict": True,
                                      "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                                     "required": ["q"], "additionalProperties": False}}},
]


def test_every_optional_chat_field_is_accepted(strict_client: openai.OpenAI, proxy: DiagnosingProxy) -> None:
    for _ in range(3):  # steady's replies are random: several draws exercise more shapes
        resp = strict_client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {"role": "developer", "content": "be exact"},
                {"role": "system", "content": [{"type": "text", "text": "and brief"}]},
                {"role": "user", "name": "ada", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1PX}", "detail": "low"}},
                ]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "found"},
            ],
            audio=None,
            frequency_penalty=0.5,
            logit_bias={"50256": -100},
            logprobs=True,
            top_logprobs=3,
            max_completion_tokens=64,
            max_tokens=64,
            metadata={"purpose": "spec-test"},
            modalities=["text"],
            n=2,
            parallel_tool_calls=True,
            prediction={"type": "content", "content": "a prediction"},
            presence_penalty=-0.5,
            prompt_cache_key="cache-key-1",
            reasoning_effort="low",
            response_format={"type": "json_schema", "json_schema": {
                "name": "answer", "description": "an answer", "strict": True,
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                           "additionalProperties": False}}},
            safety_identifier="user-hash-1",
            seed=42,
            service_tier="auto",
            stop=["END"],
            store=False,
            temperature=0.7,
            tool_choice={"type": "function", "function": {"name": "lookup"}},
            tools=TOOLS,
            top_p=0.9,
            user="user-1",
            verbosity="low",
            web_search_options={"search_context_size": "low"},
        )
        assert resp.object == "chat.completion"
        assert_clean(proxy, "/chat/completions")


def test_json_object_and_simple_requests(strict_client: openai.OpenAI, proxy: DiagnosingProxy) -> None:
    strict_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                          response_format={"type": "json_object"}, tool_choice="none", tools=TOOLS)
    assert_clean(proxy, "/chat/completions")
    strict_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert_clean(proxy, "/chat/completions")


def test_embeddings_with_every_field(strict_client: openai.OpenAI, proxy: DiagnosingProxy) -> None:
    for kwargs in ({"input": "one"}, {"input": ["a", "b"], "dimensions": 8, "encoding_format": "float"},
                   {"input": [[1, 2, 3]], "encoding_format": "base64", "user": "u"}):
        strict_client.embeddings.create(model="text-embedding-3-small", **kwargs)  # type: ignore[arg-type]
        assert_clean(proxy, "/embeddings")


def test_models_parse_strictly(strict_client: openai.OpenAI) -> None:
    assert [m.id for m in strict_client.models.list()] == ["gpt-4o", "text-embedding-3-small"]


def translated_request() -> ChatRequest:
    """A request that came in on another protocol: the provider renders every field from the neutral model."""
    return ChatRequest(
        model="ignored",
        wire="test.neutral",
        messages=[
            Message(Role.SYSTEM, [TextPart("be exact")]),
            Message(Role.USER, [
                TextPart("look"),
                ImagePart(data=PNG_1PX, media_type="image/png", detail="high"),
                ImagePart(url="https://example.com/cat.png"),
                FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
                AudioPart(data="UklGRg==", format="wav"),
            ], name="ada"),
            Message(Role.ASSISTANT, [TextPart("calling"), ToolCallPart(id="call_9", name="lookup",
                                                                        arguments='{"q": "x"}')]),
            Message(Role.TOOL, [ToolResultPart(tool_call_id="call_9", content=[TextPart("found")])]),
            Message(Role.USER, [ToolResultPart(tool_call_id="call_9", content=[TextPart("again")]),
                                TextPart("thanks")]),
        ],
        max_tokens=32, temperature=0.5, top_p=0.5, stop=["x", "y"], n=1, seed=3, presence_penalty=0.1,
        frequency_penalty=0.1, logprobs=True, top_logprobs=1,
        tools=[Tool(name="lookup", description="d", parameters={"type": "object", "properties": {}}, strict=False)],
        tool_choice=ToolChoice("required"), parallel_tool_calls=False,
        response_format=ResponseFormat("json_schema", name="r", schema={"type": "object"}, strict=False),
        reasoning_effort="medium", user="u", metadata={"k": "v"},
    )


@pytest.mark.parametrize("official", [True, False])
def test_neutral_requests_render_to_valid_openai_bodies(steady_url: str, official: bool) -> None:
    body = render_request(translated_request(), "gpt-4o", provider="steady", official=official)
    resp = httpx.post(f"{steady_url}/chat/completions", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert steady_diagnostics(resp.headers) == []
    assert body["max_completion_tokens" if official else "max_tokens"] == 32


async def test_provider_parses_random_replies(steady_url: str) -> None:
    cfg = OpenAIProviderConfig(type="openai", base_url=steady_url, api_key="sk")
    provider = OpenAIProvider("steady", cfg)
    try:
        for _ in range(5):
            resp = await provider.chat(translated_request(), Target("d", "gpt-4o"))
            assert resp.raw is not None and isinstance(resp.choices, list)
            emb = await provider.embed(EmbeddingRequest(model="m", input=["a"], wire="test.neutral", dimensions=4),
                                       Target("e", "text-embedding-3-small"))
            assert isinstance(emb.data, list)
    finally:
        await provider.aclose()

