"""Neutral objects to Amazon Bedrock Converse request bodies, and Converse replies and stream events back.

Wire format: the ``bedrock-runtime`` service model (2023-09-30) that botocore bundles: the ``Converse`` and
``ConverseStream`` operations, their ``ConverseRequest`` / ``ConverseStreamRequest`` input shapes, ``ConverseResponse``
and the ``ConverseStreamOutput`` event union. The protocol is rest-json: blobs (image, document and audio bytes,
redacted reasoning) travel as base64 strings, and the model id is a path segment, not a body field.

Pure functions; the HTTP side (signing, event-stream framing) is in ``providers.bedrock``.

Translation choices, each one documented where it is made:

* system messages, wherever they stand, go to the top-level ``system`` list; tool results go into a user message;
  consecutive messages of one role merge, since Converse wants the roles to alternate.
* ``top_k`` goes to ``additionalModelRequestFields.top_k`` (the name Anthropic's and Mistral's models read);
  ``reasoning_budget`` to ``additionalModelRequestFields.thinking`` (Anthropic's extended thinking);
  ``reasoning_effort`` to ``outputConfig.effort``; a ``json_schema`` response format to ``outputConfig.textFormat``.
* ``tool_choice: none`` sends no tools at all; Converse has no "none" choice, and when the conversation already
  holds tool calls it requires the tools to be declared, so that case is refused rather than loosened to "auto".
* Parameters with no Converse counterpart (``n > 1``, ``logprobs``, ``seed``, penalties, ``parallel_tool_calls:
  false``, ``json_object``, image URLs other than ``s3://``, Anthropic server tools and their blocks) raise
  :class:`UnsupportedParameter`.
  ``user`` and ``metadata`` are bookkeeping tags, not generation parameters, and are not forwarded.
* Reasoning from earlier turns is sent back only when it carries a signature or redacted data (what Anthropic's
  models verify); unsigned reasoning text (say, from a DeepSeek-style ``reasoning_content``) is the model's own
  earlier output, which those models do not accept back, so it is left out.
* ``cache_control`` in a part's (or tool's) ``meta`` adds a Converse ``cachePoint`` after that block.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

import orjson

from ..errors import InvalidRequest, UnsupportedParameter
from ..messages import (
    JSON,
    AudioPart,
    ChatRequest,
    ChatResponse,
    Choice,
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

WIRE_BEDROCK_CONVERSE = "bedrock.converse"
"""Bedrock's Converse wire format. No inbound protocol speaks it, so nothing is ever passed through raw."""

FINISH_FROM_BEDROCK: dict[str, FinishReason] = {
    "end_turn": FinishReason.STOP,
    "tool_use": FinishReason.TOOL_CALLS,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "guardrail_intervened": FinishReason.CONTENT_FILTER,
    "content_filtered": FinishReason.CONTENT_FILTER,
}

IMAGE_FORMATS: dict[str, str] = {
    "image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp",
}
DOCUMENT_FORMATS: dict[str, str] = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
AUDIO_FORMATS = frozenset({"mp3", "opus", "wav", "aac", "flac", "mp4", "ogg", "mkv", "mka", "x-aac", "m4a", "mpeg",
                           "mpga", "pcm", "webm"})
_EFFORTS = frozenset({"low", "medium", "high", "xhigh", "max"})
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
)
_DOC_NAME_BAD = re.compile(r"[^A-Za-z0-9\s\-()\[\]]+")


def _unsupported(what: str, provider: str, param: str, why: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"{what} is not supported by provider {provider!r} ({why})", param=param)


# --- request: content ----------------------------------------------------------------------------------------


def _sniff_image(data: str) -> str | None:
    try:
        head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4))
    except (binascii.Error, ValueError):
        return None
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _s3(url: str) -> dict[str, JSON]:
    return {"s3Location": {"uri": url}}


