"""Inbound OpenAI Chat Completions: client bodies to neutral requests, neutral replies and streams back.

Wire format: https://platform.openai.com/docs/api-reference/chat/create, the chunk object
https://platform.openai.com/docs/api-reference/chat/streaming, and ``../shared/specs/openai-openapi.yml``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..bounds import (
    MAX_MESSAGES,
    MAX_N,
    MAX_OUTPUT_TOKENS,
    MAX_STOP_OPENAI,
    MAX_TOOLS_OPENAI,
    MAX_TOP_LOGPROBS,
    check_count,
    check_metadata,
)
from ..messages import (
    JSON,
    WIRE_OPENAI_CHAT,
    AudioPart,
    ChatRequest,
    ChatResponse,
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
    ResponseFormat,
    Role,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageUpdate,
    merge_usage,
)
from ..sse import encode
from .validate import Reader, invalid_value, missing, wrong_type

# Top-level fields that the neutral model carries; every other field goes to ChatRequest.extra.
_MODELLED = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "n", "stop", "seed", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "tools",
    "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort", "user", "metadata", "top_k",
})

_DATA_URL = re.compile(r"^data:([^;,]+)?(;base64)?,(.*)$", re.S)

FINISH_TO_OPENAI: dict[FinishReason, str] = {
    FinishReason.STOP: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.PAUSE: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.REFUSAL: "content_filter",
}


# --- parsing -------------------------------------------------------------------------------------------------


def _parts(content: Any, where: str, role: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    if content is None:
        return []
    if not isinstance(content, list):
        raise wrong_type(where, "a string or an array of content parts", content)
    parts: list[Part] = []
    for i, item in enumerate(content):
        pw = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise wrong_type(pw, "an object", item)
        r = Reader(item, pw)
        typ = r.str("type", required=True)
        if typ == "text":
            parts.append(TextPart(r.str("text", required=True) or ""))
        elif typ == "refusal" and role == "assistant":
            parts.append(TextPart(r.str("refusal", required=True) or ""))
        elif typ == "image_url" and role == "user":
            img = r.obj("image_url", required=True) or {}
            ir = r.child("image_url", img)
            url = ir.str("url", required=True) or ""
            detail = ir.str("detail")
            m = _DATA_URL.match(url)
            if m and m.group(2):
                parts.append(ImagePart(data=m.group(3), media_type=m.group(1), detail=detail))
            else:
                parts.append(ImagePart(url=url, detail=detail))
        elif typ == "input_audio" and role == "user":
            a = r.obj("input_audio", required=True) or {}
            ar = r.child("input_audio", a)
            parts.append(AudioPart(data=ar.str("data", required=True) or "", format=ar.str("format", required=True)
                                   or ""))
        elif typ == "file" and role == "user":
            f = r.obj("file", required=True) or {}
            fr = r.child("file", f)
            file_data = fr.str("file_data")
            media_type, data = None, file_data
            if file_data:
                m = _DATA_URL.match(file_data)
                if m:
                    media_type, data = m.group(1), m.group(3)
            parts.append(FilePart(data=data, file_id=fr.str("file_id"), filename=fr.str("filename"),
                                  media_type=media_type))
        else:
            raise invalid_value(f"{pw}.type", f"{typ!r} is not a content part type a {role} message may hold.")
    return parts


def _message(item: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(item, dict):
        raise wrong_type(where, "an object", item)
    r = Reader(item, where)
    role = r.str("role", required=True)
    name = r.str("name")
    if role in ("system", "developer"):
        parts = _parts(item.get("content"), f"{where}.content", "system")
        meta = {"openai_role": "developer"} if role == "developer" else None
        return Message(Role.SYSTEM, parts, name=name, meta=meta)
    if role == "user":
        if "content" not in item:
            raise missing(f"{where}.content")
        return Message(Role.USER, _parts(item.get("content"), f"{where}.content", "user"), name=name)
    if role == "assistant":
        parts = _parts(item.get("content"), f"{where}.content", "assistant")
        reasoning = item.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            parts.insert(0, ReasoningPart(text=reasoning))
        for j, tc in enumerate(r.list("tool_calls") or []):
            tw = f"{where}.tool_calls[{j}]"
            if not isinstance(tc, dict):
                raise wrong_type(tw, "an object", tc)
            tr = Reader(tc, tw)
            fn = tr.obj("function", required=True) or {}
            fr = tr.child("function", fn)
            parts.append(ToolCallPart(id=tr.str("id", required=True) or "", name=fr.str("name", required=True) or "",
                                      arguments=fr.str("arguments") or ""))
        return Message(Role.ASSISTANT, parts, name=name)
    if role == "tool":
        call_id = r.str("tool_call_id", required=True) or ""
        content = _parts(item.get("content"), f"{where}.content", "tool")
        return Message(Role.TOOL, [ToolResultPart(tool_call_id=call_id, content=content)])
    if role == "function":  # deprecated, but still in the spec
        fname = r.str("name", required=True) or ""
        content = _parts(item.get("content"), f"{where}.content", "tool")
        return Message(Role.TOOL, [ToolResultPart(tool_call_id=fname, content=content)])
    raise invalid_value(f"{where}.role", f"{role!r} is not one of 'system', 'developer', 'user', 'assistant', 'tool'.")


def _tools(r: Reader) -> list[Tool] | None:
    check_count("tools", r.list("tools"), MAX_TOOLS_OPENAI)
    readers = r.objects("tools")
    if readers is None:
        return None
    tools: list[Tool] = []
    for tr in readers:
        typ = tr.str("type", required=True)
        if typ != "function":
            raise invalid_value(tr.name("type"), f"{typ!r} is not supported; use 'function'.")
        fn = tr.obj("function", required=True) or {}
        fr = tr.child("function", fn)
        tools.append(Tool(name=fr.str("name", required=True) or "", description=fr.str("description"),
                          parameters=fr.obj("parameters"), strict=fr.bool("strict")))
    return tools


def _tool_choice(value: Any) -> ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise invalid_value("tool_choice", f"{value!r} is not one of 'auto', 'none', 'required'.")
        return ToolChoice(value)  # type: ignore[arg-type]
    if isinstance(value, dict):
        fn = value.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return ToolChoice("tool", fn["name"])
        raise invalid_value("tool_choice", "an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}.")
    raise wrong_type("tool_choice", "a string or an object", value)


def _response_format(r: Reader) -> ResponseFormat | None:
    rf = r.obj("response_format")
    if rf is None:
        return None
    rr = r.child("response_format", rf)
    typ = rr.str("type", required=True)
    if typ in ("text", "json_object"):
        return ResponseFormat(typ)  # type: ignore[arg-type]
    if typ == "json_schema":
        js = rr.obj("json_schema", required=True) or {}
        jr = rr.child("json_schema", js)
        return ResponseFormat("json_schema", name=jr.str("name", required=True), schema=jr.obj("schema"),
                              strict=jr.bool("strict"), description=jr.str("description"))
    raise invalid_value("response_format.type", f"{typ!r} is not one of 'text', 'json_object', 'json_schema'.")


def parse_request(data: dict[str, Any]) -> ChatRequest:
    r = Reader(data)
    model = r.str("model", required=True) or ""
    raw_messages = r.list("messages", required=True) or []
    if not raw_messages and data.get("prompt") is None:  # a managed prompt (switchyard.prompts) brings its own
        raise invalid_value("messages", "the array must hold at least one message.")
    check_count("messages", raw_messages, MAX_MESSAGES)
    messages = [_message(m, i) for i, m in enumerate(raw_messages)]
    stop_v = data.get("stop")
    if stop_v is None:
        stop = None
    elif isinstance(stop_v, str):
        stop = [stop_v]
    elif isinstance(stop_v, list) and all(isinstance(s, str) for s in stop_v):
        check_count("stop", stop_v, MAX_STOP_OPENAI)
        stop = stop_v
    else:
        raise wrong_type("stop", "a string or an array of strings", stop_v)
    opts = r.obj("stream_options")
    include_usage = bool(opts and opts.get("include_usage"))
    max_tokens = r.int("max_completion_tokens", minimum=1, maximum=MAX_OUTPUT_TOKENS)
    legacy_max = r.int("max_tokens", minimum=1, maximum=MAX_OUTPUT_TOKENS)
    metadata = r.obj("metadata")
    if metadata is not None:
        check_metadata(metadata)
    return ChatRequest(
        model=model,
        messages=messages,
        wire=WIRE_OPENAI_CHAT,
        stream=bool(r.bool("stream")),
        include_usage=include_usage,
        max_tokens=max_tokens if max_tokens is not None else legacy_max,
        temperature=r.num("temperature", 0, 2),
        top_p=r.num("top_p", 0, 1),
        top_k=r.int("top_k", minimum=0),
        stop=stop,
        n=r.int("n", minimum=1, maximum=MAX_N),
        seed=r.int("seed"),
        presence_penalty=r.num("presence_penalty", -2, 2),
        frequency_penalty=r.num("frequency_penalty", -2, 2),
        logprobs=r.bool("logprobs"),
        top_logprobs=r.int("top_logprobs", minimum=0, maximum=MAX_TOP_LOGPROBS),
        tools=_tools(r),
        tool_choice=_tool_choice(data.get("tool_choice")),
        parallel_tool_calls=r.bool("parallel_tool_calls"),
        response_format=_response_format(r),
        reasoning_effort=r.str("reasoning_effort"),
        user=r.str("user"),
        metadata=metadata,
        extra={k: v for k, v in data.items() if k not in _MODELLED},
        raw=data,
    )


# --- rendering -----------------------------------------------------------------------------------------------


def usage_json(u: Usage) -> dict[str, JSON]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def render_response(resp: ChatResponse) -> bytes:
    if resp.wire == WIRE_OPENAI_CHAT and resp.raw is not None:
        return orjson.dumps(resp.raw)
    choices: list[JSON] = []
    for c in resp.choices:
        text = "".join(p.text for p in c.message.parts if isinstance(p, TextPart))
        calls = [p for p in c.message.parts if isinstance(p, ToolCallPart)]
        msg: dict[str, JSON] = {"role": "assistant", "content": text if text or not calls else None,
                                "refusal": c.refusal}
        reasoning = "".join(p.text for p in c.message.parts if isinstance(p, ReasoningPart))
        if reasoning:
            msg["reasoning_content"] = reasoning
        if calls:
            msg["tool_calls"] = [{"id": p.id, "type": "function",
                                  "function": {"name": p.name, "arguments": p.arguments}} for p in calls]
        choices.append({"index": c.index, "message": msg, "logprobs": c.logprobs,
                        "finish_reason": FINISH_TO_OPENAI.get(c.finish_reason, "stop") if c.finish_reason else "stop"})
    out: dict[str, JSON] = {"id": resp.id, "object": "chat.completion", "created": resp.created, "model": resp.model,
                            "choices": choices, "system_fingerprint": resp.system_fingerprint}
    if resp.usage is not None:
        out["usage"] = usage_json(resp.usage)
    return orjson.dumps(out)


class StreamRenderer:
    """Turns neutral chunks into ``chat.completion.chunk`` SSE frames for one response."""

    __slots__ = ("_calls", "_created", "_id", "_include_usage", "_model", "_roles", "_usage")

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._id = ""
        self._model = ""
        self._created = 0
        self._roles: set[int] = set()
        self._calls: dict[tuple[int, int], bool] = {}
        self._usage: Usage | None = None

    def _frame(self, choice: int, delta: dict[str, JSON], finish: str | None = None, logprobs: JSON = None) -> bytes:
        if choice not in self._roles:
            self._roles.add(choice)
            delta = {"role": "assistant", **delta}
            delta.setdefault("content", None if "tool_calls" in delta else "")  # as OpenAI streams them
        obj: dict[str, JSON] = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                                "model": self._model, "system_fingerprint": None,
                                "choices": [{"index": choice, "delta": delta, "logprobs": logprobs,
                                             "finish_reason": finish}]}
        if self._include_usage:
            obj["usage"] = None
        return encode(orjson.dumps(obj))

    def feed(self, chunk: Chunk) -> bytes:
        if chunk.wire == WIRE_OPENAI_CHAT and chunk.raw is not None:
            raw = chunk.raw
            return self._passthrough(raw) if isinstance(raw, dict) else b"".join([self._passthrough(f) for f in raw])
        out = bytearray()
        for ev in chunk.events:
            if isinstance(ev, TextDelta):
                out += self._frame(ev.choice, {"content": ev.text})
            elif isinstance(ev, ToolCallStart):
                self._calls[(ev.choice, ev.index)] = True
                out += self._frame(ev.choice, {"tool_calls": [{"index": ev.index, "id": ev.id, "type": "function",
                                                               "function": {"name": ev.name, "arguments": ""}}]})
            elif isinstance(ev, ToolCallDelta):
                out += self._frame(ev.choice, {"tool_calls": [{"index": ev.index,
                                                               "function": {"arguments": ev.arguments}}]})
            elif isinstance(ev, ReasoningDelta):
                if ev.text:
                    out += self._frame(ev.choice, {"reasoning_content": ev.text})
            elif isinstance(ev, Finish):
                out += self._frame(ev.choice, {}, finish=FINISH_TO_OPENAI.get(ev.reason, "stop"))
            elif isinstance(ev, LogprobsDelta):
                out += self._frame(ev.choice, {}, logprobs=ev.content)
            elif isinstance(ev, UsageUpdate):
                if self._usage is None:
                    self._usage = Usage()
                merge_usage(self._usage, ev.usage)
            elif isinstance(ev, StreamStart):
                self._id, self._model, self._created = ev.id, ev.model, ev.created
                if ev.usage is not None:
                    self._usage = Usage()
                    merge_usage(self._usage, ev.usage)
        return bytes(out)

    def _passthrough(self, raw: dict[str, Any]) -> bytes:
        if not self._include_usage:
            if not raw.get("choices") and raw.get("usage") is not None:
                return b""  # the usage chunk we asked for on our own account
            if "usage" in raw:
                raw = {k: v for k, v in raw.items() if k != "usage"}
        return encode(orjson.dumps(raw))

    def end(self) -> bytes:
        out = b""
        if self._include_usage and self._usage is not None:
            obj = {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model,
                   "system_fingerprint": None, "choices": [], "usage": usage_json(self._usage)}
            out = encode(orjson.dumps(obj))
        return out + b"data: [DONE]\n\n"
