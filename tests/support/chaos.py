"""A chaos upstream: an OpenAI-wire HTTP/1.1 server whose behaviour is scripted per request, for routing tests.

It is a small asyncio server written on raw streams (not an ASGI app) so that it can fail the way real servers
and networks do: answer 500, 503 with ``Retry-After``, 429; reset the TCP connection in the middle of a body
(RST, via SO_LINGER 0); hang before the headers or in the middle of a stream; send malformed JSON; end an SSE
stream without ``[DONE]``; drip chunks slowly; or stop listening altogether (``down()``: new connections are
refused, open ones are reset). A closed port (``closed_port_url``) refuses every connection.

Successful replies follow OpenAI's wire format, from the OpenAI API reference
(https://platform.openai.com/docs/api-reference/chat/object, .../chat/streaming for ``chat.completion.chunk``
and ``data: [DONE]``, .../embeddings/object): ids, ``object``, ``created``, ``model``, ``choices`` with
``message``/``delta``, ``finish_reason``, ``usage`` (in a final chunk with empty ``choices`` when the request
asks for ``stream_options.include_usage``).

The server runs on its own event loop in a daemon thread and binds loopback only. Every request is counted in
``hits`` (thread-safe appends), so tests can assert how many requests a broken deployment really received.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from switchyard.errors import UpstreamError
from switchyard.messages import (
    ChatRequest,
    ChatResponse,
    Choice,
    Chunk,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    Finish,
    FinishReason,
    Message,
    Role,
    StreamStart,
    TextDelta,
    TextPart,
    Usage,
    UsageUpdate,
)
from switchyard.providers.base import Provider, Target

__all__ = ["ChaosUpstream", "Fault", "Hit", "ScriptedProvider", "closed_port_url"]


# --- faults --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What the chaos upstream does with one request. Build them with the class methods."""

    kind: str
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0  # hang length, time to first byte, or the gap between chunks
    after: int = 2  # chunks (streams) sent before the fault strikes
    body: bytes | None = None

    @classmethod
    def ok(cls, ttft: float = 0.0, gap: float = 0.0) -> Fault:
        return cls("ok", seconds=ttft, after=0, body=orjson.dumps(gap))

    @classmethod
    def error(cls, status: int, retry_after: float | None = None, message: str | None = None,
              code: str | None = None) -> Fault:
        headers = (("retry-after", f"{retry_after:g}"),) if retry_after is not None else ()
        kind = "server_error" if status >= 500 else "invalid_request_error"
        if status == 429:
            kind, code = "requests", code or "rate_limit_exceeded"
        err = {"message": message or f"chaos: scripted HTTP {status}", "type": kind, "param": None, "code": code}
        return cls("status", status=status, headers=headers, body=orjson.dumps({"error": err}))

    @classmethod
    def reset(cls, after: int = 2) -> Fault:
        """Reset the connection mid-body: after half a JSON reply, or after ``after`` stream chunks."""
        return cls("reset", after=after)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Fault:
        """Send nothing (not even headers) for ``seconds``, or until the client goes away."""
        return cls("hang", seconds=seconds)

    @classmethod
    def hang_mid_stream(cls, seconds: float = 30.0, after: int = 2) -> Fault:
        return cls("hang_mid_stream", seconds=seconds, after=after)

    @classmethod
    def malformed(cls) -> Fault:
        """200 with a body (or a first SSE frame) that is not JSON."""
        return cls("malformed")

    @classmethod
    def truncated(cls, after: int = 2) -> Fault:
        """End the SSE stream cleanly after ``after`` chunks, without the final chunk or ``[DONE]``."""
        return cls("truncated", after=after)

    @classmethod
    def drip(cls, gap: float, ttft: float = 0.0) -> Fault:
        """A slow but correct reply: ``gap`` seconds between chunks."""
        return cls.ok(ttft=ttft, gap=gap)


