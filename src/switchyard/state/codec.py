"""Neutral messages to and from the JSON that the conversation store keeps, and the provider view of a history.

A stored message is the neutral :class:`~switchyard.messages.Message` (roles, parts, ``meta``), never a wire format:
a conversation begun on Anthropic continues on OpenAI or Gemini. A message the model wrote carries its *origin*
(the provider type that produced it: ``anthropic``, ``openai``, ``gemini``, ...). Reasoning signatures and part
``meta`` (Gemini thought signatures, provider cache hints) mean something only to that provider: :func:`for_provider`
keeps them for a deployment of the same provider type and drops them cleanly (the reasoning part, the meta) for any
other. Tool call ids are kept exactly as they were issued, so a tool result always names its call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..messages import (
    AudioPart,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

JSONObj = dict[str, Any]


def part_to_json(p: Part) -> JSONObj:
    d: JSONObj
    if isinstance(p, TextPart):
        d = {"k": "text", "text": p.text}
    elif isinstance(p, ToolCallPart):
        d = {"k": "tool_call", "id": p.id, "name": p.name, "arguments": p.arguments}
    elif isinstance(p, ToolResultPart):
        d = {"k": "tool_result", "tool_call_id": p.tool_call_id, "content": [part_to_json(c) for c in p.content]}
        if p.is_error:
            d["is_error"] = True
    elif isinstance(p, ReasoningPart):
        d = {"k": "reasoning", "text": p.text}
        if p.signature is not None:
            d["signature"] = p.signature
        if p.redacted is not None:
            d["redacted"] = p.redacted
    elif isinstance(p, ImagePart):
        d = {"k": "image", "url": p.url, "data": p.data, "media_type": p.media_type, "detail": p.detail}
    elif isinstance(p, FilePart):
        d = {"k": "file", "data": p.data, "url": p.url, "file_id": p.file_id, "media_type": p.media_type,
             "filename": p.filename}
    else:
        d = {"k": "audio", "data": p.data, "format": p.format}
    if p.meta:
        d["meta"] = p.meta
    return d


def part_from_json(d: JSONObj) -> Part:
    k, meta = d["k"], d.get("meta")
    if k == "text":
        return TextPart(d["text"], meta)
    if k == "tool_call":
        return ToolCallPart(d["id"], d["name"], d["arguments"], meta)
    if k == "tool_result":
        return ToolResultPart(d["tool_call_id"], [part_from_json(c) for c in d.get("content") or ()],
                              bool(d.get("is_error")), meta)
    if k == "reasoning":
        return ReasoningPart(d.get("text") or "", d.get("signature"), d.get("redacted"), meta)
    if k == "image":
        return ImagePart(d.get("url"), d.get("data"), d.get("media_type"), d.get("detail"), meta)
    if k == "file":
        return FilePart(d.get("data"), d.get("url"), d.get("file_id"), d.get("media_type"), d.get("filename"), meta)
    if k == "audio":
        return AudioPart(d["data"], d["format"], meta)
    raise ValueError(f"unknown stored part kind {k!r}")


def message_to_json(m: Message) -> JSONObj:
    d: JSONObj = {"role": m.role.value, "parts": [part_to_json(p) for p in m.parts]}
    if m.name is not None:
        d["name"] = m.name
    if m.meta:
        d["meta"] = m.meta
    return d


_ROLES = {r.value: r for r in Role}  # a dict lookup: Role(value) costs a microsecond, on every stored message


def message_from_json(d: JSONObj) -> Message:
    return Message(_ROLES[d["role"]], [part_from_json(p) for p in d["parts"]], d.get("name"), d.get("meta"))


def for_provider(messages: Sequence[Message], origins: Sequence[str | None], kind: str | None) -> list[Message]:
    """The history as a deployment of provider type ``kind`` gets it: a message from another provider (or when the
    provider is not known: ``kind`` None) loses its reasoning parts and every provider ``meta``; one from the same
    provider is kept whole. Messages without an origin (the caller's) are kept as they are."""
    out: list[Message] = []
    for m, origin in zip(messages, origins, strict=True):
        if origin is None or origin == kind or not _has_provider_data(m):
            out.append(m)
            continue
        parts: list[Part] = []
        for p in m.parts:
            if isinstance(p, ReasoningPart):
                continue
            if p.meta:
                p = _without_meta(p)
            parts.append(p)
        if parts:
            out.append(Message(m.role, parts, m.name, None))
    return out


def _has_provider_data(m: Message) -> bool:
    return bool(m.meta) or any(isinstance(p, ReasoningPart) or p.meta for p in m.parts)


def _without_meta(p: Part) -> Part:
    return part_from_json({k: v for k, v in part_to_json(p).items() if k != "meta"})
