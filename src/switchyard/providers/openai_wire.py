"""Neutral objects to OpenAI Chat Completions request bodies, and OpenAI replies and chunks back.

Wire format: https://platform.openai.com/docs/api-reference/chat (and the OpenAPI description in OpenAI's SDK
repository). Pure functions; the HTTP side is in ``providers.openai``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UnsupportedParameter
from ..messages import (
    JSON,
    WIRE_OPENAI_CHAT,
    AudioPart,
    ChatRequest,
    ChatResponse,
    Choice,
    Chunk,
    FilePart,
    Finish,
    FinishReason,
    ImagePart,
    LogprobsDelta,
    Message,
    Part,
    ReasoningDelta,
    ReasoningPart,
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
from .translate import refuse_untranslatable

FINISH_FROM_OPENAI: dict[str, FinishReason] = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


# --- request -------------------------------------------------------------------------------------------------


def _content_part(p: Part) -> dict[str, JSON] | None:
    if isinstance(p, TextPart):
        return {"type": "text", "text": p.text}
    if isinstance(p, ImagePart):
        url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
        image: dict[str, JSON] = {"url": url}
        if p.detail:
            image["detail"] = p.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(p, FilePart):
        f: dict[str, JSON] = {}
        if p.file_id:
            f["file_id"] = p.file_id
        if p.data is not None:
            f["file_data"] = f"data:{p.media_type or 'application/pdf'};base64,{p.data}"
        if p.filename:
            f["filename"] = p.filename
        return {"type": "file", "file": f}
    if isinstance(p, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": p.data, "format": p.format}}
    return None


def _content(parts: Sequence[Part]) -> str | list[dict[str, JSON]]:
    rendered = [c for c in (_content_part(p) for p in parts) if c is not None]
    if all(c["type"] == "text" for c in rendered):
        return "".join(str(c["text"]) for c in rendered)
    return rendered


def render_messages(messages: list[Message]) -> list[dict[str, JSON]]:
    out: list[dict[str, JSON]] = []
    for m in messages:
        if m.role is Role.SYSTEM:
            out.append({"role": "system", "content": m.text()})
            continue
        if m.role is Role.ASSISTANT:
            msg: dict[str, JSON] = {"role": "assistant"}
            text = "".join(p.text for p in m.parts if isinstance(p, TextPart))
            calls = [p for p in m.parts if isinstance(p, ToolCallPart)]
            msg["content"] = text if text or not calls else None
            if calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            if m.name:
                msg["name"] = m.name
            out.append(msg)
            continue
        # user or tool: tool results become messages of their own, in order, before any remaining content
        results = [p for p in m.parts if isinstance(p, ToolResultPart)]
        for r in results:
            content = _content(r.content)
            out.append({"role": "tool", "tool_call_id": r.tool_call_id, "content": content})
        rest = [p for p in m.parts if not isinstance(p, ToolResultPart | ReasoningPart)]
        if rest or not results:
            user: dict[str, JSON] = {"role": "user", "content": _content(rest)}
            if m.name:
                user["name"] = m.name
            out.append(user)
    return out


def render_request(req: ChatRequest, model: str, *, provider: str, official: bool) -> dict[str, JSON]:
    """The upstream body. Same-wire requests pass through whole, unknown fields included."""
    if req.wire == WIRE_OPENAI_CHAT and req.raw is not None:
        body = dict(req.raw)
        body["model"] = model
        if req.stream:
            # we need usage to account for the call, whether or not the caller asked for it
            opts = dict(body.get("stream_options") or {})
            opts["include_usage"] = True
            body["stream_options"] = opts
        return body
    if req.top_k is not None and official:
        raise UnsupportedParameter(
            f"top_k is not supported by provider {provider!r} (OpenAI Chat Completions has no top_k)", param="top_k"
        )
    refuse_untranslatable(req, provider, WIRE_OPENAI_CHAT)
    body = {"model": model, "messages": render_messages(req.messages)}
    if req.max_tokens is not None:
        body["max_completion_tokens" if official else "max_tokens"] = req.max_tokens
    if req.reasoning_effort is None and req.reasoning_budget is not None:
        body["reasoning_effort"] = effort_for_budget(req.reasoning_budget)
    for name in ("temperature", "top_p", "n", "seed", "presence_penalty", "frequency_penalty", "logprobs",
                 "top_logprobs", "parallel_tool_calls", "reasoning_effort", "user", "metadata"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.top_k is not None:
        body["top_k"] = req.top_k
    if req.stop:
        body["stop"] = req.stop
    if req.tools:
        tools: list[JSON] = []
        for t in req.tools:
            fn: dict[str, JSON] = {"name": t.name}
            if t.description is not None:
                fn["description"] = t.description
            fn["parameters"] = t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
            if t.strict is not None:
                fn["strict"] = t.strict
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
    if req.tool_choice is not None:
        tc = req.tool_choice
        body["tool_choice"] = {"type": "function", "function": {"name": tc.name}} if tc.mode == "tool" else tc.mode
    if req.response_format is not None:
        rf = req.response_format
        if rf.type == "json_schema":
            js: dict[str, JSON] = {"name": rf.name or "response"}
            if rf.schema is not None:
                js["schema"] = rf.schema
            if rf.strict is not None:
                js["strict"] = rf.strict
            if rf.description is not None:
                js["description"] = rf.description
            body["response_format"] = {"type": "json_schema", "json_schema": js}
        else:
            body["response_format"] = {"type": rf.type}
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if req.wire == WIRE_OPENAI_CHAT:  # a chat request a stage rewrote: the fields we do not model go as sent
        for key, value in req.extra.items():
            body.setdefault(key, value)
    return body


def effort_for_budget(budget: int) -> str:
    """A thinking budget in tokens (Anthropic's ``budget_tokens``) as OpenAI's coarse ``reasoning_effort``."""
    if budget <= 2048:
        return "low"
    if budget <= 8192:
        return "medium"
    return "high"


# --- replies -------------------------------------------------------------------------------------------------


def parse_usage(u: dict[str, Any] | None) -> Usage | None:
    if not u:
        return None
    pd = u.get("prompt_tokens_details") or {}
    cd = u.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(u.get("prompt_tokens") or 0),
        output_tokens=int(u.get("completion_tokens") or 0),
        cached_tokens=int(pd.get("cached_tokens") or 0),
        reasoning_tokens=int(cd.get("reasoning_tokens") or 0),
    )


def _finish(value: Any) -> FinishReason | None:
    if value is None:
        return None
    return FINISH_FROM_OPENAI.get(str(value), FinishReason.STOP)


def parse_response(data: dict[str, Any]) -> ChatResponse:
    choices: list[Choice] = []
    for i, c in enumerate(data.get("choices") or []):
        msg = c.get("message") or {}
        parts: list[Part] = []
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append(ReasoningPart(text=reasoning))
        content = msg.get("content")
        if isinstance(content, str) and content:
            parts.append(TextPart(content))
        for tc in msg.get("tool_calls") or []:
            fn = tc.get("function") or {}
            parts.append(ToolCallPart(id=str(tc.get("id", "")), name=str(fn.get("name", "")),
                                      arguments=str(fn.get("arguments") or "")))
        choices.append(Choice(index=int(c.get("index", i)), message=Message(Role.ASSISTANT, parts),
                              finish_reason=_finish(c.get("finish_reason")), logprobs=c.get("logprobs"),
                              refusal=msg.get("refusal")))
    return ChatResponse(
        id=str(data.get("id", "")),
        model=str(data.get("model", "")),
        created=int(data.get("created") or 0),
        choices=choices,
        usage=parse_usage(data.get("usage")),
        system_fingerprint=data.get("system_fingerprint"),
        wire=WIRE_OPENAI_CHAT,
        raw=data,
    )


def merge_chunks(chunks: list[Chunk]) -> Chunk:
    """Chunks parsed from frames that arrived together, as one (their frames kept for a same-wire client)."""
    events = [ev for c in chunks for ev in c.events]
    return Chunk(events, wire=WIRE_OPENAI_CHAT, raw=[c.raw for c in chunks if isinstance(c.raw, dict)])


def parse_chunk(data: dict[str, Any], started: bool) -> Chunk:
    events: list[StreamEvent] = []
    if not started:
        events.append(StreamStart(id=str(data.get("id", "")), model=str(data.get("model", "")),
                                  created=int(data.get("created") or 0)))
    for c in data.get("choices") or []:
        idx = int(c.get("index", 0))
        delta = c.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(text=reasoning, choice=idx))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(content, choice=idx))
        for tc in delta.get("tool_calls") or []:
            ti = int(tc.get("index", 0))
            fn = tc.get("function") or {}
            if tc.get("id"):
                events.append(ToolCallStart(index=ti, id=str(tc["id"]), name=str(fn.get("name") or ""), choice=idx))
            args = fn.get("arguments")
            if args:
                events.append(ToolCallDelta(index=ti, arguments=str(args), choice=idx))
        if c.get("logprobs"):
            events.append(LogprobsDelta(c["logprobs"], choice=idx))
        fr = _finish(c.get("finish_reason"))
        if fr is not None:
            events.append(Finish(fr, choice=idx))
    usage = parse_usage(data.get("usage"))
    if usage is not None:
        events.append(UsageUpdate(usage))
    return Chunk(events, wire=WIRE_OPENAI_CHAT, raw=data)
