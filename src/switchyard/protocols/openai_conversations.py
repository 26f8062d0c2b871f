"""OpenAI's Conversations API items (https://platform.openai.com/docs/api-reference/conversations) to and from
neutral messages.

Input items (``items.create``, ``conversations.create``): messages (string or typed content: ``input_text``,
``output_text``, ``input_image``, ``input_file``, ``refusal``), ``function_call``, ``function_call_output`` and
``reasoning``. A ``function_call`` right after an assistant message (or another call) joins that message, as a model
turn with tool calls is one neutral message. Output items render a stored message: a user, system or developer
message as one ``message`` item of ``input_text`` (and ``input_image``/``input_file``); an assistant message as its
``reasoning`` item (when it has text), its ``message`` of ``output_text``, then one ``function_call`` per call; a tool
result as a ``function_call_output``. A stored message that renders as several items gives the first its own id and
the others ``<id>_<n>``; an item id names its stored message (deleting one deletes that message).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from ..messages import (
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

MAX_ITEMS_PER_CALL = 20  # OpenAI: "You may add up to 20 items at a time"
_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM, "developer": Role.SYSTEM}


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_value")


def parse_items(items: Any, param: str = "items") -> list[Message]:
    if not isinstance(items, list):
        raise _bad("items must be an array of input items.", param)
    if len(items) > MAX_ITEMS_PER_CALL:
        raise _bad(f"At most {MAX_ITEMS_PER_CALL} items may be added at a time.", param)
    out: list[Message] = []
    for i, item in enumerate(items):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise _bad("An item must be an object.", where)
        typ = item.get("type", "message")
        if typ == "message":
            out.append(_message(item, where))
        elif typ == "function_call":
            for k in ("call_id", "name", "arguments"):
                if not isinstance(item.get(k), str):
                    raise _bad(f"A function_call item needs a string {k}.", f"{where}.{k}")
            part = ToolCallPart(item["call_id"], item["name"], item["arguments"])
            if out and out[-1].role == Role.ASSISTANT:
                out[-1].parts.append(part)
            else:
                out.append(Message(Role.ASSISTANT, [part]))
        elif typ == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _bad("A function_call_output item needs a string call_id.", f"{where}.call_id")
            output = item.get("output")
            content: list[Part] = (_content(output, f"{where}.output") if isinstance(output, list)
                                   else [TextPart(str(output or ""))])
            out.append(Message(Role.TOOL, [ToolResultPart(item["call_id"], content)]))
        elif typ == "reasoning":
            summary = item.get("summary") or []
            text = "".join(s.get("text", "") for s in summary if isinstance(s, dict))
            out.append(Message(Role.ASSISTANT, [ReasoningPart(text)]))
        else:
            raise _bad(f"Item type {str(typ)[:40]!r} is not supported here (message, function_call, "
                       f"function_call_output, reasoning).", f"{where}.type")
    return out


def _message(item: dict[str, Any], where: str) -> Message:
    role = _ROLES.get(item.get("role", ""))
    if role is None:
        raise _bad("A message's role must be user, assistant, system or developer.", f"{where}.role")
    content = item.get("content")
    parts: list[Part] = [TextPart(content)] if isinstance(content, str) else _content(content, f"{where}.content")
    return Message(role, parts)


def _content(content: Any, where: str) -> list[Part]:
    if not isinstance(content, list):
        raise _bad("content must be a string or an array of content parts.", where)
    parts: list[Part] = []
    for j, c in enumerate(content):
        typ = c.get("type") if isinstance(c, dict) else None
        if typ in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            parts.append(TextPart(str(c.get("text", ""))))
        elif typ == "refusal":
            parts.append(TextPart(str(c.get("refusal", ""))))
        elif typ == "input_image":
            url = c.get("image_url")
            if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                head, data = url.split(";base64,", 1)
                parts.append(ImagePart(data=data, media_type=head[5:], detail=c.get("detail")))
            else:
                parts.append(ImagePart(url=url, detail=c.get("detail"),
                                       meta={"file_id": c["file_id"]} if c.get("file_id") else None))
        elif typ == "input_file":
            data = c.get("file_data")
            media = None
            if isinstance(data, str) and data.startswith("data:") and ";base64," in data:
                head, data = data.split(";base64,", 1)
                media = head[5:]
            parts.append(FilePart(data=data, url=c.get("file_url"), file_id=c.get("file_id"), media_type=media,
                                  filename=c.get("filename")))
        else:
            raise _bad(f"Content part type {str(typ)[:40]!r} is not supported.", f"{where}[{j}].type")
    return parts


def render_items(item_id: str, m: Message) -> list[dict[str, Any]]:
    """The output items of one stored message (see the module's docstring for the ids)."""
    out: list[dict[str, Any]] = []

    def next_id() -> str:
        return item_id if not out else f"{item_id}_{len(out)}"

    if m.role == Role.ASSISTANT:
        reasoning = "".join(p.text for p in m.parts if isinstance(p, ReasoningPart))
        if reasoning:
            out.append({"id": next_id(), "type": "reasoning", "summary": [{"type": "summary_text",
                                                                           "text": reasoning}]})
        texts = [p for p in m.parts if isinstance(p, TextPart)]
        if texts:
            out.append({"id": next_id(), "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": p.text, "annotations": [], "logprobs": []}
                                    for p in texts]})
        for p in m.parts:
            if isinstance(p, ToolCallPart):
                out.append({"id": next_id(), "type": "function_call", "call_id": p.id, "name": p.name,
                            "arguments": p.arguments, "status": "completed"})
        return out
    results = [p for p in m.parts if isinstance(p, ToolResultPart)]
    for r in results:
        out.append({"id": next_id(), "type": "function_call_output", "call_id": r.tool_call_id,
                    "output": "".join(c.text for c in r.content if isinstance(c, TextPart)), "status": "completed"})
    rest = [p for p in m.parts if not isinstance(p, ToolResultPart)]
    if rest or not results:
        role = "system" if m.role == Role.SYSTEM else "user"
        out.append({"id": next_id(), "type": "message", "role": role, "status": "completed",
                    "content": [_input_part(p) for p in rest]})
    return out


def _input_part(p: Part) -> dict[str, Any]:
    if isinstance(p, ImagePart):
        url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
        return {"type": "input_image", "image_url": url, "detail": p.detail or "auto",
                "file_id": (p.meta or {}).get("file_id")}
    if isinstance(p, FilePart):
        return {"type": "input_file", "file_id": p.file_id, "file_url": p.url, "filename": p.filename,
                "file_data": f"data:{p.media_type or 'application/octet-stream'};base64,{p.data}" if p.data else None}
    return {"type": "input_text", "text": getattr(p, "text", "")}


def stored_id(item_id: str) -> str:
    """The stored message an item id names (``msg_x_2`` → ``msg_x``)."""
    head, sep, tail = item_id.rpartition("_")
    return head if sep and tail.isdigit() and head.count("_") >= 1 else item_id
