"""A minimal, fast OpenAI-compatible upstream for benchmarks: chat completions (plain and streamed) and embeddings,
after a fixed latency.

    python -m benchmarks.fake_upstream --port 18001 --latency-ms 0 [--chunks 16 --chunk-interval-ms 0]

Replies follow OpenAI's wire format as documented in the API reference, https://platform.openai.com/docs/api-reference:
the chat completion object (/chat/object), the chat completion chunk object (/chat-streaming/streaming), whose
stream ends with ``data: [DONE]`` and, when ``stream_options.include_usage`` is set, a last chunk with empty
``choices`` and the usage; and the embedding list (/embeddings/object).

Timing: every reply starts ``--latency-ms`` after its request is complete. A stream then sends its role chunk and
its first content chunk, then one content chunk each ``--chunk-interval-ms`` (``--chunks`` in all), then the
finish chunk, the usage chunk and ``[DONE]`` together.

Two implementations, the same replies: ``--impl raw`` (default) is an asyncio Protocol on uvloop with httptools'
parser and keep-alive, no framework; ``--impl asgi`` is a bare ASGI callable under uvicorn (httptools, uvloop).
The raw one needs about half the CPU per reply (``python -m benchmarks.fake_compare``), so the suite uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson
import uvloop

WORDS = ("The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "lazy ", "dog. ")
FINGERPRINT = "fp_bench0001"


@dataclass(slots=True)
class Settings:
    latency: float = 0.0  # seconds before a reply starts
    chunks: int = 16  # content chunks in a stream (and words in a plain reply)
    interval: float = 0.0  # seconds between content chunks
    dimensions: int = 16  # embedding length when the request does not say


@dataclass(slots=True)
class Reply:
    """A whole reply (``body``) or a stream (``frames``: the SSE events, each one already framed)."""

    status: int
    body: bytes = b""
    frames: list[bytes] | None = None
    tail: int = 0  # index of the first frame after the content chunks (the finish chunk)


_ids = itertools.count(1)


def _error(status: int, message: str, etype: str = "invalid_request_error") -> Reply:
    return Reply(status, orjson.dumps({"error": {"message": message, "type": etype, "param": None, "code": None}}))


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _prompt_tokens(body: dict[str, Any]) -> int:
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return 1
    size = sum(len(m.get("content") or "") for m in msgs if isinstance(m, dict) and isinstance(m.get("content"), str))
    return max(1, size // 4)


def chat(body: dict[str, Any], s: Settings) -> Reply:
    model = str(body.get("model") or "fake")
    n = s.chunks
    if isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0:
        n = min(n, body["max_tokens"])
    words = [WORDS[i % len(WORDS)] for i in range(n)]
    cid = f"chatcmpl-bench{next(_ids):012d}"
    created = int(time.time())
    usage = _usage(_prompt_tokens(body), n)
    if not body.get("stream"):
        return Reply(200, orjson.dumps({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT, "service_tier": "default",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words), "refusal": None,
                                                 "annotations": []},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage}))
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT, "service_tier": "default"}

    def frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    frames = [frame({"role": "assistant", "content": "", "refusal": None})]
    frames.extend(frame({"content": w}) for w in words)
    tail = len(frames)
    frames.append(frame({}, "stop"))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        frames.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    return Reply(200, frames=frames, tail=tail)


def embeddings(body: dict[str, Any], s: Settings) -> Reply:
    inputs = body.get("input")
    items: list[Any] = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
    asked = body.get("dimensions")
    dims = asked if isinstance(asked, int) and 0 < asked <= 8192 else s.dimensions
    vector = [round(0.01 * (i + 1), 6) for i in range(dims)]
    packed: Any = vector
    if body.get("encoding_format") == "base64":
        packed = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
    data = [{"object": "embedding", "index": i, "embedding": packed} for i in range(len(items))]
    tokens = sum(max(1, len(str(x)) // 4) for x in items)
    return Reply(200, orjson.dumps({"object": "list", "data": data, "model": str(body.get("model") or "fake"),
                                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))


def handle(method: str, path: str, raw: bytes, s: Settings) -> Reply:
    """Route one request to its reply. Pure: no I/O, no waiting."""
    path = path.split("?", 1)[0]
    if method == "GET" and path in ("/health", "/v1/health"):
        return Reply(200, b'{"status":"ok"}')
    if method == "GET" and path == "/v1/models":
        return Reply(200, b'{"object":"list","data":[{"id":"fake","object":"model","created":0,"owned_by":"bench"}]}')
    if method != "POST" or path not in ("/v1/chat/completions", "/chat/completions", "/v1/embeddings", "/embeddings"):
        return _error(404, f"Unknown request URL: {method} {path}.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.")
    return chat(body, s) if path.endswith("chat/completions") else embeddings(body, s)


# --- the raw server ------------------------------------------------------------------------------------------

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}
_JSON_HEAD = b"content-type: application/json\r\n"
_SSE_TYPE = b"text/event-stream; charset=utf-8"
_SSE_HEAD = b"content-type: " + _SSE_TYPE + b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n"


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error"))


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class RawHTTP(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive; requests answered strictly in order (pipelining-safe)."""

    __slots__ = ("_body", "_busy", "_loop", "_parser", "_queue", "_settings", "_transport", "_url")

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._queue: deque[tuple[str, str, bytes, bool]] = deque()
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.write(_status_line(400) + b"content-length: 0\r\nconnection: close\r\n\r\n")
                self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        p = self._parser
        self._queue.append((p.get_method().decode(), self._url.decode("latin-1"), b"".join(self._body),
                            p.should_keep_alive()))
        if not self._busy:
            self._next()

    # replying
    def _next(self) -> None:
        if not self._queue or self._transport is None:
            self._busy = False
            return
        self._busy = True
        method, path, raw, keep = self._queue.popleft()
        reply = handle(method, path, raw, self._settings)
        if self._settings.latency > 0:
            self._loop.call_later(self._settings.latency, self._start, reply, keep)
        else:
            self._start(reply, keep)

    def _start(self, reply: Reply, keep: bool) -> None:
        t = self._transport
        if t is None:
            return
        conn = b"" if keep else b"connection: close\r\n"
        if reply.frames is None:
            t.write(_status_line(reply.status) + _JSON_HEAD + b"content-length: %d\r\n" % len(reply.body) + conn
                    + b"\r\n" + reply.body)
            self._done(keep)
            return
        frames, content_end = reply.frames, reply.tail
        t.write(_status_line(reply.status) + _SSE_HEAD + conn + b"\r\n" + _chunked(frames[0] + frames[1]))
        self._stream(frames, 2, content_end, keep)

    def _stream(self, frames: list[bytes], i: int, content_end: int, keep: bool) -> None:
        t = self._transport
        if t is None:
            return
        if i < content_end and self._settings.interval > 0:
            self._loop.call_later(self._settings.interval, self._emit, frames, i, content_end, keep)
            return
        while i < content_end:
            t.write(_chunked(frames[i]))
            i += 1
        t.write(_chunked(b"".join(frames[content_end:])) + b"0\r\n\r\n")
        self._done(keep)

    def _emit(self, frames: list[bytes], i: int, content_end: int, keep: bool) -> None:
        if self._transport is None:
            return
        self._transport.write(_chunked(frames[i]))
        self._stream(frames, i + 1, content_end, keep)

    def _done(self, keep: bool) -> None:
        if not keep and self._transport is not None:
            self._transport.close()
            return
        self._next()


