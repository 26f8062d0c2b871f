"""Inbound Anthropic Messages: client bodies to neutral requests, neutral replies back to ``message`` objects.

Wire format: https://docs.anthropic.com/en/api/messages (request body, the ``message`` object, content blocks),
https://docs.anthropic.com/en/api/messages-count-tokens, and the ``anthropic`` SDK's ``types/message_create_params.py``,
``types/message.py`` and the ``*_block_param.py`` files beside them. Streams are rendered by ``anthropic_stream``.

Mapping onto the neutral model (``messages``):

* ``system`` (a string or text blocks) becomes a leading SYSTEM message; each block's ``cache_control`` stays in
  its part's ``meta``. A ``{"role": "system"}`` entry inside ``messages`` (the SDK's ``SystemMessageParam``, which
  Claude Code sends mid-conversation) becomes a SYSTEM message at its place; a same-wire provider forwards it in
  ``raw``, a translating one places it as its wire allows (OpenAI in place, Anthropic-wire merged into ``system``).
* Content blocks: ``text`` → TextPart; ``image`` (base64 / url source) → ImagePart, (file source) → FilePart with
  ``meta["anthropic_block"] == "image"``; ``document`` (base64 PDF, url, file) → FilePart, (plain ``text`` source)
  → FilePart of the text base64-encoded with media type ``text/plain``, (``content`` source) → its text and image
  parts; ``tool_use`` → ToolCallPart (``arguments`` is the JSON text of ``input``); ``tool_result`` →
  ToolResultPart; ``thinking`` → ReasoningPart with ``signature``; ``redacted_thinking`` → ReasoningPart with
  ``redacted``. ``cache_control``, ``citations``, ``title`` and ``context`` go to ``meta`` under their own names.
  Block types the neutral model cannot express (server-tool blocks such as ``server_tool_use`` or
  ``web_search_tool_result``) are kept as an empty TextPart whose ``meta["anthropic_block"]`` is the whole block:
  a same-wire provider gets them through ``raw``; a translation cannot send them.
* ``tools``: custom tools → Tool (``input_schema`` → ``parameters``; every other field but ``name``,
  ``description``, ``strict`` and ``type`` goes to ``meta``, ``cache_control`` included); server tools (a ``type``
  other than ``custom``) → Tool with ``meta["anthropic_server_tool"]`` holding the definition, for the provider to
  honour or refuse.
* ``tool_choice`` auto / any / tool / none → ToolChoice auto / required / tool / none;
  ``disable_parallel_tool_use: true`` → ``parallel_tool_calls=False``. ``stop_sequences`` → ``stop``;
  ``metadata.user_id`` → ``user``; ``thinking`` ``{type: enabled, budget_tokens}`` → ``reasoning_budget``;
  ``output_config.effort`` → ``reasoning_effort``; ``output_config.format`` (json_schema) → ``response_format``.
  Every other top-level field goes to ``ChatRequest.extra``, and the body is kept whole in ``raw``.

Replies: a ChatResponse whose ``wire`` is Anthropic's and that carries ``raw`` is sent back unchanged. Otherwise
choice 0 (Anthropic has no ``n``) becomes a ``message``: reasoning → ``thinking`` / ``redacted_thinking``, text →
``text``, tool calls → ``tool_use`` with ``input`` the parsed arguments (``{}`` when they are empty or not a JSON
object). Usage: Anthropic's ``input_tokens`` exclude cache reads and writes, which it reports separately.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import orjson

from ..bounds import MAX_MESSAGES, MAX_OUTPUT_TOKENS, MAX_STOP, MAX_TOOLS, check_count, check_metadata
from ..messages import (
    JSON,
    WIRE_ANTHROPIC_MESSAGES,
    ChatRequest,
    ChatResponse,
    FilePart,
    FinishReason,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    Usage,
)
from .validate import Reader, invalid_value, missing, wrong_type

log = logging.getLogger("switchyard.protocols.anthropic")

DEFAULT_VERSION = "2023-06-01"
"""The ``anthropic-version`` assumed when a client sends none (any value is accepted)."""

# Top-level fields that the neutral model carries; every other field goes to ChatRequest.extra.
_MODELLED = frozenset({
    "model", "messages", "system", "max_tokens", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "output_config",
})

_BLOCK_META = ("cache_control", "citations", "title", "context")

STOP_REASONS: dict[FinishReason, str] = {
    FinishReason.STOP: "end_turn",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.REFUSAL: "refusal",
    FinishReason.PAUSE: "pause_turn",
}


# --- parsing -------------------------------------------------------------------------------------------------


def _meta(block: dict[str, Any], keys: tuple[str, ...] = _BLOCK_META) -> dict[str, JSON] | None:
    found = {k: block[k] for k in keys if block.get(k) is not None}
    return found or None


def _with(meta: dict[str, JSON] | None, **more: JSON) -> dict[str, JSON]:
    return {**(meta or {}), **more}


def _image(r: Reader, block: dict[str, Any]) -> Part:
    src = r.obj("source", required=True) or {}
    sr = r.child("source", src)
    typ = sr.str("type", required=True)
    meta = _meta(block)
    if typ == "base64":
        return ImagePart(data=sr.str("data", required=True), media_type=sr.str("media_type", required=True),
                         meta=meta)
    if typ == "url":
        return ImagePart(url=sr.str("url", required=True), meta=meta)
    if typ == "file":
        return FilePart(file_id=sr.str("file_id", required=True), meta=_with(meta, anthropic_block="image"))
    raise invalid_value(sr.name("type"), f"{typ!r} is not one of 'base64', 'url', 'file'.")


def _document(r: Reader, block: dict[str, Any]) -> list[Part]:
    src = r.obj("source", required=True) or {}
    sr = r.child("source", src)
    typ = sr.str("type", required=True)
    meta = _meta(block)
    title = r.str("title")
    if typ == "base64":
        return [FilePart(data=sr.str("data", required=True), media_type=sr.str("media_type") or "application/pdf",
                         filename=title, meta=meta)]
    if typ == "text":
        text = sr.str("data", required=True) or ""
        return [FilePart(data=base64.b64encode(text.encode()).decode(), media_type=sr.str("media_type")
                         or "text/plain", filename=title, meta=meta)]
    if typ == "url":
        return [FilePart(url=sr.str("url", required=True), media_type="application/pdf", filename=title, meta=meta)]
    if typ == "file":
        return [FilePart(file_id=sr.str("file_id", required=True), filename=title, meta=meta)]
    if typ == "content":
        content = src.get("content")
        if content is None:
            raise missing(sr.name("content"))
        parts = _blocks(content, sr.name("content"), "document")
        if parts and meta:
            parts[0].meta = _with(parts[0].meta, **meta)
        return parts
    raise invalid_value(sr.name("type"), f"{typ!r} is not one of 'base64', 'text', 'url', 'file', 'content'.")


def _tool_result(r: Reader, block: dict[str, Any]) -> ToolResultPart:
    call_id = r.str("tool_use_id", required=True) or ""
    content = block.get("content")
    parts = [] if content is None else _blocks(content, r.name("content"), "tool_result")
    return ToolResultPart(tool_call_id=call_id, content=parts, is_error=bool(r.bool("is_error")),
                          meta=_meta(block))


# The block types each place may hold. Anything else with a string type is kept opaque (see the module doc).
_ALLOWED = {
    "user": {"text", "image", "document", "tool_result"},
    "assistant": {"text", "tool_use", "thinking", "redacted_thinking"},
    "tool_result": {"text", "image", "document"},
    "document": {"text", "image"},
}
_KNOWN = {"text", "image", "document", "tool_result", "tool_use", "thinking", "redacted_thinking"}


def _block(item: Any, where: str, place: str) -> list[Part]:
    if not isinstance(item, dict):
        raise wrong_type(where, "an object", item)
    r = Reader(item, where)
    typ = r.str("type", required=True) or ""
    if typ not in _KNOWN:
        return [TextPart("", meta={"anthropic_block": item})]
    if typ not in _ALLOWED[place]:
        holder = f"a {place} message" if place in ("user", "assistant") else f"a {place.replace('_', ' ')}"
        raise invalid_value(r.name("type"), f"{typ!r} blocks are not allowed in {holder}.")
    if typ == "text":
        return [TextPart(r.str("text", required=True) or "", meta=_meta(item))]
    if typ == "image":
        return [_image(r, item)]
    if typ == "document":
        return _document(r, item)
    if typ == "tool_result":
        return [_tool_result(r, item)]
    if typ == "tool_use":
        args = r.obj("input", required=True)
        return [ToolCallPart(id=r.str("id", required=True) or "", name=r.str("name", required=True) or "",
                             arguments=orjson.dumps(args).decode(), meta=_meta(item))]
    if typ == "thinking":
        return [ReasoningPart(text=r.str("thinking", required=True) or "", signature=r.str("signature"),
                              meta=_meta(item))]
    return [ReasoningPart(redacted=r.str("data", required=True), meta=_meta(item))]  # redacted_thinking


def _blocks(content: Any, where: str, place: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise wrong_type(where, "a string or an array of content blocks", content)
    parts: list[Part] = []
    for i, item in enumerate(content):
        parts.extend(_block(item, f"{where}[{i}]", place))
    return parts


def _message(item: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(item, dict):
        raise wrong_type(where, "an object", item)
    r = Reader(item, where)
    role = r.str("role", required=True)
    if role not in ("user", "assistant", "system"):
        raise invalid_value(r.name("role"), f"{role!r} is not one of 'user', 'assistant', 'system'.")
    if item.get("content") is None:
        raise missing(r.name("content"))
    if role == "system":  # a mid-conversation system message (SystemMessageParam): a string or text blocks
        return Message(Role.SYSTEM, _system_parts(item["content"], r.name("content")))
    parts = _blocks(item["content"], r.name("content"), role)
    return Message(Role.USER if role == "user" else Role.ASSISTANT, parts)


def _system_parts(value: Any, name: str) -> list[Part]:
    if isinstance(value, str):
        return [TextPart(value)] if value else []
    if not isinstance(value, list):
        raise wrong_type(name, "a string or an array of text blocks", value)
    parts: list[Part] = []
    for i, block in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(block, dict):
            raise wrong_type(where, "an object", block)
        r = Reader(block, where)
        typ = r.str("type", required=True)
        if typ != "text":
            raise invalid_value(r.name("type"), f"{typ!r} is not allowed in the system prompt; use 'text'.")
        parts.append(TextPart(r.str("text", required=True) or "", meta=_meta(block)))
    return parts


def _system(value: Any) -> Message | None:
    if value is None:
        return None
    parts = _system_parts(value, "system")
    return Message(Role.SYSTEM, parts) if parts else None


def _tools(r: Reader) -> list[Tool] | None:
    check_count("tools", r.list("tools"), MAX_TOOLS)
    readers = r.objects("tools")
    if readers is None:
        return None
    tools: list[Tool] = []
    for tr in readers:
        t = tr.data
        typ = tr.str("type")
        name = tr.str("name", required=True) or ""
        if typ not in (None, "custom"):  # a server tool: web search, code execution, ...
            tools.append(Tool(name=name, meta={"anthropic_server_tool": t}))
            continue
        schema = tr.obj("input_schema", required=True)
        meta = {k: v for k, v in t.items() if k not in ("name", "description", "input_schema", "strict", "type")}
        tools.append(Tool(name=name, description=tr.str("description"), parameters=schema, strict=tr.bool("strict"),
                          meta=meta or None))
    return tools


def _tool_choice(r: Reader) -> tuple[ToolChoice | None, bool | None]:
    tc = r.obj("tool_choice")
    if tc is None:
        return None, None
    cr = r.child("tool_choice", tc)
    typ = cr.str("type", required=True)
    parallel = False if cr.bool("disable_parallel_tool_use") else None
    if typ == "auto":
        return ToolChoice("auto"), parallel
    if typ == "any":
        return ToolChoice("required"), parallel
    if typ == "tool":
        return ToolChoice("tool", cr.str("name", required=True)), parallel
    if typ == "none":
        return ToolChoice("none"), None
    raise invalid_value(cr.name("type"), f"{typ!r} is not one of 'auto', 'any', 'tool', 'none'.")


def _thinking(r: Reader) -> int | None:
    th = r.obj("thinking")
    if th is None:
        return None
    tr = r.child("thinking", th)
    typ = tr.str("type", required=True)
    if typ == "enabled":
        if th.get("budget_tokens") is None:
            raise missing(tr.name("budget_tokens"))
        return tr.int("budget_tokens", minimum=1, maximum=MAX_OUTPUT_TOKENS)
    return None  # disabled, adaptive, or a newer mode: the provider's default (a same-wire one gets raw)


def _output_config(r: Reader) -> tuple[str | None, ResponseFormat | None]:
    oc = r.obj("output_config")
    if oc is None:
        return None, None
    orr = r.child("output_config", oc)
    effort = orr.str("effort")
    fmt = orr.obj("format")
    if fmt is None:
        return effort, None
    fr = orr.child("format", fmt)
    typ = fr.str("type", required=True)
    if typ != "json_schema":
        raise invalid_value(fr.name("type"), f"{typ!r} is not supported; use 'json_schema'.")
    return effort, ResponseFormat("json_schema", schema=fr.obj("schema", required=True))


def parse_request(data: dict[str, Any], *, count_only: bool = False) -> ChatRequest:
    """A Messages API body as a neutral request. ``count_only`` parses a count_tokens body (no max_tokens)."""
    r = Reader(data)
    model = r.str("model", required=True) or ""
    raw_messages = r.list("messages", required=True) or []
    if not raw_messages and data.get("prompt") is None:  # a managed prompt (switchyard.prompts) brings its own
        raise invalid_value("messages", "the array must hold at least one message.")
    check_count("messages", raw_messages, MAX_MESSAGES)
    messages = [_message(m, i) for i, m in enumerate(raw_messages)]
    system = _system(data.get("system"))
    if system is not None:
        messages.insert(0, system)
    if data.get("max_tokens") is None and not count_only:
        raise missing("max_tokens")
    max_tokens = r.int("max_tokens", minimum=1, maximum=MAX_OUTPUT_TOKENS)
    stop = r.list("stop_sequences")
    if stop is not None:
        check_count("stop_sequences", stop, MAX_STOP)
        for i, s in enumerate(stop):
            if not isinstance(s, str):
                raise wrong_type(f"stop_sequences[{i}]", "a string", s)
    meta = r.obj("metadata")
    user = r.child("metadata", meta).str("user_id") if meta is not None else None
    if meta is not None:
        check_metadata(meta)
    tool_choice, parallel = _tool_choice(r)
    effort, response_format = _output_config(r)
    return ChatRequest(
        model=model,
        messages=messages,
        wire=WIRE_ANTHROPIC_MESSAGES,
        stream=bool(r.bool("stream")),
        include_usage=True,  # every Anthropic stream reports usage
        max_tokens=max_tokens,
        temperature=r.num("temperature", 0, 1),
        top_p=r.num("top_p", 0, 1),
        top_k=r.int("top_k", minimum=0),
        stop=stop or None,
        tools=_tools(r),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        response_format=response_format,
        reasoning_effort=effort,
        reasoning_budget=_thinking(r),
        user=user,
        extra={k: v for k, v in data.items() if k not in _MODELLED},
        raw=data,
    )


# --- rendering -----------------------------------------------------------------------------------------------


def message_id(neutral_id: str) -> str:
    """An Anthropic-looking message id (``msg_...``) for a neutral response id."""
    if neutral_id.startswith("msg_"):
        return neutral_id
    return "msg_" + (neutral_id or "switchyard")


def usage_json(u: Usage | None) -> dict[str, JSON]:
    """Anthropic's usage: ``input_tokens`` exclude the cache reads and writes, which it counts apart."""
    if u is None:
        u = Usage()
    return {
        "input_tokens": max(u.input_tokens - u.cached_tokens - u.cache_write_tokens, 0),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }


