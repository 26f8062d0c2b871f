"""A cached answer's bytes: the neutral reply (:class:`~switchyard.messages.ChatResponse`) without its wire object,
so that an answer stored from one protocol is served in another; its replay as a stream; and the assembly of a
streamed answer from its chunks, for storing."""

from __future__ import annotations

from typing import Any

import orjson

from ..messages import (
    ChatResponse,
    Choice,
    Chunk,
    Finish,
    FinishReason,
    Message,
    ReasoningDelta,
    ReasoningPart,
    Role,
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


def _usage(u: Usage | None) -> list[int] | None:
    if u is None:
        return None
    return [u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_write_tokens, u.reasoning_tokens]


def encode(resp: ChatResponse) -> bytes | None:
    """The answer's bytes; None when it holds what the cache does not keep (only text, tool calls and reasoning)."""
    choices: list[Any] = []
    for c in resp.choices:
        parts: list[Any] = []
        for p in c.message.parts:
            if isinstance(p, TextPart):
                parts.append(["t", p.text])
            elif isinstance(p, ToolCallPart):
                parts.append(["c", p.id, p.name, p.arguments])
            elif isinstance(p, ReasoningPart):
                parts.append(["z", p.text, p.signature, p.redacted])
            else:
                return None
        choices.append([c.index, c.finish_reason.value if c.finish_reason else None, c.stop_sequence, c.refusal,
                        parts])
    return orjson.dumps({"m": resp.model, "c": choices, "u": _usage(resp.usage), "f": resp.system_fingerprint})


def decode(data: bytes, response_id: str, created: int) -> ChatResponse:
    """A fresh reply (its own id and time) from stored bytes."""
    d = orjson.loads(data)
    choices = []
    for index, finish, stop_sequence, refusal, parts in d["c"]:
        out: list[Any] = []
        for p in parts:
            if p[0] == "t":
                out.append(TextPart(p[1]))
            elif p[0] == "c":
                out.append(ToolCallPart(id=p[1], name=p[2], arguments=p[3]))
            else:
                out.append(ReasoningPart(text=p[1], signature=p[2], redacted=p[3]))
        choices.append(Choice(index, Message(Role.ASSISTANT, out), FinishReason(finish) if finish else None,
                              stop_sequence, None, refusal))
    u = d["u"]
    return ChatResponse(id=response_id, model=d["m"], created=created, choices=choices,
                        usage=Usage(*u) if u is not None else None, system_fingerprint=d["f"])


def to_chunks(resp: ChatResponse) -> list[Chunk]:
    """A reply as the chunks of a stream: its start, each choice's content in order, its finish, its usage."""
    chunks = [Chunk([StreamStart(resp.id, resp.model, resp.created)])]
    for c in resp.choices:
        calls = 0
        for p in c.message.parts:
            if isinstance(p, TextPart):
                chunks.append(Chunk([TextDelta(p.text, c.index)]))
            elif isinstance(p, ToolCallPart):
                chunks.append(Chunk([ToolCallStart(calls, p.id, p.name, c.index),
                                     ToolCallDelta(calls, p.arguments, c.index)]))
                calls += 1
            elif isinstance(p, ReasoningPart):
                chunks.append(Chunk([ReasoningDelta(p.text, p.signature, p.redacted, c.index)]))
        chunks.append(Chunk([Finish(c.finish_reason or FinishReason.STOP, c.index, c.stop_sequence)]))
    if resp.usage is not None:
        chunks.append(Chunk([UsageUpdate(resp.usage)]))
    return chunks


class Assembler:
    """Builds the reply a stream delivered, chunk by chunk (for storing a streamed answer)."""

    __slots__ = ("broken", "choices", "id", "model", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.usage = Usage()
        self.broken = False  # it carried an event the cache does not keep: not stored
        # per choice: its parts so far, its tool calls by index, its finish and stop sequence
        self.choices: dict[int, tuple[list[Any], dict[int, ToolCallPart], list[Any]]] = {}

    def _choice(self, i: int) -> tuple[list[Any], dict[int, ToolCallPart], list[Any]]:
        c = self.choices.get(i)
        if c is None:
            c = self.choices[i] = ([], {}, [None, None])
        return c

    def feed(self, chunk: Chunk) -> None:
        for e in chunk.events:
            if isinstance(e, TextDelta):
                parts = self._choice(e.choice)[0]
                if parts and isinstance(parts[-1], TextPart):
                    parts[-1].text += e.text
                else:
                    parts.append(TextPart(e.text))
            elif isinstance(e, ToolCallStart):
                parts, calls, _ = self._choice(e.choice)
                calls[e.index] = p = ToolCallPart(id=e.id, name=e.name, arguments="")
                parts.append(p)
            elif isinstance(e, ToolCallDelta):
                call = self._choice(e.choice)[1].get(e.index)
                if call is None:
                    self.broken = True
                else:
                    call.arguments += e.arguments
            elif isinstance(e, ReasoningDelta):
                parts = self._choice(e.choice)[0]
                if parts and isinstance(parts[-1], ReasoningPart) and parts[-1].signature is None:
                    last = parts[-1]
                    last.text += e.text
                    last.signature = e.signature
                    if e.redacted:
                        last.redacted = (last.redacted or "") + e.redacted
                else:
                    parts.append(ReasoningPart(text=e.text, signature=e.signature, redacted=e.redacted))
            elif isinstance(e, Finish):
                self._choice(e.choice)[2][:] = [e.reason, e.stop_sequence]
            elif isinstance(e, UsageUpdate):
                merge_usage(self.usage, e.usage)
            elif isinstance(e, StreamStart):
                self.id, self.model = e.id, e.model
                if e.usage is not None:
                    merge_usage(self.usage, e.usage)
            else:  # logprobs
                self.broken = True

    def response(self) -> ChatResponse | None:
        """The assembled reply; None if the stream did not finish every choice or carried what is not kept."""
        if self.broken or not self.choices or any(f[0] is None for _, _, f in self.choices.values()):
            return None
        choices = [Choice(i, Message(Role.ASSISTANT, parts), f[0], f[1])
                   for i, (parts, _, f) in sorted(self.choices.items())]
        return ChatResponse(id=self.id, model=self.model, created=0, choices=choices, usage=self.usage)
