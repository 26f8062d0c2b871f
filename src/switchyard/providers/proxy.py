"""Outbound proxies: which proxy (if any) an upstream is reached through, and the HTTP CONNECT tunnel.

Where the proxy comes from, per provider:

* ``proxy: <url>`` in the provider's config: every request of that provider goes through it (``NO_PROXY`` does not
  apply: a provider has one upstream, so leave ``proxy`` unset instead);
* ``proxy: none``: no proxy at all, whatever the environment says;
* otherwise the environment, read once when the provider is built, as curl and Python's ``urllib`` read it:
  ``https_proxy``/``HTTPS_PROXY`` for https upstreams, ``http_proxy``/``HTTP_PROXY`` for http ones (the lower-case
  name wins when both are set), and ``no_proxy``/``NO_PROXY`` to bypass them: a comma-separated list of host names
  (matching the name and its subdomains; a leading ``.`` or ``*.`` is ignored), ``host:port``, IP addresses, CIDR
  networks (``10.0.0.0/8``, matched against IP-literal hosts only), or ``*`` for everything.

A proxy URL is ``http://[user:password@]host[:port]`` (``https://`` for a proxy spoken to over TLS; no scheme means
``http://``; the port defaults to 80 or 443). Its credentials go in ``Proxy-Authorization: Basic`` and nowhere else:
:class:`ProxyURL` never shows them, and no message here quotes a proxy URL as it was given.

An https upstream is reached through a CONNECT tunnel, with TLS to the upstream inside it (its own host name for
SNI and verification); an http upstream is sent to the proxy in absolute form (``POST http://host/path``), as
browsers and curl do, since many proxies refuse CONNECT to ports other than 443.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .transport import ProxyError

_MAX_REPLY_HEAD = 65536


@dataclass(frozen=True, slots=True)
class ProxyURL:
    scheme: str  # http | https
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # the Proxy-Authorization value; never shown

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_proxy(value: str, where: str | None = None) -> ProxyURL:
    """A proxy URL. Its errors (prefixed by ``where``) never quote it: it may hold a password."""

    def bad(problem: str) -> ValueError:
        return ValueError(f"{where}: {problem}" if where else problem)

    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError:
        raise bad("not a valid proxy URL (expected http://[user:password@]host[:port])") from None
    if u.scheme not in ("http", "https"):
        raise bad(f"proxy scheme {u.scheme}:// is not supported; use http:// or https://")
    if not u.hostname:
        raise bad("the proxy URL has no host")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise bad("a proxy URL is scheme://host:port, without a path")
    authorization = None
    if u.username is not None or u.password is not None:
        credentials = f"{unquote(u.username or '')}:{unquote(u.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    return ProxyURL(u.scheme, u.hostname, port or (443 if u.scheme == "https" else 80), authorization)


class NoProxy:
    """A ``NO_PROXY`` list."""

    __slots__ = ("everything", "names", "networks")

    def __init__(self, value: str) -> None:
        self.everything = False
        self.names: list[tuple[str, int | None]] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in value.replace(" ", ",").split(","):
            e = entry.strip().lower()
            if not e:
                continue
            if e == "*":
                self.everything = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(e.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            host, port = e, None
            if e.startswith("["):  # [v6]:port
                host, _, rest = e[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
            elif e.count(":") == 1 and e.rsplit(":", 1)[1].isdigit():
                host, port_text = e.rsplit(":", 1)
                port = int(port_text)
            self.names.append((host.removeprefix("*").lstrip(".").rstrip("."), port))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        h = host.lower().strip("[]").rstrip(".")
        if self.networks:
            try:
                ip = ipaddress.ip_address(h)
            except ValueError:
                pass
            else:
                if any(ip in net for net in self.networks):
                    return True
        return any((p is None or p == port) and (h == name or h.endswith("." + name)) for name, p in self.names)


@dataclass(frozen=True, slots=True)
class ProxyPolicy:
    """The proxies of one provider: which one an upstream origin goes through (None: directly)."""

    http: ProxyURL | None
    https: ProxyURL | None
    no_proxy: NoProxy | None = None

    def select(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or (self.no_proxy is not None and self.no_proxy.matches(host, port)):
            return None
        return proxy


def proxy_policy(configured: str | None, env: Mapping[str, str] | None = None,
                 where: str = "provider") -> ProxyPolicy | None:
    """The proxy policy of a provider (``where``: ``providers.NAME``, for errors) whose config says
    ``proxy: configured`` (see the module's text); None when nothing goes through a proxy. Raises ValueError for a
    proxy URL that cannot be used."""
    if configured is not None and configured.strip():
        if configured.strip().lower() == "none":
            return None
        p = parse_proxy(configured, f"{where}.proxy")
        return ProxyPolicy(http=p, https=p)
    env = os.environ if env is None else env

    def var(name: str) -> str:
        return (env.get(name) or env.get(name.upper()) or "").strip()

    https, http = var("https_proxy"), var("http_proxy")
    if not https and not http:
        return None
    hint = " (set proxy: none on the provider to ignore it)"
    return ProxyPolicy(http=parse_proxy(http, f"{where}: HTTP_PROXY{hint}") if http else None,
                       https=parse_proxy(https, f"{where}: HTTPS_PROXY{hint}") if https else None,
                       no_proxy=NoProxy(var("no_proxy")))


# --- the CONNECT tunnel ----------------------------------------------------------------------------------------


class _ConnectReply(asyncio.Protocol):
    """Reads the proxy's reply head to a CONNECT."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proxy: ProxyURL) -> None:
        self.proxy = proxy
        self.buf = b""
        self.head: asyncio.Future[bytes] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end >= 0:
            self.head.set_result(self.buf[:end])
        elif len(self.buf) > _MAX_REPLY_HEAD:
            self.head.set_exception(ProxyError(f"the proxy {self.proxy} sent an oversized reply to CONNECT",
                                               proxy=str(self.proxy)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ProxyError(f"the proxy {self.proxy} closed the connection during CONNECT",
                                               proxy=str(self.proxy)))


def _status(head: bytes, proxy: ProxyURL) -> tuple[int, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProxyError(f"the proxy {proxy} sent a reply to CONNECT that is not HTTP", proxy=str(proxy))
    return int(parts[1]), parts[2] if len(parts) > 2 else ""


async def open_tunnel(loop: asyncio.AbstractEventLoop, proxy: ProxyURL, proxy_tls: ssl.SSLContext | None,
                      host: str, port: int, protocol_factory: Callable[[], asyncio.Protocol],
                      tls: ssl.SSLContext) -> tuple[asyncio.BaseTransport, asyncio.Protocol]:
    """A TLS connection to ``host:port`` through ``proxy``'s CONNECT tunnel, handed to a new protocol. Raises
    :class:`ProxyError` when the proxy cannot be reached or refuses the tunnel; a failed TLS handshake with the
    upstream raises ``ssl.SSLError`` or ``OSError``, as a direct connection's does."""
    try:
        raw, reply = await loop.create_connection(lambda: _ConnectReply(loop, proxy), proxy.host, proxy.port,
                                                  ssl=proxy_tls, server_hostname=proxy.host if proxy_tls else None)
    except (OSError, ssl.SSLError) as e:
        raise ProxyError(f"could not connect to the proxy {proxy}: {e}", proxy=str(proxy)) from None
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = f"CONNECT {authority} HTTP/1.1\r\nhost: {authority}\r\n"
        if proxy.authorization:
            head += f"proxy-authorization: {proxy.authorization}\r\n"
        raw.write((head + "\r\n").encode("idna" if not authority.isascii() else "ascii"))
        status, reason = _status(await reply.head, proxy)
        if not 200 <= status < 300:
            hint = " (the proxy's credentials are missing or wrong)" if status == 407 else ""
            raise ProxyError(f"the proxy {proxy} refused the tunnel to {authority}: HTTP {status} {reason}{hint}",
                             proxy=str(proxy), status=status)
        protocol = protocol_factory()
        transport = await loop.start_tls(raw, protocol, tls, server_hostname=host)
        if transport is None:  # only with a closed transport
            raise ProxyError(f"the proxy {proxy} closed the tunnel", proxy=str(proxy))
        protocol.connection_made(transport)  # start_tls does not call it
        return transport, protocol
    except BaseException:
        raw.close()
        raise
