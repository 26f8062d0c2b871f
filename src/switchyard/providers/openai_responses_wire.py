"""Neutral objects to OpenAI Responses API request bodies (``POST /responses``), and its replies and stream events
back. Pure functions; the HTTP side is :class:`~.openai_responses.OpenAIResponsesProvider`.

Wire format: https://platform.openai.com/docs/api-reference/responses and the ``CreateResponse`` / ``Response`` /
``ResponseStreamEvent`` schemas of ``../shared/specs/openai-openapi.yml``. A request that came in on the Responses
API itself passes through whole (``raw``), unknown fields included. Otherwise the gateway keeps the conversation, so
it sends ``store: false``: the upstream keeps nothing.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedParameter
from ..messages import (
    JSON,
    WIRE_OPENAI_RESPONSES,
    AudioPart,
    ChatRequest,
    ChatResponse,
    Choice,
    Chunk,
    FilePart,
    Finish,
    FinishReason,
    ImagePart,
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
from .openai_wire import effort_for_budget
from .translate import refuse_untranslatable

# --- request -------------------------------------------------------------------------------------------------


def _input_part(p: Part) -> dict[str, JSON] | None:
    if isinstance(p, TextPart):
        return {"type": "input_text", "text": p.text} if not (p.meta and "openai_item" in p.meta) else None
    if isinstance(p, ImagePart):
        if p.url is None and p.data is None and p.meta and p.meta.get("openai_file_id"):
            return {"type": "input_image", "file_id": p.meta["openai_file_id"], "detail": p.detail or "auto"}
        url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
        return {"type": "input_image", "image_url": url, "detail": p.detail or "auto"}
    if isinstance(p, FilePart):
        f: dict[str, JSON] = {"type": "input_file"}
        if p.file_id:
            f["file_id"] = p.file_id
        if p.url:
            f["file_url"] = p.url
        if p.data is not None:
            f["file_data"] = f"data:{p.media_type or 'application/pdf'};base64,{p.data}"
        if p.filename:
            f["filename"] = p.filename
        return f
    if isinstance(p, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": p.data, "format": p.format}}
    return None


def _text(parts: list[Part]) -> str:
    return "".join(p.text for p in parts if isinstance(p, TextPart))


def _flush(text: list[str], out: list[dict[str, JSON]]) -> None:
    if text:
        out.append({"type": "message", "role": "assistant", "content": "".join(text)})
        text.clear()


def _assistant(m: Message, out: list[dict[str, JSON]]) -> None:
    """An assistant turn as output items: its text as messages, between its calls and reasoning in their order."""
    text: list[str] = []
    for p in m.parts:
        if isinstance(p, TextPart):
            if p.meta and "openai_item" in p.meta:
                _flush(text, out)
                out.append(p.meta["openai_item"])
            else:
                text.append(p.text)
        elif isinstance(p, ToolCallPart):
            _flush(text, out)
            out.append({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments})
        elif isinstance(p, ReasoningPart):
            kept = (p.meta or {}).get("openai_reasoning")
            if isinstance(kept, dict) and kept.get("id"):  # only OpenAI's own reasoning items go back
                _flush(text, out)
                item: dict[str, JSON] = {"type": "reasoning", "id": kept["id"], "summary": []}
                if kept.get("encrypted_content"):
                    item["encrypted_content"] = kept["encrypted_content"]
                out.append(item)
    _flush(text, out)


def render_input(messages: list[Message]) -> list[dict[str, JSON]]:
    out: list[dict[str, JSON]] = []
    for m in messages:
        if m.role is Role.SYSTEM:
            role = "developer" if (m.meta or {}).get("openai_role") == "developer" else "system"
            out.append({"type": "message", "role": role, "content": m.text()})
            continue
        if m.role is Role.ASSISTANT:
            _assistant(m, out)
            continue
        results = [p for p in m.parts if isinstance(p, ToolResultPart)]
        for r in results:
            content = [c for c in (_input_part(p) for p in r.content) if c is not None]
            output: JSON = _text(r.content) if all(c["type"] == "input_text" for c in content) else content
            out.append({"type": "function_call_output", "call_id": r.tool_call_id, "output": output})
        rest = [c for c in (_input_part(p) for p in m.parts if not isinstance(p, ToolResultPart)) if c is not None]
        if rest or not results:
            out.append({"type": "message", "role": "user", "content": rest})
    return out


def _refuse(req: ChatRequest, provider: str) -> None:
    for name in ("stop", "seed", "presence_penalty", "frequency_penalty", "top_k", "logprobs"):
        if getattr(req, name) not in (None, [], False):
            raise UnsupportedParameter(f"{name} is not supported by provider {provider!r} (the Responses API has "
                                       f"no {name})", param=name)
    if req.n not in (None, 1):
        raise UnsupportedParameter(f"n is not supported by provider {provider!r} (the Responses API returns one "
                                   "choice)", param="n")


def render_request(req: ChatRequest, model: str, *, provider: str) -> dict[str, JSON]:
    """The upstream body. Same-wire requests pass through whole, unknown fields included."""
    if req.wire == WIRE_OPENAI_RESPONSES and req.raw is not None:
        same = dict(req.raw)
        same["model"] = model
        same.pop("conversation", None)  # the gateway answered it (the history is in input)
        return same
    _refuse(req, provider)
    refuse_untranslatable(req, provider, WIRE_OPENAI_RESPONSES)
    body: dict[str, JSON] = {"model": model, "input": render_input(req.messages), "store": False}
    if req.max_tokens is not None:
        body["max_output_tokens"] = max(16, req.max_tokens)  # the API's minimum
    effort = req.reasoning_effort or (effort_for_budget(req.reasoning_budget) if req.reasoning_budget else None)
    if effort is not None:
        body["reasoning"] = {"effort": effort}
    for name in ("temperature", "top_p", "top_logprobs", "parallel_tool_calls", "user", "metadata"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.tools:
        tools: list[JSON] = []
        for t in req.tools:
            if t.meta and "openai_builtin_tool" in t.meta:
                tools.append(t.meta["openai_builtin_tool"])
                continue
            tools.append({"type": "function", "name": t.name, "description": t.description,
                          "parameters": t.parameters if t.parameters is not None
                          else {"type": "object", "properties": {}},
                          "strict": bool(t.strict)})
        body["tools"] = tools
    if req.tool_choice is not None:
        tc = req.tool_choice
        if tc.mode != "tool":
            body["tool_choice"] = tc.mode
        elif any(t.name == tc.name and not t.meta for t in req.tools or ()):
            body["tool_choice"] = {"type": "function", "name": tc.name}
        else:
            body["tool_choice"] = {"type": tc.name}
    if req.response_format is not None:
        rf = req.response_format
        fmt: dict[str, JSON] = {"type": rf.type}
        if rf.type == "json_schema":
            fmt["name"] = rf.name or "response"
            fmt["schema"] = rf.schema if rf.schema is not None else {"type": "object"}
            if rf.strict is not None:
                fmt["strict"] = rf.strict
            if rf.description is not None:
                fmt["description"] = rf.description
        body["text"] = {"format": fmt}
    if req.stream:
        body["stream"] = True
    if req.wire == WIRE_OPENAI_RESPONSES:  # a Responses request a stage rewrote: its other fields go as sent
        for key, value in req.extra.items():
            body.setdefault(key, value)
    return body


# --- replies -------------------------------------------------------------------------------------------------


def parse_usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    ind = u.get("input_tokens_details") or {}
    outd = u.get("output_tokens_details") or {}
    return Usage(input_tokens=int(u.get("input_tokens") or 0), output_tokens=int(u.get("output_tokens") or 0),
                 cached_tokens=int(ind.get("cached_tokens") or 0),
                 cache_write_tokens=int(ind.get("cache_write_tokens") or 0),
                 reasoning_tokens=int(outd.get("reasoning_tokens") or 0))


def finish_of(data: dict[str, Any], has_calls: bool) -> FinishReason:
    if data.get("status") == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        return FinishReason.CONTENT_FILTER if reason == "content_filter" else FinishReason.LENGTH
    return FinishReason.TOOL_CALLS if has_calls else FinishReason.STOP


def _reasoning(item: dict[str, Any]) -> ReasoningPart:
    texts = [str(s.get("text", "")) for s in item.get("summary") or [] if isinstance(s, dict)]
    texts = texts or [str(c.get("text", "")) for c in item.get("content") or [] if isinstance(c, dict)]
    kept = {k: item[k] for k in ("id", "encrypted_content") if item.get(k) is not None}
    return ReasoningPart(text="".join(texts), meta={"openai_reasoning": kept})


def parse_response(data: dict[str, Any]) -> ChatResponse:
    parts: list[Part] = []
    refusal: str | None = None
    for item in data.get("output") or []:
        if not isinstance(item, dict):
            continue
        typ = item.get("type")
        if typ == "message":
            for c in item.get("content") or []:
                if c.get("type") == "output_text":
                    parts.append(TextPart(str(c.get("text", ""))))
                elif c.get("type") == "refusal":
                    refusal = str(c.get("refusal", ""))
        elif typ == "function_call":
            parts.append(ToolCallPart(id=str(item.get("call_id", "")), name=str(item.get("name", "")),
                                      arguments=str(item.get("arguments") or "")))
        elif typ == "reasoning":
            parts.append(_reasoning(item))
        else:  # a built-in tool's call (web search, ...): kept whole, for a Responses client
            parts.append(TextPart("", meta={"openai_item": item}))
    has_calls = any(isinstance(p, ToolCallPart) for p in parts)
    finish = FinishReason.REFUSAL if refusal is not None and not parts else finish_of(data, has_calls)
    choice = Choice(index=0, message=Message(Role.ASSISTANT, parts), finish_reason=finish, refusal=refusal)
    return ChatResponse(id=str(data.get("id", "")), model=str(data.get("model", "")),
                        created=int(data.get("created_at") or 0), choices=[choice],
                        usage=parse_usage(data.get("usage")), wire=WIRE_OPENAI_RESPONSES, raw=data)


class StreamParser:
    """Responses stream events to neutral chunks, one chunk per event (its ``raw`` is the event)."""

    __slots__ = ("_calls", "done", "failed")

    def __init__(self) -> None:
        self._calls: dict[str, int] = {}  # function_call item id -> neutral tool index
        self.done = False
        self.failed: str | None = None

    def feed(self, data: dict[str, Any]) -> Chunk:
        typ = data.get("type")
        events: list[StreamEvent] = []
        if typ == "response.created":
            r = data.get("response") or {}
            events.append(StreamStart(id=str(r.get("id", "")), model=str(r.get("model", "")),
                                      created=int(r.get("created_at") or 0)))
        elif typ == "response.output_text.delta":
            events.append(TextDelta(str(data.get("delta", ""))))
        elif typ in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            events.append(ReasoningDelta(text=str(data.get("delta", ""))))
        elif typ == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                index = len(self._calls)
                self._calls[str(item.get("id", index))] = index
                events.append(ToolCallStart(index=index, id=str(item.get("call_id", "")),
                                            name=str(item.get("name", ""))))
                if item.get("arguments"):
                    events.append(ToolCallDelta(index=index, arguments=str(item["arguments"])))
        elif typ == "response.function_call_arguments.delta":
            known = self._calls.get(str(data.get("item_id", "")))
            if known is not None:
                events.append(ToolCallDelta(index=known, arguments=str(data.get("delta", ""))))
        elif typ in ("response.completed", "response.incomplete"):
            r = data.get("response") or {}
            events.append(Finish(finish_of(r, bool(self._calls))))
            usage = parse_usage(r.get("usage"))
            if usage is not None:
                events.append(UsageUpdate(usage))
            self.done = True
        elif typ in ("response.failed", "error"):
            r = data.get("response") or {}
            err = r.get("error") if isinstance(r, dict) else None
            err = err if isinstance(err, dict) else data
            self.failed = str(err.get("message") or "the response failed")
        return Chunk(events, wire=WIRE_OPENAI_RESPONSES, raw=data)
