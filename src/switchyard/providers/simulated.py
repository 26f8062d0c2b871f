"""The ``simulated`` provider type: answers from inside the gateway, for demos and load tests.

Its text is deterministic (a function of the whole conversation and the seed); it never reports more output
tokens than ``max_tokens``; it calls the request's tools unless the last turn holds their results (so agent loops
end); its time to first token, pace, length and
failure rate come from the config. Every response it serves carries ``x-switchyard-simulated: true``.

It builds every reply in memory, so it checks each request against ``switchyard.bounds`` itself (a 400 naming the
parameter), whichever way the request reached it; embeddings are also capped at ``MAX_SIMULATED_VALUES`` numbers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..bounds import MAX_SIMULATED_VALUES, check_chat, check_embedding
from ..config import SimulatedProviderConfig
from ..errors import UpstreamError
from ..messages import (
    JSON,
    ChatRequest,
    ChatResponse,
    Choice,
    Chunk,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    Finish,
    FinishReason,
    Message,
    Part,
    Role,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageUpdate,
)
from ..tokens import estimate_prompt, estimate_text
from .base import Provider, Target
from .translate import refuse_openai_only

_WORDS = (
    "switchyard", "routes", "every", "request", "to", "a", "healthy", "model", "and", "keeps", "the", "books",
    "straight", "while", "tokens", "flow", "through", "one", "governed", "gateway", "with", "budgets", "limits",
    "audit", "trails", "retries", "fallbacks", "and", "clear", "errors",
)


def _sample(schema: JSON) -> JSON:
    """A small value that fits a JSON schema, for simulated tool arguments."""
    if not isinstance(schema, dict):
        return None
    t = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if t == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: _sample(v) for k, v in props.items()}
    if t == "array":
        return [_sample(schema.get("items") or {})]
    if t == "integer":
        return 1
    if t == "number":
        return 1.5
    if t == "boolean":
        return True
    if t == "null":
        return None
    return "sample"


_CALL_TOKENS = 8  # the output tokens one simulated tool call counts for


def _conversation(req: ChatRequest) -> str:
    """The conversation's text (tool results included): the same prompt gives the same answer."""
    out: list[str] = []
    for m in req.messages:
        out.append(m.role.value)
        for p in m.parts:
            if isinstance(p, TextPart):
                out.append(p.text)
            elif isinstance(p, ToolResultPart):
                out.extend(q.text for q in p.content if isinstance(q, TextPart))
            elif isinstance(p, ToolCallPart):
                out.append(p.name + p.arguments)
    return "\x1f".join(out)


def _after_tool_results(req: ChatRequest) -> bool:
    """Whether the last turn (system messages aside) answers tool calls."""
    for m in reversed(req.messages):
        if m.role is Role.SYSTEM:
            continue
        return m.role is Role.TOOL or any(isinstance(p, ToolResultPart) for p in m.parts)
    return False


