"""Helpers for the translation matrix (``tests/test_translation_matrix.py``): what each upstream was sent and what it
answered, read in that provider's own wire format and reduced to one small shape the matrix can compare with what a
client saw.

Nothing here calls ``switchyard``: the expectations are written from the providers' documentation, so that a mapping
mistake in the gateway cannot hide behind the same mistake in the test.

* :class:`Tap` wraps a fake upstream's ASGI app and keeps every response body exactly as it went out, so a test can
  compare the client's view with what the upstream really said (tool-call ids, usage, stop reasons, text).
* :func:`upstream_reply` reads such a body (JSON, SSE, or Bedrock's binary event stream) into a :class:`Reply`.
* :func:`system_text`, :func:`image_in` and :func:`tool_exchange` find a piece of a *request* body in each provider's
  format.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.eventstream import EventStreamBuffer  # type: ignore[import-untyped, unused-ignore]

Provider = Literal["openai", "anthropic", "gemini", "bedrock", "llamacpp"]
Finish = Literal["stop", "stop_sequence", "length", "tool_calls"]
"""A stop reason in one vocabulary for all providers (the canonical form the matrix compares)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The client's vocabulary for each canonical stop reason.
# OpenAI: https://platform.openai.com/docs/api-reference/chat/object (choices[].finish_reason).
OPENAI_FINISH: dict[Finish, str] = {"stop": "stop", "stop_sequence": "stop", "length": "length",
                                    "tool_calls": "tool_calls"}
# Anthropic: https://docs.anthropic.com/en/api/messages (stop_reason).
ANTHROPIC_STOP: dict[Finish, str] = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens",
                                     "tool_calls": "tool_use"}


class Tap:
    """ASGI middleware: serves ``app`` unchanged and keeps each response body as sent, in request order."""

    def __init__(self, app: Any) -> None:
        self.app: ASGIApp = app
        self.bodies: list[bytearray] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        self.bodies.append(body)

        async def tapped(message: Message) -> None:
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, tapped)

    @property
    def last(self) -> bytes:
        assert self.bodies, "the upstream answered nothing"
        return bytes(self.bodies[-1])

    def clear(self) -> None:
        self.bodies.clear()


