"""The ``openai`` provider type: OpenAI, Azure OpenAI, and every OpenAI-compatible server (vLLM, Ollama,
llama.cpp's server, Groq, Together, DeepSeek, Mistral, OpenRouter), chosen by ``base_url``.

Wire format: https://platform.openai.com/docs/api-reference/chat and /embeddings. Azure: deployment URLs
(``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``) and the ``api-key`` header,
https://learn.microsoft.com/azure/ai-services/openai/reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ..config import OpenAIProviderConfig
from ..messages import (
    WIRE_OPENAI_CHAT,
    WIRE_OPENAI_EMBEDDINGS,
    ChatRequest,
    ChatResponse,
    Chunk,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)
from . import openai_wire
from .base import Target
from .http_provider import HTTPProvider
from .transport import Transport

_OFFICIAL_HOSTS = ("api.openai.com", ".openai.azure.com")


class OpenAIProvider(HTTPProvider):
    type = "openai"
    wire = WIRE_OPENAI_CHAT

    def __init__(self, name: str, config: OpenAIProviderConfig, transport: Transport | None = None) -> None:
        super().__init__(name, config, transport)
        self.config: OpenAIProviderConfig = config
        self.azure = config.is_azure
        self.official = any(h in config.base_url for h in _OFFICIAL_HOSTS)
        headers = {k.lower(): v for k, v in config.headers.items()}  # under the provider's own headers
        headers |= {"content-type": "application/json", "accept": "application/json"}
        if config.api_key:
            if self.azure:
                headers["api-key"] = config.api_key
            else:
                headers["authorization"] = f"Bearer {config.api_key}"
        if config.organization:
            headers["openai-organization"] = config.organization
        if config.project:
            headers["openai-project"] = config.project
        self._headers = headers
        self._urls: dict[tuple[str, str], str] = {}

    def _url(self, endpoint: str, model: str) -> str:
        url = self._urls.get((endpoint, model))
        if url is None:
            query = "?" + urlencode({"api-version": self.config.api_version}, quote_via=quote) \
                if self.config.api_version else ""
            if self.azure and self.config.api_version:
                url = f"{self.config.base_url}/openai/deployments/{model}/{endpoint}{query}"
            else:
                url = f"{self.config.base_url}/{endpoint}{query}"
            if len(self._urls) < 1024:
                self._urls[(endpoint, model)] = url
        return url

    async def _post(self, endpoint: str, body: dict[str, Any], target: Target) -> dict[str, Any]:
        headers = self._headers | target.extra_headers if target.extra_headers else self._headers
        return await self.post_json(self._url(endpoint, target.model), orjson.dumps(body), headers, target)

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        body = openai_wire.render_request(req, target.model, provider=self.name, official=self.official)
        body.pop("stream", None)
        body.pop("stream_options", None)
        data = await self._post("chat/completions", body, target)
        if "choices" not in data:
            raise self.bad_reply("sent a reply without choices", target)
        return openai_wire.parse_response(data)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        body = openai_wire.render_request(req, target.model, provider=self.name, official=self.official)
        headers = self._headers | target.extra_headers if target.extra_headers else self._headers
        url = self._url("chat/completions", target.model)
        started = done = False
        reads = self.stream_sse_reads(url, orjson.dumps(body), headers, target)
        async with aclosing(reads):
            async for events in reads:  # the frames of one read become one chunk: one step for the whole burst
                got: list[Chunk] = []
                try:
                    for ev in events:
                        if ev.data == "[DONE]":
                            done = True
                            break
                        try:
                            data = orjson.loads(ev.data)
                        except orjson.JSONDecodeError:
                            raise self.bad_reply("sent a stream frame that is not JSON", target) from None
                        if isinstance(data, dict) and "error" in data and "choices" not in data:
                            err = data["error"]
                            msg = err.get("message") if isinstance(err, dict) else str(err)
                            raise self.bad_reply(f"failed mid-stream: {msg}", target)
                        got.append(openai_wire.parse_chunk(data, started))
                        started = True
                finally:  # what came before a broken frame still reaches the client, then the error
                    if len(got) == 1:
                        yield got[0]
                    elif got:
                        yield openai_wire.merge_chunks(got)
                if done:
                    break
        if not done:
            raise self.bad_reply("ended the stream early", target)

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        body: dict[str, Any] = dict(req.extra) if req.wire == WIRE_OPENAI_EMBEDDINGS else {}
        body["model"] = target.model
        body["input"] = req.input
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        if req.encoding_format is not None:
            body["encoding_format"] = req.encoding_format
        if req.user is not None:
            body["user"] = req.user
        data = await self._post("embeddings", body, target)
        items = data.get("data")
        if not isinstance(items, list):
            raise self.bad_reply("sent an embeddings reply without data", target)
        u = data.get("usage") or {}
        usage = Usage(input_tokens=int(u.get("prompt_tokens") or 0))
        return EmbeddingResponse(
            model=str(data.get("model", target.model)),
            data=[Embedding(index=int(d.get("index", i)), vector=d.get("embedding")) for i, d in enumerate(items)],
            usage=usage,
            wire=WIRE_OPENAI_EMBEDDINGS,
            raw=data,
        )
