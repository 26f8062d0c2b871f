"""Neutral objects to Anthropic Messages request bodies, and Anthropic replies and stream events back.

Wire format: https://docs.anthropic.com/en/api/messages and https://docs.anthropic.com/en/api/messages-streaming,
checked against the official ``anthropic`` SDK's types (``MessageCreateParams``, ``Message``,
``RawMessageStreamEvent``). Pure functions; the HTTP side is in ``providers.anthropic``.

Translation notes (a request in another wire format):

* system messages, wherever they stand, become the top-level ``system`` (a string; text blocks when a part carries
  ``cache_control`` in its ``meta``);
* tool results (TOOL-role messages, or results inside user messages) and the user messages around them are merged
  into one user turn, ``tool_result`` blocks first, as Anthropic requires right after the assistant's ``tool_use``
  turn; consecutive assistant messages are merged likewise;
* reasoning without a signature (another vendor's, say) cannot be verified by Anthropic and is left out; signed
  thinking and redacted thinking are sent back unchanged;
* ``reasoning_effort`` becomes a thinking budget: :data:`EFFORT_BUDGETS` (``none`` disables thinking); when the
  caller set ``max_tokens`` the budget is capped below it;
* ``response_format`` ``json_schema`` becomes ``output_config.format`` (Anthropic's structured outputs);
* part ``meta`` keys ``cache_control`` (every block), ``citations``, ``title`` and ``context`` (documents) are
  copied onto the blocks, and every tool ``meta`` key onto the tool; a part whose ``meta["anthropic_block"]`` is a
  block, or a tool whose ``meta["anthropic_server_tool"]`` is a definition, is sent as that object (the inbound
  Anthropic protocol keeps server-tool blocks and server tools so);
* parameters with no Anthropic equivalent raise :class:`UnsupportedParameter`: ``n`` > 1, ``logprobs``,
  ``top_logprobs``, ``seed``, non-zero ``presence_penalty``/``frequency_penalty``, ``response_format``
  ``json_object``, ``temperature`` above 1, metadata other than ``user_id``, audio input.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson

from ..errors import InvalidRequest, UnsupportedParameter, UpstreamError, is_retryable_status
from ..messages import (
    JSON,
    WIRE_ANTHROPIC_MESSAGES,
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
from .translate import refuse_foreign_extras

# OpenAI's reasoning_effort as an Anthropic thinking budget (budget_tokens must be at least 1024).
EFFORT_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768,
                                  "max": 32768}
MIN_THINKING_BUDGET = 1024

FINISH_FROM_ANTHROPIC: dict[str, FinishReason] = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.REFUSAL,
    "pause_turn": FinishReason.PAUSE,
}

# Error types (https://docs.anthropic.com/en/api/errors) as HTTP statuses, for an ``error`` event mid-stream.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MAGIC = (("iVBORw0KGgo", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def _unsupported(what: str, param: str, provider: str, why: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{what} is not supported by provider {provider!r} ({why})", param=param)


# --- request: content blocks ---------------------------------------------------------------------------------


def _with_meta(block: dict[str, JSON], meta: dict[str, JSON] | None, keys: tuple[str, ...] = ()) -> dict[str, JSON]:
    if meta:
        for key in ("cache_control", *keys):
            if meta.get(key) is not None:
                block[key] = meta[key]
    return block


def _image_media_type(p: ImagePart) -> str:
    if p.media_type in _IMAGE_TYPES:
        return p.media_type
    for prefix, media_type in _MAGIC:
        if (p.data or "").startswith(prefix):
            return media_type
    return p.media_type or "image/png"


def _image(p: ImagePart) -> dict[str, JSON]:
    if p.data is not None:
        source: dict[str, JSON] = {"type": "base64", "media_type": _image_media_type(p), "data": p.data}
    else:
        source = {"type": "url", "url": p.url or ""}
    return _with_meta({"type": "image", "source": source}, p.meta)


def _document(p: FilePart, provider: str) -> dict[str, JSON]:
    if p.file_id:
        source: dict[str, JSON] = {"type": "file", "file_id": p.file_id}
    elif p.data is not None:
        media_type = p.media_type or "application/pdf"
        if media_type == "text/plain":
            try:
                text = base64.b64decode(p.data, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidRequest("a text/plain file must be base64-encoded UTF-8 text", param="messages") from None
            source = {"type": "text", "media_type": "text/plain", "data": text}
        elif media_type == "application/pdf":
            source = {"type": "base64", "media_type": media_type, "data": p.data}
        else:
            raise _unsupported(f"a {media_type} file", "messages", provider,
                               "Anthropic documents are PDF or plain text")
    elif p.url:
        source = {"type": "url", "url": p.url}
    else:
        raise InvalidRequest("a file part needs data, a URL or a file id", param="messages")
    block: dict[str, JSON] = {"type": "document", "source": source}
    if p.filename:
        block["title"] = p.filename
    return _with_meta(block, p.meta, ("citations", "title", "context"))


def _opaque(p: Part) -> dict[str, JSON] | None:
    """A block that the inbound Anthropic protocol kept whole in ``meta["anthropic_block"]`` (a server-tool block)."""
    block = p.meta.get("anthropic_block") if p.meta else None
    return block if isinstance(block, dict) else None


def _content_block(p: Part, provider: str) -> dict[str, JSON]:
    """A user-side block: text, image, document."""
    opaque = _opaque(p)
    if opaque is not None:
        return opaque
    if isinstance(p, TextPart):
        return _with_meta({"type": "text", "text": p.text}, p.meta, ("citations",))
    if isinstance(p, ImagePart):
        return _image(p)
    if isinstance(p, FilePart):
        if p.file_id and p.meta and p.meta.get("anthropic_block") == "image":  # an image by Files API id
            return _with_meta({"type": "image", "source": {"type": "file", "file_id": p.file_id}}, p.meta)
        return _document(p, provider)
    if isinstance(p, AudioPart):
        raise _unsupported("audio input", "messages", provider, "Anthropic Messages has no audio input")
    raise InvalidRequest(f"a {p.kind} part cannot stand in this message", param="messages")


def _tool_result(p: ToolResultPart, provider: str) -> dict[str, JSON]:
    block: dict[str, JSON] = {"type": "tool_result", "tool_use_id": p.tool_call_id}
    inner = [_content_block(c, provider) for c in p.content if not isinstance(c, ReasoningPart)]
    if inner and all(b["type"] == "text" and len(b) == 2 for b in inner):
        block["content"] = "".join(str(b["text"]) for b in inner)
    elif inner:
        block["content"] = list(inner)
    if p.is_error:
        block["is_error"] = True
    return _with_meta(block, p.meta)


def _tool_input(p: ToolCallPart) -> dict[str, JSON]:
    if not p.arguments.strip():
        return {}
    try:
        value = orjson.loads(p.arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"the arguments of tool call {p.id!r} are not valid JSON", param="messages") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"the arguments of tool call {p.id!r} must be a JSON object", param="messages")
    return value


def _assistant_blocks(m: Message) -> list[dict[str, JSON]]:
    out: list[dict[str, JSON]] = []
    for p in m.parts:
        opaque = _opaque(p)
        if opaque is not None:
            out.append(opaque)
        elif isinstance(p, ReasoningPart):
            if p.redacted is not None:
                out.append({"type": "redacted_thinking", "data": p.redacted})
            elif p.signature is not None:
                out.append({"type": "thinking", "thinking": p.text, "signature": p.signature})
            # unsigned reasoning (another vendor's) cannot be verified by Anthropic: left out
        elif isinstance(p, TextPart):
            if p.text:  # Anthropic rejects empty text blocks
                out.append(_with_meta({"type": "text", "text": p.text}, p.meta, ("citations",)))
        elif isinstance(p, ToolCallPart):
            out.append(_with_meta({"type": "tool_use", "id": p.id, "name": p.name, "input": _tool_input(p)}, p.meta))
        else:
            raise InvalidRequest(f"an assistant message cannot hold a {p.kind} part", param="messages")
    return out


def _user_blocks(m: Message, provider: str) -> list[dict[str, JSON]]:
    return [_tool_result(p, provider) if isinstance(p, ToolResultPart) else _content_block(p, provider)
            for p in m.parts if not isinstance(p, ReasoningPart)]


def _system(messages: list[Message], provider: str) -> str | list[dict[str, JSON]] | None:
    if not messages:
        return None
    for m in messages:
        for p in m.parts:
            if not isinstance(p, TextPart):
                raise _unsupported(f"a {p.kind} part in a system message", "messages", provider,
                                   "Anthropic's system prompt is text only")
    texts = [p for m in messages for p in m.parts if isinstance(p, TextPart)]
    if any(p.meta and p.meta.get("cache_control") is not None for p in texts):
        return [_with_meta({"type": "text", "text": p.text}, p.meta) for p in texts if p.text]
    return "\n\n".join(m.text() for m in messages)


def render_messages(messages: list[Message], provider: str) -> tuple[str | list[dict[str, JSON]] | None,
                                                                    list[dict[str, JSON]]]:
    """The top-level ``system`` and the ``messages`` array, with turns merged as Anthropic requires."""
    system: list[Message] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role is Role.SYSTEM:
            system.append(m)
            continue
        role = "assistant" if m.role is Role.ASSISTANT else "user"
        blocks = _assistant_blocks(m) if role == "assistant" else _user_blocks(m, provider)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:  # Anthropic refuses an empty messages array; say so in the caller's terms
        raise InvalidRequest(f"Provider {provider!r} needs at least one message with content besides the system "
                             "prompt; every other message is empty.", param="messages")
    out: list[dict[str, JSON]] = []
    for t in turns:
        content: list[dict[str, JSON]] = t["content"]
        if t["role"] == "user":  # tool results first, then whatever the user added
            content = ([b for b in content if b["type"] == "tool_result"]
                       + [b for b in content if b["type"] != "tool_result"])
        if len(content) == 1 and content[0]["type"] == "text" and len(content[0]) == 2:
            out.append({"role": t["role"], "content": content[0]["text"]})
        else:
            out.append({"role": t["role"], "content": content})
    return _system(system, provider), out


# --- request: the body -----------------------------------------------------------------------------------------


def _check_translatable(req: ChatRequest, provider: str) -> None:
    """Refuse, by name, what the Messages API cannot do; nothing is dropped silently."""
    if req.n is not None and req.n > 1:
        raise _unsupported(f"n={req.n}", "n", provider, "Anthropic returns one choice per request")
    if req.logprobs:
        raise _unsupported("logprobs", "logprobs", provider, "Anthropic does not return log probabilities")
    if req.top_logprobs:
        raise _unsupported("top_logprobs", "top_logprobs", provider, "Anthropic does not return log probabilities")
    if req.seed is not None:
        raise _unsupported("seed", "seed", provider, "Anthropic has no deterministic sampling seed")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise _unsupported(name, name, provider, "Anthropic has no repetition penalties")
    if req.temperature is not None and req.temperature > 1:
        raise _unsupported(f"temperature={req.temperature}", "temperature", provider,
                           "Anthropic's temperature ranges from 0 to 1")
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        raise _unsupported("response_format json_object", "response_format", provider,
                           "Anthropic has no schema-less JSON mode; use json_schema")
    if rf is not None and rf.type == "json_schema" and rf.schema is None:
        raise _unsupported("response_format json_schema without a schema", "response_format", provider,
                           "Anthropic's structured outputs need the schema")
    if req.metadata and set(req.metadata) - {"user_id"}:
        extra = ", ".join(sorted(set(req.metadata) - {"user_id"}))
        raise _unsupported(f"metadata ({extra})", "metadata", provider, "Anthropic's metadata holds only user_id")


def _tools(req: ChatRequest) -> list[dict[str, JSON]]:
    out: list[dict[str, JSON]] = []
    for t in req.tools or []:
        server_tool = t.meta.get("anthropic_server_tool") if t.meta else None
        if isinstance(server_tool, dict):  # web search, code execution, ...: Anthropic's own definition
            out.append(server_tool)
            continue
        tool: dict[str, JSON] = {"name": t.name}
        if t.description is not None:
            tool["description"] = t.description
        tool["input_schema"] = t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
        if t.strict is not None:
            tool["strict"] = t.strict
        for key, value in (t.meta or {}).items():  # cache_control and the tool fields Anthropic adds over time
            tool.setdefault(key, value)
        out.append(tool)
    return out


def _tool_choice(req: ChatRequest) -> dict[str, JSON] | None:
    tc = req.tool_choice
    if tc is None:
        choice: dict[str, JSON] | None = {"type": "auto"} if req.parallel_tool_calls is False else None
    elif tc.mode == "none":
        return {"type": "none"}
    elif tc.mode == "required":
        choice = {"type": "any"}
    elif tc.mode == "tool":
        choice = {"type": "tool", "name": tc.name or ""}
    else:
        choice = {"type": "auto"}
    if choice is not None and req.parallel_tool_calls is False:
        choice["disable_parallel_tool_use"] = True
    return choice


def _thinking(req: ChatRequest, max_tokens: int, default_max_tokens: int,
              provider: str) -> tuple[dict[str, JSON] | None, int]:
    if req.reasoning_budget is not None:
        if req.reasoning_budget <= 0:
            return {"type": "disabled"}, max_tokens
        budget = req.reasoning_budget
    elif req.reasoning_effort is not None:
        effort = req.reasoning_effort.lower()
        if effort == "none":
            return {"type": "disabled"}, max_tokens
        if effort not in EFFORT_BUDGETS:
            raise _unsupported(f"reasoning_effort={req.reasoning_effort!r}", "reasoning_effort", provider,
                               f"known efforts: none, {', '.join(EFFORT_BUDGETS)}")
        budget = EFFORT_BUDGETS[effort]
        if req.max_tokens is not None:
            budget = min(budget, req.max_tokens - 1)
            if budget < MIN_THINKING_BUDGET:
                raise _unsupported(f"reasoning_effort with max_tokens={req.max_tokens}", "reasoning_effort",
                                   provider, f"a thinking budget must be at least {MIN_THINKING_BUDGET} tokens "
                                   "and below max_tokens")
    else:
        return None, max_tokens
    if req.max_tokens is None and budget >= max_tokens:
        max_tokens = budget + default_max_tokens  # thinking counts toward max_tokens; leave room for the answer
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def render_request(req: ChatRequest, model: str, *, provider: str, default_max_tokens: int,
                   stream: bool) -> dict[str, JSON]:
    """The upstream body. Same-wire requests pass through whole, unknown fields included."""
    if req.wire == WIRE_ANTHROPIC_MESSAGES and req.raw is not None:
        body = dict(req.raw)
        body["model"] = model
        body.setdefault("max_tokens", default_max_tokens)
        if stream:
            body["stream"] = True
        else:
            body.pop("stream", None)
        return body
    refuse_foreign_extras(req, provider, WIRE_ANTHROPIC_MESSAGES)
    _check_translatable(req, provider)
    system, messages = render_messages(req.messages, provider)
    max_tokens = req.max_tokens if req.max_tokens is not None else default_max_tokens
    thinking, max_tokens = _thinking(req, max_tokens, default_max_tokens, provider)
    body = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        body["system"] = system
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    user_id = (req.metadata or {}).get("user_id") or req.user
    if user_id is not None:
        body["metadata"] = {"user_id": user_id}
    if req.tools:
        body["tools"] = _tools(req)
        choice = _tool_choice(req)
        if choice is not None:
            body["tool_choice"] = choice
    if thinking is not None:
        body["thinking"] = thinking
    rf = req.response_format
    if rf is not None and rf.type == "json_schema":
        body["output_config"] = {"format": {"type": "json_schema", "schema": rf.schema}}
    if stream:
        body["stream"] = True
    if req.wire == WIRE_ANTHROPIC_MESSAGES:  # a Messages request a stage rewrote: the fields we do not model go as sent
        for key, value in req.extra.items():
            body.setdefault(key, value)
    return body


# --- replies -------------------------------------------------------------------------------------------------


def parse_usage(u: Any) -> Usage | None:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; the neutral count includes them."""
    if not isinstance(u, dict):
        return None
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    details = u.get("output_tokens_details")
    by_ttl = u.get("cache_creation")
    hour = int(by_ttl.get("ephemeral_1h_input_tokens") or 0) if isinstance(by_ttl, dict) else 0
    return Usage(
        input_tokens=int(u.get("input_tokens") or 0) + read + write,
        output_tokens=int(u.get("output_tokens") or 0),
        cached_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=int(details.get("thinking_tokens") or 0) if isinstance(details, dict) else 0,
        cache_write_1h_tokens=min(hour, write),
    )


