"""What of a call's content the audit log keeps, by the key's logging mode.

* ``none`` (the default): nothing; zero data retention. The record still says who, what, when, the decision,
  the deployment, the tokens and the cost.
* ``metadata``: the request's parameters (model, limits, sampling, tool names, response format), the caller's
  ``user`` and ``metadata`` fields, message counts and roles, and the finish reasons. No prompt or completion text.
* ``full``: the metadata, plus the request body as the caller sent it and the completion (text and tool calls).
"""

from __future__ import annotations

from typing import Any

from ..messages import (
    ChatRequest,
    ChatResponse,
    Chunk,
    EmbeddingRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
)


def request_payload(mode: str, req: ChatRequest) -> dict[str, Any] | None:
    if mode not in ("metadata", "full"):
        return None
    params = {k: v for k, v in (
        ("max_tokens", req.max_tokens), ("temperature", req.temperature), ("top_p", req.top_p),
        ("top_k", req.top_k), ("n", req.n), ("seed", req.seed), ("stream", req.stream),
        ("reasoning_effort", req.reasoning_effort), ("parallel_tool_calls", req.parallel_tool_calls),
        ("response_format", req.response_format.type if req.response_format else None),
        ("tool_choice", req.tool_choice.mode if req.tool_choice else None),
    ) if v is not None}
    out: dict[str, Any] = {
        "mode": mode, "model": req.model, "wire": req.wire, "params": params,
        "messages": len(req.messages), "roles": [m.role.value for m in req.messages],
        "tools": [t.name for t in req.tools or ()],
    }
    if req.user is not None:
        out["user"] = req.user
    if req.metadata is not None:
        out["metadata"] = req.metadata
    if mode == "full":
        out["request"] = req.raw if req.raw is not None else {
            "messages": [{"role": m.role.value, "content": m.text()} for m in req.messages]}
    return out


def embedding_payload(mode: str, req: EmbeddingRequest) -> dict[str, Any] | None:
    if mode not in ("metadata", "full"):
        return None
    out: dict[str, Any] = {"mode": mode, "model": req.model, "inputs": len(req.input),
                           "dimensions": req.dimensions}
    if req.user is not None:
        out["user"] = req.user
    if mode == "full":
        out["input"] = req.input
    return out


def add_response(payload: dict[str, Any], resp: ChatResponse) -> None:
    payload["finish_reasons"] = [c.finish_reason.value if c.finish_reason else None for c in resp.choices]
    if payload.get("mode") == "full":
        payload["response"] = {"choices": [
            {"text": c.message.text(),
             "tool_calls": [{"name": p.name, "arguments": p.arguments} for p in c.message.parts
                            if isinstance(p, ToolCallPart)]}
            for c in resp.choices]}


class StreamCapture:
    """Collects a stream's completion, for a ``full`` payload (only built when the mode asks for it)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.full = payload.get("mode") == "full"
        self.text: dict[int, list[str]] = {}
        self.tools: dict[tuple[int, int], dict[str, Any]] = {}
        self.finish: dict[int, str] = {}

    def feed(self, chunk: Chunk) -> None:
        for ev in chunk.events:
            if isinstance(ev, Finish):
                self.finish[ev.choice] = ev.reason.value if ev.reason else ""
            elif not self.full:
                continue
            elif isinstance(ev, TextDelta):
                self.text.setdefault(ev.choice, []).append(ev.text)
            elif isinstance(ev, ToolCallStart):
                self.tools[(ev.choice, ev.index)] = {"name": ev.name, "arguments": ""}
            elif isinstance(ev, ToolCallDelta):
                self.tools.setdefault((ev.choice, ev.index), {"name": None, "arguments": ""})["arguments"] += (
                    ev.arguments)

    def close(self) -> None:
        self.payload["finish_reasons"] = [self.finish[i] for i in sorted(self.finish)]
        if self.full:
            choices = sorted(set(self.text) | {c for c, _ in self.tools})
            self.payload["response"] = {"choices": [
                {"text": "".join(self.text.get(c, ())),
                 "tool_calls": [v for (ci, _), v in sorted(self.tools.items()) if ci == c]}
                for c in choices]}
