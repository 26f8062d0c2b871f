"""Outbound side of the inbound Responses API: a neutral reply as a ``response`` object, and a neutral stream as
the typed event sequence (``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` ... ``response.completed``), each event with its
``sequence_number``. Shapes: ``openai.types.responses`` (``Response``, ``ResponseStreamEvent``).

A reply from a same-wire upstream (``api: responses``) is sent back as the upstream wrote it, but for
``previous_response_id`` and ``conversation`` (the gateway resolved the history itself, so the upstream never saw
them).
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from typing import Any

import orjson

from ..errors import SwitchyardError
from ..messages import (
    JSON,
    WIRE_OPENAI_RESPONSES,
    ChatResponse,
    Chunk,
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningPart,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    Usage,
    UsageUpdate,
    merge_usage,
)
from .openai_responses import ResponsesCall


class _Ids:
    """Ids of responses and their items: 20 random hex digits drawn once per process (again in a forked child) and a
    counter, as unique as random ids at the cost of an increment. Knowing an id gives nothing: every read of a stored
    response is by its id and its owner's key."""

    prefix = secrets.token_hex(10)
    counter = itertools.count(1)

    @classmethod
    def reseed(cls) -> None:
        cls.prefix = secrets.token_hex(10)
        cls.counter = itertools.count(1)


os.register_at_fork(after_in_child=_Ids.reseed)


def new_id(prefix: str) -> str:
    return f"{prefix}_{_Ids.prefix}{next(_Ids.counter):012x}"


