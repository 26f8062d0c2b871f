"""The ``gemini`` provider type: Google AI's Gemini API (generativelanguage.googleapis.com).

Endpoints: ``POST {base_url}/{api_version}/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``
(server-sent events, one ``GenerateContentResponse`` per ``data:`` frame, no ``[DONE]``: a stream is complete once a
candidate has a ``finishReason`` or the prompt was blocked) and ``:batchEmbedContents``; the key goes in the
``x-goog-api-key`` header. https://ai.google.dev/api/generate-content, https://ai.google.dev/api/embeddings,
errors https://ai.google.dev/gemini-api/docs/troubleshooting. Translation is in ``providers.gemini_wire``.

Error details that Google sends in the body rather than in headers are honoured: a 429's
``google.rpc.RetryInfo.retryDelay`` becomes ``Retry-After``, and a 400 whose reason is ``API_KEY_INVALID`` is the
gateway's misconfiguration, not the caller's mistake, so it answers 502.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import orjson

from ..config import GeminiProviderConfig
from ..errors import UnsupportedParameter, UpstreamError, is_retryable_status
from ..messages import (
    WIRE_OPENAI_EMBEDDINGS,
    ChatRequest,
    ChatResponse,
    Chunk,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)
from ..tokens import estimate_text
from . import gemini_wire
from .base import Target
from .http_provider import HTTPProvider, status_error
from .transport import Transport

WIRE_GEMINI = gemini_wire.WIRE_GEMINI


def _details(body: bytes) -> list[dict[str, Any]]:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return []
    if isinstance(data, list) and data:
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _seconds(duration: Any) -> float | None:
    """A protobuf Duration in JSON (``"37s"``, ``"1.5s"``)."""
    if not isinstance(duration, str) or not duration.endswith("s"):
        return None
    try:
        return float(duration[:-1])
    except ValueError:
        return None


def gemini_error(status: int, headers: Mapping[str, str], body: bytes, provider: str, deployment: str) -> UpstreamError:
    details = _details(body)
    if status == 429 and "retry-after" not in headers:
        delay = next((_seconds(d.get("retryDelay")) for d in details if "retryDelay" in d), None)
        if delay is not None:
            headers = {k.lower(): v for k, v in headers.items()} | {"retry-after": f"{delay:g}"}
    err = status_error(status, headers, body, provider, deployment)
    if any(d.get("reason") == "API_KEY_INVALID" for d in details):
        err.status, err.kind, err.param, err.retryable = 502, "upstream", None, False
    return err


def model_name(model: str) -> str:
    """The resource name: ``models/gemini-2.5-flash``; ``tunedModels/...`` and ``models/...`` pass unchanged."""
    return model if "/" in model else f"models/{model}"


class GeminiProvider(HTTPProvider):
    type = "gemini"
    wire = WIRE_GEMINI

    def __init__(self, name: str, config: GeminiProviderConfig, transport: Transport | None = None) -> None:
        super().__init__(name, config, transport)
        self.config: GeminiProviderConfig = config
        headers = {k.lower(): v for k, v in config.headers.items()}  # under the provider's own headers
        headers |= {"content-type": "application/json", "accept": "application/json"}
        if config.api_key:
            headers["x-goog-api-key"] = config.api_key
        self._headers = headers

    def _url(self, model: str, method: str) -> str:
        return f"{self.config.base_url}/{self.config.api_version}/{model_name(model)}:{method}"

    def status_error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> UpstreamError:
        return gemini_error(status, headers, body, self.name, target.deployment)

    async def _post(self, method: str, body: dict[str, Any], target: Target) -> dict[str, Any]:
        headers = self._headers | target.extra_headers if target.extra_headers else self._headers
        return await self.post_json(self._url(target.model, method), orjson.dumps(body), headers, target)

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        body = gemini_wire.render_request(req, target.model, provider=self.name)
        data = await self._post("generateContent", body, target)
        if not data.get("candidates") and not gemini_wire.prompt_blocked(data):
            raise self.bad_reply("sent a reply without candidates", target)
        return gemini_wire.parse_response(data, target.model, single_call=req.parallel_tool_calls is False)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        body = gemini_wire.render_request(req, target.model, provider=self.name)
        headers = self._headers | target.extra_headers if target.extra_headers else self._headers
        url = self._url(target.model, "streamGenerateContent") + "?alt=sse"
        parser = gemini_wire.StreamParser(target.model, single_call=req.parallel_tool_calls is False)
        events = self.stream_sse(url, orjson.dumps(body), headers, target)
        async with aclosing(events):
            async for ev in events:
                yield self._chunk(parser, ev.data, target)
        if not parser.finished:
            raise self.bad_reply("ended the stream early", target)

    def _chunk(self, parser: gemini_wire.StreamParser, text: str, target: Target) -> Chunk:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise self.bad_reply("sent a stream frame that is not JSON", target) from None
        if isinstance(data, list) and len(data) == 1:
            data = data[0]
        if not isinstance(data, dict):
            raise self.bad_reply("sent an unexpected stream frame", target)
        err = data.get("error")
        if isinstance(err, dict) and "candidates" not in data:
            code = err["code"] if isinstance(err.get("code"), int) else 500
            raise UpstreamError(f"provider {self.name!r} failed mid-stream: {err.get('message') or err}",
                                provider=self.name, deployment=target.deployment,
                                retryable=is_retryable_status(code))
        return parser.feed(data)

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        name = model_name(target.model)
        data = await self._post("batchEmbedContents", render_embed_request(req, name, provider=self.name), target)
        if not isinstance(data.get("embeddings"), list):
            raise self.bad_reply("sent an embeddings reply without embeddings", target)
        return parse_embed_response(data, req, target.model)


def render_embed_request(req: EmbeddingRequest, name: str, *, provider: str) -> dict[str, Any]:
    """A ``batchEmbedContents`` body; ``name`` is the ``models/...`` resource, repeated in every request."""
    if req.wire == WIRE_OPENAI_EMBEDDINGS:
        for key, value in req.extra.items():
            if value not in (None, {}, [], ""):
                raise UnsupportedParameter(f"{key} is not supported by provider {provider!r} (Gemini)", param=key)
    requests: list[dict[str, Any]] = []
    for i, item in enumerate(req.input):
        if not isinstance(item, str):
            raise UnsupportedParameter(f"token-id input is not supported by provider {provider!r} (Gemini); send "
                                       "text", param="input" if req.single else f"input[{i}]")
        r: dict[str, Any] = {"model": name, "content": {"parts": [{"text": item}]}}
        if req.dimensions is not None:
            r["outputDimensionality"] = req.dimensions
        requests.append(r)
    return {"requests": requests}


def parse_embed_response(data: dict[str, Any], req: EmbeddingRequest, model: str) -> EmbeddingResponse:
    """Vectors in input order (base64 is little-endian float32, as OpenAI sends it). Usage is the reply's
    ``usageMetadata`` when present, else an estimate: batchEmbedContents does not always report tokens."""
    out: list[Embedding] = []
    for i, e in enumerate(data.get("embeddings") or []):
        values = [float(v) for v in (e.get("values") or [])] if isinstance(e, dict) else []
        vector: list[float] | str = values
        if req.encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        out.append(Embedding(index=i, vector=vector))
    usage = gemini_wire.parse_usage(data.get("usageMetadata"))
    tokens = usage.input_tokens if usage is not None else 0
    if not tokens:
        tokens = sum(estimate_text(t) for t in req.input if isinstance(t, str))
    return EmbeddingResponse(model=model, data=out, usage=Usage(input_tokens=tokens), wire=WIRE_GEMINI, raw=data)