def _image(p: ImagePart, provider: str, where: str) -> dict[str, JSON]:
    media = (p.media_type or "").lower()
    if p.data is not None:
        fmt = IMAGE_FORMATS.get(media) if media else _sniff_image(p.data)
        if fmt is None:
            raise _unsupported(f"an image of type {p.media_type or 'unknown'!r}", provider, where,
                               "Bedrock takes png, jpeg, gif and webp images")
        return {"image": {"format": fmt, "source": {"bytes": p.data}}}
    url = p.url or ""
    if url.startswith("s3://"):
        fmt = IMAGE_FORMATS.get(media) or IMAGE_FORMATS.get("image/" + url.rsplit(".", 1)[-1].lower())
        if fmt is None:
            raise _unsupported("an s3:// image whose format is unknown", provider, where,
                               "name the file .png, .jpeg, .gif or .webp")
        return {"image": {"format": fmt, "source": _s3(url)}}
    raise _unsupported("an image URL", provider, where,
                       "Bedrock takes image bytes or s3:// locations; send the image as a base64 data: URL")


def _document_name(p: FilePart, seen: dict[str, int]) -> str:
    stem = (p.filename or "").rsplit("/", 1)[-1]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    name = " ".join(_DOC_NAME_BAD.sub("-", stem).split())[:180] or "document"
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name} ({seen[name]})"  # Converse wants document names unique


def _document(p: FilePart, provider: str, where: str, names: dict[str, int]) -> dict[str, JSON]:
    media = (p.media_type or "").lower().split(";")[0].strip()
    fmt = DOCUMENT_FORMATS.get(media)
    if fmt is None and p.filename and "." in p.filename:
        ext = p.filename.rsplit(".", 1)[-1].lower()
        fmt = ext if ext in DOCUMENT_FORMATS.values() else None
    if fmt is None and p.data is not None and p.data.startswith("JVBER"):  # base64 of "%PDF"
        fmt = "pdf"
    if p.file_id is not None:
        raise _unsupported("a file id", provider, where, "Bedrock takes document bytes or s3:// locations")
    if p.data is not None:
        source: dict[str, JSON] = {"bytes": p.data}
    elif p.url is not None and p.url.startswith("s3://"):
        source = _s3(p.url)
    else:
        raise _unsupported("a document URL", provider, where, "Bedrock takes document bytes or s3:// locations")
    if fmt is None:
        raise _unsupported(f"a document of type {p.media_type or 'unknown'!r}", provider, where,
                           "Bedrock takes pdf, csv, doc, docx, xls, xlsx, html, txt and md documents")
    doc: dict[str, JSON] = {"format": fmt, "name": _document_name(p, names), "source": source}
    meta = p.meta or {}
    if isinstance(meta.get("context"), str):  # Anthropic's document ``context`` and ``citations`` have Converse twins
        doc["context"] = meta["context"]
    citations = meta.get("citations")
    if isinstance(citations, dict) and isinstance(citations.get("enabled"), bool):
        doc["citations"] = {"enabled": citations["enabled"]}
    return {"document": doc}


def _cache_point(meta: dict[str, JSON] | None) -> dict[str, JSON] | None:
    cc = meta.get("cache_control") if meta else None
    if not isinstance(cc, dict):
        return None
    point: dict[str, JSON] = {"type": "default"}
    if cc.get("ttl") in ("5m", "1h"):
        point["ttl"] = cc["ttl"]
    return {"cachePoint": point}


def _tool_input(arguments: str, where: str) -> dict[str, JSON]:
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: tool call arguments must be a JSON object to send to Bedrock", param=where)
    return value


def _result_content(parts: Sequence[Part], provider: str, where: str, names: dict[str, int]) -> list[JSON]:
    out: list[JSON] = []
    for j, p in enumerate(parts):
        if isinstance(p, TextPart):
            out.append({"text": p.text})
        elif isinstance(p, ImagePart):
            out.append(_image(p, provider, f"{where}[{j}]"))
        elif isinstance(p, FilePart):
            out.append(_document(p, provider, f"{where}[{j}]", names))
        else:
            raise _unsupported(f"a {p.kind} part inside a tool result", provider, f"{where}[{j}]",
                               "tool results hold text, images and documents")
    return out or [{"text": ""}]


