"""A lean HTTP/1.1 client for the one thing the hot path does most: POST a JSON body, read the reply.

aiohttp is a fine general client, but a third of the gateway's CPU per request went into its request and response
machinery (header multidicts, URL objects, auto headers, timers, a stream reader per reply). This client does only
what an upstream model call needs, on the event loop's own transports, with the same C parser uvicorn uses
(``httptools``). It is the providers' default :class:`~switchyard.providers.transport.Transport`:

* a pool of keep-alive connections per origin (scheme, host, port), at most ``limit`` open, idle ones closed after
  ``keepalive`` seconds; TLS verified through the standard library's default context, or one made from the
  provider's ``ca_file``;
* ``Content-Length`` and chunked replies (the parser de-chunks), ``gzip``/``deflate`` bodies decompressed;
* a connect timeout and a total timeout; a cancelled or failed exchange closes its connection, only a complete
  reply on a keep-alive connection goes back to the pool;
* streamed replies (:meth:`LeanHTTP.stream`): the body is handed over chunk by chunk as it arrives, with the
  timeout bounding each wait instead of the total, and back-pressure (reading pauses past 256 KiB unread);
* outbound proxies (:mod:`.proxy`): an https origin through a CONNECT tunnel with TLS inside it, an http origin in
  absolute form, with the proxy's credentials;
* every transport failure is one of :data:`~switchyard.providers.transport.TRANSPORT_ERRORS`, which the provider
  base names (could not connect / was reset / closed the connection / timed out / the proxy refused).

It sends every URL exactly as given (a percent-encoded path stays encoded). Bedrock's provider uses aiohttp instead
(:class:`switchyard.providers.http.AiohttpTransport`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from .proxy import ProxyPolicy, ProxyURL, open_tunnel
from .transport import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    Disconnected,
    Headers,
    ProxyError,
    ReadTimeout,
    Response,
    TransportFailure,
)

__all__ = ["ConnectFailed", "ConnectTimeout", "ConnectionReset", "Disconnected", "Headers", "LeanHTTP", "LeanStream",
           "ReadTimeout", "TransportFailure"]

_HIGH_WATER = 256 * 1024  # a stream's unread bytes above which reading pauses
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection", "proxy-authorization"})


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
    """A streamed reply, open: ``status`` and ``headers`` now, the body by iterating it (or :meth:`read`, whole).
    Each wait for more of the body is bounded by the read timeout. :meth:`aclose` lets go of the connection: back to
    the pool when the reply was complete, closed otherwise (a consumer that stops early). Also an async context
    manager that closes it.

    The read timeout costs one timer per stream, not one per wait: the timer is armed at the first wait's deadline
    and, when it fires, either expires the wait in progress (begun a whole timeout ago) or moves itself to that
    wait's deadline."""

    __slots__ = ("_client", "_conn", "_decoder", "_origin", "_since", "_timer", "headers", "status")

    def __init__(self, client: LeanHTTP, origin: Origin, conn: _Conn) -> None:
        self._client = client
        self._origin = origin
        self._conn: _Conn | None = conn
        self._since: float | None = None  # when the wait in progress began
        self._timer: asyncio.TimerHandle | None = None
        self.status = conn.status
        self.headers = conn.headers
        encoding = conn.headers.get("content-encoding")
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(47 if encoding != "deflate" else zlib.MAX_WBITS)

    def __aiter__(self) -> LeanStream:
        return self

    async def __anext__(self) -> bytes:
        """The next bytes of the body (decompressed) that arrived."""
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        while True:
            if conn.body:
                data = conn.body[0] if len(conn.body) == 1 else b"".join(conn.body)
                conn.body.clear()
                conn.resume()
                if self._decoder is not None:
                    data = self._decode(data)
                    if not data:
                        continue
                return data
            if conn.complete:
                raise StopAsyncIteration
            if conn.error is not None:
                raise conn.error
            loop = conn.loop
            waiter = conn.waiter = loop.create_future()
            self._since = since = loop.time()
            if self._timer is None:
                self._timer = loop.call_at(since + self._client.total_timeout, self._deadline)
            try:
                await waiter
            except _Expired:  # only this wait's own expiry
                raise ReadTimeout(f"the upstream sent nothing for {self._client.total_timeout:g} s") from None
            finally:
                conn.waiter = None
                self._since = None

    def _deadline(self) -> None:
        self._timer = None
        conn, since = self._conn, self._since
        if conn is None or since is None:  # no wait in progress: the next one arms the timer again
            return
        due = since + self._client.total_timeout
        if conn.loop.time() < due:
            self._timer = conn.loop.call_at(due, self._deadline)
        elif conn.waiter is not None and not conn.waiter.done():
            conn.waiter.set_exception(_Expired())

    def _decode(self, data: bytes) -> bytes:
        try:
            return self._decoder.decompress(data)  # type: ignore[no-any-return]
        except zlib.error as e:
            raise Disconnected(f"the upstream sent a body that does not decompress ({e})") from None

    async def read(self) -> bytes:
        """The rest of the body, whole."""
        return b"".join([data async for data in self])

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if conn is not None:
            self._client._release(self._origin, conn, conn.complete and conn.error is None)

    async def __aenter__(self) -> LeanStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Expired(Exception):
    """A wait ran out (made a ReadTimeout by the reader: never confused with a failure's TimeoutError)."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_Expired())


def _head(method: str, target: str, host: str, headers: Mapping[str, str], length: int,
          proxy_authorization: str | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    for k, v in headers.items():
        if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
            raise ValueError(f"header {k!r}: a newline or carriage return in a header")
        if k.lower() in _FRAMING:
            continue
        lines.append(f"{k}: {v}")
    if not any(k.lower() == "accept-encoding" for k in headers):
        lines.append("accept-encoding: gzip, deflate")
    if proxy_authorization:
        lines.append(f"proxy-authorization: {proxy_authorization}")
    lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _refused(proxy: ProxyURL, host: str) -> ProxyError:
    return ProxyError(f"the proxy {proxy} refused the request to {host}: HTTP 407 (the proxy's credentials are "
                      "missing or wrong)", proxy=str(proxy), status=407)


class LeanHTTP:
    """A pool of keep-alive HTTP/1.1 connections per origin: a :class:`~switchyard.providers.transport.Transport`.

    ``tls`` verifies https origins (default: the system's CAs); ``proxies`` says which origins go through a proxy.
    """

    def __init__(self, *, limit: int, connect_timeout: float, total_timeout: float, keepalive: float = 60.0,
                 tls: ssl.SSLContext | None = None, proxies: ProxyPolicy | None = None) -> None:
        self.limit = max(1, limit)
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.keepalive = keepalive
        self.proxies = proxies
        self._idle: dict[Origin, collections.deque[_Conn]] = {}
        self._open = 0
        self._slots: asyncio.Semaphore | None = None
        self._ssl: ssl.SSLContext | None = tls
        self._proxy_for: dict[Origin, ProxyURL | None] = {}
        # url -> origin, host header, request target, and the proxy an http origin is sent to in absolute form
        self._parsed: dict[str, tuple[Origin, str, str, ProxyURL | None]] = {}

    def _split(self, url: str) -> tuple[Origin, str, str, ProxyURL | None]:
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
        origin = (scheme, host, port)
        proxy = self._proxy_for[origin] = self.proxies.select(*origin) if self.proxies is not None else None
        absolute = proxy if scheme == "http" else None
        if absolute is not None:
            target = f"http://{host_header}{target}"
        out = (origin, host_header, target, absolute)
        if len(self._parsed) < 1024:
            self._parsed[url] = out
        return out

    # --- the Transport interface --------------------------------------------------------------------------------

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Send one request; its whole reply (the total timeout bounds it all)."""
        origin, host, target, absolute = self._split(url)
        head = _head(method, target, host, headers, len(body), absolute.authorization if absolute else None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_timeout
        slots = self._slot()
        if slots.locked():  # every slot busy: wait for one, within the total
            try:
                async with asyncio.timeout_at(deadline):
                    await slots.acquire()
            except TimeoutError:
                raise TimeoutError(f"no free connection within {self.total_timeout:g} s") from None
        else:
            await slots.acquire()  # at once
        conn: _Conn | None = None
        ok = False
        try:
            conn = self._checkout(origin) or await self._connect(origin, deadline)
            try:
                await self._send(conn, head, body, within=deadline - loop.time())
            except _Expired:
                raise TimeoutError(f"no complete reply within {self.total_timeout:g} s") from None
            ok = True
        finally:
            if conn is not None:
                conn.waiter = None
                if ok and conn.keep_alive and not conn.closed:
                    self._checkin(origin, conn)
                else:
                    self._drop(conn)
            slots.release()
        if absolute is not None and conn.status == 407:
            raise _refused(absolute, host)
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
        return Response(conn.status, conn.headers, data)

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> LeanStream:
        """Send one request; its reply open for reading once its headers are in. The timeout bounds each wait (for
        the headers, then for each part of the body), not the whole. The caller must ``aclose()`` it."""
        origin, host, target, absolute = self._split(url)
        head = _head(method, target, host, headers, len(body), absolute.authorization if absolute else None)
        slots = self._slot()
        await slots.acquire()
        conn: _Conn | None = None
        try:
            conn = self._checkout(origin) or await self._connect(origin)
            try:
                await self._send(conn, head, body, streaming=True, within=self.total_timeout)
            except _Expired:
                raise ReadTimeout(f"no reply headers within {self.total_timeout:g} s") from None
            if absolute is not None and conn.status == 407:
                raise _refused(absolute, host)
            return LeanStream(self, origin, conn)
        except BaseException:
            if conn is not None:
                self._release(origin, conn, False)
            else:
                slots.release()
            raise

    def _release(self, origin: Origin, conn: _Conn, reusable: bool) -> None:
        """The end of a stream: its connection back to the pool (a complete reply) or closed, its slot freed."""
        conn.waiter = None
        if reusable and conn.keep_alive and not conn.closed:
            conn.resume()
            conn.streaming = False
            self._checkin(origin, conn)
        else:
            self._drop(conn)
        self._slot().release()

    # --- one exchange -------------------------------------------------------------------------------------------

    def _slot(self) -> asyncio.Semaphore:
        if self._slots is None:  # made inside the running loop
            self._slots = asyncio.Semaphore(self.limit)
        return self._slots

    @staticmethod
    async def _send(conn: _Conn, head: bytes, body: bytes, streaming: bool = False,
                    within: float | None = None) -> None:
        """Write the request; return when the reply is complete (``streaming``: when its headers are in). A wait
        longer than ``within`` seconds raises ``_Expired`` (a timer is cheaper than ``asyncio.timeout``)."""
        conn._reset(streaming)
        waiter = conn.waiter = conn.loop.create_future()
        assert conn.transport is not None
        conn.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            conn.transport.write(body)
        if within is None:
            await waiter
            return
        timer = conn.loop.call_later(within, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()

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

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, origin: Origin, deadline: float | None = None) -> _Conn:
        """A new connection to ``origin`` (through its proxy), within the connect timeout and ``deadline``."""
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._tls() if scheme == "https" else None
        proxy = self._proxy_for.get(origin)
        limit = self.connect_timeout if deadline is None else min(self.connect_timeout, deadline - loop.time())
        self._trim()
        try:
            async with asyncio.timeout(limit):
                if proxy is None:
                    _, conn = await loop.create_connection(lambda: _Conn(loop), host, port, ssl=tls,
                                                           server_hostname=host if tls else None)
                elif tls is not None:  # https through a CONNECT tunnel
                    _, proto = await open_tunnel(loop, proxy, self._tls() if proxy.scheme == "https" else None,
                                                 host, port, lambda: _Conn(loop), tls)
                    conn = cast(_Conn, proto)
                else:  # http through the proxy, in absolute form
                    conn = await self._connect_proxy(loop, proxy)
        except TimeoutError:
            via = f" through the proxy {proxy}" if proxy is not None else ""
            raise ConnectTimeout(f"no connection to {host}:{port}{via} within {limit:.3g} s") from None
        except (OSError, ssl.SSLError) as e:
            raise ConnectFailed(f"{host}:{port}: {e}") from None
        self._open += 1
        return conn

    async def _connect_proxy(self, loop: asyncio.AbstractEventLoop, proxy: ProxyURL) -> _Conn:
        tls = self._tls() if proxy.scheme == "https" else None
        try:
            _, conn = await loop.create_connection(lambda: _Conn(loop), proxy.host, proxy.port, ssl=tls,
                                                   server_hostname=proxy.host if tls else None)
        except (OSError, ssl.SSLError) as e:
            raise ProxyError(f"could not connect to the proxy {proxy}: {e}", proxy=str(proxy)) from None
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