def usage_json(u: Usage | None) -> dict[str, JSON] | None:
    if u is None:
        return None
    return {"input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_write_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.input_tokens + u.output_tokens}


def skeleton(call: ResponsesCall, rid: str, model: str, created: float) -> dict[str, JSON]:
    """The response object before its output: what the request asked for, echoed as OpenAI does."""
    b = call.body
    text = b.get("text") if isinstance(b.get("text"), dict) else None
    reasoning = b.get("reasoning") if isinstance(b.get("reasoning"), dict) else None
    return {
        "id": rid, "object": "response", "created_at": created, "status": "in_progress", "error": None,
        "incomplete_details": None, "instructions": b.get("instructions"),
        "max_output_tokens": b.get("max_output_tokens"), "model": model, "output": [],
        "parallel_tool_calls": b.get("parallel_tool_calls", True),
        "previous_response_id": call.previous_response_id, "conversation": call.conversation,
        "reasoning": {"effort": (reasoning or {}).get("effort"), "summary": (reasoning or {}).get("summary")},
        "store": call.store, "temperature": b.get("temperature", 1.0),
        "text": text if text and "format" in text else {**(text or {}), "format": {"type": "text"}},
        "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [], "top_p": b.get("top_p", 1.0),
        "truncation": b.get("truncation", "disabled"), "usage": None, "user": b.get("user"),
        "metadata": b.get("metadata") or {},
    }


def _finish_status(obj: dict[str, JSON], reason: FinishReason | None) -> None:
    if reason is FinishReason.LENGTH:
        obj["status"], obj["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    elif reason is FinishReason.CONTENT_FILTER:
        obj["status"], obj["incomplete_details"] = "incomplete", {"reason": "content_filter"}
    else:
        obj["status"] = "completed"


def _message_item(text: str, status: str = "completed", mid: str | None = None) -> dict[str, JSON]:
    return {"id": mid or new_id("msg"), "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def _reasoning_item(text: str, part: ReasoningPart | None = None, rid: str | None = None) -> dict[str, JSON]:
    item: dict[str, JSON] = {"id": rid or new_id("rs"), "type": "reasoning", "summary": []}
    if text:
        item["content"] = [{"type": "reasoning_text", "text": text}]
    kept = (part.meta or {}).get("openai_reasoning") if part is not None else None
    if isinstance(kept, dict) and kept.get("encrypted_content"):
        item["encrypted_content"] = kept["encrypted_content"]
    return item


def response_object(resp: ChatResponse, call: ResponsesCall, rid: str | None = None) -> dict[str, JSON]:
    """The ``response`` object of a whole reply (its id: ``rid``, or a new one)."""
    if resp.wire == WIRE_OPENAI_RESPONSES and resp.raw is not None:
        obj = dict(resp.raw)
        obj["previous_response_id"] = call.previous_response_id
        if call.conversation is not None:
            obj["conversation"] = call.conversation
        return obj
    obj = skeleton(call, rid or new_id("resp"), resp.model, float(resp.created or int(time.time())))
    choice = resp.choices[0] if resp.choices else None
    if choice is None:
        obj["status"] = "completed"
        obj["usage"] = usage_json(resp.usage)
        return obj
    output: list[JSON] = []  # reasoning first, then the message, then the calls
    text: list[str] = []
    calls: list[JSON] = []
    for p in choice.message.parts:
        kind = type(p)
        if kind is TextPart:
            assert isinstance(p, TextPart)
            if p.meta and "openai_item" in p.meta:  # a built-in tool's call, from a Responses upstream
                calls.append(p.meta["openai_item"])
            else:
                text.append(p.text)
        elif kind is ToolCallPart:
            assert isinstance(p, ToolCallPart)
            calls.append({"id": new_id("fc"), "type": "function_call", "status": "completed", "call_id": p.id,
                          "name": p.name, "arguments": p.arguments})
        elif kind is ReasoningPart:
            assert isinstance(p, ReasoningPart)
            if p.text or (p.meta and "openai_reasoning" in p.meta):
                output.append(_reasoning_item(p.text, p))
    if text or choice.refusal:
        msg = _message_item("".join(text))
        if choice.refusal and not text:
            msg["content"] = [{"type": "refusal", "refusal": choice.refusal}]
        output.append(msg)
    output.extend(calls)
    obj["output"] = output
    _finish_status(obj, choice.finish_reason)
    obj["usage"] = usage_json(resp.usage)
    return obj


def render_response(obj: dict[str, JSON]) -> bytes:
    return orjson.dumps(obj)


def _event(kind: str, payload: dict[str, JSON]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class StreamRenderer:
    """Neutral chunks as Responses stream events, for one response. ``final`` is the finished response object
    (for storage) once the stream has ended; ``fail`` ends a stream broken after its start."""

    __slots__ = ("_call", "_created", "_items", "_open", "_reason", "_seq", "_started", "_text", "_tools",
                 "_usage", "final", "obj")

    def __init__(self, call: ResponsesCall, rid: str) -> None:
        self._call = call
        self._seq = 0
        self._started = False
        self._open: dict[str, Any] | None = None  # the text or reasoning item being written
        self._tools: dict[int, dict[str, Any]] = {}  # neutral tool index -> its item
        self._items: list[dict[str, Any]] = []  # every output item, in output order
        self._usage = Usage()
        self._reason: FinishReason | None = None
        self._text: list[str] = []
        self._created = time.time()
        self.obj = skeleton(call, rid, "", float(int(self._created)))
        self.final: dict[str, JSON] | None = None

    def _emit(self, kind: str, payload: dict[str, JSON]) -> bytes:
        payload["type"] = kind
        payload["sequence_number"] = self._seq
        self._seq += 1
        return _event(kind, payload)

    def _start(self, model: str) -> bytes:
        self._started = True
        self.obj["model"] = model
        snap = orjson.dumps(self.obj)  # one encoding for both events
        seq = self._seq
        self._seq = seq + 2
        return (b'event: response.created\ndata: {"type":"response.created","sequence_number":%d,"response":%b}\n\n'
                b'event: response.in_progress\ndata: {"type":"response.in_progress","sequence_number":%d,'
                b'"response":%b}\n\n' % (seq, snap, seq + 1, snap))

    def _add(self, item: dict[str, Any]) -> bytes:
        item["_index"] = len(self._items)
        self._items.append(item)
        return self._emit("response.output_item.added", {"output_index": item["_index"], "item": _public(item)})

    def _close_open(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        idx, iid, text = item["_index"], item["id"], "".join(item.pop("_buf"))
        out = bytearray()
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            out += self._emit("response.output_text.done", {"item_id": iid, "output_index": idx, "content_index": 0,
                                                            "text": text, "logprobs": []})
            out += self._emit("response.content_part.done", {"item_id": iid, "output_index": idx,
                                                             "content_index": 0, "part": part})
            item["content"], item["status"] = [part], "completed"
        else:
            part = {"type": "reasoning_text", "text": text}
            out += self._emit("response.reasoning_text.done", {"item_id": iid, "output_index": idx,
                                                               "content_index": 0, "text": text})
            out += self._emit("response.content_part.done", {"item_id": iid, "output_index": idx,
                                                             "content_index": 0, "part": part})
            item["content"] = [part]
        item["_done"] = True
        out += self._emit("response.output_item.done", {"output_index": idx, "item": _public(item)})
        return bytes(out)

    def _open_item(self, kind: str) -> bytes:
        if self._open is not None and self._open["type"] == kind:
            return b""
        out = self._close_open()
        if kind == "message":
            item: dict[str, Any] = {"id": new_id("msg"), "type": "message", "status": "in_progress",
                                    "role": "assistant", "content": []}
            part: dict[str, JSON] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            item = {"id": new_id("rs"), "type": "reasoning", "summary": []}
            part = {"type": "reasoning_text", "text": ""}
        item["_buf"] = []
        out += self._add(item)
        out += self._emit("response.content_part.added", {"item_id": item["id"], "output_index": item["_index"],
                                                          "content_index": 0, "part": part})
        self._open = item
        return out

    def _close_tool(self, item: dict[str, Any]) -> bytes:
        args = "".join(item.pop("_buf"))
        item["arguments"], item["status"], item["_done"] = args, "completed", True
        idx = item["_index"]
        return (self._emit("response.function_call_arguments.done", {"item_id": item["id"], "output_index": idx,
                                                                     "name": item["name"], "arguments": args})
                + self._emit("response.output_item.done", {"output_index": idx, "item": _public(item)}))

    def feed(self, chunk: Chunk) -> bytes:
        events = chunk.events
        if len(events) == 1:  # the common case, one more piece of text: one event, from a template
            ev = events[0]
            item = self._open
            if type(ev) is TextDelta and item is not None and item["type"] == "message" and ev.text and not ev.choice:
                item["_buf"].append(ev.text)
                seq = self._seq
                self._seq = seq + 1
                return b"".join((item["_delta"], orjson.dumps(ev.text), b',"sequence_number":%d}\n\n' % seq))
        out = bytearray()
        for ev in events:
            if isinstance(ev, TextDelta):
                if ev.choice or not ev.text:
                    continue
                item = self._open
                if item is None or item["type"] != "message":
                    out += self._ensure_started() + self._open_item("message")
                    item = self._open
                    assert item is not None
                    item["_delta"] = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                                      b'"item_id":"' + item["id"].encode() + b'","output_index":'
                                      + str(item["_index"]).encode() + b',"content_index":0,"logprobs":[],"delta":')
                item["_buf"].append(ev.text)
                out += item["_delta"]
                out += orjson.dumps(ev.text)
                out += b',"sequence_number":%d}\n\n' % self._seq
                self._seq += 1
            elif isinstance(ev, ToolCallStart):
                if ev.choice:
                    continue
                out += self._ensure_started() + self._close_open()
                item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "call_id": ev.id,
                        "name": ev.name, "arguments": "", "_buf": []}
                self._tools[ev.index] = item
                out += self._add(item)
            elif isinstance(ev, ToolCallDelta):
                tool = self._tools.get(ev.index)
                if ev.choice or tool is None or tool.get("_done"):
                    continue
                tool["_buf"].append(ev.arguments)
                out += self._emit("response.function_call_arguments.delta", {"item_id": tool["id"],
                                                                             "output_index": tool["_index"],
                                                                             "delta": ev.arguments})
            elif isinstance(ev, ReasoningDelta):
                if ev.choice or not ev.text:
                    continue
                out += self._ensure_started() + self._open_item("reasoning")
                assert self._open is not None
                self._open["_buf"].append(ev.text)
                out += self._emit("response.reasoning_text.delta", {"item_id": self._open["id"],
                                                                    "output_index": self._open["_index"],
                                                                    "content_index": 0, "delta": ev.text})
            elif isinstance(ev, Finish):
                if not ev.choice:
                    self._reason = ev.reason
            elif isinstance(ev, UsageUpdate):
                merge_usage(self._usage, ev.usage)
            elif isinstance(ev, StreamStart):
                if ev.usage is not None:
                    merge_usage(self._usage, ev.usage)
                if not self._started:
                    out += self._start(ev.model)
        return bytes(out)

    def _ensure_started(self) -> bytes:
        return b"" if self._started else self._start(str(self.obj.get("model") or ""))

    def _close_all(self) -> bytes:
        out = self._close_open()
        for item in self._items:
            if item["type"] == "function_call" and not item.get("_done"):
                out += self._close_tool(item)
        return out

    def end(self) -> bytes:
        out = self._ensure_started() + self._close_all()
        obj = dict(self.obj)
        obj["output"] = [_public(i) for i in self._items]
        _finish_status(obj, self._reason)
        obj["usage"] = usage_json(self._usage)
        self.final = obj
        kind = "response.incomplete" if obj["status"] == "incomplete" else "response.completed"
        return out + self._emit(kind, {"response": obj})

    def fail(self, exc: SwitchyardError) -> bytes:
        out = self._ensure_started()
        obj = dict(self.obj)
        obj["output"] = [_public(i) for i in self._items if i.get("_done")]
        obj["status"] = "failed"
        obj["error"] = {"code": "server_error", "message": exc.message}
        obj["usage"] = usage_json(self._usage)
        return (out + self._emit("error", {"code": exc.code or exc.kind, "message": exc.message, "param": exc.param})
                + self._emit("response.failed", {"response": obj}))


_PRIVATE = frozenset({"_index", "_buf", "_done", "_delta"})


def _public(item: dict[str, Any]) -> dict[str, JSON]:  # without the renderer's own keys
    return {k: v for k, v in item.items() if k not in _PRIVATE}


class PassthroughStream:
    """A same-wire upstream's own events, relayed as they came; ``final`` is its finished response object."""

    __slots__ = ("_call", "final")

    def __init__(self, call: ResponsesCall) -> None:
        self._call = call
        self.final: dict[str, JSON] | None = None

    def feed(self, raw: dict[str, Any]) -> bytes:
        kind = str(raw.get("type", "message"))
        resp = raw.get("response")
        if isinstance(resp, dict) and "previous_response_id" in resp:
            resp = dict(resp)
            resp["previous_response_id"] = self._call.previous_response_id
            if self._call.conversation is not None:
                resp["conversation"] = self._call.conversation
            raw = {**raw, "response": resp}
            if kind in ("response.completed", "response.incomplete"):
                self.final = resp
        return _event(kind, raw)
