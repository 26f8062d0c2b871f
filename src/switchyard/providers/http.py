"""The providers' transports as built from their config, and the aiohttp one.

Every HTTP provider reaches its upstream through one :class:`~switchyard.providers.transport.Transport`, made here
from the provider's config (its timeouts, pool size, ``proxy`` and ``ca_file``): the lean HTTP/1.1 client
(:mod:`.http1`) by default, aiohttp (:class:`AiohttpTransport`) where a URL must go out exactly as a request
signature covers it (Bedrock's SigV4-signed, percent-encoded paths). aiohttp is imported on first use only, and its
failures are turned into the transport error types.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .http1 import LeanHTTP
from .proxy import ProxyPolicy, ProxyURL, proxy_policy
from .transport import (
    ConnectFailed,
    ConnectionReset,
    ConnectTimeout,
    Disconnected,
    ProxyError,
    Response,
    TransportFailure,
)

if TYPE_CHECKING:
    import aiohttp


def tls_context(ca_file: str | None, where: str) -> ssl.SSLContext | None:
    """A verifying TLS context that trusts ``ca_file``'s CAs (instead of the system's), or None for the default."""
    if not ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=os.path.expanduser(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"{where}.ca_file: cannot load {ca_file}: {getattr(e, 'strerror', None) or e}") from None


def _options(name: str, config: Any, env: Mapping[str, str] | None) -> tuple[ssl.SSLContext | None,
                                                                             ProxyPolicy | None]:
    where = f"providers.{name}"
    return tls_context(getattr(config, "ca_file", None), where), proxy_policy(getattr(config, "proxy", None), env,
                                                                             where)


def lean_transport(name: str, config: Any, env: Mapping[str, str] | None = None) -> LeanHTTP:
    """The default transport of provider ``name``. ``env``: where proxy variables are read (os.environ)."""
    tls, proxies = _options(name, config, env)
    return LeanHTTP(limit=int(config.max_connections), connect_timeout=float(config.connect_timeout),
                    total_timeout=float(config.timeout), tls=tls, proxies=proxies)


def aiohttp_transport(name: str, config: Any, env: Mapping[str, str] | None = None) -> AiohttpTransport:
    tls, proxies = _options(name, config, env)
    return AiohttpTransport(limit=int(config.max_connections), connect_timeout=float(config.connect_timeout),
                            timeout=float(config.timeout), tls=tls, proxies=proxies)


# --- aiohttp ---------------------------------------------------------------------------------------------------


def _aiohttp_failure(exc: BaseException, proxy: ProxyURL | None) -> BaseException:
    """An aiohttp failure as one of the transport errors (the others as they are)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientHttpProxyError) and proxy is not None:
        hint = " (the proxy's credentials are missing or wrong)" if exc.status == 407 else ""
        return ProxyError(f"the proxy {proxy} refused the tunnel: HTTP {exc.status}{hint}", proxy=str(proxy),
                          status=exc.status)
    if isinstance(exc, aiohttp.ClientProxyConnectionError) and proxy is not None:
        return ProxyError(f"could not connect to the proxy {proxy}", proxy=str(proxy))
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
    __slots__ = ("_proxy", "_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, proxy: ProxyURL | None) -> None:
        self._resp = resp
        self._proxy = proxy
        self.status: int = resp.status
        self.headers: Mapping[str, str] = resp.headers

    def __aiter__(self) -> _AiohttpStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._resp.content.readany()
        except Exception as e:
            raise _aiohttp_failure(e, self._proxy) from e
        if not data:
            raise StopAsyncIteration
        return data

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except Exception as e:
            raise _aiohttp_failure(e, self._proxy) from e

    async def aclose(self) -> None:
        if self._resp.content.is_eof():
            self._resp.release()
        else:
            self._resp.close()


class AiohttpTransport:
    """One provider's aiohttp session, opened on first use inside the running loop. URLs go out exactly as given
    (``yarl.URL(url, encoded=True)``): nothing is re-quoted or normalized."""

    def __init__(self, *, limit: int, connect_timeout: float, timeout: float, tls: ssl.SSLContext | None = None,
                 proxies: ProxyPolicy | None = None) -> None:
        self._limit = limit
        self._connect_timeout = connect_timeout
        self._read_timeout = timeout  # a whole reply's total; a stream's per read
        self._tls = tls
        self.proxies = proxies
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and self._loop is loop and not session.closed:
            return session
        connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=60, ttl_dns_cache=300,
                                         enable_cleanup_closed=True, ssl=self._tls if self._tls is not None else True)
        timeout = aiohttp.ClientTimeout(total=self._read_timeout, sock_connect=self._connect_timeout)
        session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                        cookie_jar=aiohttp.DummyCookieJar())
        self._session, self._loop = session, loop
        return session

    def _send(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
              timeout: Any = None) -> tuple[Any, ProxyURL | None]:
        from yarl import URL

        target = URL(url, encoded=True)
        proxy = self.proxies.select(target.scheme, target.host or "", target.port or 0) if self.proxies else None
        kw: dict[str, Any] = {}
        if proxy is not None:
            kw["proxy"] = str(proxy)
            if proxy.authorization and target.scheme == "https":  # on the CONNECT
                kw["proxy_headers"] = {"proxy-authorization": proxy.authorization}
            elif proxy.authorization:  # on the request itself, which goes to the proxy in absolute form
                headers = {**headers, "proxy-authorization": proxy.authorization}
        if timeout is not None:
            kw["timeout"] = timeout
        return self._open().request(method, target, data=body, headers=headers, allow_redirects=False, **kw), proxy

    @staticmethod
    def _check(status: int, proxy: ProxyURL | None) -> None:
        if status == 407 and proxy is not None:  # an http origin through the proxy, which wants credentials
            raise ProxyError(f"the proxy {proxy} refused the request: HTTP 407 (the proxy's credentials are missing "
                             "or wrong)", proxy=str(proxy), status=407)

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        pending, proxy = self._send(method, url, headers, body)
        try:
            async with pending as resp:
                self._check(resp.status, proxy)
                return Response(resp.status, resp.headers, await resp.read())
        except ProxyError:
            raise
        except Exception as e:
            raise _aiohttp_failure(e, proxy) from e

    async def stream(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> _AiohttpStream:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout, sock_read=self._read_timeout)
        pending, proxy = self._send(method, url, headers, body, timeout)
        try:
            resp = await pending
        except Exception as e:
            raise _aiohttp_failure(e, proxy) from e
        if resp.status == 407 and proxy is not None:
            resp.close()
            self._check(resp.status, proxy)
        return _AiohttpStream(resp, proxy)

    async def aclose(self) -> None:
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()
            await asyncio.sleep(0)  # let the closed transports finish closing before the loop may end