@dataclass(frozen=True)
class Hit:
    at: float  # time.monotonic()
    path: str
    fault: str
    stream: bool


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the server ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class ChaosUpstream:
    """Use as a context manager; ``base_url`` ends in ``/v1`` (an OpenAI provider's ``base_url``)."""

    name: str = "chaos"
    default: Fault = field(default_factory=Fault.ok)
    policy: Callable[[int, str], Fault] | None = None  # (request number, path) -> fault; overrides ``default``
    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    _script: deque[Fault] = field(default_factory=deque)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None
    _conns: set[asyncio.StreamWriter] = field(default_factory=set)
    _count: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- scripting (from any thread) ---

    def script(self, *faults: Fault) -> None:
        """The next requests meet these faults, in order; then ``default`` (or ``policy``) applies again."""
        self._script.extend(faults)

    def reset(self, default: Fault | None = None) -> None:
        self._script.clear()
        self.hits.clear()
        self.policy = None
        self.default = default or Fault.ok()

    def count(self, since: float = 0.0, path: str = "") -> int:
        return sum(1 for h in list(self.hits) if h.at >= since and h.path.endswith(path))

    def down(self) -> None:
        """Stop listening (new connections are refused) and reset every open connection."""
        self._call(self._down)

    def up(self) -> None:
        self._call(self._listen)

    # --- lifecycle ---

    def __enter__(self) -> ChaosUpstream:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self._listen())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._down())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"chaos-{self.name}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the chaos upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _call(self, fn: Callable[[], Any]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(fn(), self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._serve, sock=sock, backlog=512)

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            _rst(w)
        self._conns.clear()

    # --- one connection ---

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:  # asyncio skips this for a socket made by hand (proto 0): no Nagle delays
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep = await self._answer(method, path.split("?", 1)[0], body, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.discard(writer)
            if not writer.is_closing():
                writer.close()

    def _next_fault(self, path: str) -> Fault:
        self._count += 1
        if self._script:
            with contextlib.suppress(IndexError):
                return self._script.popleft()
        if self.policy is not None:
            return self.policy(self._count, path)
        return self.default

    async def _answer(self, method: str, path: str, raw: bytes, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        try:
            req = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            req = {}
        stream = bool(req.get("stream"))
        fault = self._next_fault(path)
        self.hits.append(Hit(time.monotonic(), path, fault.kind, stream))
        if fault.kind == "hang":
            await _wait_or_gone(reader, fault.seconds)
            _rst(writer)
            return False
        if fault.kind == "status":
            await _send(writer, fault.status, "application/json", fault.body or b"{}", fault.headers)
            return True
        if fault.kind == "ok" and fault.seconds and await _wait_or_gone(reader, fault.seconds):
            return False
        model = str(req.get("model") or "chaos-model")
        if path.endswith("/embeddings"):
            return await self._embeddings(req, model, fault, writer)
        if not path.endswith("/chat/completions"):
            await _send(writer, 404, "application/json", b'{"error":{"message":"chaos: unknown path"}}')
            return True
        if stream:
            return await self._stream(req, model, fault, reader, writer)
        return await self._chat(req, model, fault, writer)

    def _text(self) -> list[str]:
        return ["chaos ", "ok ", "from ", self.name]

    async def _chat(self, req: dict[str, Any], model: str, fault: Fault, writer: asyncio.StreamWriter) -> bool:
        words = self._text()
        body = orjson.dumps({
            "id": f"chatcmpl-chaos{self._count}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)},
        })
        if fault.kind == "malformed":
            await _send(writer, 200, "application/json", b'{"id": "chatcmpl-broken", "choices": [')
            return True
        if fault.kind == "reset":
            writer.write(_head(200, "application/json", (("content-length", str(len(body))),)))
            writer.write(body[: len(body) // 2])
            await writer.drain()
            _rst(writer)
            return False
        await _send(writer, 200, "application/json", body)
        return True

    async def _stream(self, req: dict[str, Any], model: str, fault: Fault, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        head = {"id": f"chatcmpl-chaos{self._count}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model, "system_fingerprint": None}
        words = self._text()
        frames: list[dict[str, Any]] = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                                "logprobs": None, "finish_reason": None}]}]
        frames += [{**head, "choices": [{"index": 0, "delta": {"content": w}, "logprobs": None,
                                         "finish_reason": None}]} for w in words]
        frames.append({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
        if (req.get("stream_options") or {}).get("include_usage"):
            frames.append({**head, "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": len(words),
                                                            "total_tokens": 10 + len(words)}})
        gap = float(orjson.loads(fault.body)) if fault.kind == "ok" and fault.body else 0.0
        writer.write(_head(200, "text/event-stream", (("transfer-encoding", "chunked"), ("cache-control", "no-cache"))))
        if fault.kind == "malformed":
            writer.write(_chunk(b"data: {not json}\n\n"))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        for i, frame in enumerate(frames):
            if fault.kind in ("reset", "hang_mid_stream", "truncated") and i == fault.after:
                break
            if gap and i and await _wait_or_gone(reader, gap):
                return False
            writer.write(_chunk(b"data: " + orjson.dumps(frame) + b"\n\n"))
            await writer.drain()
        else:
            writer.write(_chunk(b"data: [DONE]\n\n"))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if fault.kind == "truncated":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        if fault.kind == "hang_mid_stream":
            await _wait_or_gone(reader, fault.seconds)
        _rst(writer)
        return False

    async def _embeddings(self, req: dict[str, Any], model: str, fault: Fault, writer: asyncio.StreamWriter) -> bool:
        inp = req.get("input")
        items = inp if isinstance(inp, list) and inp and not isinstance(inp[0], int) else [inp]
        data = [{"object": "embedding", "index": i, "embedding": [0.6, 0.8, 0.0]} for i in range(len(items))]
        body = orjson.dumps({"object": "list", "data": data, "model": model,
                             "usage": {"prompt_tokens": len(items), "total_tokens": len(items)}})
        if fault.kind == "malformed":
            body = b"<html>502 Bad Gateway</html>"
        if fault.kind == "reset":
            writer.write(_head(200, "application/json", (("content-length", str(len(body))),)))
            writer.write(body[: len(body) // 2])
            await writer.drain()
            _rst(writer)
            return False
        await _send(writer, 200, "application/json", body)
        return True


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


def _head(status: int, ctype: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-type: {ctype}",
             "x-request-id: chaos", *(f"{k}: {v}" for k, v in extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _send(writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes,
                extra: tuple[tuple[str, str], ...] = ()) -> None:
    writer.write(_head(status, ctype, (("content-length", str(len(body))), *extra)) + body)
    await writer.drain()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP reset rather than a polite FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _wait_or_gone(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Sleep ``seconds``; True (early) if the client closed the connection meanwhile."""
    gone = asyncio.ensure_future(reader.read(1))
    try:
        done, _ = await asyncio.wait({gone}, timeout=seconds)
        return bool(done) and not gone.result()
    finally:
        if not gone.done():
            gone.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gone


@contextlib.contextmanager
def chaos_upstreams(*names: str) -> Iterator[list[ChaosUpstream]]:
    ups = [ChaosUpstream(name=n) for n in names]
    with contextlib.ExitStack() as stack:
        for u in ups:
            stack.enter_context(u)
        yield ups


# --- an in-process twin, for executor unit tests ----------------------------------------------------------


class ScriptedProvider(Provider):
    """A provider that answers from a script of steps, without the network. Each step is one of:
    ``("ok", delay)``, ``("error", UpstreamError-or-status)``, ``("hang", seconds)``, ``("break", n_chunks)``
    (a stream that fails after n chunks), ``("drip", gap)``. With no step left it answers at once."""

    type = "scripted"
    wire = "scripted"

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self.steps: deque[tuple[str, Any]] = deque()
        self.calls = 0
        self.cancelled = 0
        self.active = 0

    def script(self, *steps: tuple[str, Any]) -> None:
        self.steps.extend(steps)

    def _step(self) -> tuple[str, Any]:
        self.calls += 1
        return self.steps.popleft() if self.steps else ("ok", 0.0)

    def _error(self, value: Any, target: Target) -> UpstreamError:
        if isinstance(value, UpstreamError):
            return value
        status = int(value)
        return UpstreamError(f"provider {self.name!r} returned HTTP {status}", provider=self.name,
                             deployment=target.deployment, upstream_status=status,
                             retryable=status == 429 or status >= 500)

    async def _wait(self, seconds: float) -> None:
        self.active += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def chat(self, req: ChatRequest, target: Target) -> ChatResponse:
        kind, value = self._step()
        if kind == "error":
            raise self._error(value, target)
        if kind in ("ok", "hang") and value:
            await self._wait(float(value))
        msg = Message(Role.ASSISTANT, [TextPart(f"from {target.deployment}")])
        return ChatResponse(id="r", model=target.model, created=0,
                            choices=[Choice(0, msg, FinishReason.STOP)], usage=Usage(10, 3))

    async def stream(self, req: ChatRequest, target: Target) -> AsyncIterator[Chunk]:
        kind, value = self._step()
        if kind == "error":
            raise self._error(value, target)
        if kind in ("ok", "hang") and value:
            await self._wait(float(value))
        yield Chunk([StreamStart("s", target.model, 0), TextDelta("from ")])
        for i, word in enumerate((target.deployment, " again", " done")):
            if kind == "break" and i + 1 >= int(value):
                raise UpstreamError(f"provider {self.name!r} closed the connection unexpectedly",
                                    provider=self.name, deployment=target.deployment, retryable=True)
            if kind == "drip":
                await self._wait(float(value))
            yield Chunk([TextDelta(word)])
        yield Chunk([Finish(FinishReason.STOP), UsageUpdate(Usage(10, 3))])

    async def embed(self, req: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        kind, value = self._step()
        if kind == "error":
            raise self._error(value, target)
        if value:
            await self._wait(float(value))
        return EmbeddingResponse(model=target.model, data=[Embedding(0, [1.0])], usage=Usage(2))


def scripted_router(config: dict[str, Any], clock: Callable[[], float] | None = None, seed: int = 1,
                    sleep: Callable[[float], Any] | None = None) -> tuple[Any, Any, dict[str, ScriptedProvider]]:
    """(Router, Executor, providers by name) for a config whose providers are all ScriptedProviders.

    ``config`` is a full config dict; its providers may be given as ``{"type": "simulated"}``.
    """
    import random

    from switchyard.catalog import Catalog
    from switchyard.config import parse_config
    from switchyard.routing import Executor, Router

    cfg = parse_config(config, "<test>", {})
    providers: dict[str, ScriptedProvider] = {}

    def factory(name: str, pc: Any) -> Provider:
        providers[name] = ScriptedProvider(name, pc)
        return providers[name]

    catalog = Catalog.from_config(cfg, factory)
    kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
    router = Router(catalog, cfg, rng=random.Random(seed), **kw)
    ex_kw: dict[str, Any] = dict(kw)
    if sleep is not None:
        ex_kw["sleep"] = sleep
    executor = Executor(router, rng=random.Random(seed), **ex_kw)
    return router, executor, providers