async def serve_raw(host: str, port: int, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawHTTP(settings), host, port, backlog=2048, reuse_address=True)
    async with server:
        await server.serve_forever()


# --- the ASGI alternative ---------------------------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def make_asgi(settings: Settings) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        parts: list[bytes] = []
        while True:
            msg = await receive()
            parts.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        reply = handle(scope["method"], scope["path"], b"".join(parts), settings)
        if settings.latency > 0:
            await asyncio.sleep(settings.latency)
        if reply.frames is None:
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": reply.body})
            return
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(b"content-type", _SSE_TYPE), (b"cache-control", b"no-cache")]})
        frames, content_end = reply.frames, reply.tail
        await send({"type": "http.response.body", "body": frames[0] + frames[1], "more_body": True})
        for f in frames[2:content_end]:
            if settings.interval > 0:
                await asyncio.sleep(settings.interval)
            await send({"type": "http.response.body", "body": f, "more_body": True})
        await send({"type": "http.response.body", "body": b"".join(frames[content_end:])})

    return app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fake_upstream", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay before every reply starts")
    ap.add_argument("--chunks", type=int, default=16, help="content chunks per stream (words per plain reply)")
    ap.add_argument("--chunk-interval-ms", type=float, default=0.0, help="delay between streamed content chunks")
    ap.add_argument("--dimensions", type=int, default=16, help="embedding length when the request gives none")
    ap.add_argument("--impl", choices=("raw", "asgi"), default="raw")
    a = ap.parse_args(argv)
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("the fake upstream listens on loopback only")
    if a.chunks < 1 or a.latency_ms < 0 or a.chunk_interval_ms < 0:
        ap.error("--chunks must be >= 1 and the delays >= 0")
    s = Settings(latency=a.latency_ms / 1000, chunks=a.chunks, interval=a.chunk_interval_ms / 1000,
                 dimensions=a.dimensions)
    if a.impl == "asgi":
        import uvicorn

        uvicorn.run(make_asgi(s), host=a.host, port=a.port, loop="uvloop", http="httptools", lifespan="off",
                    access_log=False, log_level="warning", backlog=2048)
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_raw(a.host, a.port, s))


if __name__ == "__main__":
    main()