def _blocks(m: Message, i: int, provider: str, names: dict[str, int]) -> list[JSON]:
    blocks: list[JSON] = []
    for j, p in enumerate(m.parts):
        where = f"messages[{i}].content[{j}]"
        block: dict[str, JSON] | None = None
        if isinstance(p, TextPart):
            unmodelled = p.meta.get("anthropic_block") if p.meta else None
            if isinstance(unmodelled, dict):  # a server-tool block that only Anthropic's own API takes
                raise _unsupported(f"a {unmodelled.get('type', 'server tool')!r} block", provider, where,
                                   "Converse has no such block")
            block = {"text": p.text} if p.text else None  # Converse rejects blank text blocks
        elif isinstance(p, ImagePart):
            block = _image(p, provider, where)
        elif isinstance(p, FilePart):
            block = _document(p, provider, where, names)
        elif isinstance(p, AudioPart):
            fmt = p.format.lower()
            if fmt not in AUDIO_FORMATS:
                raise _unsupported(f"audio of format {p.format!r}", provider, where, "see Bedrock's AudioFormat")
            block = {"audio": {"format": fmt, "source": {"bytes": p.data}}}
        elif isinstance(p, ToolCallPart):
            block = {"toolUse": {"toolUseId": p.id, "name": p.name, "input": _tool_input(p.arguments, where)}}
        elif isinstance(p, ToolResultPart):
            result: dict[str, JSON] = {"toolUseId": p.tool_call_id,
                                       "content": _result_content(p.content, provider, f"{where}.content", names)}
            if p.is_error:  # only Anthropic's models read ``status``; "success" is the default, so it is not sent
                result["status"] = "error"
            block = {"toolResult": result}
        elif isinstance(p, ReasoningPart):
            if p.redacted is not None:
                block = {"reasoningContent": {"redactedContent": p.redacted}}
            elif p.signature is not None:
                block = {"reasoningContent": {"reasoningText": {"text": p.text, "signature": p.signature}}}
        if block is not None:
            blocks.append(block)
            point = _cache_point(p.meta)
            if point is not None:
                blocks.append(point)
    return blocks


def render_messages(messages: list[Message], provider: str) -> tuple[list[JSON], list[JSON]]:
    """The Converse ``system`` and ``messages`` lists."""
    system: list[JSON] = []
    out: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for i, m in enumerate(messages):
        if m.role is Role.SYSTEM:
            for p in m.parts:
                if isinstance(p, TextPart) and p.text:
                    system.append({"text": p.text})
                    point = _cache_point(p.meta)
                    if point is not None:
                        system.append(point)
            continue
        role = "assistant" if m.role is Role.ASSISTANT else "user"  # tool results travel in user messages
        blocks = _blocks(m, i, provider, names)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, list(out)


# --- request: the body ---------------------------------------------------------------------------------------


def _refuse_unsupported(req: ChatRequest, provider: str) -> None:
    if req.n is not None and req.n > 1:
        raise _unsupported("n > 1", provider, "n", "Converse returns one choice")
    if req.logprobs:
        raise _unsupported("logprobs", provider, "logprobs", "Converse returns no log probabilities")
    if req.top_logprobs:
        raise _unsupported("top_logprobs", provider, "top_logprobs", "Converse returns no log probabilities")
    if req.seed is not None:
        raise _unsupported("seed", provider, "seed", "Converse has no sampling seed")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise _unsupported(name, provider, name, "Converse has no penalties")
    if req.parallel_tool_calls is False:
        raise _unsupported("parallel_tool_calls: false", provider, "parallel_tool_calls",
                           "Converse cannot limit a reply to one tool call")
    if req.temperature is not None and req.temperature > 1:
        raise _unsupported("temperature above 1", provider, "temperature", "Bedrock takes temperatures from 0 to 1")


def _has_tool_blocks(messages: list[JSON]) -> bool:
    return any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])


