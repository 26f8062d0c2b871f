"""The ``openai`` provider type: OpenAI, Azure OpenAI, and every OpenAI-compatible server (vLLM, Ollama,
llama.cpp's server, Groq, Together, DeepSeek, Mistral, OpenRouter), chosen by ``base_url``.

Wire format: https://platform.openai.com/docs/api-reference/chat and /embeddings. Azure: deployment URLs
(``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...``) and the ``api-key`` header,
https://learn.microsoft.com/azure/ai-services/openai/reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..config import OpenAIProviderConfig
from ..errors import UpstreamError
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
from ..sse import SSEDecoder
from . import openai_wire
from .base import Provider, Target
from .http import TRANSPORT_ERRORS, UpstreamHTTP, status_error, transport_error

_OFFICIAL_HOSTS = ("api.openai.com", ".openai.azure.com")


class OpenAIProvider(Provider):
    type = "openai"
    wire = WIRE_OPENAI_CHAT

    def __init__(self, name: str, config: OpenAIProviderConfig) -> None:
        super().__init__(name, config)
        self.config: OpenAIProviderConfig = config
        self.azure = config.is_azure
        self.official = any(h in config.base_url for h in _OFFICIAL_HOSTS)
        headers = {"content-type": "application/json", "accept": "application/json"}
        if config.api_key:
            if self.azure:
                headers["api-key"] = config.api_key
            else:
                headers["authorization"] = f"Bearer {config.api_key}"
        if config.organization:
            headers["openai-organization"] = config.organization
        if config.project:
            headers["openai-project"] = config.project
        headers.update({k.lower(): v for k, v in config.headers.items()})
        self._headers = headers
        self._http = UpstreamHTTP(config)

    async def start(self) -> None:
        await self._http.start()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _url(self, endpoint: str, model: str) -> tuple[str, dict[str, str]]:
        params = {"api-version": self.config.api_version} if self.config.api_version else {}
        if self.azure and self.config.api_version:
            return f"{self.config.base_url}/openai/deployments/{model}/{endpoint}", params
        return f"{self.config.base_url}/{endpoint}", params

    async def _post(self, endpoint: str, body: dict[str, Any], target: Target) -> dict[str, Any]:
        url, params = self._url(endpoint, target.model)
        headers = self._headers | target.extra_headers if target.extra_headers else self._headers
        try:
            resp = await self._http.post(url, orjson.dumps(body), headers, params or None)
        except TRANSPORT_ERRORS as e:
            raise transport_error(e, self.name, target.deployment) from e
        if resp.status >= 400:
            raise status_error(resp.status, resp.headers, resp.body, self.name, target.deployment)
        try:
            data = orjson.loads(resp.body)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"provider {self.name!r} sent a reply that is not JSON", provider=self.name,
                                deployment=target.deployment, retryable=True) from None
        if not isinstance(data, dict):
            raise UpstreamError(f"provider {self.name!r} sent an unexpected reply", provider=self.name,
                                deployment=target.deployment, retryable=True)
        return data

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        body = openai_wire.render_request(req, target.model, provider=self.name, official=self.official)
        body.pop("stream", None)
        body.pop("stream_options", None)
        data = await self._post("chat/completions", body, target)
        if "choices" not in data:
            raise UpstreamError(f"provider {self.name!r} sent a reply without choices", provider=self.name,
                                deployment=target.deployment, retryable=True)
        return openai_wire.parse_response(data)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        body = openai_wire.render_request(req, target.model, provider=self.name, official=self.official)
        url, params = self._url("chat/completions", target.model)
        headers = self._headers | target.extra_headers if target.extra_headers else self._headers
        try:
            async with self._http.stream(url, orjson.dumps(body), headers, params or None) as resp:
                if resp.status >= 400:
                    raise status_error(resp.status, resp.headers, await resp.read(), self.name, target.deployment)
                decoder = SSEDecoder()
                started = False
                done = False
                async for raw in resp.chunks():
                    for ev in decoder.feed(raw):
                        if ev.data == "[DONE]":
                            done = True
                            break
                        try:
                            data = orjson.loads(ev.data)
                        except orjson.JSONDecodeError:
                            raise UpstreamError(f"provider {self.name!r} sent a stream frame that is not JSON",
                                                provider=self.name, deployment=target.deployment,
                                                retryable=True) from None
                        if isinstance(data, dict) and "error" in data and "choices" not in data:
                            err = data["error"]
                            msg = err.get("message") if isinstance(err, dict) else str(err)
                            raise UpstreamError(f"provider {self.name!r} failed mid-stream: {msg}",
                                                provider=self.name, deployment=target.deployment, retryable=True)
                        chunk = openai_wire.parse_chunk(data, started)
                        started = True
                        yield chunk
                    if done:
                        break
        except TRANSPORT_ERRORS as e:
            raise transport_error(e, self.name, target.deployment) from e
        if not done:
            raise UpstreamError(f"provider {self.name!r} ended the stream early", provider=self.name,
                                deployment=target.deployment, retryable=True)

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
            raise UpstreamError(f"provider {self.name!r} sent an embeddings reply without data",
                                provider=self.name, deployment=target.deployment, retryable=True)
        u = data.get("usage") or {}
        usage = Usage(input_tokens=int(u.get("prompt_tokens") or 0))
        return EmbeddingResponse(
            model=str(data.get("model", target.model)),
            data=[Embedding(index=int(d.get("index", i)), vector=d.get("embedding")) for i, d in enumerate(items)],
            usage=usage,
            wire=WIRE_OPENAI_EMBEDDINGS,
            raw=data,
        )
