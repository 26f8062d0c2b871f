"""Small ASGI pieces the shell needs: request ids, bounded body reads, and a stream that stops when the client
goes away."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar, cast

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from ..errors import PayloadTooLarge

log = logging.getLogger("switchyard.server")
T = TypeVar("T")


def _id_prefix() -> str:
    return secrets.token_hex(10)


class _Ids:
    """Request ids: ``req_`` + 20 random hex digits drawn once per process + a 12-digit counter. As unique as a
    UUID across processes and replicas (80 random bits), at the cost of an increment (uuid4 reads the OS's random
    source every time)."""

    prefix = _id_prefix()
    counter = itertools.count(1)

    @classmethod
    def reseed(cls) -> None:  # a forked child must not repeat its parent's ids
        cls.prefix = _id_prefix()
        cls.counter = itertools.count(1)

    @classmethod
    def new(cls) -> str:
        return f"req_{cls.prefix}{next(cls.counter) & 0xFFFFFFFFFFFF:012x}"


os.register_at_fork(after_in_child=_Ids.reseed)
new_request_id = _Ids.new

Endpoint = Callable[[Request], Awaitable[Any]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Any]]


class Shell:
    """The outermost ASGI layer: request ids for every HTTP request, and a direct path for the data plane.

    Every request gets our own unique id; the caller's ``x-request-id`` is kept if it sent one, and echoed back
    (else ours is). Records are keyed by our id, so a caller reusing an id loses nothing.

    ``fast`` maps exact ``(method, path)`` pairs (the data-plane endpoints) to their endpoints, which are called
    here without Starlette's middleware stack and linear route matching; anything else (other paths, other
    methods, so 404 and 405 too) goes through the Starlette app as before. The fast endpoints catch their own
    errors and answer in their protocol; ``on_error`` is the last resort, as Starlette's handler is for the rest.
    """

    def __init__(self, app: Any, fast: dict[tuple[str, str], Endpoint], on_error: ErrorHandler) -> None:
        self.app = app
        self.state = app.state
        self.fast = fast
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = b""
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                client = v[:200]
                break
        ours = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = ours
        state["client_request_id"] = client.decode("latin-1") if client else None
        rid = client or ours.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        endpoint = self.fast.get((scope["method"], scope["path"]))
        if endpoint is None:
            await self.app(scope, receive, send_with_id)
            return
        scope["app"] = self.app
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as e:
            response = await self.on_error(request, e)
        await response(scope, receive, send_with_id)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (before reading it all) one longer than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is {declared} bytes; the limit is {limit} bytes.", param="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body exceeds the limit of {limit} bytes.", param="body")
        chunks.append(chunk)
    return b"".join(chunks)


class StreamResponse:
    """An SSE response that stops as soon as the client disconnects.

    Frames are written when the producer would wait, not one by one: the frames rendered from one upstream read
    (a burst of events) leave in one write, with no added delay, since the write happens the moment the producer
    has nothing more ready (:func:`next_or_flush`). The last frames and the end of the body share one write.

    With ``linger`` (seconds; the gateway's ``ledger.drain_timeout``), the producer is let run to the chunk it is
    waiting for and closed there, so that the relay can hand the rest of the upstream stream to a drain, which reads
    it to its end for the real usage (see :mod:`switchyard.routing.drain`); past ``linger`` it is cancelled. Without,
    it is cancelled at once, and the upstream call with it."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str], status: int = 200,
                 linger: float = 0.0) -> None:
        self.body = body
        self.status = status
        self.linger = linger
        self.gone = False  # the client disconnected: relay nothing more
        raw = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
        raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        self.raw_headers = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.raw_headers})
        pending: list[bytes] = []

        async def flush() -> None:
            if pending:
                data = b"".join(pending)
                pending.clear()
                await send({"type": "http.response.body", "body": data, "more_body": True})

        async def pump() -> None:
            body = self.body
            while True:
                try:
                    data: bytes = await next_or_flush(body.__anext__(), flush)
                except StopAsyncIteration:
                    break
                if self.gone:
                    return
                if data:
                    pending.append(data)
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return

        producer = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if self.linger and not producer.done():  # the client left: stop at the chunk in flight
                self.gone = True
                await asyncio.wait({producer}, timeout=self.linger)
        finally:
            for task in (watcher, producer):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, OSError):
                        await task
            aclose = getattr(self.body, "aclose", None)
            if aclose is not None:
                await aclose()
        if producer.done() and not producer.cancelled():
            exc = producer.exception()
            if exc is not None and not isinstance(exc, OSError):
                log.error("stream failed after its start: %s", type(exc).__name__)


@types.coroutine
def next_or_flush(step: Awaitable[T], flush: Callable[[], Coroutine[Any, Any, None]]) -> Generator[Any, Any, T]:
    """Await ``step`` (the producer's next item); but if it must wait, first await ``flush()`` (write what is
    buffered), then wait with it. An ``await step`` with a hook at its first suspension: the task steps ``step``
    exactly as it would have, and whatever is thrown into the task (a cancellation) reaches ``step``."""
    if not isinstance(step, Coroutine):  # an awaitable that cannot be stepped (a future, say): a plain await
        yield from flush().__await__()
        return (yield from step.__await__())
    try:
        waiting = step.send(None)
    except StopIteration as e:
        return cast(T, e.value)  # ready at once: no write
    thrown: BaseException | None = None
    try:
        yield from flush().__await__()
    except BaseException as e:  # cancelled while writing: deliver it to the producer, where it is waiting
        thrown = e
    while True:
        try:
            if thrown is not None:
                exc, thrown = thrown, None
                waiting = step.throw(exc)
                continue
            try:
                sent = yield waiting
            except BaseException as e:
                thrown = e
                continue
            waiting = step.send(sent)
        except StopIteration as e:
            return cast(T, e.value)
