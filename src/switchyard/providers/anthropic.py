"""The ``anthropic`` provider type: Anthropic's Messages API (``POST {base_url}/v1/messages``).

Wire format: https://docs.anthropic.com/en/api/messages, streaming https://docs.anthropic.com/en/api/messages-streaming,
errors https://docs.anthropic.com/en/api/errors. Headers: ``x-api-key``, ``anthropic-version``, and
``anthropic-beta`` (the configured betas, comma-joined). Requests that arrive in the Anthropic wire format pass
through unchanged but for ``model``; others are translated by ``anthropic_wire``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from ..config import AnthropicProviderConfig
from ..messages import WIRE_ANTHROPIC_MESSAGES, ChatRequest, ChatResponse, Chunk
from ..sse import SSEvent
from . import anthropic_wire
from .base import Target
from .http_provider import HTTPProvider
from .transport import Transport


class AnthropicProvider(HTTPProvider):
    type = "anthropic"
    wire = WIRE_ANTHROPIC_MESSAGES

    def __init__(self, name: str, config: AnthropicProviderConfig, transport: Transport | None = None) -> None:
        super().__init__(name, config, transport)
        self.config: AnthropicProviderConfig = config
        headers = {k.lower(): v for k, v in config.headers.items()}  # under the provider's own headers
        headers |= {"content-type": "application/json", "accept": "application/json",
                    "anthropic-version": config.anthropic_version}
        if config.api_key:
            headers["x-api-key"] = config.api_key
        if config.beta:
            headers["anthropic-beta"] = ",".join(config.beta)
        self._headers = headers
        self._url = f"{config.base_url}/v1/messages"
        self._stream_headers = self._headers | {"accept": "text/event-stream"}

    def _body(self, req: ChatRequest, target: Target, stream: bool) -> bytes:
        body = anthropic_wire.render_request(req, target.model, provider=self.name,
                                             default_max_tokens=self.config.default_max_tokens, stream=stream)
        return orjson.dumps(body)

    def _headers_for(self, req: ChatRequest, target: Target, base: dict[str, str]) -> dict[str, str]:
        """The base headers, the target's, and an Anthropic client's own ``anthropic-beta`` flags (merged with ours)."""
        headers = base | target.extra_headers if target.extra_headers else base
        beta = req.headers.get("anthropic-beta") if req.wire == WIRE_ANTHROPIC_MESSAGES else None
        if beta:
            flags = [f.strip() for f in (headers.get("anthropic-beta", "") + "," + beta).split(",") if f.strip()]
            headers = headers | {"anthropic-beta": ",".join(dict.fromkeys(flags))}
        return headers

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        content = self._body(req, target, stream=False)
        data = await self.post_json(self._url, content, self._headers_for(req, target, self._headers), target)
        if not isinstance(data.get("content"), list):
            raise self.bad_reply("sent a reply that is not a message", target)
        return anthropic_wire.parse_response(data)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        headers = self._headers_for(req, target, self._stream_headers)
        parser = anthropic_wire.StreamParser()
        events = self.stream_sse(self._url, self._body(req, target, stream=True), headers, target)
        async with aclosing(events):
            async for ev in events:
                yield self._chunk(parser, ev, target)
                if parser.done:
                    return
        raise self.bad_reply("sent a stream that ended before message_stop", target)

    def _chunk(self, parser: anthropic_wire.StreamParser, ev: SSEvent, target: Target) -> Chunk:
        try:
            data: Any = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            raise self.bad_reply("sent a stream event that is not JSON", target) from None
        if not isinstance(data, dict):
            raise self.bad_reply("sent a stream event that is not an object", target)
        name = ev.event or str(data.get("type", ""))
        if name == "error" or data.get("type") == "error":
            raise anthropic_wire.stream_error(data, self.name, target.deployment)
        return parser.feed(name, data)
