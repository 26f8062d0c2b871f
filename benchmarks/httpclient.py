"""A small, fast HTTP/1.1 client for load generation: persistent keep-alive connections on asyncio (uvloop),
responses parsed by httptools, timestamps taken in the parser's callbacks (not after the awaiting task resumes).

Loopback only: :func:`parse_loopback_url` refuses any other host, so the load can never leave the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

LOOPBACK_NAMES = ("localhost",)


class NotLoopback(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    path: str


def parse_loopback_url(url: str) -> Endpoint:
    """``http://127.0.0.1:PORT/path`` → Endpoint; raises :class:`NotLoopback` for any non-loopback host."""
    u = urlsplit(url)
    if u.scheme != "http":
        raise NotLoopback(f"{url!r}: only plain http:// to a loopback address is allowed")
    host = u.hostname or ""
    if host not in LOOPBACK_NAMES:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise NotLoopback(f"{url!r}: the load generator only targets loopback (127.0.0.0/8, ::1, localhost)")
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return Endpoint("127.0.0.1" if host == "localhost" else host, u.port or 80, path)


def build_request(method: str, ep: Endpoint, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request's bytes, built once and sent as is for every request of a phase."""
    lines = [f"{method} {ep.path} HTTP/1.1", f"host: {ep.host}:{ep.port}", "user-agent: switchyard-bench"]
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Exchange:
    """One request's outcome, timestamps from ``time.perf_counter()``."""

    __slots__ = ("done", "end", "error", "first", "nbytes", "sent", "status", "tail")

    def __init__(self) -> None:
        self.sent = 0.0
        self.first = 0.0  # first body byte
        self.end = 0.0  # message complete
        self.status = 0
        self.nbytes = 0
        self.tail = b""  # the last bytes of the body (a stream must end with [DONE])
        self.error: str | None = None
        self.done: asyncio.Future[None] | None = None


class Connection(asyncio.Protocol):
    """A keep-alive connection that carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.current: Exchange | None = None
        self.reusable = True
        self._timer: asyncio.TimerHandle | None = None

    # asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        self._finish("connection closed" if exc is None else f"connection lost: {type(exc).__name__}")

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.reusable = False
            self._finish(f"bad response: {e}")
            if self.transport is not None:
                self.transport.close()

    # httptools
    def on_headers_complete(self) -> None:
        if self.current is not None:
            self.current.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        ex = self.current
        if ex is None:
            return
        if not ex.first:
            ex.first = time.perf_counter()
        ex.nbytes += len(body)
        ex.tail = (ex.tail + body)[-32:]

    def on_message_complete(self) -> None:
        ex = self.current
        if ex is None:
            return
        ex.end = time.perf_counter()
        if not ex.first:
            ex.first = ex.end
        if not self.parser.should_keep_alive():
            self.reusable = False
        self._finish(None)

    # use
    def send(self, data: bytes, ex: Exchange, timeout: float) -> asyncio.Future[None]:
        assert self.current is None and self.transport is not None
        loop = asyncio.get_running_loop()
        ex.done = loop.create_future()
        self.current = ex
        self._timer = loop.call_later(timeout, self._timeout)
        ex.sent = time.perf_counter()
        self.transport.write(data)
        return ex.done

    def _timeout(self) -> None:
        self._timer = None
        self.reusable = False
        self._finish("timeout")
        if self.transport is not None:
            self.transport.abort()

    def _finish(self, error: str | None) -> None:
        ex, self.current = self.current, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ex is None or ex.done is None or ex.done.done():
            return
        if error is not None:
            ex.error = error
        ex.done.set_result(None)


class Pool:
    """Up to ``limit`` persistent connections to one endpoint; a request waits (FIFO) when all are busy."""

    def __init__(self, ep: Endpoint, limit: int, connect_timeout: float = 5.0) -> None:
        self.ep = ep
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.opened = 0  # connections opened over the pool's life (a sign of churn when much above the peak)
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()
        self._waiters: deque[asyncio.Future[Connection]] = deque()
        self._connecting = 0

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(loop.create_connection(Connection, self.ep.host, self.ep.port),
                                         self.connect_timeout)
        self.opened += 1
        return conn

    async def acquire(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.transport is not None and conn.reusable:
                return conn
            self._all.discard(conn)
        if len(self._all) + self._connecting < self.limit:
            self._connecting += 1
            try:
                conn = await self._open()
            finally:
                self._connecting -= 1
            self._all.add(conn)
            return conn
        fut: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return await fut

    def release(self, conn: Connection) -> None:
        if conn.transport is None or not conn.reusable:
            self._all.discard(conn)
            if conn.transport is not None:
                conn.transport.close()
            if self._waiters:  # a slot freed: let the first waiter open a new connection
                waiter = self._waiters.popleft()
                task = asyncio.ensure_future(self.acquire())
                task.add_done_callback(lambda t: self._hand_over(waiter, t))
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    async def request(self, data: bytes, ex: Exchange, response_timeout: float) -> None:
        try:
            conn = await self.acquire()
        except (OSError, TimeoutError) as e:
            ex.error = f"connect failed: {type(e).__name__}"
            return
        try:
            await conn.send(data, ex, response_timeout)
        finally:
            self.release(conn)

    def _hand_over(self, waiter: asyncio.Future[Connection], task: asyncio.Future[Connection]) -> None:
        if task.cancelled():
            if not waiter.done():
                waiter.cancel()
            return
        exc = task.exception()
        if exc is not None:
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if waiter.done():
            self.release(task.result())
        else:
            waiter.set_result(task.result())

    def close(self) -> None:
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
        for w in self._waiters:
            if not w.done():
                w.cancel()
