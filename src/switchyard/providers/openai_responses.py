"""An ``openai`` provider with ``api: responses``: OpenAI's Responses API (``POST {base_url}/responses``), to reach
models served only there. Authentication, Azure URLs and the transport are the chat provider's; the wire is
``openai_responses_wire``. A client of the gateway's own Responses API passes through unchanged but for ``model``.

Wire format: https://platform.openai.com/docs/api-reference/responses, streaming
https://platform.openai.com/docs/api-reference/responses-streaming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import orjson

from ..messages import WIRE_OPENAI_RESPONSES, ChatRequest, ChatResponse, Chunk
from . import openai_responses_wire as wire
from .base import Target
from .openai import OpenAIProvider


class OpenAIResponsesProvider(OpenAIProvider):
    wire = WIRE_OPENAI_RESPONSES

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        body = wire.render_request(req, target.model, provider=self.name)
        body.pop("stream", None)
        body.pop("stream_options", None)
        data = await self._post("responses", body, target)
        if not isinstance(data.get("output"), list):
            raise self.bad_reply("sent a reply that is not a response", target)
        if data.get("status") == "failed":
            err = data.get("error") or {}
            raise self.bad_reply(f"failed: {err.get('message') if isinstance(err, dict) else err}", target)
        return wire.parse_response(data)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        body = wire.render_request(req, target.model, provider=self.name)
        body["stream"] = True
        headers = self._headers | target.extra_headers if target.extra_headers else self._headers
        headers = headers | {"accept": "text/event-stream"}
        parser = wire.StreamParser()
        reads = self.stream_sse_reads(self._url("responses", target.model), orjson.dumps(body), headers, target)
        async with aclosing(reads):
            async for events in reads:
                for ev in events:
                    if ev.data == "[DONE]":
                        continue
                    try:
                        data = orjson.loads(ev.data)
                    except orjson.JSONDecodeError:
                        raise self.bad_reply("sent a stream event that is not JSON", target) from None
                    if not isinstance(data, dict):
                        raise self.bad_reply("sent a stream event that is not an object", target)
                    chunk = parser.feed(data)
                    if parser.failed is not None:
                        raise self.bad_reply(f"failed mid-stream: {parser.failed}", target)
                    yield chunk
                    if parser.done:
                        return
        raise self.bad_reply("ended the stream before response.completed", target)
