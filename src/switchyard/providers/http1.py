"""A lean HTTP/1.1 client for the one thing the hot path does most: POST a JSON body, read the whole reply.

aiohttp is a fine general client, but a third of the gateway's CPU per request went into its request and response
machinery (header multidicts, URL objects, auto headers, timers, a stream reader per reply). This client does only
what an upstream model call needs, on the event loop's own transports, with the same C parser uvicorn uses
(``httptools``):

* a pool of keep-alive connections per origin (scheme, host, port), at most ``limit`` open, idle ones closed after
  ``keepalive`` seconds; TLS through the standard library's default context (certificates verified);
* ``Content-Length`` and chunked replies (the parser de-chunks), ``gzip``/``deflate`` bodies decompressed;
* a connect timeout and a total timeout; a cancelled or failed exchange closes its connection, only a complete
  reply on a keep-alive connection goes back to the pool;
* streamed replies (:meth:`LeanHTTP.stream`): the body is handed over chunk by chunk as it arrives, with the
  timeout bounding each wait instead of the total, and back-pressure (reading pauses past 256 KiB unread);
* every transport failure is one of :data:`LEAN_ERRORS`, which :func:`switchyard.providers.http.transport_error`
  names (could not connect / was reset / closed the connection / timed out); aiohttp's are mapped onto them.

URLs this client does not take as they are (percent-encoded paths, which aiohttp's URL handling normalizes and
which a request signature may cover) go to aiohttp (:class:`switchyard.providers.http.UpstreamHTTP` routes them).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools


class TransportFailure(Exception):
    """Base of the lean client's transport errors."""


class ConnectFailed(TransportFailure):
    """The connection could not be made (refused, unreachable, DNS, TLS handshake)."""


class ConnectionReset(TransportFailure):
    """The peer reset the connection mid-exchange."""


class Disconnected(TransportFailure):
    """The peer closed the connection before the reply was complete, or sent something that is not HTTP."""


class ConnectTimeout(TimeoutError):
    """No connection within the connect timeout."""


class ReadTimeout(TimeoutError):
    """A streamed reply sent nothing within the read timeout."""


LEAN_ERRORS: tuple[type[BaseException], ...] = (TransportFailure, TimeoutError)

_HIGH_WATER = 256 * 1024  # a stream's unread bytes above which reading pauses


