"""What every HTTP provider shares: one pooled client each, and turning transport failures into named errors.

The client is a thin wrapper over aiohttp (:class:`UpstreamHTTP`): the providers see bytes in, ``(status, headers,
bytes)`` or a byte-chunk iterator out, and catch :data:`TRANSPORT_ERRORS`, so the pool underneath can change
without touching them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from ..errors import UpstreamError, UpstreamTimeout, is_retryable_status, parse_retry_after
from .http1 import ConnectFailed, ConnectionReset, ConnectTimeout, Disconnected, LeanHTTP, TransportFailure

#: What a call through :class:`UpstreamHTTP` may raise for a transport failure (give it to :func:`transport_error`).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientError, TimeoutError, TransportFailure)


class UpstreamReply(NamedTuple):
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


class UpstreamStream:
    """A streamed reply, open: read its status and headers, then its body chunk by chunk (or whole, on errors)."""

    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status: int = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        return await self._resp.read()

    def chunks(self) -> AsyncIterator[bytes]:
        """The body (decompressed) as it arrives."""
        return self._resp.content.iter_any()


class UpstreamHTTP:
    """One provider's pooled HTTP clients, opened on first use inside the running loop: whole-reply POSTs go
    through the lean HTTP/1.1 client (:mod:`.http1`), streams (and URLs it does not take) through aiohttp."""

    def __init__(self, config: Any) -> None:
        self._limit = int(config.max_connections)
        self._lean = LeanHTTP(limit=self._limit, connect_timeout=float(config.connect_timeout),
                              total_timeout=float(config.timeout))
        self._timeout = aiohttp.ClientTimeout(total=config.timeout, sock_connect=config.connect_timeout)
        # a stream is bounded per read (as long as the upstream keeps sending), not in total
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout,
                                                     sock_read=config.timeout)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and self._loop is loop and not session.closed:
            return session
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=60, ttl_dns_cache=300,
                                         enable_cleanup_closed=True)
        session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=True,
                                        cookie_jar=aiohttp.DummyCookieJar())
        self._session, self._loop = session, loop
        return session

    async def start(self) -> None:
        self._open()

    async def aclose(self) -> None:
        await self._lean.aclose()
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()
            await asyncio.sleep(0)  # let the closed transports finish closing before the loop may end

    async def post(self, url: str | URL, body: bytes, headers: Mapping[str, str],
                   params: Mapping[str, str] | None = None) -> UpstreamReply:
        """POST ``body``; the whole reply. Raises one of :data:`TRANSPORT_ERRORS` when the transport fails."""
        if isinstance(url, str) and LeanHTTP.takes(url):
            query = urlencode(params, quote_via=quote) if params else None
            status, reply_headers, data = await self._lean.post(url, body, headers, query)
            return UpstreamReply(status, reply_headers, data)
        async with self._open().post(url, data=body, headers=headers, params=params, allow_redirects=False) as resp:
            return UpstreamReply(resp.status, resp.headers, await resp.read())

    @asynccontextmanager
    async def stream(self, url: str | URL, body: bytes, headers: Mapping[str, str],
                     params: Mapping[str, str] | None = None) -> AsyncIterator[UpstreamStream]:
        """POST ``body``; the reply open for reading. Leaving the block (cancelled or not) lets go of the
        connection: back to the pool when the body was read to its end, closed otherwise."""
        resp = await self._open().post(url, data=body, headers=headers, params=params, allow_redirects=False,
                                       timeout=self._stream_timeout)
        try:
            yield UpstreamStream(resp)
        finally:
            if resp.content.is_eof():
                resp.release()
            else:
                resp.close()


def transport_error(exc: BaseException, provider: str, deployment: str) -> UpstreamError:
    if isinstance(exc, TimeoutError):  # aiohttp's ConnectionTimeoutError, SocketTimeoutError, or the total
        kind = "connecting to" if isinstance(exc, aiohttp.ConnectionTimeoutError | ConnectTimeout) else "waiting for"
        return UpstreamTimeout(f"timed out {kind} provider {provider!r}", provider=provider, deployment=deployment)
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectFailed):
        msg = f"could not connect to provider {provider!r}"
    elif isinstance(exc, aiohttp.ClientOSError | ConnectionReset) or (  # aiohttp names a reset mid-body only in
            isinstance(exc, aiohttp.ClientPayloadError) and "ConnectionResetError" in str(exc)):  # the message
        msg = f"the connection to provider {provider!r} was reset"
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | Disconnected):
        msg = f"provider {provider!r} closed the connection unexpectedly"
    else:
        msg = f"provider {provider!r} failed: {type(exc).__name__}"
    return UpstreamError(msg, provider=provider, deployment=deployment, retryable=True)


def status_error(status: int, headers: Mapping[str, str], body: bytes, provider: str,
                 deployment: str) -> UpstreamError:
    """An upstream error reply, named. The upstream's own message is kept (it never holds our secrets)."""
    detail = ""
    upstream_type: str | None = None
    param: str | None = None
    code: str | None = None
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            detail = str(err.get("message") or "")
            upstream_type = err.get("type") if isinstance(err.get("type"), str) else None
            if upstream_type is None and isinstance(err.get("status"), str):  # Google: RESOURCE_EXHAUSTED, ...
                upstream_type = err["status"]
            param = err.get("param") if isinstance(err.get("param"), str) else None
            code = err.get("code") if isinstance(err.get("code"), str) else None
        elif isinstance(err, str):
            detail = err
    elif isinstance(data, list) and data and isinstance(data[0], dict):  # Gemini wraps errors in a list
        err = data[0].get("error") or {}
        detail = str(err.get("message") or "") if isinstance(err, dict) else ""
    if not detail:
        detail = body[:300].decode("utf-8", "replace").strip()
    retry_after = parse_retry_after(headers.get("retry-after"))
    if retry_after is None:
        ms = parse_retry_after(headers.get("retry-after-ms"))
        retry_after = ms / 1000 if ms is not None else None
    msg = f"provider {provider!r} returned HTTP {status}" + (f": {detail}" if detail else "")
    return UpstreamError(msg, provider=provider, deployment=deployment, upstream_status=status,
                         retryable=is_retryable_status(status), retry_after=retry_after,
                         upstream_type=upstream_type, param=param if status < 500 else None,
                         code=code if status < 500 else None)