def finish_reason(value: Any) -> FinishReason | None:
    if value is None:
        return None
    return FINISH_FROM_ANTHROPIC.get(str(value), FinishReason.STOP)


def _arguments(value: Any) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def parse_content(blocks: Any) -> list[Part]:
    """Content blocks as parts. Server-tool blocks have no neutral form; they survive in ``raw``."""
    parts: list[Part] = []
    for b in blocks if isinstance(blocks, list) else []:
        typ = b.get("type") if isinstance(b, dict) else None
        if typ == "text":
            meta = {"citations": b["citations"]} if b.get("citations") else None
            parts.append(TextPart(str(b.get("text") or ""), meta=meta))
        elif typ == "thinking":
            parts.append(ReasoningPart(text=str(b.get("thinking") or ""), signature=b.get("signature")))
        elif typ == "redacted_thinking":
            parts.append(ReasoningPart(redacted=str(b.get("data") or "")))
        elif typ == "tool_use":
            parts.append(ToolCallPart(id=str(b.get("id", "")), name=str(b.get("name", "")),
                                      arguments=_arguments(b.get("input"))))
    return parts


def parse_response(data: dict[str, Any]) -> ChatResponse:
    choice = Choice(index=0, message=Message(Role.ASSISTANT, parse_content(data.get("content"))),
                    finish_reason=finish_reason(data.get("stop_reason")), stop_sequence=data.get("stop_sequence"))
    return ChatResponse(
        id=str(data.get("id", "")),
        model=str(data.get("model", "")),
        created=int(time.time()),  # Anthropic's messages carry no timestamp
        choices=[choice],
        usage=parse_usage(data.get("usage")),
        wire=WIRE_ANTHROPIC_MESSAGES,
        raw=data,
    )