class SimulatedProvider(Provider):
    type = "simulated"
    wire = "simulated"
    response_headers = {"x-switchyard-simulated": "true"}

    def __init__(self, name: str, config: SimulatedProviderConfig) -> None:
        super().__init__(name, config)
        self.config: SimulatedProviderConfig = config
        self._rng = random.Random(config.seed)
        self._counter = 0

    def _maybe_fail(self, target: Target) -> None:
        if self.config.failure_rate and self._rng.random() < self.config.failure_rate:
            status = self.config.failure_status
            raise UpstreamError(f"provider {self.name!r} returned HTTP {status}: simulated failure",
                                provider=self.name, deployment=target.deployment, upstream_status=status,
                                retryable=True)

    def _plan(self, req: ChatRequest) -> tuple[list[str], FinishReason, list[ToolCallPart]]:
        """The words of the reply, why it ends, and any tool calls: all a function of the prompt and seed.

        Tools are called unless ``tool_choice`` is none, or the conversation's last turn holds tool results and the
        choice does not force a call (so an agent loop ends). Tool calls cost ``_CALL_TOKENS`` each: when
        ``max_tokens`` cannot hold them, the reply is cut (finish reason length) without them."""
        digest = hashlib.blake2b(f"{self.config.seed}:{_conversation(req)}".encode(), digest_size=8).digest()
        start = int.from_bytes(digest, "big")
        n = self.config.output_tokens
        reason = FinishReason.STOP
        if req.max_tokens is not None and req.max_tokens < n:
            n, reason = req.max_tokens, FinishReason.LENGTH
        words = [_WORDS[(start + i * 7) % len(_WORDS)] for i in range(n)]
        calls: list[ToolCallPart] = []
        tc = req.tool_choice
        forced = tc is not None and tc.mode in ("required", "tool")
        answered = _after_tool_results(req)
        if req.tools and (tc is None or tc.mode != "none") and (forced or not answered):
            tools = [t for t in req.tools if tc is None or tc.mode != "tool" or t.name == tc.name] or req.tools[:1]
            if req.parallel_tool_calls is False:
                tools = tools[:1]
            if req.max_tokens is not None and req.max_tokens < len(tools) * _CALL_TOKENS:
                return words[:1], FinishReason.LENGTH, []  # no room for the calls: cut short, as a model would
            for i, t in enumerate(tools):
                args = orjson.dumps(_sample(t.parameters or {"type": "object"})).decode()
                calls.append(ToolCallPart(id=f"call_sim{start % 10**8:08d}{i}", name=t.name, arguments=args))
            return [], FinishReason.TOOL_CALLS, calls
        rf = req.response_format
        if rf is not None and rf.type != "text":
            value = _sample(rf.schema) if rf.schema else {"reply": " ".join(words)}
            text = orjson.dumps(value).decode()
            if req.max_tokens is not None and estimate_text(text) > req.max_tokens:
                return [text[: req.max_tokens * 4]], FinishReason.LENGTH, []  # cut, like a real model at the cap
            return [text], reason if reason is FinishReason.LENGTH else FinishReason.STOP, []
        return [w if i == 0 else " " + w for i, w in enumerate(words)], reason, []

    @staticmethod
    def _output_tokens(req: ChatRequest, words: list[str], calls: list[ToolCallPart]) -> int:
        """Output tokens of one choice: never more than ``max_tokens``, which the gateway's budget relies on."""
        out = (estimate_text(words[0]) if len(words) == 1 else len(words)) + len(calls) * _CALL_TOKENS
        return min(out, req.max_tokens) if req.max_tokens is not None else out

    def _next_id(self) -> str:
        self._counter += 1
        return f"chatcmpl-sim{self._counter:012d}"

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        check_chat(req)
        refuse_openai_only(req, self.name)
        self._maybe_fail(target)
        words, reason, calls = self._plan(req)
        delay = self.config.ttft_ms / 1000
        if self.config.tokens_per_second:
            delay += max(len(words), 1) / self.config.tokens_per_second
        if delay:
            await asyncio.sleep(delay)
        n = req.n or 1
        text = "".join(words)
        choices = []
        for i in range(n):
            parts: list[Part] = [TextPart(text)] if text else []
            parts.extend(calls)
            choices.append(Choice(index=i, message=Message(Role.ASSISTANT, parts), finish_reason=reason))
        out_tokens = self._output_tokens(req, words, calls)
        usage = Usage(input_tokens=estimate_prompt(req), output_tokens=out_tokens * n)
        return ChatResponse(id=self._next_id(), model=target.model, created=int(time.time()), choices=choices,
                            usage=usage)

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        check_chat(req)
        refuse_openai_only(req, self.name)
        self._maybe_fail(target)
        words, reason, calls = self._plan(req)
        if self.config.ttft_ms:
            await asyncio.sleep(self.config.ttft_ms / 1000)
        gap = 1 / self.config.tokens_per_second if self.config.tokens_per_second else 0.0
        n = req.n or 1
        first: list[StreamEvent] = [StreamStart(id=self._next_id(), model=target.model, created=int(time.time()))]
        yield Chunk(first)
        for w in words:
            yield Chunk([TextDelta(w, choice=c) for c in range(n)])
            if gap:
                await asyncio.sleep(gap)
        for i, call in enumerate(calls):
            events: list[StreamEvent] = []
            for c in range(n):
                events.append(ToolCallStart(index=i, id=call.id, name=call.name, choice=c))
                events.append(ToolCallDelta(index=i, arguments=call.arguments, choice=c))
            yield Chunk(events)
        yield Chunk([Finish(reason, choice=c) for c in range(n)])
        out = self._output_tokens(req, words, calls)
        yield Chunk([UsageUpdate(Usage(input_tokens=estimate_prompt(req), output_tokens=out * n))])

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        check_embedding(req, MAX_SIMULATED_VALUES)
        self._maybe_fail(target)
        dims = req.dimensions or 16
        data: list[Embedding] = []
        tokens = 0
        for i, item in enumerate(req.input):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += estimate_text(text) if isinstance(item, str) else len(item)
            seed = hashlib.blake2b(f"{self.config.seed}:{text}".encode(), digest_size=8).digest()
            rng = random.Random(seed)
            vec = [rng.uniform(-1, 1) for _ in range(dims)]
            norm = sum(v * v for v in vec) ** 0.5 or 1.0
            vec = [v / norm for v in vec]
            value: Any = vec
            if req.encoding_format == "base64":
                value = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append(Embedding(index=i, vector=value))
        return EmbeddingResponse(model=target.model, data=data, usage=Usage(input_tokens=tokens))