class Headers(dict[str, str]):
    """Reply headers keyed by lower-cased name (a repeated header keeps its last value), looked up in any case."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


class _Conn(asyncio.Protocol):
    """One connection: feeds what arrives to the parser, and completes the waiting exchange."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self, streaming: bool = False) -> None:
        self.status = 0
        self.headers = Headers()
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False
        self.streaming = streaming  # wake the waiter at the headers and at every chunk, not only at the end
        self.error: BaseException | None = None  # a failure that found no waiter (a stream between two reads)
        self.unread = 0
        self.paused = False

    # --- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Disconnected("the upstream switched protocols"))
        except httptools.HttpParserError as e:
            self._fail(Disconnected(f"the upstream sent a malformed reply ({e})"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete:
            return
        if self.status and "content-length" not in self.headers and "transfer-encoding" not in self.headers:
            self._finish(keep_alive=False)  # a reply delimited by the end of the connection
        elif isinstance(exc, ConnectionResetError):
            self._fail(ConnectionReset(str(exc)))
        else:
            self._fail(Disconnected("the upstream closed the connection" + (f" ({exc})" if exc else "")))

    # --- httptools callbacks -------------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.streaming:
            self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        if self.streaming:
            self.unread += len(body)
            if self.unread > _HIGH_WATER and not self.paused and self.transport is not None:
                self.transport.pause_reading()
                self.paused = True
            self._wake()

    def on_message_complete(self) -> None:
        self._finish(self.parser.should_keep_alive())

    # --- completion ---------------------------------------------------------------------------------------------

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _finish(self, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive and not self.closed
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)
        elif self.error is None:
            self.error = exc
        if self.transport is not None:
            self.transport.close()

    def resume(self) -> None:
        self.unread = 0
        if self.paused:
            self.paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


Origin = tuple[str, str, int]  # scheme, host, port


class LeanStream:
    """A streamed reply, open: ``status`` and ``headers`` now, the body through :meth:`chunks` (or :meth:`read`,
    whole). Each wait for more of the body is bounded by the read timeout."""

    __slots__ = ("_conn", "_decoder", "_timeout", "headers", "status")

    def __init__(self, conn: _Conn, read_timeout: float) -> None:
        self._conn = conn
        self._timeout = read_timeout
        self.status = conn.status
        self.headers = conn.headers
        encoding = conn.headers.get("content-encoding")
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(47 if encoding != "deflate" else zlib.MAX_WBITS)

    async def _next(self) -> bytes | None:
        """The next bytes that arrived (None at the end of the body)."""
        conn = self._conn
        while True:
            if conn.body:
                data = conn.body[0] if len(conn.body) == 1 else b"".join(conn.body)
                conn.body.clear()
                conn.resume()
                return data
            if conn.complete:
                return None
            if conn.error is not None:
                raise conn.error
            waiter = conn.waiter = conn.loop.create_future()
            try:
                async with asyncio.timeout(self._timeout):
                    await waiter
            except TimeoutError:  # only this timeout's own expiry: a failure is not a TimeoutError
                raise ReadTimeout(f"the upstream sent nothing for {self._timeout:g} s") from None
            finally:
                conn.waiter = None

    def _decode(self, data: bytes) -> bytes:
        try:
            return self._decoder.decompress(data)  # type: ignore[no-any-return]
        except zlib.error as e:
            raise Disconnected(f"the upstream sent a body that does not decompress ({e})") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body (decompressed) as it arrives."""
        while (data := await self._next()) is not None:
            if self._decoder is not None:
                data = self._decode(data)
                if not data:
                    continue
            yield data

    async def read(self) -> bytes:
        """The rest of the body, whole."""
        parts = [data async for data in self.chunks()]
        return b"".join(parts)


def _head(method: str, target: str, host: str, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    for k, v in headers.items():
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
            raise ValueError(f"header {k!r}: a newline or carriage return in a header")
        lk = k.lower()
        if lk in ("host", "content-length", "transfer-encoding", "connection"):
            continue
        lines.append(f"{k}: {v}")
    if not any(k.lower() == "accept-encoding" for k in headers):
        lines.append("accept-encoding: gzip, deflate")
    lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class LeanHTTP:
    """A pool of keep-alive HTTP/1.1 connections per origin, for whole-reply POSTs."""

    def __init__(self, *, limit: int, connect_timeout: float, total_timeout: float, keepalive: float = 60.0) -> None:
        self.limit = max(1, limit)
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.keepalive = keepalive
        self._idle: dict[Origin, collections.deque[_Conn]] = {}
        self._open = 0
        self._slots: asyncio.Semaphore | None = None
        self._ssl: ssl.SSLContext | None = None
        self._parsed: dict[str, tuple[Origin, str, str]] = {}  # url -> origin, host header, request target

    @staticmethod
    def takes(url: str) -> bool:
        """Whether this client sends ``url`` exactly as given (else the caller uses aiohttp)."""
        return url.startswith(("http://", "https://")) and "%" not in url and "#" not in url

    def _split(self, url: str) -> tuple[Origin, str, str]:
        hit = self._parsed.get(url)
        if hit is not None:
            return hit
        u = urlsplit(url)
        scheme = u.scheme
        host = u.hostname or ""
        port = u.port or (443 if scheme == "https" else 80)
        default = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if default else f"{shown}:{port}"
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        out = ((scheme, host, port), host_header, target)
        if len(self._parsed) < 1024:
            self._parsed[url] = out
        return out

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   query: str | None = None) -> tuple[int, Headers, bytes]:
        origin, head = self._request(url, body, headers, query)
        async with asyncio.timeout(self.total_timeout), self._slot():
            conn = self._checkout(origin) or await self._connect(origin)
            ok = False
            try:
                await self._send(conn, head, body)
                ok = True
            finally:
                conn.waiter = None
                if ok and conn.keep_alive and not conn.closed:
                    self._checkin(origin, conn)
                else:
                    self._drop(conn)
        data = b"".join(conn.body)
        encoding = conn.headers.get("content-encoding")
        if encoding in ("gzip", "deflate", "x-gzip") and data:
            try:
                data = zlib.decompress(data, 47 if encoding != "deflate" else zlib.MAX_WBITS)
            except zlib.error:
                try:
                    data = zlib.decompress(data, -zlib.MAX_WBITS)  # raw deflate, as some servers send it
                except zlib.error as e:
                    raise Disconnected(f"the upstream sent a body that does not decompress ({e})") from None
        return conn.status, conn.headers, data

    @contextlib.asynccontextmanager
    async def stream(self, url: str, body: bytes, headers: Mapping[str, str],
                     query: str | None = None) -> AsyncIterator[LeanStream]:
        """POST ``body``; the reply open for reading once its headers are in. The timeout bounds each wait (for the
        headers, then for each part of the body), not the whole. Leaving the block lets go of the connection: back
        to the pool when the reply was complete, closed otherwise (a consumer that stops early)."""
        origin, head = self._request(url, body, headers, query)
        async with self._slot():
            conn = self._checkout(origin) or await self._connect(origin)
            ok = False
            try:
                try:
                    async with asyncio.timeout(self.total_timeout):
                        await self._send(conn, head, body, streaming=True)
                except TimeoutError:
                    raise ReadTimeout(f"no reply headers within {self.total_timeout:g} s") from None
                yield LeanStream(conn, self.total_timeout)
                ok = True
            finally:
                conn.waiter = None
                if ok and conn.complete and conn.keep_alive and not conn.closed:
                    conn.resume()
                    conn.streaming = False
                    self._checkin(origin, conn)
                else:
                    self._drop(conn)

    # --- one exchange -------------------------------------------------------------------------------------------

    def _request(self, url: str, body: bytes, headers: Mapping[str, str],
                 query: str | None) -> tuple[Origin, bytes]:
        """The origin to send to, and the request head."""
        origin, host, target = self._split(url)
        if query:
            target += ("&" if "?" in target else "?") + query
        return origin, _head("POST", target, host, headers, len(body))

    def _slot(self) -> asyncio.Semaphore:
        if self._slots is None:  # made inside the running loop
            self._slots = asyncio.Semaphore(self.limit)
        return self._slots

    @staticmethod
    async def _send(conn: _Conn, head: bytes, body: bytes, streaming: bool = False) -> None:
        """Write the request; return when the reply is complete (``streaming``: when its headers are in)."""
        conn._reset(streaming)
        waiter = conn.waiter = conn.loop.create_future()
        assert conn.transport is not None
        conn.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            conn.transport.write(body)
        await waiter

    # --- the pool -----------------------------------------------------------------------------------------------

    def _checkout(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed by the peer
            if conn.closed or now - conn.idle_since > self.keepalive or conn.transport is None \
                    or conn.transport.is_closing():
                self._drop(conn)
                continue
            return conn
        return None

    def _checkin(self, origin: Origin, conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(origin, collections.deque()).append(conn)

    def _drop(self, conn: _Conn) -> None:
        conn.close()
        self._open -= 1

    async def _connect(self, origin: Origin) -> _Conn:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        self._trim()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: _Conn(loop), host, port, ssl=ctx,
                                                       server_hostname=host if ctx else None)
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {host}:{port} within {self.connect_timeout:g} s") from None
        except (OSError, ssl.SSLError) as e:
            raise ConnectFailed(f"{host}:{port}: {e}") from None
        self._open += 1
        return conn

    def _trim(self) -> None:
        """Close idle connections to other origins while the pool is full (the slots bound exchanges, not idle
        connections, so a gateway calling many origins keeps at most ``limit`` connections open)."""
        for idle in self._idle.values():
            while idle and self._open >= self.limit:
                self._drop(idle.popleft())

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                self._drop(idle.popleft())
        self._idle.clear()
        await asyncio.sleep(0)
