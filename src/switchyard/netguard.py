"""The SSRF guard: which addresses a URL that a user configured may reach, and a connection pinned to them.

Every URL that an API caller can set (today: a budget's ``webhook_url``) goes through this module; URLs from the
operator's config file (providers' ``base_url``, ``ledger.webhooks.url``) are trusted as the operator's choice: they
may name private addresses (webhook notices to ``ledger.webhooks.url`` are still pinned to the address resolved).

**Non-public addresses.** Loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT,
100.64.0.0/10), documentation and benchmarking ranges; IPv6 site-local (fec0::/10) and unique-local (fc00::/7).
An IPv6 address that carries an IPv4 address is judged by that IPv4 address: IPv4-mapped (``::ffff:a.b.c.d``),
6to4 (``2002:AABB:CCDD::/48``) and well-known-prefix NAT64 (``64:ff9b::a.b.c.d``). Forms whose IPv4 part cannot
be judged reliably are refused outright: IPv4-compatible (``::a.b.c.d``, deprecated), local-use NAT64
(``64:ff9b:1::/48``, where the embedding depends on the site's prefix length) and Teredo (``2001::/32``, which
carries an obfuscated address and reaches hosts through a relay).

**Two checks.** :func:`check_url` is static (no DNS): the scheme, and the host when it is an address, written in
any form a resolver accepts (``127.1``, ``2130706433``, ``0x7f.1``), plus ``localhost`` names. It runs when the
URL is set, so that an obviously internal target is refused then, with a 400. :func:`resolve_pinned` runs before
each connection: it resolves the host once, refuses it if any address is non-public, and returns the URL
rewritten to the checked address; the caller connects there, sending the original name as the Host header and as
the TLS SNI and certificate name, so that DNS cannot answer differently between the check and the connection.
Redirects must not be followed (a redirect would be a second, unchecked target).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""Given a host name and a port, its addresses (as strings). The default asks the system's resolver."""

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 (CGNAT); not in Python 3.11's is_private
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: the IPv4 address is the last 32 bits
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local-use prefix
_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 IPv4-compatible (deprecated); includes :: and ::1
_TEREDO = ipaddress.ip_network("2001::/32")


class UnsafeTarget(Exception):
    """A URL that must not be called: a bad scheme, an unresolvable host, or a non-public address."""


class NonPublicTarget(UnsafeTarget):
    """A URL whose host is (or resolves to) a non-public address: allowed only with ``allow_private``."""


def embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, when it is a form that carries one we can judge."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def is_public(addr: IPAddress) -> bool:
    """Whether a user-set URL may reach ``addr`` (see the module docstring for what is not public)."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return False  # a zone index only makes sense on a link
        v4 = embedded_ipv4(addr)
        if v4 is not None:
            return is_public(v4)
        if addr in _COMPATIBLE or addr in _NAT64_LOCAL or addr in _TEREDO or addr.is_site_local:
            return False
    elif addr in _SHARED:
        return False
    return addr.is_global and not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
                                   or addr.is_reserved or addr.is_unspecified)


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names when it is an address literal in any form a resolver would accept (dotted
    IPv4, its short, decimal, octal and hex forms, or IPv6 with an optional zone); None for a name."""
    h = urllib.parse.unquote(host).strip("[]")
    if h.endswith(".") and not h.endswith(".."):  # a fully qualified form: some resolvers take "127.0.0.1."
        h = h[:-1]
    try:
        return ipaddress.ip_address(h)  # IPv6 may carry a zone index: fe80::1%eth0
    except ValueError:
        pass
    if h and all(c in "0123456789abcdefxABCDEFX." for c in h) and h[0].isdigit():
        try:  # inet_aton's forms: 127.1, 2130706433, 0177.0.0.1, 0x7f.1 (what getaddrinfo accepts too)
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    return None


def _is_localhost(host: str) -> bool:
    h = urllib.parse.unquote(host).lower().rstrip(".")
    return h == "localhost" or h.endswith(".localhost")  # RFC 6761: always loopback


@dataclass(frozen=True, slots=True)
class Target:
    """A URL's parts, as the connection needs them."""

    scheme: str
    host: str  # the host as written (no brackets): what Host and SNI carry
    port: int  # explicit, or the scheme's default
    explicit_port: bool


def check_url(url: str, allow_private: bool = False) -> Target:
    """The static check (no DNS): an http(s) URL with a host; with ``allow_private`` off, not an address literal
    (in any form) that is non-public, nor a ``localhost`` name. Raises :class:`UnsafeTarget`, naming the problem."""
    import httpx

    try:
        u = httpx.URL(url)
    except Exception as e:  # httpx.InvalidURL, or a ValueError from a malformed port
        raise UnsafeTarget(f"not a valid URL ({e})") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise UnsafeTarget("must be an http:// or https:// URL with a host")
    target = Target(u.scheme, u.host, u.port or (443 if u.scheme == "https" else 80), u.port is not None)
    if not allow_private:
        addr = literal_address(u.host)
        if (addr is not None and not is_public(addr)) or _is_localhost(u.host):
            raise NonPublicTarget(f"{u.host!r} is a non-public address")
    return target


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class Pinned:
    """A checked target: the addresses to connect to (in the resolver's order), and what to tell the server."""

    url: str
    target: Target
    addresses: tuple[IPAddress, ...]

    @property
    def host_header(self) -> str:
        t = self.target
        host = f"[{t.host}]" if ":" in t.host else t.host
        return f"{host}:{t.port}" if t.explicit_port else host

    def url_for(self, addr: IPAddress) -> str:
        """The URL with its host replaced by ``addr`` (the path, query and port kept)."""
        import httpx

        return str(httpx.URL(self.url).copy_with(host=str(addr)))

    def extensions(self) -> dict[str, str]:
        """httpx request extensions: for https, the original name as SNI (and so for certificate checks)."""
        return {"sni_hostname": self.target.host} if self.target.scheme == "https" else {}


async def resolve_pinned(url: str, allow_private: bool = False, resolver: Resolver | None = None) -> Pinned:
    """Check ``url``, resolve its host once, and refuse it if any address is non-public (unless ``allow_private``).
    Connect to ``Pinned.addresses`` (see :meth:`Pinned.url_for`), never to the name."""
    target = check_url(url, allow_private)
    literal = literal_address(target.host)
    if literal is not None:
        if isinstance(literal, ipaddress.IPv6Address) and literal.scope_id:
            raise UnsafeTarget(f"{target.host!r}: an address with a zone index cannot be called")
        addrs: list[IPAddress] = [literal]
    else:
        try:
            found = await (resolver or system_resolver)(target.host, target.port)
        except OSError as e:
            raise UnsafeTarget(f"cannot resolve {target.host!r}: {e}") from None
        addrs = list(dict.fromkeys(ipaddress.ip_address(a.split("%")[0]) for a in found))
        if not addrs:
            raise UnsafeTarget(f"{target.host!r} resolves to nothing")
    if not allow_private:
        bad = [str(a) for a in addrs if not is_public(a)]
        if bad:
            raise NonPublicTarget(f"{target.host!r} resolves to a non-public address ({', '.join(bad)})")
    return Pinned(url, target, tuple(addrs))
