"""A scriptable, recording fake of Anthropic's Messages API (an ASGI app) for gateway tests.

Wire format source: the Anthropic API reference, https://docs.anthropic.com/en/api/messages (request body, the
``message`` object, content blocks, usage), https://docs.anthropic.com/en/api/messages-streaming (the event flow
``message_start``, ``ping``, ``content_block_start``/``_delta``/``_stop``, ``message_delta``, ``message_stop``
and the ``error`` event) and https://docs.anthropic.com/en/api/errors (``{"type": "error", "error": {...}}``,
529 ``overloaded_error``). Everything the fake sends is validated against the official ``anthropic`` SDK's pydantic
types as it is sent: reply bodies with ``anthropic.types.Message``, stream events with the
``RawMessageStreamEvent`` union, error bodies with ``anthropic.types.ErrorResponse``. A failed check is kept in
``violations`` and answered with a 500, so that no test can pass on a malformed frame.

Behaviour: the reply is ``"Echo: <text of the last user turn>"`` (tool results included) unless ``reply`` is set.
When the request has tools and ``tool_choice`` is not ``none``, the fake calls them (one ``tool_use`` block per
tool, or the one named, or only the first with ``disable_parallel_tool_use``) unless the last user turn holds tool
results and the choice is ``auto``. With ``thinking`` enabled a signed ``thinking`` block comes first. Requests
with ``cache_control`` anywhere report cache usage: the prefix up to the last marker is written on first sight
(``cache_creation_input_tokens``) and read afterwards (``cache_read_input_tokens``); the real API's minimum
cacheable length is not modelled. "Tokens" are whitespace-delimited words. The request checks mirror the API's
documented rules (roles, block shapes, ``tool_result`` right after ``tool_use``, thinking budget); unknown
top-level fields are accepted, so that tests can see them arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic.types
import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .fake_openai import RecordedRequest, sample_from_schema
from .servers import serve_asgi

__all__ = ["FakeAnthropic", "RecordedRequest", "StreamBroken", "error_body", "validate_event"]

_EVENT = TypeAdapter(anthropic.types.RawMessageStreamEvent)
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (scripted by the fake)."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


class StreamBroken(Exception):
    """Raised inside a streaming body to drop the connection mid-stream (see ``break_stream_after``)."""


class _Invalid(Exception):
    """A request the real API would refuse with 400 ``invalid_request_error``."""


def _hide_stream_broken(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return not isinstance(exc, StreamBroken)


def error_body(type_: str, message: str) -> dict[str, Any]:
    """An Anthropic error object: ``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": _id("req_")}


def validate_event(name: str, data: dict[str, Any]) -> None:
    """Check one stream event against the SDK's types; raises ``ValueError``/``ValidationError`` if it is off."""
    if data.get("type") != name:
        raise ValueError(f"event name {name!r} differs from its data's type {data.get('type')!r}")
    if name == "ping":
        if data != {"type": "ping"}:
            raise ValueError(f"a ping is {{'type': 'ping'}}, not {data!r}")
    elif name == "error":
        anthropic.types.ErrorResponse.model_validate(data)
    else:
        _EVENT.validate_python(data)


def _id(prefix: str) -> str:
    return prefix + "01" + uuid.uuid4().hex[:22]


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text)


def _count(text: str) -> int:
    return len(_words(text))


def _text_of(content: Any) -> str:
    """The text of a message's content, tool results' text included."""
    if isinstance(content, str):
        return content
    out: list[str] = []
    for b in content if isinstance(content, list) else []:
        if isinstance(b, dict) and b.get("type") == "text":
            out.append(str(b.get("text", "")))
        elif isinstance(b, dict) and b.get("type") == "tool_result":
            out.append(_text_of(b.get("content")))
    return " ".join(t for t in out if t)


@dataclass
class _Plan:
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None