def _tool_config(req: ChatRequest, messages: list[JSON], provider: str) -> dict[str, JSON] | None:
    if not req.tools:
        return None
    tc = req.tool_choice
    if tc is not None and tc.mode == "none":
        if _has_tool_blocks(messages):
            raise _unsupported("tool_choice 'none' in a conversation that holds tool calls", provider, "tool_choice",
                               "Converse has no 'none' choice and needs the tools declared once tools were used")
        return None
    tools: list[JSON] = []
    for i, t in enumerate(req.tools):
        if t.meta and "anthropic_server_tool" in t.meta:
            raise _unsupported(f"the server tool {t.name!r}", provider, f"tools[{i}]",
                               "Converse takes only tools that the caller runs")
        spec: dict[str, JSON] = {"name": t.name, "inputSchema": {
            "json": t.parameters if t.parameters is not None else {"type": "object", "properties": {}}}}
        if t.description:
            spec["description"] = t.description
        if t.strict:
            spec["strict"] = True
        tools.append({"toolSpec": spec})
        point = _cache_point(t.meta)
        if point is not None:
            tools.append(point)
    config: dict[str, JSON] = {"tools": tools}
    if tc is not None and tc.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif tc is not None and tc.mode == "tool":
        config["toolChoice"] = {"tool": {"name": tc.name or ""}}
    elif tc is not None:
        config["toolChoice"] = {"auto": {}}
    return config


def render_request(req: ChatRequest, *, provider: str) -> dict[str, JSON]:
    """The Converse (or ConverseStream: the bodies are the same) request body. The model id goes in the URL."""
    refuse_foreign_extras(req, provider, WIRE_BEDROCK_CONVERSE)
    _refuse_unsupported(req, provider)
    system, messages = render_messages(req.messages, provider)
    body: dict[str, JSON] = {"messages": messages}
    if system:
        body["system"] = system
    inference: dict[str, JSON] = {}
    if req.max_tokens is not None:
        inference["maxTokens"] = req.max_tokens
    if req.temperature is not None:
        inference["temperature"] = req.temperature
    if req.top_p is not None:
        inference["topP"] = req.top_p
    if req.stop:
        inference["stopSequences"] = list(req.stop)
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(req, messages, provider)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    extra: dict[str, JSON] = {}
    if req.top_k is not None:
        extra["top_k"] = req.top_k  # a model-specific field: Anthropic's and Mistral's models read ``top_k``
    if req.reasoning_budget:
        extra["thinking"] = {"type": "enabled", "budget_tokens": req.reasoning_budget}
    if extra:
        body["additionalModelRequestFields"] = extra
    output: dict[str, JSON] = {}
    if req.reasoning_effort is not None:
        if req.reasoning_effort not in _EFFORTS:
            raise _unsupported(f"reasoning_effort {req.reasoning_effort!r}", provider, "reasoning_effort",
                               "Bedrock's effort levels are " + ", ".join(sorted(_EFFORTS)))
        output["effort"] = req.reasoning_effort
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        raise _unsupported("response_format 'json_object'", provider, "response_format",
                           "Converse constrains output only by a JSON schema: use 'json_schema'")
    if rf is not None and rf.type == "json_schema":
        if rf.schema is None:
            raise InvalidRequest("response_format.json_schema.schema is required by Bedrock", param="response_format")
        js: dict[str, JSON] = {"schema": orjson.dumps(rf.schema).decode()}
        if rf.name:
            js["name"] = rf.name
        if rf.description:
            js["description"] = rf.description
        output["textFormat"] = {"type": "json_schema", "structure": {"jsonSchema": js}}
    if output:
        body["outputConfig"] = output
    return body


# --- replies -------------------------------------------------------------------------------------------------


def parse_usage(u: Any) -> Usage | None:
    """Bedrock counts cache reads and writes apart from ``inputTokens``; the neutral input count includes them."""
    if not isinstance(u, dict):
        return None
    read = int(u.get("cacheReadInputTokens") or 0)
    write = int(u.get("cacheWriteInputTokens") or 0)
    return Usage(input_tokens=int(u.get("inputTokens") or 0) + read + write,
                 output_tokens=int(u.get("outputTokens") or 0), cached_tokens=read, cache_write_tokens=write)


def finish_reason(value: Any) -> FinishReason:
    """Converse's ``stopReason``. The malformed-output reasons end the turn like ``end_turn`` does."""
    return FINISH_FROM_BEDROCK.get(str(value), FinishReason.STOP)


