"""Neutral stream chunks to the Anthropic Messages server-sent event sequence.

Wire format: https://docs.anthropic.com/en/api/messages-streaming (event flow, delta types, the ``error`` event),
checked against the ``anthropic`` SDK's ``types/raw_message_stream_event.py``, ``raw_content_block_*_event.py``,
``raw_message_delta_event.py`` and the accumulator in ``lib/streaming/_messages.py``. Every frame is
``event: <type>\\ndata: <json>\\n\\n``, and a stream runs::

    message_start, ping,
    (content_block_start, content_block_delta*, content_block_stop)*,
    message_delta, message_stop

Blocks are numbered from 0 and never overlap: a block is closed before the next one opens. Neutral events map as
ReasoningDelta → a ``thinking`` block (``thinking_delta``, then ``signature_delta``) or, for redacted data, a
whole ``redacted_thinking`` block; TextDelta → a ``text`` block (``text_delta``); ToolCallStart / ToolCallDelta →
a ``tool_use`` block (``input_json_delta`` with ``partial_json``). Only choice 0 is rendered (Anthropic has no
``n``). A provider that streams several tool calls at once (their argument deltas interleaved) has the first one
streamed live and the others buffered until the tool calls end, each then sent whole, so blocks never interleave.
``stop_reason`` and the final usage go out in ``message_delta``, once the upstream stream has ended, since usage
often comes after the finish reason.

Raw pass-through convention: a Chunk whose ``wire`` is :data:`~switchyard.messages.WIRE_ANTHROPIC_MESSAGES` and
whose ``raw`` is ``{"event": <the SSE event name>, "data": <the decoded JSON data object>}`` is one upstream
Anthropic SSE frame; it is written back as that same frame. Once the first chunk of a stream passes through this
way, the renderer adds nothing of its own (the upstream sends its own ``message_start`` ... ``message_stop``) and
chunks without ``raw`` are not rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import orjson

from ..messages import (
    JSON,
    WIRE_ANTHROPIC_MESSAGES,
    Chunk,
    Finish,
    FinishReason,
    ReasoningDelta,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageUpdate,
    merge_usage,
)
from ..sse import encode
from .anthropic_messages import message_id, stop_reason, usage_json

BlockKind = Literal["text", "thinking", "tool_use"]


@dataclass(slots=True)
class _Tool:
    id: str
    name: str
    block: int | None = None  # its content block index, once opened
    pending: list[str] = field(default_factory=list)  # argument text held back while another block is open
    closed: bool = False


class StreamRenderer:
    """Turns the neutral chunks of one response into Anthropic SSE frames: ``feed`` each chunk, then ``end``."""

    __slots__ = ("_block", "_id", "_kind", "_model", "_next", "_passthrough", "_queue", "_reason", "_signed",
                 "_started", "_stop_sequence", "_tool", "_tools", "_usage")

    def __init__(self, model: str = "") -> None:
        self._model = model
        self._id = ""
        self._started = False
        self._passthrough = False
        self._next = 0  # index of the next content block
        self._block: int | None = None  # index of the open block
        self._kind: BlockKind | None = None
        self._signed = False  # the open thinking block already has its signature
        self._tool: int | None = None  # neutral index of the tool call streaming in the open block
        self._tools: dict[int, _Tool] = {}
        self._queue: list[int] = []  # tool calls started while another one streams, in order
        self._usage: Usage | None = None
        self._reason: FinishReason | None = None
        self._stop_sequence: str | None = None

    # --- frames --------------------------------------------------------------------------------------------

    @staticmethod
    def _frame(event: str, data: dict[str, JSON]) -> bytes:
        return encode(orjson.dumps({"type": event, **data}), event)

    def _start(self, out: bytearray, ev: StreamStart | None) -> None:
        self._started = True
        if ev is not None:
            self._id, self._model = ev.id, ev.model or self._model
            if ev.usage is not None:
                self._usage = Usage()
                merge_usage(self._usage, ev.usage)
        message: dict[str, JSON] = {
            "id": message_id(self._id), "type": "message", "role": "assistant", "model": self._model,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage_json(self._usage),
        }
        out += self._frame("message_start", {"message": message})
        out += self._frame("ping", {})

    def _open(self, out: bytearray, kind: BlockKind, block: dict[str, JSON]) -> int:
        self._close(out)
        index = self._next
        self._next += 1
        self._block, self._kind, self._signed = index, kind, False
        out += self._frame("content_block_start", {"index": index, "content_block": block})
        return index

    def _delta(self, out: bytearray, index: int, delta: dict[str, JSON]) -> None:
        out += self._frame("content_block_delta", {"index": index, "delta": delta})

    def _close(self, out: bytearray) -> None:
        if self._block is None:
            return
        out += self._frame("content_block_stop", {"index": self._block})
        if self._tool is not None:
            self._tools[self._tool].closed = True
        self._block, self._kind, self._tool = None, None, None

    def _end_tools(self, out: bytearray) -> None:
        """Close the streaming tool call, then send each held-back one whole."""
        if self._kind == "tool_use":
            self._close(out)
        while self._queue:
            tool = self._tools[self._queue.pop(0)]
            tool.block = self._open(out, "tool_use", {"type": "tool_use", "id": tool.id, "name": tool.name,
                                                      "input": {}})
            if tool.pending:
                self._delta(out, tool.block, {"type": "input_json_delta", "partial_json": "".join(tool.pending)})
                tool.pending.clear()
            self._close(out)
            tool.closed = True

    # --- events --------------------------------------------------------------------------------------------

    def _text(self, out: bytearray, text: str) -> None:
        if not text:
            return
        self._end_tools(out)
        if self._kind != "text":
            self._open(out, "text", {"type": "text", "text": ""})
        assert self._block is not None
        self._delta(out, self._block, {"type": "text_delta", "text": text})

    def _reasoning(self, out: bytearray, ev: ReasoningDelta) -> None:
        self._end_tools(out)
        if ev.redacted is not None:
            self._open(out, "thinking", {"type": "redacted_thinking", "data": ev.redacted})
            self._close(out)
        if ev.text:
            if self._kind != "thinking" or self._signed:
                self._open(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            assert self._block is not None
            self._delta(out, self._block, {"type": "thinking_delta", "thinking": ev.text})
        if ev.signature:
            if self._kind != "thinking" or self._signed:
                self._open(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            assert self._block is not None
            self._delta(out, self._block, {"type": "signature_delta", "signature": ev.signature})
            self._signed = True

    def _tool_start(self, out: bytearray, ev: ToolCallStart) -> None:
        if ev.index in self._tools:
            return  # a repeated start: the call is already known
        tool = _Tool(ev.id, ev.name)
        self._tools[ev.index] = tool
        if self._kind == "tool_use":
            self._queue.append(ev.index)  # another call streams: hold this one back
            return
        self._end_tools(out)
        tool.block = self._open(out, "tool_use", {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}})
        self._tool = ev.index

    def _tool_delta(self, out: bytearray, ev: ToolCallDelta) -> None:
        if not ev.arguments:
            return
        tool = self._tools.get(ev.index)
        if tool is None:  # arguments without a start: open an anonymous call rather than lose them
            self._tool_start(out, ToolCallStart(index=ev.index, id=f"toolu_{ev.index}", name=""))
            tool = self._tools[ev.index]
        if ev.index == self._tool and self._block is not None:
            self._delta(out, self._block, {"type": "input_json_delta", "partial_json": ev.arguments})
        elif not tool.closed:
            tool.pending.append(ev.arguments)
        elif tool.block is not None:
            # A provider sent more arguments after other content followed its call. The block has been closed;
            # the SDKs still fold the delta in by index, so this keeps the arguments rather than dropping them.
            self._delta(out, tool.block, {"type": "input_json_delta", "partial_json": ev.arguments})

    def feed(self, chunk: Chunk) -> bytes:
        if chunk.wire == WIRE_ANTHROPIC_MESSAGES and isinstance(chunk.raw, dict) and (self._passthrough
                                                                                     or not self._started):
            self._passthrough = True
            name = str(chunk.raw.get("event") or "")
            data = chunk.raw.get("data")
            return encode(orjson.dumps(data), name or None)
        if self._passthrough:
            return b""
        out = bytearray()
        for ev in chunk.events:
            if isinstance(ev, StreamStart):
                if not self._started:
                    self._start(out, ev)
                continue
            if isinstance(ev, UsageUpdate):
                if self._usage is None:
                    self._usage = Usage()
                merge_usage(self._usage, ev.usage)
                continue
            if getattr(ev, "choice", 0) != 0:
                continue  # Anthropic cannot express n > 1
            if not self._started:
                self._start(out, None)
            if isinstance(ev, TextDelta):
                self._text(out, ev.text)
            elif isinstance(ev, ReasoningDelta):
                self._reasoning(out, ev)
            elif isinstance(ev, ToolCallStart):
                self._tool_start(out, ev)
            elif isinstance(ev, ToolCallDelta):
                self._tool_delta(out, ev)
            elif isinstance(ev, Finish):
                self._reason, self._stop_sequence = ev.reason, ev.stop_sequence
                self._end_tools(out)
                self._close(out)
            # LogprobsDelta: Anthropic has no logprobs
        return bytes(out)

    def end(self) -> bytes:
        """The frames after the last chunk: close any open block, then ``message_delta`` and ``message_stop``."""
        if self._passthrough:
            return b""
        out = bytearray()
        if not self._started:
            self._start(out, None)
        self._end_tools(out)
        self._close(out)
        usage: dict[str, JSON] = {"output_tokens": self._usage.output_tokens if self._usage else 0}
        if self._usage is not None and self._usage.input_tokens:
            full = usage_json(self._usage)
            usage = {"input_tokens": full["input_tokens"],
                     "cache_creation_input_tokens": full["cache_creation_input_tokens"],
                     "cache_read_input_tokens": full["cache_read_input_tokens"], **usage}
        delta = {"stop_reason": stop_reason(self._reason, bool(self._tools)), "stop_sequence": self._stop_sequence}
        out += self._frame("message_delta", {"delta": delta, "usage": usage})
        out += self._frame("message_stop", {})
        return bytes(out)
