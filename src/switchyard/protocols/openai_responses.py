"""Inbound OpenAI Responses API: a ``POST /v1/responses`` body to a neutral request.

Wire format: https://platform.openai.com/docs/api-reference/responses/create, the ``CreateResponse`` schema of
``../shared/specs/openai-openapi.yml`` and the SDK's ``openai.types.responses``. Rendering the reply and the stream is
in :mod:`.openai_responses_render`.

Input items map onto neutral messages: a message item (or the short ``{"role", "content"}`` form) is a message;
consecutive assistant output items (``message``, ``function_call``, ``reasoning``) form one assistant message; a
``function_call_output`` is a tool message. ``instructions`` is a leading system message. Built-in tools (web search,
file search, computer use, code interpreter, ...) and item types only OpenAI runs are kept whole in ``meta``
(``openai_builtin_tool``, ``openai_item``): only a provider that speaks the Responses wire may send them, every
other refuses them by name (``providers/translate.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..bounds import MAX_MESSAGES, MAX_OUTPUT_TOKENS, MAX_TOOLS_OPENAI, MAX_TOP_LOGPROBS, check_count, check_metadata
from ..errors import InvalidRequest
from ..messages import (
    JSON,
    WIRE_OPENAI_RESPONSES,
    AudioPart,
    ChatRequest,
    FilePart,
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
)
from .validate import Reader, invalid_value, missing, wrong_type

# Top-level fields the neutral model (or this module) carries; every other field goes to ChatRequest.extra.
_MODELLED = frozenset({
    "model", "input", "instructions", "stream", "stream_options", "max_output_tokens", "temperature", "top_p",
    "top_logprobs", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning", "user", "metadata",
    "previous_response_id", "conversation",
})
_DATA_URL = re.compile(r"^data:([^;,]+)?(;base64)?,(.*)$", re.S)
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM, "developer": Role.SYSTEM}


@dataclass(slots=True)
class ResponsesCall:
    """What the rendering of the reply needs of the request, and what storing it keeps."""

    body: dict[str, Any]
    items: list[dict[str, JSON]]  # this turn's input items, in the wire format (ids added), for storage
    previous_response_id: str | None = None
    store: bool = True
    history: list[dict[str, JSON]] = field(default_factory=list)  # items prepended from the stored chain
    conversation: dict[str, JSON] | None = None  # {"id": ...} of the conversation the turn joins (echoed)


def _data_url(url: str) -> tuple[str | None, str | None]:
    m = _DATA_URL.match(url)
    if m and m.group(2):
        return m.group(1), m.group(3)
    return None, None


def _content(content: Any, where: str, role: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if not isinstance(content, list):
        raise wrong_type(where, "a string or an array of content parts", content)
    parts: list[Part] = []
    for i, item in enumerate(content):
        pw = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise wrong_type(pw, "an object", item)
        r = Reader(item, pw)
        typ = r.str("type", required=True)
        if typ in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            parts.append(TextPart(r.str("text", required=True) or ""))
        elif typ == "refusal":
            parts.append(TextPart(r.str("refusal", required=True) or ""))
        elif typ == "input_image":
            url, file_id = r.str("image_url"), r.str("file_id")
            if url is None and file_id is None:
                raise missing(f"{pw}.image_url")
            detail = r.str("detail")
            if url is not None:
                media, data = _data_url(url)
                parts.append(ImagePart(data=data, media_type=media, detail=detail) if data is not None
                             else ImagePart(url=url, detail=detail))
            else:
                parts.append(ImagePart(url=None, detail=detail, meta={"openai_file_id": file_id}))
        elif typ == "input_file":
            file_data = r.str("file_data")
            media_type, data = None, file_data
            if file_data:
                m = _DATA_URL.match(file_data)
                if m:
                    media_type, data = m.group(1), m.group(3)
            parts.append(FilePart(data=data, url=r.str("file_url"), file_id=r.str("file_id"),
                                  filename=r.str("filename"), media_type=media_type))
        elif typ == "input_audio":
            a = r.obj("input_audio", required=True) or {}
            ar = r.child("input_audio", a)
            parts.append(AudioPart(data=ar.str("data", required=True) or "",
                                   format=ar.str("format", required=True) or ""))
        else:
            raise invalid_value(f"{pw}.type", f"{typ!r} is not a content part type a {role} message may hold.")
    return parts


def _output_text(parts: list[Part]) -> str:
    return "".join(p.text for p in parts if isinstance(p, TextPart))


def parse_items(raw: Any, where: str = "input") -> list[Message]:
    """Input items (the wire's array, or one string) as neutral messages."""
    if isinstance(raw, str):
        return [Message(Role.USER, [TextPart(raw)])]
    if not isinstance(raw, list):
        raise wrong_type(where, "a string or an array of input items", raw)
    check_count(where, raw, MAX_MESSAGES)
    out: list[Message] = []
    turn: list[Part] | None = None  # the parts of the assistant turn being read (consecutive output items)
    for i, item in enumerate(raw):
        iw = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise wrong_type(iw, "an object", item)
        typ = item.get("type")
        if typ is None and "role" in item:
            typ = "message"
        if typ == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _ROLES:
                if role is None:
                    raise missing(f"{iw}.role")
                raise invalid_value(f"{iw}.role", f"{role!r} is not one of 'user', 'assistant', 'system', "
                                                  "'developer'.")
            if "content" not in item:
                raise missing(f"{iw}.content")
            content = item["content"]
            parts: list[Part] = ([TextPart(content)] if type(content) is str
                                 else _content(content, f"{iw}.content", role))
            if role == "assistant":
                if turn is None:
                    turn = []
                    out.append(Message(Role.ASSISTANT, turn))
                turn.extend(parts)
                continue
            out.append(Message(_ROLES[role], parts, meta={"openai_role": "developer"} if role == "developer"
                               else None))
            turn = None
            continue
        r = Reader(item, iw)
        if typ is None:
            raise missing(f"{iw}.type")
        if not isinstance(typ, str):
            raise wrong_type(f"{iw}.type", "a string", typ)
        if typ == "function_call_output":
            call_id = r.str("call_id", required=True) or ""
            output = item.get("output")
            if output is None:
                raise missing(f"{iw}.output")
            content = _content(output, f"{iw}.output", "tool")
            out.append(Message(Role.TOOL, [ToolResultPart(tool_call_id=call_id, content=content)]))
            turn = None
            continue
        if typ == "item_reference":
            raise invalid_value(f"{iw}.type", "item references are not supported; send the item itself, or use "
                                              "previous_response_id.")
        part: Part
        if typ == "function_call":
            part = ToolCallPart(id=r.str("call_id", required=True) or "", name=r.str("name", required=True) or "",
                                arguments=r.str("arguments") or "")
        elif typ == "reasoning":
            summary = r.list("summary") or []
            text = "".join(str(s.get("text", "")) for s in summary if isinstance(s, dict))
            content_items = r.list("content") or []
            text = text or "".join(str(c.get("text", "")) for c in content_items if isinstance(c, dict))
            kept: dict[str, JSON] = {"openai_reasoning": {k: item[k] for k in ("id", "encrypted_content")
                                                          if item.get(k) is not None}}
            part = ReasoningPart(text=text, meta=kept)
        else:  # an item only OpenAI's own service runs (a web search call, a computer call, ...): kept whole
            part = TextPart("", meta={"openai_item": item})
        if turn is None:
            turn = []
            out.append(Message(Role.ASSISTANT, turn))
        turn.append(part)
    return out


def _tools(r: Reader) -> list[Tool] | None:
    check_count("tools", r.list("tools"), MAX_TOOLS_OPENAI)
    readers = r.objects("tools")
    if readers is None:
        return None
    tools: list[Tool] = []
    for tr in readers:
        typ = tr.str("type", required=True) or ""
        if typ == "function":
            tools.append(Tool(name=tr.str("name", required=True) or "", description=tr.str("description"),
                              parameters=tr.obj("parameters"), strict=tr.bool("strict")))
        else:  # web_search, file_search, computer_use_preview, code_interpreter, mcp, custom, ...
            tools.append(Tool(name=typ, meta={"openai_builtin_tool": tr.data}))
    return tools


def _tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise invalid_value("tool_choice", f"{value!r} is not one of 'auto', 'none', 'required'.")
        return ToolChoice(value)  # type: ignore[arg-type]
    if isinstance(value, dict):
        typ = value.get("type")
        if typ == "function":
            if not isinstance(value.get("name"), str):
                raise missing("tool_choice.name")
            return ToolChoice("tool", value["name"])
        if typ == "allowed_tools":
            mode = value.get("mode", "auto")
            return ToolChoice("required" if mode == "required" else "auto")
        if isinstance(typ, str):  # a built-in tool by type: only a Responses upstream can honour it
            return ToolChoice("tool", typ)
        raise missing("tool_choice.type")
    raise wrong_type("tool_choice", "a string or an object", value)


def _text_format(r: Reader) -> ResponseFormat | None:
    text = r.obj("text")
    if text is None:
        return None
    tr = r.child("text", text)
    fmt = tr.obj("format")
    if fmt is None:
        return None
    fr = tr.child("format", fmt)
    typ = fr.str("type", required=True)
    if typ in ("text", "json_object"):
        return ResponseFormat(typ)  # type: ignore[arg-type]
    if typ == "json_schema":
        schema = fr.obj("schema", required=True)
        return ResponseFormat("json_schema", name=fr.str("name", required=True), schema=schema,
                              strict=fr.bool("strict"), description=fr.str("description"))
    raise invalid_value("text.format.type", f"{typ!r} is not one of 'text', 'json_object', 'json_schema'.")


def parse_request(data: dict[str, Any]) -> tuple[ChatRequest, ResponsesCall]:
    """The neutral request, and what rendering and storing its reply need. ``previous_response_id`` is not
    resolved here: the endpoint prepends the stored chain (``prepend``)."""
    r = Reader(data)
    model = r.str("model", required=True) or ""
    raw_input = data.get("input")
    prompted = data.get("prompt") is not None  # a prompt (managed, or OpenAI's stored one) brings its own input
    if raw_input is None:
        if not prompted:
            raise missing("input")
        raw_input = []
    messages = parse_items(raw_input)
    instructions = r.str("instructions")
    if instructions:
        messages.insert(0, Message(Role.SYSTEM, [TextPart(instructions)]))
    if not messages and not prompted:
        raise invalid_value("input", "the array must hold at least one item.")
    metadata = r.obj("metadata")
    if metadata is not None:
        check_metadata(metadata)
    reasoning = r.obj("reasoning")
    effort = r.child("reasoning", reasoning).str("effort") if reasoning is not None else None
    if r.bool("background"):
        raise invalid_value("background", "background responses are not supported by this gateway.")
    truncation = r.str("truncation")
    if truncation not in (None, "auto", "disabled"):
        raise invalid_value("truncation", f"{truncation!r} is not one of 'auto', 'disabled'.")
    include = r.list("include")
    if include is not None and not all(isinstance(x, str) for x in include):
        raise wrong_type("include", "an array of strings", include)
    prev = r.str("previous_response_id")
    store = r.bool("store")
    req = ChatRequest(
        model=model,
        messages=messages,
        wire=WIRE_OPENAI_RESPONSES,
        stream=bool(r.bool("stream")),
        include_usage=True,
        max_tokens=r.int("max_output_tokens", minimum=1, maximum=MAX_OUTPUT_TOKENS),
        temperature=r.num("temperature", 0, 2),
        top_p=r.num("top_p", 0, 1),
        top_logprobs=r.int("top_logprobs", minimum=0, maximum=MAX_TOP_LOGPROBS),
        tools=_tools(r),
        tool_choice=_tool_choice(data.get("tool_choice")),
        parallel_tool_calls=r.bool("parallel_tool_calls"),
        response_format=_text_format(r),
        reasoning_effort=effort,
        user=r.str("user"),
        metadata=None,  # the response object's own tags (echoed, stored), not the model's business
        extra={k: v for k, v in data.items() if k not in _MODELLED},
        raw=data,
    )
    if req.top_logprobs is not None and not req.top_logprobs:
        req.top_logprobs = None
    items = raw_input if isinstance(raw_input, list) else [{"type": "message", "role": "user",
                                                            "content": [{"type": "input_text", "text": raw_input}]}]
    return req, ResponsesCall(body=data, items=list(items), previous_response_id=prev,
                              store=True if store is None else store)


def prepend(req: ChatRequest, call: ResponsesCall, history: list[dict[str, JSON]]) -> None:
    """Put the stored items of a ``previous_response_id`` chain (its inputs and outputs, oldest first) before this
    turn's input. A system message from ``instructions`` stays first; the previous turns' instructions are not
    carried over (as OpenAI does). A same-wire upstream gets the whole input in the raw body."""
    if not history:
        return
    call.history = history
    try:
        earlier = parse_items(history, "previous_response_id")
    except InvalidRequest as e:  # a stored item this gateway wrote: cannot be the caller's fault
        raise InvalidRequest(f"The stored response chain cannot be replayed: {e.message}",
                             param="previous_response_id") from None
    lead = 1 if req.messages and req.messages[0].role is Role.SYSTEM and call.body.get("instructions") else 0
    req.messages[lead:lead] = earlier
    if req.raw is not None:
        raw = {k: v for k, v in req.raw.items() if k != "previous_response_id"}
        raw["input"] = [*history, *call.items]
        req.raw = raw