def _reasoning_part(rc: Any) -> ReasoningPart | None:
    if not isinstance(rc, dict):
        return None
    if rc.get("redactedContent") is not None:
        return ReasoningPart(redacted=str(rc["redactedContent"]))
    rt = rc.get("reasoningText")
    if isinstance(rt, dict):
        sig = rt.get("signature")
        return ReasoningPart(text=str(rt.get("text") or ""), signature=str(sig) if sig is not None else None)
    return None


def parse_response(data: dict[str, Any], *, id: str, model: str, created: int) -> ChatResponse:
    output = data.get("output")
    msg = output.get("message") if isinstance(output, dict) else None
    parts: list[Part] = []
    for block in (msg.get("content") if isinstance(msg, dict) else None) or []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            parts.append(TextPart(block["text"]))
        elif isinstance(block.get("toolUse"), dict):
            tu = block["toolUse"]
            parts.append(ToolCallPart(id=str(tu.get("toolUseId", "")), name=str(tu.get("name", "")),
                                      arguments=orjson.dumps(tu.get("input", {})).decode()))
        elif "reasoningContent" in block:
            rp = _reasoning_part(block["reasoningContent"])
            if rp is not None:
                parts.append(rp)
        elif isinstance(block.get("citationsContent"), dict):
            for c in block["citationsContent"].get("content") or []:
                if isinstance(c, dict) and isinstance(c.get("text"), str):
                    parts.append(TextPart(c["text"]))
    choice = Choice(index=0, message=Message(Role.ASSISTANT, parts),
                    finish_reason=finish_reason(data.get("stopReason")))
    return ChatResponse(id=id, model=model, created=created, choices=[choice], usage=parse_usage(data.get("usage")))


class StreamState:
    """Turns ConverseStream events, one at a time, into neutral stream events.

    Bedrock numbers content blocks (``contentBlockIndex``) across text, reasoning and tool use alike; the neutral
    model numbers tool calls among themselves, so the state maps one to the other.
    """

    __slots__ = ("_args", "_created", "_id", "_model", "_tools", "started", "stopped")

    def __init__(self, id: str, model: str, created: int) -> None:
        self._id, self._model, self._created = id, model, created
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool call index
        self._args: set[int] = set()  # tool calls that received input
        self.started = False
        self.stopped = False  # messageStop seen: the reply is complete (metadata may still follow)

    def feed(self, kind: str, data: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if not self.started:
            self.started = True
            events.append(StreamStart(id=self._id, model=self._model, created=self._created))
        block = data.get("contentBlockIndex")
        if kind == "contentBlockStart":
            start = data.get("start")
            tu = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(tu, dict) and isinstance(block, int):
                index = self._tools[block] = len(self._tools)
                events.append(ToolCallStart(index=index, id=str(tu.get("toolUseId", "")), name=str(tu.get("name", ""))))
        elif kind == "contentBlockDelta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                events.extend(self._delta(block, delta))
        elif kind == "contentBlockStop":
            if isinstance(block, int) and block in self._tools and self._tools[block] not in self._args:
                events.append(ToolCallDelta(index=self._tools[block], arguments="{}"))  # a call without input
        elif kind == "messageStop":
            self.stopped = True
            events.append(Finish(finish_reason(data.get("stopReason"))))
        elif kind == "metadata":
            usage = parse_usage(data.get("usage"))
            if usage is not None:
                events.append(UsageUpdate(usage))
        return events

    def _delta(self, block: Any, delta: dict[str, Any]) -> list[StreamEvent]:
        if isinstance(delta.get("text"), str):
            return [TextDelta(delta["text"])] if delta["text"] else []
        tu = delta.get("toolUse")
        if isinstance(tu, dict):
            index = self._tools.get(block) if isinstance(block, int) else None
            args = tu.get("input")
            if index is None or not isinstance(args, str) or not args:
                return []
            self._args.add(index)
            return [ToolCallDelta(index=index, arguments=args)]
        rc = delta.get("reasoningContent")
        if isinstance(rc, dict):
            if isinstance(rc.get("text"), str) and rc["text"]:
                return [ReasoningDelta(text=rc["text"])]
            if isinstance(rc.get("signature"), str):
                return [ReasoningDelta(signature=rc["signature"])]
            if rc.get("redactedContent") is not None:
                return [ReasoningDelta(redacted=str(rc["redactedContent"]))]
        return []
