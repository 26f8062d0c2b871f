"""A scriptable, recording fake of the OpenAI HTTP API (an ASGI app) for gateway tests.

Wire format source: the OpenAI API reference (https://platform.openai.com/docs/api-reference): the Chat
Completions object, the chat completion chunk object (streaming), Embeddings, Models; and the spec
``../shared/specs/openai-openapi.yml`` (CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
CompletionUsage, CreateEmbeddingResponse, ListModelsResponse, ErrorResponse). Shapes checked against the
``openai`` SDK types (types/chat/chat_completion.py, chat_completion_chunk.py, create_embedding_response.py).
"Tokens" are whitespace-delimited words (keeping trailing whitespace, so the pieces re-join to the text).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .servers import serve_asgi

__all__ = ["FakeOpenAI", "RecordedRequest", "StreamBroken", "error_body", "make_fake_openai"]

FINGERPRINT = "fp_fake0001"
_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request (scripted by the fake).", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class StreamBroken(Exception):
    """Raised inside a streaming body to drop the connection mid-stream (see ``break_stream_after``)."""


def _not_stream_broken(record: logging.LogRecord) -> bool:
    """uvicorn log filter: hide the traceback of a deliberately broken stream."""
    exc = record.exc_info[1] if record.exc_info else None
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return not isinstance(exc, StreamBroken)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it. ``headers`` keys are lower-case; ``json`` is None if no body."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    query: str = ""

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query))


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """An OpenAI ``ErrorResponse``: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    base = {"x-request-id": f"req_{uuid.uuid4().hex}", "openai-processing-ms": "1"}
    return Response(orjson.dumps(data), status, {**base, **(headers or {})}, "application/json")


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> Response:
    return _json(error_body(message, "invalid_request_error", param, code), status)


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text)


def _count(text: str) -> int:
    return max(1, len(_words(text)))


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def sample_from_schema(schema: Any, depth: int = 0) -> Any:
    """A small valid instance of a JSON schema: strings "x", numbers 1, booleans true, first enum."""
    if not isinstance(schema, dict) or depth > 8:
        return "x"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return sample_from_schema(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        keys = schema.get("required", list(props))
        return {k: sample_from_schema(props.get(k, {}), depth + 1) for k in keys}
    if kind == "array":
        return [sample_from_schema(schema.get("items", {}), depth + 1)]
    return {"integer": 1, "number": 1, "boolean": True, "null": None}.get(str(kind), "x")


def _token_logprob(token: str, i: int, top: int) -> dict[str, Any]:
    alts = [token] + [f"alt{k}" for k in range(1, top)]
    lp = -0.01 * (i % 5 + 1)
    tops = [{"token": t, "logprob": lp - k, "bytes": list(t.encode())} for k, t in enumerate(alts)]
    return {"token": token, "logprob": lp, "bytes": list(token.encode()), "top_logprobs": tops[:top]}


def _vector(item: Any, dims: int) -> list[float]:
    """Deterministic unit vector for an input, with values exactly representable as float32."""
    raw = [b / 127.5 - 1.0 for b in hashlib.shake_256(orjson.dumps(item)).digest(dims)]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in raw))))


@dataclass
class _Reply:
    content: str | None
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    completion_tokens: int