@dataclass
class FakeAnthropic:
    """State + ASGI app of one fake upstream. Mutate it from tests; it is read by the server thread."""

    api_key: str | None = None  # when set, x-api-key must equal it
    reply: str | None = None
    stop_reason: str | None = None  # force a stop_reason (e.g. "refusal", "pause_turn")
    redact_thinking: bool = False  # add a redacted_thinking block after the thinking block
    chunk_delay: float = 0.0
    stream_piece: int = 0  # when set, a stream's text arrives in pieces of this many characters, not words
    extra_usage: dict[str, int] = field(default_factory=dict)  # usage fields to override, e.g. cache reads
    # when set, a request with tools calls exactly these (name, input) instead of every tool, and answers in text
    # once the last user turn holds tool results: one scripted agent step, as a real model would take it
    script_tools: list[tuple[str, dict[str, Any]]] | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    sent: list[Any] = field(default_factory=list)  # each reply body, or each stream's (event, data) list
    violations: list[str] = field(default_factory=list)  # frames that failed the SDK-type checks
    base_url: str | None = None  # set while ``serve()`` is active
    _failures: deque[tuple[int, Any, dict[str, str]]] = field(default_factory=deque)
    _stream_errors: deque[tuple[int, str, str]] = field(default_factory=deque)
    _breaks: deque[int] = field(default_factory=deque)
    _cache: set[str] = field(default_factory=set)
    app: Starlette = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[
            Route("/v1/messages", self._endpoint, methods=["POST"]),
            Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ])

    # ----- scripting -------------------------------------------------------------------------------
    def fail_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Fail the next ``times`` requests with ``status``. ``body``: dict (JSON), str/bytes (raw) or None for
        the documented error object of that status. Example: ``fail_next(529)``, ``fail_next(429,
        headers={"retry-after": "3"})``."""
        if body is None:
            type_, message = _DEFAULT_ERRORS.get(status, ("api_error", "Scripted failure."))
            body = error_body(type_, message)
        self._failures.extend([(status, body, dict(headers or {}))] * times)

    def error_stream_after(self, n_events: int, type_: str = "overloaded_error", message: str = "Overloaded",
                           times: int = 1) -> None:
        """The next ``times`` streams send ``n_events`` events, then an ``error`` event, and end."""
        self._stream_errors.extend([(n_events, type_, message)] * times)

    def break_stream_after(self, n_events: int, times: int = 1) -> None:
        """The next ``times`` streams send ``n_events`` events, then the connection is dropped."""
        self._breaks.extend([n_events] * times)

    def reset(self) -> None:
        self.requests.clear()
        self.sent.clear()
        self.violations.clear()
        self._failures.clear()
        self._stream_errors.clear()
        self._breaks.clear()
        self._cache.clear()
        self.extra_usage.clear()
        self.reply, self.stop_reason, self.redact_thinking, self.chunk_delay = None, None, False, 0.0
        self.stream_piece = 0
        self.script_tools = None

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the app on an ephemeral port; yields (and sets ``self.base_url`` to) ``http://host:port``."""
        with serve_asgi(self.app) as url:
            self.base_url = url
            try:
                yield url
            finally:
                self.base_url = None

    # ----- responses -------------------------------------------------------------------------------
    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        try:
            if status == 200:
                anthropic.types.Message.model_validate(data)
            elif isinstance(data, dict) and data.get("type") == "error":
                anthropic.types.ErrorResponse.model_validate(data)
        except ValidationError as e:
            return self._violation(f"reply body: {e}")
        self.sent.append(data)
        base = {"request-id": _id("req_")}
        return Response(orjson.dumps(data), status, {**base, **(headers or {})}, "application/json")

    def _error(self, status: int, type_: str, message: str) -> Response:
        return self._json(error_body(type_, message), status)

    def _violation(self, what: str) -> Response:
        self.violations.append(what)
        return Response(orjson.dumps(error_body("api_error", f"fake_anthropic sent a malformed frame: {what}")),
                        500, media_type="application/json")

    # ----- request handling -------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        path, method = request.url.path, request.method
        self.requests.append(RecordedRequest(method, path, dict(request.headers), body, request.url.query))
        if self._failures:
            status, fail_body, headers = self._failures.popleft()
            if isinstance(fail_body, str | bytes):
                return Response(fail_body, status, headers)
            return self._json(fail_body, status, headers)
        if path != "/v1/messages" or method != "POST":
            return self._error(404, "not_found_error", f"Not found: {method} {path}")
        if not request.headers.get("x-api-key"):
            return self._error(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and request.headers["x-api-key"] != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return self._error(400, "invalid_request_error", "The request body is not valid JSON.")
        try:
            _check_request(body)
        except _Invalid as e:
            return self._error(400, "invalid_request_error", str(e))
        plan = self._plan(body)
        usage = self._usage(body, plan)
        message = {"id": _id("msg_"), "type": "message", "role": "assistant", "model": body["model"],
                   "content": plan.blocks, "stop_reason": plan.stop_reason, "stop_sequence": plan.stop_sequence,
                   "usage": usage}
        if body.get("stream"):
            events = _events(message, self.stream_piece)
            stream_error = self._stream_errors.popleft() if self._stream_errors else None
            break_after = self._breaks.popleft() if self._breaks else None
            headers = {"request-id": _id("req_"), "cache-control": "no-cache"}
            return StreamingResponse(self._sse(events, stream_error, break_after), 200, headers, "text/event-stream")
        return self._json(message)

    def _plan(self, body: dict[str, Any]) -> _Plan:
        messages = body["messages"]
        last_user: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        user_text = _text_of(last_user.get("content"))
        after_results = isinstance(last_user.get("content"), list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last_user["content"])
        blocks: list[dict[str, Any]] = []
        thinking = body.get("thinking") or {}
        if thinking.get("type") == "enabled":
            thought = f"The user wrote: {user_text or 'nothing'}. I should answer briefly."
            signature = hashlib.sha256(thought.encode()).hexdigest()
            blocks.append({"type": "thinking", "thinking": thought, "signature": signature})
            if self.redact_thinking:
                blocks.append({"type": "redacted_thinking", "data": "RUVEQUNURUQ=" + signature[:16]})
        tools = [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]
        choice = body.get("tool_choice") or {"type": "auto"}
        forced = choice.get("type") in ("any", "tool")
        if self.script_tools is not None and tools and not after_results:
            names = {t["name"] for t in tools}
            for name, args in self.script_tools:
                if name not in names:
                    raise _Invalid(f"scripted tool {name!r} is not among the request's tools")
                blocks.append({"type": "tool_use", "id": _id("toolu_"), "name": name, "input": args})
            return _Plan(blocks, "tool_use", None)
        if self.script_tools is not None:
            forced = False
        if tools and choice.get("type") != "none" and (forced or not after_results):
            if choice.get("type") == "tool":
                tools = [t for t in tools if t["name"] == choice.get("name")] or tools[:1]
            if choice.get("disable_parallel_tool_use"):
                tools = tools[:1]
            for t in tools:
                blocks.append({"type": "tool_use", "id": _id("toolu_"), "name": t["name"],
                               "input": sample_from_schema(t.get("input_schema") or {})})
            return _Plan(blocks, self.stop_reason or "tool_use", None)
        text = self.reply if self.reply is not None else f"Echo: {user_text}"
        fmt = (body.get("output_config") or {}).get("format") or {}
        if self.reply is None and fmt.get("type") == "json_schema":
            text = json.dumps(sample_from_schema(fmt.get("schema") or {}))
        stop_reason, stop_sequence = "end_turn", None
        for stop in body.get("stop_sequences") or []:
            if stop and stop in text:
                text, stop_reason, stop_sequence = text[: text.index(stop)], "stop_sequence", stop
                break
        budget = body["max_tokens"] - sum(_count(b.get("thinking", "")) for b in blocks)
        if len(_words(text)) > max(budget, 0):
            text, stop_reason, stop_sequence = "".join(_words(text)[: max(budget, 0)]), "max_tokens", None
        if text:
            blocks.append({"type": "text", "text": text})
        return _Plan(blocks, self.stop_reason or stop_reason, stop_sequence)

    def _usage(self, body: dict[str, Any], plan: _Plan) -> dict[str, Any]:
        """Token counts; a ``cache_control`` marker caches the prompt prefix up to and including its block."""
        segments: list[tuple[Any, bool]] = [(t, bool(t.get("cache_control"))) for t in body.get("tools") or []]
        system = body.get("system")
        if isinstance(system, str):
            segments.append((system, False))
        for b in system if isinstance(system, list) else []:
            segments.append((b, bool(b.get("cache_control"))))
        for m in body["messages"]:
            content = m.get("content")
            if isinstance(content, str):
                segments.append((content, False))
            for b in content if isinstance(content, list) else []:
                segments.append((b, isinstance(b, dict) and bool(b.get("cache_control"))))
        if body.get("cache_control") and segments:  # automatic caching: the last cacheable block
            segments[-1] = (segments[-1][0], True)
        counts = [_count(s if isinstance(s, str) else _text_of([s]) or json.dumps(s)) for s, _ in segments]
        total = max(1, sum(counts))
        marks = [i for i, (_, marked) in enumerate(segments) if marked]
        read = write = 0
        ttl = "5m"
        if marks:
            last = marks[-1]
            prefix = sum(counts[: last + 1])
            key = hashlib.sha256(orjson.dumps([body["model"], [s for s, _ in segments[: last + 1]]])).hexdigest()
            cc = segments[last][0].get("cache_control") if isinstance(segments[last][0], dict) else None
            ttl = (cc or body.get("cache_control") or {}).get("ttl", "5m")
            if key in self._cache:
                read = prefix
            else:
                write = prefix
                self._cache.add(key)
        thinking = sum(_count(b.get("thinking", "")) for b in plan.blocks)
        output = thinking + sum(_count(b["text"]) if b["type"] == "text" else _count(json.dumps(b["input"]))
                                for b in plan.blocks if b["type"] in ("text", "tool_use"))
        usage: dict[str, Any] = {
            "input_tokens": max(total - read - write, 0),
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write if ttl != "1h" else 0,
                               "ephemeral_1h_input_tokens": write if ttl == "1h" else 0},
            "output_tokens": max(output, 1),
            "service_tier": "standard",
        }
        if thinking:
            usage["output_tokens_details"] = {"thinking_tokens": thinking}
        usage.update(self.extra_usage)
        return usage

    async def _sse(self, events: list[tuple[str, dict[str, Any]]], stream_error: tuple[int, str, str] | None,
                   break_after: int | None) -> AsyncIterator[bytes]:
        if stream_error is not None:
            n, type_, message = stream_error
            events = [*events[:n], ("error", error_body(type_, message))]
        sent: list[tuple[str, dict[str, Any]]] = []
        self.sent.append(sent)
        for idx, (name, data) in enumerate(events):
            if break_after is not None and idx >= break_after:
                logger = logging.getLogger("uvicorn.error")
                if _hide_stream_broken not in logger.filters:
                    logger.addFilter(_hide_stream_broken)
                raise StreamBroken(f"stream deliberately broken after {break_after} events")
            try:
                validate_event(name, data)
            except (ValueError, ValidationError) as e:
                self.violations.append(f"event {name}: {e}")
                raise
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            sent.append((name, data))
            yield b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _pieces(text: str, piece: int) -> list[str]:
    return [text[i:i + piece] for i in range(0, len(text), piece)] if piece else _words(text)


