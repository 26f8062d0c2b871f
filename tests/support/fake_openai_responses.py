"""OpenAI's Responses API (``POST /v1/responses``) for :class:`~tests.support.fake_openai.FakeOpenAI`, per
https://platform.openai.com/docs/api-reference/responses and its streaming events.

Behaviour, as the fake's chat completions: the reply is ``"Echo: <text of the last user message>"`` (or the fake's
``reply``); with function tools and ``tool_choice`` not ``none`` it calls each of them (one if
``parallel_tool_calls`` is false) with a sample of its parameters, unless the last input item is a
``function_call_output``, which it answers with ``"Echo: <output>"``; ``text.format`` json_schema gets a sample of
the schema. Streams send the documented event sequence, each with ``event:`` and a ``sequence_number``. Every
request is recorded by the fake (``requests``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

JSONObj = dict[str, Any]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _error(status: int, message: str, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return Response(orjson.dumps(body), status, media_type="application/json")


def _output(fake: Any, body: JSONObj) -> list[JSONObj] | Response:
    from .fake_openai import sample_from_schema

    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        return _error(400, "Invalid 'input': expected a string or a non-empty array.", "input")
    last = items[-1] if isinstance(items[-1], dict) else {}
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if tools and body.get("tool_choice") != "none" and last.get("type") != "function_call_output":
        if body.get("parallel_tool_calls") is False:
            tools = tools[:1]
        return [{"type": "function_call", "id": f"fc_{uuid.uuid4().hex[:24]}", "status": "completed",
                 "call_id": f"call_{uuid.uuid4().hex[:24]}", "name": t["name"],
                 "arguments": json.dumps(sample_from_schema(t.get("parameters") or {}))} for t in tools]
    if last.get("type") == "function_call_output":
        user = _text(last.get("output"))
    else:
        users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
        user = _text(users[-1].get("content")) if users else ""
    text = fake.reply if fake.reply is not None else f"Echo: {user}"
    fmt = (body.get("text") or {}).get("format") or {}
    if fake.reply is None and fmt.get("type") == "json_schema":
        text = json.dumps(sample_from_schema(fmt.get("schema") or {}))
    return [{"type": "message", "id": f"msg_{uuid.uuid4().hex[:24]}", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}]


def responses(fake: Any, body: JSONObj) -> Response:
    if not body.get("model"):
        return _error(400, "Missing required parameter: 'model'.", "model")
    output = _output(fake, body)
    if isinstance(output, Response):
        return output
    words = sum(len(_text(i.get("content") or i.get("output") or "").split()) + 1
                for i in (body["input"] if isinstance(body["input"], list) else [{"content": body["input"]}])
                if isinstance(i, dict))
    produced = sum(len((_text(o.get("content")) or o.get("arguments", "")).split()) for o in output)
    resp: JSONObj = {
        "id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()), "status": "completed",
        "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"), "model": body["model"], "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True), "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "top_p": 1.0, "truncation": "disabled", "user": None, "metadata": {},
        "usage": {"input_tokens": words, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": produced, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": words + produced},
    }
    if not body.get("stream"):
        return Response(orjson.dumps(resp), 200, media_type="application/json")
    return StreamingResponse(_sse(_events(resp)), 200, {"cache-control": "no-cache"}, "text/event-stream")


def _events(resp: JSONObj) -> list[JSONObj]:
    """The documented event sequence of ``resp``, each event's ``sequence_number`` in order."""
    start = {**resp, "status": "in_progress", "output": [], "usage": None}
    out: list[JSONObj] = [{"type": "response.created", "response": start},
                          {"type": "response.in_progress", "response": start}]
    for idx, item in enumerate(resp["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            out.append({"type": "response.output_item.added", "output_index": idx,
                        "item": {**item, "status": "in_progress", "content": []}})
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            where = {"item_id": item["id"], "output_index": idx, "content_index": 0}
            out.append({"type": "response.content_part.added", **where, "part": empty})
            for k, word in enumerate(text.split(" ")):
                piece = word if k == 0 else " " + word
                out.append({"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []})
            out.append({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
            out.append({"type": "response.content_part.done", **where, "part": item["content"][0]})
        else:
            out.append({"type": "response.output_item.added", "output_index": idx,
                        "item": {**item, "status": "in_progress", "arguments": ""}})
            where = {"item_id": item["id"], "output_index": idx}
            out.append({"type": "response.function_call_arguments.delta", **where, "delta": item["arguments"]})
            out.append({"type": "response.function_call_arguments.done", **where, "arguments": item["arguments"]})
        out.append({"type": "response.output_item.done", "output_index": idx, "item": item})
    out.append({"type": "response.completed", "response": resp})
    for seq, ev in enumerate(out):
        ev["sequence_number"] = seq
    return out


async def _sse(events: list[JSONObj]) -> AsyncIterator[bytes]:
    for ev in events:
        yield b"event: " + ev["type"].encode() + b"\ndata: " + orjson.dumps(ev) + b"\n\n"