@dataclass
class FakeOpenAI:
    """State + ASGI app of one fake upstream. Mutate it from tests; it is read by the server thread."""

    models: list[str] = field(default_factory=lambda: ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"])
    embedding_dimensions: int = 8
    reply: str | None = None
    replies: dict[str, str] = field(default_factory=dict)  # per requested model: what it says (over ``reply``)
    chunk_delay: float = 0.0
    tail_delay: float = 0.0  # an extra pause before a stream's first frame after its content (the finish frame)
    stream_piece: int = 0  # when set, a stream's text arrives in pieces of this many characters, not words
    # when set, a request whose last message is a tool result gets a text answer (as a model that used its tools
    # does), not another round of tool calls: agents that loop until the model answers then end
    answer_tool_results: bool = False
    # when set, a request with tools calls exactly these (name, arguments) instead of every tool, and answers in
    # text once the last message is a tool result: one scripted agent step
    script_tools: list[tuple[str, dict[str, Any]]] | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    base_url: str | None = None  # set while ``serve()`` is active
    _failures: deque[tuple[int, Any, dict[str, str]]] = field(default_factory=deque)
    _hangs: deque[float] = field(default_factory=deque)
    _breaks: deque[int] = field(default_factory=deque)
    _seq: int = 0
    app: Starlette = field(init=False, repr=False)

    def __post_init__(self) -> None:
        routes = [
            Route("/v1/chat/completions", self._endpoint, methods=["POST"]),
            Route("/v1/embeddings", self._endpoint, methods=["POST"]),
            Route("/v1/models", self._endpoint, methods=["GET"]),
            Route("/v1/models/{model}", self._endpoint, methods=["GET"]),
            Route("/openai/deployments/{deployment}/chat/completions", self._endpoint, methods=["POST"]),
            Route("/openai/deployments/{deployment}/embeddings", self._endpoint, methods=["POST"]),
            Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]
        self.app = Starlette(routes=routes)

    # ----- scripting -------------------------------------------------------------------------------
    def fail_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Fail the next ``times`` requests with ``status``. ``body``: dict (JSON), str/bytes (raw) or
        None for a default OpenAI error body. Example: ``fail_next(429, headers={"retry-after": "1"})``."""
        if body is None:
            message, type_, code = _DEFAULT_ERRORS.get(
                status, ("Scripted failure.", "server_error" if status >= 500 else "invalid_request_error", None)
            )
            body = error_body(message, type_, None, code)
        self._failures.extend([(status, body, dict(headers or {}))] * times)

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """Delay the next ``times`` requests by ``seconds`` before answering (ends early on disconnect)."""
        self._hangs.extend([seconds] * times)

    def set_reply(self, text: str | None) -> None:
        """Reply with ``text`` instead of ``"Echo: <last user message>"`` (None restores the echo)."""
        self.reply = text

    def stream_delay(self, seconds: float) -> None:
        """Sleep ``seconds`` before every SSE frame of every stream."""
        self.chunk_delay = seconds

    def break_stream_after(self, n_chunks: int, times: int = 1) -> None:
        """The next ``times`` streams send ``n_chunks`` frames, then the connection is dropped
        (no terminating chunk, no ``[DONE]``); clients see an incomplete chunked body."""
        self._breaks.extend([n_chunks] * times)

    def reset(self) -> None:
        self.requests.clear()
        self._failures.clear()
        self._hangs.clear()
        self._breaks.clear()
        self.reply, self.chunk_delay, self.stream_piece, self.tail_delay = None, 0.0, 0, 0.0
        self.replies.clear()
        self.answer_tool_results = False
        self.script_tools = None

    @property
    def chat_models(self) -> list[str]:
        """The model of every chat completion asked of this fake, in order."""
        return [str(r.json.get("model")) for r in self.requests
                if r.path.endswith("/chat/completions") and isinstance(r.json, dict)]

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve the app on an ephemeral port; yields (and sets ``self.base_url`` to) ``http://host:port``."""
        with serve_asgi(self.app) as url:
            self.base_url = url
            try:
                yield url
            finally:
                self.base_url = None

    # ----- request handling -------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode(errors="replace")
        path, method = request.url.path, request.method
        self.requests.append(RecordedRequest(method, path, dict(request.headers), body, request.url.query))
        if self._hangs and not await self._hang(request, self._hangs.popleft()):
            # the client went away: answer nothing, and leave failures scripted later to later requests
            return Response(b"", 499)
        if self._failures:
            status, fail_body, headers = self._failures.popleft()
            if isinstance(fail_body, str | bytes):
                return Response(fail_body, status, headers)
            return _json(fail_body, status, headers)
        if isinstance(body, str):
            return _error(400, "We could not parse the JSON body of your request.")
        deployment = request.path_params.get("deployment")
        if deployment is not None and "api-version" not in request.query_params:
            return _json({"error": {"code": "404", "message": "Resource not found"}}, 404)  # Azure's answer
        body = dict(body) if isinstance(body, dict) else {}  # a copy: the recorded body stays as sent
        if deployment is not None:
            body.setdefault("model", deployment)
        is_chat, is_embed = path.endswith("/chat/completions"), path.endswith("/embeddings")
        if method == "POST" and (is_chat or is_embed) and not body.get("model"):
            return _error(400, "you must provide a model parameter")
        if method == "POST" and is_chat:
            return self._chat(body)
        if method == "POST" and path == "/v1/responses":  # OpenAI's Responses API (fake_openai_responses)
            from .fake_openai_responses import responses

            return responses(self, body)
        if method == "POST" and is_embed:
            return self._embeddings(body)
        model = request.path_params.get("model")
        if path == "/v1/models":
            return _json({"object": "list", "data": [_model(m) for m in self.models]})
        if model is not None and path.startswith("/v1/models/"):
            if model in self.models:
                return _json(_model(model))
            return _error(404, f"The model '{model}' does not exist", "model", "model_not_found")
        return _error(404, f"Invalid URL ({method} {path})")

    @staticmethod
    async def _hang(request: Request, seconds: float) -> bool:
        """Wait ``seconds``; False if the client disconnected meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))
            if await request.is_disconnected():
                return False
        return True

    def _plan(self, body: dict[str, Any]) -> _Reply:
        """Decide what every choice of a chat completion says (all ``n`` choices are identical)."""
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        choice = body.get("tool_choice")
        last = body["messages"][-1] if body.get("messages") else {}
        answered = self.answer_tool_results and isinstance(last, dict) and last.get("role") == "tool"
        if self.script_tools is not None and tools:
            if not (isinstance(last, dict) and last.get("role") == "tool"):
                calls = []
                for i, (name, args) in enumerate(self.script_tools):
                    call_id = "call_" + hashlib.sha1(f"{self._seq}-{i}".encode()).hexdigest()[:24]
                    calls.append({"id": call_id, "type": "function",
                                  "function": {"name": name, "arguments": json.dumps(args)}})
                return _Reply(None, calls, "tool_calls", sum(_count(c["function"]["arguments"]) for c in calls))
            tools = []
        results = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "tool"]
        echo_results = self.script_tools is not None and bool(results)  # a scripted step answers its results
        if tools and choice != "none" and not answered:
            if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
                wanted = choice["function"].get("name")
                tools = [t for t in tools if t["function"].get("name") == wanted] or tools
            if body.get("parallel_tool_calls") is False:
                tools = tools[:1]
            calls: list[dict[str, Any]] = []
            for i, tool in enumerate(tools):
                args = json.dumps(sample_from_schema(tool["function"].get("parameters") or {}))
                call_id = "call_" + hashlib.sha1(f"{self._seq}-{i}".encode()).hexdigest()[:24]
                fn = {"name": tool["function"].get("name", ""), "arguments": args}
                calls.append({"id": call_id, "type": "function", "function": fn})
            return _Reply(None, calls, "tool_calls", sum(_count(c["function"]["arguments"]) for c in calls))
        users = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
        user = _text_of(users[-1].get("content")) if users else ""
        if answered:
            user = _text_of(last.get("content"))
        if echo_results:
            user = _text_of(results[-1].get("content"))
        scripted = self.replies.get(str(body.get("model")), self.reply)
        text = scripted if scripted is not None else f"Echo: {user}"
        fmt = body.get("response_format") or {}
        if scripted is None and fmt.get("type") == "json_object":
            text = json.dumps({"echo": user})
        elif scripted is None and fmt.get("type") == "json_schema":
            text = json.dumps(sample_from_schema((fmt.get("json_schema") or {}).get("schema") or {}))
        finish, stops = "stop", body.get("stop")
        for stop in [stops] if isinstance(stops, str) else stops or []:
            if stop and stop in text:
                text = text[: text.index(stop)]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and len(_words(text)) > limit:
            text, finish = "".join(_words(text)[:limit]), "length"
        return _Reply(text, [], finish, len(_words(text)))

    def _chat(self, body: dict[str, Any]) -> Response:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "Invalid 'messages': expected a non-empty array.", "messages", "invalid_value")
        self._seq += 1
        n = body["n"] if isinstance(body.get("n"), int) and body["n"] > 0 else 1
        plan = self._plan(body)
        prompt = sum(_count(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        done = plan.completion_tokens * n
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": done,
            "total_tokens": prompt + done,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": dict.fromkeys(
                ("reasoning_tokens", "audio_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens"), 0
            ),
        }
        top = body["top_logprobs"] if isinstance(body.get("top_logprobs"), int) else 0
        top_or_none = top if body.get("logprobs") and plan.content is not None else None
        tier = {"flex": "flex", "scale": "scale", "priority": "priority", "fast": "priority"}
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "service_tier": tier.get(str(body.get("service_tier")), "default"),
            "system_fingerprint": FINGERPRINT,
        }
        if body.get("stream"):
            head["object"] = "chat.completion.chunk"
            frames = _chunks(head, plan, n, usage, top_or_none, body.get("stream_options") or {},
                             self.stream_piece)
            break_after = self._breaks.popleft() if self._breaks else None
            headers = {"x-request-id": f"req_{uuid.uuid4().hex}", "cache-control": "no-cache"}
            return StreamingResponse(self._sse(frames, break_after), 200, headers, "text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": plan.content, "refusal": None, "annotations": []}
        if plan.tool_calls:
            message["tool_calls"] = plan.tool_calls
        lp = None
        if top_or_none is not None:
            tokens = [_token_logprob(t, i, top) for i, t in enumerate(_words(plan.content or ""))]
            lp = {"content": tokens, "refusal": None}
        choices = [
            {"index": i, "message": message, "logprobs": lp, "finish_reason": plan.finish_reason} for i in range(n)
        ]
        return _json({**head, "choices": choices, "usage": usage})

    async def _sse(self, frames: list[dict[str, Any]], break_after: int | None) -> AsyncIterator[bytes]:
        for idx, frame in enumerate([*frames, None]):
            if break_after is not None and idx >= break_after:
                logger = logging.getLogger("uvicorn.error")
                if _not_stream_broken not in logger.filters:
                    logger.addFilter(_not_stream_broken)
                raise StreamBroken(f"stream deliberately broken after {break_after} chunks")
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            if self.tail_delay and frame is not None and any(c.get("finish_reason") for c in frame["choices"]):
                await asyncio.sleep(self.tail_delay)
            yield b"data: [DONE]\n\n" if frame is None else b"data: " + orjson.dumps(frame) + b"\n\n"

    def _embeddings(self, body: dict[str, Any]) -> Response:
        inp = body.get("input")
        if isinstance(inp, str) or (isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp)):
            items: list[Any] = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, str | list) for x in inp):
            items = inp
        else:
            return _error(400, "'$.input' is invalid. Please check the API reference.", "input")
        dims = body.get("dimensions") or self.embedding_dimensions
        data = []
        for index, item in enumerate(items):
            vec: Any = _vector(item, dims)
            if body.get("encoding_format") == "base64":  # little-endian float32, as OpenAI does
                vec = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vec})
        tokens = sum(len(it) if isinstance(it, list) else _count(it) for it in items)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"object": "list", "data": data, "model": body["model"], "usage": usage})


def _chunks(
    head: dict[str, Any], plan: _Reply, n: int, usage: dict[str, Any], top: int | None, options: dict[str, Any],
    piece: int = 0,
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of one stream, in the order OpenAI sends them."""
    include_usage = bool(options.get("include_usage"))

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, lp: Any = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": lp, "finish_reason": finish}
        return {**head, "choices": [choice], **({"usage": None} if include_usage else {})}

    per_choice: list[list[dict[str, Any]]] = []
    for i in range(n):
        seq: list[dict[str, Any]] = []
        for k, call in enumerate(plan.tool_calls):
            fn = {"name": call["function"]["name"], "arguments": ""}
            first: dict[str, Any] = {"tool_calls": [{"index": k, "id": call["id"], "type": "function", "function": fn}]}
            if k == 0:  # OpenAI puts the role into the first tool-call delta
                first = {"role": "assistant", "content": None, **first, "refusal": None}
            seq.append(chunk(i, first))
            for piece in re.findall(r"\w+|\W+", call["function"]["arguments"]):
                seq.append(chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": piece}}]}))
        if plan.content is not None:
            lp0: dict[str, Any] | None = None if top is None else {"content": [], "refusal": None}
            seq.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}, lp=lp0))
            words = _words(plan.content) if not piece else [
                plan.content[k:k + piece] for k in range(0, len(plan.content), piece)]
            for j, word in enumerate(words):
                lp = None if top is None else {"content": [_token_logprob(word, j, top)], "refusal": None}
                seq.append(chunk(i, {"content": word}, lp=lp))
        seq.append(chunk(i, {}, plan.finish_reason))
        per_choice.append(seq)
    frames = [c for group in zip(*per_choice, strict=True) for c in group]  # choices interleave
    if include_usage:
        frames.append({**head, "choices": [], "usage": usage})
    if options.get("include_obfuscation", True) is not False:  # on by default, per the reference
        for idx, frame in enumerate(frames):
            frame["obfuscation"] = hashlib.sha1(str(idx).encode()).hexdigest()[: 4 + idx % 9]
    return frames


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1686935002, "owned_by": "openai"}


def make_fake_openai(**kwargs: Any) -> FakeOpenAI:
    """Create a fresh fake; keyword arguments set public fields (``models``, ``reply``, ``embedding_dimensions``)."""
    return FakeOpenAI(**kwargs)
