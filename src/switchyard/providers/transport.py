"""The seam between the HTTP providers and the network: a small transport interface, its failures, and an in-memory
transport for unit tests.

A provider (:class:`switchyard.providers.http_provider.HTTPProvider`) sends bytes and reads bytes through a
:class:`Transport`; it never builds an HTTP client itself. The default transport is the lean HTTP/1.1 client
(:mod:`.http1`), with aiohttp for the URLs it does not take (:mod:`.http`); a test hands a provider a
:class:`MockTransport` instead, whose handler sees each request and answers it from memory, whole or as a stream of
chunks, or fails it with one of the errors below. Every transport names its failures with these error types, and
the provider base maps them onto the gateway's errors in one place.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

# --- failures --------------------------------------------------------------------------------------------------


class TransportFailure(Exception):
    """Base of the transports' errors (timeouts are :class:`TimeoutError` instead)."""


class ConnectFailed(TransportFailure):
    """The connection could not be made (refused, unreachable, DNS, TLS handshake)."""


class ProxyError(ConnectFailed):
    """The proxy could not be reached, or refused the tunnel (``status``: its reply, 407 for credentials).
    ``proxy`` is the proxy's URL without its credentials: safe to log."""

    def __init__(self, message: str, *, proxy: str, status: int | None = None) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status = status


class ConnectionReset(TransportFailure):
    """The peer reset the connection mid-exchange."""


class Disconnected(TransportFailure):
    """The peer closed the connection before the reply was complete, or sent something that is not HTTP."""


class ConnectTimeout(TimeoutError):
    """No connection within the connect timeout."""


class ReadTimeout(TimeoutError):
    """A streamed reply sent nothing within the read timeout."""


#: What a transport may raise for a transport failure (the provider base maps each onto an ``UpstreamError``).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (TransportFailure, TimeoutError)


# --- the interface ---------------------------------------------------------------------------------------------


class Headers(dict[str, str]):
    """Reply headers keyed by lower-cased name (a repeated header keeps its last value), looked up in any case."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


class Response(NamedTuple):
    """A whole reply."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes  # decompressed


class StreamResponse(Protocol):
    """A reply whose headers are in and whose body is read as it arrives: iterate it for the body's chunks
    (decompressed), or :meth:`read` the rest whole. :meth:`aclose` must be called once done with it (it lets go of
    the connection: back to the pool when the body was read to its end, closed otherwise)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


class Transport(Protocol):
    """How a provider reaches its upstream. Timeouts, pool size, proxy and TLS settings belong to the transport
    (they are the provider's config); a request is only what goes on the wire. Failures are raised as one of
    :data:`TRANSPORT_ERRORS`; an HTTP error status is a reply like any other."""

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Send one request; its whole reply."""
        ...

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> StreamResponse:
        """Send one request; its reply, open, once its headers are in."""
        ...

    async def aclose(self) -> None:
        """Close the pools."""
        ...


# --- in memory, for unit tests ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """One request as a :class:`MockTransport` handler sees it."""

    method: str
    url: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    streamed: bool  # sent through ``stream`` rather than ``request``

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(slots=True)
class MockResponse:
    """What a handler answers: a ``body`` (or ``json``), or ``chunks`` that a stream hands over one by one. A chunk
    that is an exception is raised when the reader reaches it (a connection reset mid-stream, a read timeout)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    json: Any = None
    chunks: Iterable[bytes | BaseException] | None = None

    def parts(self) -> list[bytes | BaseException]:
        if self.chunks is not None:
            return list(self.chunks)
        if self.json is not None:
            return [orjson.dumps(self.json)]
        return [self.body] if self.body else []


Handler = Callable[[Request], MockResponse | Awaitable[MockResponse]]


class MockStream:
    """A :class:`MockResponse` read as a stream."""

    def __init__(self, status: int, headers: Headers, parts: list[bytes | BaseException]) -> None:
        self.status = status
        self.headers = headers
        self._parts = parts
        self._next = 0
        self.closed = False

    def __aiter__(self) -> MockStream:
        return self

    async def __anext__(self) -> bytes:
        if self.closed or self._next >= len(self._parts):
            raise StopAsyncIteration
        part = self._parts[self._next]
        self._next += 1
        if isinstance(part, BaseException):
            raise part
        return part

    async def read(self) -> bytes:
        return b"".join([part async for part in self])

    @property
    def complete(self) -> bool:
        """Whether the body was read to its end (a real transport would pool the connection)."""
        return self._next >= len(self._parts)

    async def aclose(self) -> None:
        self.closed = True


class MockTransport:
    """A transport that answers from memory, in the manner of httpx's ``MockTransport``: ``handler`` gets each
    :class:`Request` and returns a :class:`MockResponse` (or an awaitable of one), or raises one of the transport
    errors above to fail it. The requests it saw are in ``requests``, the streams it opened in ``streams``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.streams: list[MockStream] = []
        self.closed = False

    async def _answer(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                      streamed: bool) -> tuple[int, Headers, list[bytes | BaseException]]:
        req = Request(method, url, {k.lower(): v for k, v in headers.items()}, body, streamed)
        self.requests.append(req)
        reply = self.handler(req)
        if inspect.isawaitable(reply):
            reply = await reply
        assert isinstance(reply, MockResponse), "a MockTransport handler returns a MockResponse"
        return reply.status, Headers({k.lower(): v for k, v in reply.headers.items()}), reply.parts()

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        status, reply_headers, parts = await self._answer(method, url, headers, body, streamed=False)
        for part in parts:
            if isinstance(part, BaseException):
                raise part
        return Response(status, reply_headers, b"".join(p for p in parts if isinstance(p, bytes)))

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> MockStream:
        status, reply_headers, parts = await self._answer(method, url, headers, body, streamed=True)
        s = MockStream(status, reply_headers, parts)
        self.streams.append(s)
        return s

    async def aclose(self) -> None:
        self.closed = True