def tool_input(arguments: str) -> dict[str, JSON]:
    """A tool call's ``input`` object from its JSON text; ``{}`` when that is empty or not a JSON object."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        log.warning("a tool call's arguments are not valid JSON; rendering its input as {}")
        return {}
    if not isinstance(value, dict):
        log.warning("a tool call's arguments are not a JSON object; rendering its input as {}")
        return {}
    return value


def stop_reason(reason: FinishReason | None, has_tool_calls: bool) -> str:
    if reason is None:
        return "tool_use" if has_tool_calls else "end_turn"
    return STOP_REASONS.get(reason, "end_turn")


def render_response(resp: ChatResponse, model: str = "") -> bytes:
    """A ``message`` object. ``model`` (the one the client asked for) names it if the response does not."""
    if resp.wire == WIRE_ANTHROPIC_MESSAGES and resp.raw is not None:
        return orjson.dumps(resp.raw)
    choice = next((c for c in resp.choices if c.index == 0), resp.choices[0] if resp.choices else None)
    content: list[JSON] = []
    has_calls = False
    reason: FinishReason | None = None
    stop_sequence: str | None = None
    if choice is not None:
        reason, stop_sequence = choice.finish_reason, choice.stop_sequence
        for p in choice.message.parts:
            if isinstance(p, ReasoningPart):
                if p.redacted is not None:
                    content.append({"type": "redacted_thinking", "data": p.redacted})
                else:
                    content.append({"type": "thinking", "thinking": p.text, "signature": p.signature or ""})
            elif isinstance(p, TextPart):
                if p.text:
                    content.append({"type": "text", "text": p.text})
            elif isinstance(p, ToolCallPart):
                has_calls = True
                content.append({"type": "tool_use", "id": p.id, "name": p.name, "input": tool_input(p.arguments)})
        if choice.refusal and not any(isinstance(p, TextPart) and p.text for p in choice.message.parts):
            content.append({"type": "text", "text": choice.refusal})
            reason = reason or FinishReason.REFUSAL
    out: dict[str, JSON] = {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": resp.model or model,
        "content": content,
        "stop_reason": stop_reason(reason, has_calls),
        "stop_sequence": stop_sequence,
        "usage": usage_json(resp.usage),
    }
    return orjson.dumps(out)


def count_tokens_body(input_tokens: int) -> bytes:
    return orjson.dumps({"input_tokens": input_tokens})