def _events(message: dict[str, Any], piece: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """The events of one stream, in the documented order, for the finished ``message`` (its text in words, or in
    pieces of ``piece`` characters)."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": 1}
    start_usage.pop("output_tokens_details", None)
    shell = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    out: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": shell}),
                                             ("ping", {"type": "ping"})]
    for i, block in enumerate(message["content"]):
        typ = block["type"]
        deltas: list[dict[str, Any]] = []
        if typ == "text":
            empty: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": w} for w in _pieces(block["text"], piece)]
        elif typ == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": w} for w in _words(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif typ == "tool_use":
            empty = {**block, "input": {}}
            pieces = re.findall(r"\w+|\W+", json.dumps(block["input"]))
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
        else:  # redacted_thinking arrives whole
            empty = block
        out.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": empty}))
        out.extend(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": d}) for d in deltas)
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                         "output_tokens")}
    out.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": delta_usage}))
    out.append(("message_stop", {"type": "message_stop"}))
    return out


# ----- request checks (the rules the API reference states) ------------------------------------------------------

_BLOCKS = {
    "user": {"text", "image", "document", "tool_result", "search_result"},
    "assistant": {"text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "web_search_tool_result",
                  "web_fetch_tool_result", "code_execution_tool_result"},
}


def _check_block(b: Any, where: str, role: str) -> None:
    if not isinstance(b, dict) or not isinstance(b.get("type"), str):
        raise _Invalid(f"{where}: each content block must be an object with a type")
    typ = b["type"]
    if typ not in _BLOCKS[role]:
        raise _Invalid(f"{where}.type: {typ!r} blocks are not allowed in {role} messages")
    if typ == "text" and (not isinstance(b.get("text"), str) or not b["text"]):
        raise _Invalid(f"{where}: text content blocks must be non-empty")
    if typ == "image":
        src = b.get("source") or {}
        if src.get("type") == "base64":
            if src.get("media_type") not in _IMAGE_TYPES or not isinstance(src.get("data"), str):
                raise _Invalid(f"{where}.source: a base64 image needs a supported media_type and data")
        elif not (src.get("type") == "url" and isinstance(src.get("url"), str)) and src.get("type") != "file":
            raise _Invalid(f"{where}.source: expected a base64, url or file source")
    if typ == "document" and (b.get("source") or {}).get("type") not in ("base64", "text", "url", "file", "content"):
        raise _Invalid(f"{where}.source: expected a base64, text, url, file or content source")
    if typ == "thinking" and not (isinstance(b.get("thinking"), str) and isinstance(b.get("signature"), str)):
        raise _Invalid(f"{where}: thinking blocks need thinking and signature")
    if typ == "tool_use" and not (isinstance(b.get("id"), str) and isinstance(b.get("name"), str)
                                  and isinstance(b.get("input"), dict)):
        raise _Invalid(f"{where}: tool_use blocks need an id, a name and an input object")
    if typ == "tool_result":
        if not isinstance(b.get("tool_use_id"), str):
            raise _Invalid(f"{where}: tool_result blocks need a tool_use_id")
        content = b.get("content")
        if isinstance(content, list):
            for j, inner in enumerate(content):
                if not isinstance(inner, dict) or inner.get("type") not in ("text", "image", "document",
                                                                            "search_result"):
                    raise _Invalid(f"{where}.content.{j}: not a text, image, document or search_result block")


def _check_request(body: dict[str, Any]) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _Invalid("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 0:
        raise _Invalid("max_tokens: Field required (a non-negative integer)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    system = body.get("system")
    if system is not None and not isinstance(system, str) and (
            not isinstance(system, list) or any(not isinstance(b, dict) or b.get("type") != "text" for b in system)):
        raise _Invalid("system: expected a string or an array of text blocks")
    pending: set[str] = set()  # tool_use ids the next user message must answer
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant", "system"):
            raise _Invalid(f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'")
        content = m.get("content")
        if role == "system":  # SystemMessageParam: a string or text blocks, mid-conversation
            if not isinstance(content, str) and (not isinstance(content, list) or any(
                    not isinstance(b, dict) or b.get("type") != "text" for b in content)):
                raise _Invalid(f"messages.{i}.content: a system message holds a string or text blocks")
            continue
        blocks = content if isinstance(content, list) else []
        if not isinstance(content, str | list):
            raise _Invalid(f"messages.{i}.content: expected a string or an array of content blocks")
        for j, b in enumerate(blocks):
            _check_block(b, f"messages.{i}.content.{j}", role)
        results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
        if role == "user":
            for j, b in enumerate(blocks):
                if b["type"] == "tool_result" and b["tool_use_id"] not in pending:
                    raise _Invalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                                   f"blocks: {b['tool_use_id']}. Each `tool_result` block must have a corresponding "
                                   "`tool_use` block in the previous message.")
            if results and any(b["type"] != "tool_result" for b in blocks[: len(results)]):
                raise _Invalid(f"messages.{i}: tool_result blocks must come first in the content array")
        if pending and (role != "user" or not pending <= set(results)):
            raise _Invalid(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                           f"after: {', '.join(sorted(pending - set(results)))}. Each `tool_use` block must have a "
                           "corresponding `tool_result` block in the next message.")
        pending = {b["id"] for b in blocks if b["type"] == "tool_use"} if role == "assistant" else set()
    for i, t in enumerate(body.get("tools") or []):
        if t.get("type") in (None, "custom") and not (isinstance(t.get("name"), str)
                                                      and isinstance(t.get("input_schema"), dict)):
            raise _Invalid(f"tools.{i}: custom tools need a name and an input_schema")
    choice = body.get("tool_choice")
    if choice is not None and (choice.get("type") not in ("auto", "any", "tool", "none")
                               or (choice["type"] == "tool" and not choice.get("name"))):
        raise _Invalid("tool_choice: expected auto, any, none, or tool with a name")
    thinking = body.get("thinking")
    if thinking is not None and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise _Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= body["max_tokens"]:
            raise _Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
    for name, top in (("temperature", 1), ("top_p", 1)):
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or not 0 <= value <= top):
            raise _Invalid(f"{name}: Input should be between 0 and {top}")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _Invalid("stop_sequences: expected an array of strings")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise _Invalid("metadata: Extra inputs are not permitted (only user_id)")
