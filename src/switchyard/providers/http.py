"""What every HTTP provider shares: one pooled client each, and turning transport failures into named errors.

The providers see bytes in, ``(status, headers, bytes)`` or an open stream out (:class:`UpstreamHTTP`), and catch
:data:`TRANSPORT_ERRORS`, so the pool underneath can change without touching them. Underneath, the lean HTTP/1.1
client (:mod:`.http1`) carries every URL it takes as it is, whole replies and streams; aiohttp carries the rest
(percent-encoded URLs, as a signed Bedrock path is). aiohttp is imported on first use only: a gateway whose
upstreams need none of it starts without it, and its failures are turned into the lean client's error types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import quote, urlencode

import orjson

from ..errors import UpstreamError, UpstreamTimeout, is_retryable_status, parse_retry_after
from .http1 import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    Disconnected,
    LeanHTTP,
    TransportFailure,
)

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

#: What a call through :class:`UpstreamHTTP` may raise for a transport failure (give it to :func:`transport_error`).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (TransportFailure, TimeoutError)


class UpstreamReply(NamedTuple):
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes


class UpstreamStream(Protocol):
    """A streamed reply, open: its status and headers, then its body chunk by chunk (or whole, on errors)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body (decompressed) as it arrives."""
        ...


def _aiohttp_failure(exc: BaseException) -> BaseException:
    """An aiohttp failure as one of the lean client's (the others as they are)."""
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeout(str(exc) or "connect timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed(str(exc))
    if isinstance(exc, aiohttp.ClientOSError) or (  # aiohttp names a reset mid-body only in the message
            isinstance(exc, aiohttp.ClientPayloadError) and "ConnectionResetError" in str(exc)):
        return ConnectionReset(str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return Disconnected(str(exc))
    if isinstance(exc, aiohttp.ClientError):
        return TransportFailure(type(exc).__name__)
    return exc


class _AiohttpStream:
    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status: int = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except Exception as e:
            raise _aiohttp_failure(e) from e

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except Exception as e:
            raise _aiohttp_failure(e) from e


class UpstreamHTTP:
    """One provider's pooled HTTP clients, opened on first use inside the running loop: the lean HTTP/1.1 client
    (:mod:`.http1`) for every URL it takes, aiohttp for the others."""

    def __init__(self, config: Any) -> None:
        self._limit = int(config.max_connections)
        self._connect_timeout = float(config.connect_timeout)
        self._read_timeout = float(config.timeout)  # a whole reply's total; a stream's per read
        self._lean = LeanHTTP(limit=self._limit, connect_timeout=self._connect_timeout,
                              total_timeout=self._read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and self._loop is loop and not session.closed:
            return session
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=60, ttl_dns_cache=300,
                                         enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=self._read_timeout, sock_connect=self._connect_timeout)
        session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                        cookie_jar=aiohttp.DummyCookieJar())
        self._session, self._loop = session, loop
        return session

    async def start(self) -> None:
        """Nothing to open ahead: both clients connect on first use."""

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
        try:
            async with self._open().post(url, data=body, headers=headers, params=params,
                                         allow_redirects=False) as resp:
                return UpstreamReply(resp.status, resp.headers, await resp.read())
        except Exception as e:
            raise _aiohttp_failure(e) from e

    @asynccontextmanager
    async def stream(self, url: str | URL, body: bytes, headers: Mapping[str, str],
                     params: Mapping[str, str] | None = None) -> AsyncIterator[UpstreamStream]:
        """POST ``body``; the reply open for reading (each read bounded by the timeout, the whole not). Leaving
        the block (cancelled or not) lets go of the connection: back to the pool when the body was read to its
        end, closed otherwise."""
        if isinstance(url, str) and LeanHTTP.takes(url):
            query = urlencode(params, quote_via=quote) if params else None
            async with self._lean.stream(url, body, headers, query) as lean:
                yield lean
            return
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout)
        try:
            resp = await self._open().post(url, data=body, headers=headers, params=params, allow_redirects=False,
                                           timeout=timeout)
        except Exception as e:
            raise _aiohttp_failure(e) from e
        try:
            yield _AiohttpStream(resp)
        finally:
            if resp.content.is_eof():
                resp.release()
            else:
                resp.close()


def transport_error(exc: BaseException, provider: str, deployment: str) -> UpstreamError:
    if isinstance(exc, TimeoutError):  # a connect timeout, a read timeout, or the total
        kind = "connecting to" if isinstance(exc, ConnectTimeout) else "waiting for"
        return UpstreamTimeout(f"timed out {kind} provider {provider!r}", provider=provider, deployment=deployment)
    if isinstance(exc, ConnectFailed):
        msg = f"could not connect to provider {provider!r}"
    elif isinstance(exc, ConnectionReset):
        msg = f"the connection to provider {provider!r} was reset"
    elif isinstance(exc, Disconnected):
        msg = f"provider {provider!r} closed the connection unexpectedly"
    else:
        msg = f"provider {provider!r} failed: {exc}"
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