# --- replies -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """Usage in one vocabulary: ``prompt`` counts every prompt token (cache reads and writes included, as OpenAI's
    ``prompt_tokens`` does); ``output`` every generated one (reasoning included, as OpenAI's ``completion_tokens``)."""

    prompt: int
    output: int
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0


@dataclass
class Call:
    id: str | None  # None when the provider gives function calls no id (Gemini)
    name: str
    arguments: str = ""

    @property
    def args(self) -> Any:
        return json.loads(self.arguments or "{}")


@dataclass
class Reply:
    """What an upstream answered, read from its own wire format."""

    text: str = ""
    calls: list[Call] = field(default_factory=list)
    finish: Finish | None = None
    usage: Tokens | None = None
    raw: Any = None  # the decoded body (JSON) or list of events/frames (streams)


def sse_events(body: bytes) -> list[tuple[str | None, str]]:
    """``(event name, data)`` per server-sent event (https://html.spec.whatwg.org/multipage/server-sent-events.html)."""
    out: list[tuple[str | None, str]] = []
    for block in re.split(r"\r\n\r\n|\n\n|\r\r", body.decode()):
        name: str | None = None
        data: list[str] = []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            out.append((name, "\n".join(data)))
    return out


# OpenAI Chat Completions: https://platform.openai.com/docs/api-reference/chat (the chat completion object, the
# chunk object, CompletionUsage).
def _openai_usage(u: dict[str, Any]) -> Tokens:
    return Tokens(prompt=u["prompt_tokens"], output=u["completion_tokens"],
                  cached=(u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0,
                  reasoning=(u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)


def _openai_finish(value: str) -> Finish:
    return {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}[value]  # type: ignore[return-value]


def openai_reply(body: bytes) -> Reply:
    if body.lstrip().startswith(b"{"):
        data = json.loads(body)
        msg = data["choices"][0]["message"]
        calls = [Call(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls") or []]
        return Reply(msg.get("content") or "", calls, _openai_finish(data["choices"][0]["finish_reason"]),
                     _openai_usage(data["usage"]) if data.get("usage") else None, data)
    reply = Reply(raw=[])
    by_index: dict[int, Call] = {}
    for _, data_text in sse_events(body):
        if data_text == "[DONE]":
            continue
        chunk = json.loads(data_text)
        reply.raw.append(chunk)
        if chunk.get("usage"):
            reply.usage = _openai_usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            if choice["index"] != 0:
                continue
            delta = choice.get("delta") or {}
            reply.text += delta.get("content") or ""
            for tc in delta.get("tool_calls") or []:
                call = by_index.setdefault(tc["index"], Call(None, ""))
                call.id = tc.get("id") or call.id
                fn = tc.get("function") or {}
                call.name += fn.get("name") or ""
                call.arguments += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                reply.finish = _openai_finish(choice["finish_reason"])
    reply.calls = [by_index[i] for i in sorted(by_index)]
    return reply


# Anthropic Messages: https://docs.anthropic.com/en/api/messages and /messages-streaming. ``input_tokens`` exclude
# the cache reads and writes, which are counted apart.
def _anthropic_usage(u: dict[str, Any]) -> Tokens:
    read, write = u.get("cache_read_input_tokens") or 0, u.get("cache_creation_input_tokens") or 0
    return Tokens(prompt=u["input_tokens"] + read + write, output=u["output_tokens"], cached=read, cache_write=write)


def _anthropic_finish(value: str) -> Finish:
    return {"end_turn": "stop", "stop_sequence": "stop_sequence", "max_tokens": "length",  # type: ignore[return-value]
            "tool_use": "tool_calls"}[value]


def anthropic_reply(body: bytes) -> Reply:
    if body.lstrip().startswith(b"{"):
        data = json.loads(body)
        text = "".join(b["text"] for b in data["content"] if b["type"] == "text")
        calls = [Call(b["id"], b["name"], json.dumps(b["input"])) for b in data["content"] if b["type"] == "tool_use"]
        return Reply(text, calls, _anthropic_finish(data["stop_reason"]), _anthropic_usage(data["usage"]), data)
    reply = Reply(raw=[])
    usage: dict[str, Any] = {}
    blocks: dict[int, Call] = {}
    for name, data_text in sse_events(body):
        event = json.loads(data_text)
        reply.raw.append((name, event))
        if event["type"] == "message_start":
            usage.update(event["message"]["usage"])
        elif event["type"] == "content_block_start" and event["content_block"]["type"] == "tool_use":
            blocks[event["index"]] = Call(event["content_block"]["id"], event["content_block"]["name"])
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                reply.text += delta["text"]
            elif delta["type"] == "input_json_delta":
                blocks[event["index"]].arguments += delta["partial_json"]
        elif event["type"] == "message_delta":
            reply.finish = _anthropic_finish(event["delta"]["stop_reason"])
            usage.update({k: v for k, v in event["usage"].items() if v is not None})
    reply.calls = [blocks[i] for i in sorted(blocks)]
    reply.usage = _anthropic_usage(usage)
    return reply


# Gemini: https://ai.google.dev/api/generate-content (GenerateContentResponse, UsageMetadata: promptTokenCount
# includes cachedContentTokenCount; thoughtsTokenCount is apart from candidatesTokenCount). A finishReason of STOP
# ends a turn that called functions too.
def _gemini_usage(u: dict[str, Any]) -> Tokens:
    thoughts = u.get("thoughtsTokenCount") or 0
    return Tokens(prompt=(u.get("promptTokenCount") or 0) + (u.get("toolUsePromptTokenCount") or 0),
                  output=(u.get("candidatesTokenCount") or 0) + thoughts,
                  cached=u.get("cachedContentTokenCount") or 0, reasoning=thoughts)


def gemini_reply(body: bytes) -> Reply:
    frames = [json.loads(body)] if body.lstrip().startswith(b"{") else [json.loads(d) for _, d in sse_events(body)]
    reply = Reply(raw=frames)
    reason = None
    for frame in frames:
        if frame.get("usageMetadata"):
            reply.usage = _gemini_usage(frame["usageMetadata"])
        for cand in frame.get("candidates") or []:
            if cand.get("index", 0) != 0:
                continue
            for part in (cand.get("content") or {}).get("parts") or []:
                if "functionCall" in part:
                    fc = part["functionCall"]
                    reply.calls.append(Call(fc.get("id"), fc["name"], json.dumps(fc.get("args") or {})))
                elif "text" in part and not part.get("thought"):
                    reply.text += part["text"]
            reason = cand.get("finishReason") or reason
    if reason == "MAX_TOKENS":
        reply.finish = "length"
    elif reason == "STOP":
        reply.finish = "tool_calls" if reply.calls else "stop"
    return reply


# Bedrock Converse / ConverseStream: botocore's bedrock-runtime service model (ConverseResponse, TokenUsage: the
# cache reads and writes are apart from inputTokens; the ConverseStreamOutput events, in AWS event-stream frames).
def _bedrock_usage(u: dict[str, Any]) -> Tokens:
    read, write = u.get("cacheReadInputTokens") or 0, u.get("cacheWriteInputTokens") or 0
    return Tokens(prompt=u["inputTokens"] + read + write, output=u["outputTokens"], cached=read, cache_write=write)


def _bedrock_finish(value: str) -> Finish:
    return {"end_turn": "stop", "stop_sequence": "stop_sequence", "max_tokens": "length",  # type: ignore[return-value]
            "tool_use": "tool_calls"}[value]


def bedrock_reply(body: bytes) -> Reply:
    if body.lstrip().startswith(b"{"):
        data = json.loads(body)
        content = data["output"]["message"]["content"]
        text = "".join(b["text"] for b in content if "text" in b)
        calls = [Call(b["toolUse"]["toolUseId"], b["toolUse"]["name"], json.dumps(b["toolUse"]["input"]))
                 for b in content if "toolUse" in b]
        return Reply(text, calls, _bedrock_finish(data["stopReason"]), _bedrock_usage(data["usage"]), data)
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    reply = Reply(raw=[])
    blocks: dict[int, Call] = {}
    for message in buffer:
        kind = message.headers[":event-type"]
        event = json.loads(message.payload)
        reply.raw.append((kind, event))
        if kind == "contentBlockStart" and "toolUse" in event["start"]:
            tu = event["start"]["toolUse"]
            blocks[event["contentBlockIndex"]] = Call(tu["toolUseId"], tu["name"])
        elif kind == "contentBlockDelta":
            delta = event["delta"]
            if "text" in delta:
                reply.text += delta["text"]
            elif "toolUse" in delta:
                blocks[event["contentBlockIndex"]].arguments += delta["toolUse"]["input"]
        elif kind == "messageStop":
            reply.finish = _bedrock_finish(event["stopReason"])
        elif kind == "metadata":
            reply.usage = _bedrock_usage(event["usage"])
    reply.calls = [blocks[i] for i in sorted(blocks)]
    return reply


READERS: dict[str, Callable[[bytes], Reply]] = {"openai": openai_reply, "anthropic": anthropic_reply,
                                                "gemini": gemini_reply, "bedrock": bedrock_reply}


def upstream_reply(provider: Provider, body: bytes) -> Reply:
    return READERS[provider](body)


# --- requests ----------------------------------------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def system_text(provider: Provider, body: dict[str, Any]) -> str:
    """The system prompt, read from the slot each provider documents for it."""
    if provider in ("openai", "llamacpp"):
        return "".join(_text(m["content"]) for m in body["messages"] if m["role"] in ("system", "developer"))
    if provider == "anthropic":
        return _text(body.get("system") or "")
    if provider == "gemini":
        return _text((body.get("systemInstruction") or body.get("system_instruction") or {}).get("parts"))
    return "".join(b.get("text", "") for b in body.get("system") or [])


def conversation_text(provider: Provider, body: dict[str, Any]) -> str:
    """Every text of the conversation turns (not the system slot)."""
    if provider in ("openai", "llamacpp"):
        return " ".join(_text(m.get("content")) for m in body["messages"] if m["role"] not in ("system", "developer"))
    if provider == "anthropic":
        return " ".join(_text(m["content"]) for m in body["messages"])
    if provider == "gemini":
        return " ".join(_text(c["parts"]) for c in body["contents"])
    return " ".join(_text(m["content"]) for m in body["messages"])


def image_in(provider: Provider, body: dict[str, Any]) -> tuple[str, str]:
    """``(media type, base64 data)`` of the one image in the last user turn."""
    if provider == "openai":
        part = next(p for p in body["messages"][-1]["content"] if p.get("type") == "image_url")
        m = re.fullmatch(r"data:([^;]+);base64,(.*)", part["image_url"]["url"], re.S)
        assert m, part
        return m.group(1), m.group(2)
    if provider == "anthropic":
        block = next(b for b in body["messages"][-1]["content"] if b["type"] == "image")
        assert block["source"]["type"] == "base64", block
        return block["source"]["media_type"], block["source"]["data"]
    if provider == "gemini":
        part = next(p for p in body["contents"][-1]["parts"] if "inlineData" in p)
        return part["inlineData"]["mimeType"], part["inlineData"]["data"]
    block = next(b for b in body["messages"][-1]["content"] if "image" in b)
    return "image/" + block["image"]["format"], block["image"]["source"]["bytes"]


@dataclass
class ToolExchange:
    """A tool call of the assistant turn and the tool result of the turn after it, as one upstream received them.
    ``call_id``/``result_id`` are None where the provider links them by function name (Gemini)."""

    call_id: str | None
    call_name: str
    call_args: Any
    result_id: str | None
    result_name: str | None
    result_text: str


def tool_exchange(provider: Provider, body: dict[str, Any]) -> ToolExchange:
    if provider == "openai":
        msgs = body["messages"]
        i = next(i for i, m in enumerate(msgs) if m["role"] == "assistant" and m.get("tool_calls"))
        call, result = msgs[i]["tool_calls"][0], msgs[i + 1]
        assert result["role"] == "tool", msgs
        return ToolExchange(call["id"], call["function"]["name"], json.loads(call["function"]["arguments"]),
                            result["tool_call_id"], None, _text(result["content"]))
    if provider == "anthropic":
        msgs = body["messages"]
        i = next(i for i, m in enumerate(msgs) if m["role"] == "assistant" and isinstance(m["content"], list)
                 and any(b["type"] == "tool_use" for b in m["content"]))
        use = next(b for b in msgs[i]["content"] if b["type"] == "tool_use")
        result = msgs[i + 1]["content"][0]
        assert msgs[i + 1]["role"] == "user" and result["type"] == "tool_result", msgs
        return ToolExchange(use["id"], use["name"], use["input"], result["tool_use_id"], None,
                            _text(result.get("content")))
    if provider == "gemini":
        contents = body["contents"]
        i = next(i for i, c in enumerate(contents) if c["role"] == "model"
                 and any("functionCall" in p for p in c["parts"]))
        fc = next(p["functionCall"] for p in contents[i]["parts"] if "functionCall" in p)
        fr = next(p["functionResponse"] for p in contents[i + 1]["parts"] if "functionResponse" in p)
        assert contents[i + 1]["role"] == "user", contents
        return ToolExchange(fc.get("id"), fc["name"], fc.get("args") or {}, fr.get("id"), fr["name"],
                            json.dumps(fr["response"]))
    msgs = body["messages"]  # bedrock
    i = next(i for i, m in enumerate(msgs) if m["role"] == "assistant" and any("toolUse" in b for b in m["content"]))
    use = next(b["toolUse"] for b in msgs[i]["content"] if "toolUse" in b)
    result = next(b["toolResult"] for b in msgs[i + 1]["content"] if "toolResult" in b)
    return ToolExchange(use["toolUseId"], use["name"], use["input"], result["toolUseId"], None,
                        " ".join(c.get("text", "") for c in result["content"]))


def png(size: int = 67) -> str:
    """A base64 PNG: the 8-byte signature, then zeros (Bedrock's fake checks the magic bytes)."""
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * (size - 8)).decode()