def stream_error(data: Any, provider: str, deployment: str) -> UpstreamError:
    """An ``error`` event (the stream broke after its 200): named, and retryable when the upstream was busy."""
    err = data.get("error") if isinstance(data, dict) else None
    err = err if isinstance(err, dict) else {}
    typ = str(err.get("type") or "api_error")
    message = str(err.get("message") or typ)
    status = ERROR_STATUS.get(typ, 500)
    return UpstreamError(f"provider {provider!r} failed mid-stream: {typ}: {message}", provider=provider,
                         deployment=deployment, upstream_status=status, upstream_type=typ,
                         retryable=is_retryable_status(status))


class StreamParser:
    """Turns the SSE events of one Messages stream into neutral chunks (one chunk per event).

    Every chunk carries ``raw = {"event": name, "data": decoded JSON}`` so that an Anthropic client receives the
    events unchanged. A tool call's index is the number of ``tool_use`` blocks before it.
    """

    __slots__ = ("_blocks", "_tools", "done")

    def __init__(self) -> None:
        self._blocks: dict[int, tuple[str, int]] = {}  # content block index -> (kind, tool index)
        self._tools = 0
        self.done = False

    def feed(self, event: str, data: dict[str, Any]) -> Chunk:
        events: list[StreamEvent] = []
        typ = data.get("type", event)
        if typ == "message_start":
            msg = data.get("message") or {}
            usage = parse_usage(msg.get("usage"))
            events.append(StreamStart(id=str(msg.get("id", "")), model=str(msg.get("model", "")),
                                      created=int(time.time()), usage=usage))
            if usage is not None:
                events.append(UsageUpdate(usage))
        elif typ == "content_block_start":
            self._start(int(data.get("index", 0)), data.get("content_block") or {}, events)
        elif typ == "content_block_delta":
            self._delta(int(data.get("index", 0)), data.get("delta") or {}, events)
        elif typ == "message_delta":
            delta = data.get("delta") or {}
            reason = finish_reason(delta.get("stop_reason"))
            if reason is not None:
                events.append(Finish(reason, stop_sequence=delta.get("stop_sequence")))
            usage = parse_usage(data.get("usage"))
            if usage is not None:
                events.append(UsageUpdate(usage))
        elif typ == "message_stop":
            self.done = True
        # content_block_stop and ping carry nothing neutral; their raw event still goes to same-wire clients
        return Chunk(events, wire=WIRE_ANTHROPIC_MESSAGES, raw={"event": event, "data": data})

    def _start(self, index: int, block: dict[str, Any], events: list[StreamEvent]) -> None:
        typ = block.get("type")
        if typ == "tool_use":
            tool = self._tools
            self._tools += 1
            self._blocks[index] = ("tool", tool)
            events.append(ToolCallStart(index=tool, id=str(block.get("id", "")), name=str(block.get("name", ""))))
            if block.get("input"):
                events.append(ToolCallDelta(index=tool, arguments=_arguments(block["input"])))
            return
        self._blocks[index] = (str(typ), 0)
        if typ == "text" and block.get("text"):
            events.append(TextDelta(str(block["text"])))
        elif typ == "thinking":
            if block.get("thinking"):
                events.append(ReasoningDelta(text=str(block["thinking"])))
            if block.get("signature"):
                events.append(ReasoningDelta(signature=str(block["signature"])))
        elif typ == "redacted_thinking":
            events.append(ReasoningDelta(redacted=str(block.get("data") or "")))

    def _delta(self, index: int, delta: dict[str, Any], events: list[StreamEvent]) -> None:
        typ = delta.get("type")
        kind, tool = self._blocks.get(index, ("", 0))
        if typ == "text_delta":
            if delta.get("text"):
                events.append(TextDelta(str(delta["text"])))
        elif typ == "thinking_delta":
            if delta.get("thinking"):
                events.append(ReasoningDelta(text=str(delta["thinking"])))
        elif typ == "signature_delta":
            events.append(ReasoningDelta(signature=str(delta.get("signature") or "")))
        elif typ == "input_json_delta" and kind == "tool" and delta.get("partial_json"):
            events.append(ToolCallDelta(index=tool, arguments=str(delta["partial_json"])))
