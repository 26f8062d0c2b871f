"""Budget threshold webhooks: queued on the settle path, posted by a background task, never on the hot path.

A notice is a JSON POST (``x-switchyard-event: budget.threshold``), signed when ``ledger.webhooks.secret`` is set
(``x-switchyard-signature: sha256=<hex HMAC-SHA256 of the body>``), retried with backoff on a network error or a
5xx, and dropped (with an error in the log) after ``attempts`` tries.

SSRF: the target's host is resolved before each attempt and every address it resolves to must be public; a
loopback, private, link-local, shared (CGNAT), multicast, reserved or unspecified address is refused unless
``allow_private`` is set. The request then goes to the checked address itself (the Host header and TLS SNI keep
the name), so that DNS cannot answer differently between the check and the connection. Redirects are not
followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from ..config.ledger import WebhookSettings

if TYPE_CHECKING:  # httpx is imported when a webhook is first sent (its import pulls in rich and pygments)
    import httpx

log = logging.getLogger("switchyard.ledger")

_SHARED = ipaddress.ip_network("100.64.0.0/10")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(Exception):
    """A webhook URL that must not be called (bad scheme, unresolvable, or a non-public address)."""


def is_public(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return is_public(addr.ipv4_mapped)
    return not (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_reserved
                or addr.is_unspecified or (isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED))


async def resolve_target(url: str, allow_private: bool) -> tuple[httpx.URL, str]:
    """The URL rewritten to a checked address, and the original host (for Host and SNI)."""
    import httpx

    u = httpx.URL(url)
    if u.scheme not in ("http", "https") or not u.host:
        raise UnsafeTarget(f"not an http(s) URL: {url!r}")
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(u.host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UnsafeTarget(f"cannot resolve {u.host!r}: {e}") from None
    addrs = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addrs:
        raise UnsafeTarget(f"{u.host!r} resolves to nothing")
    if not allow_private:
        bad = [str(a) for a in addrs if not is_public(a)]
        if bad:
            raise UnsafeTarget(f"{u.host!r} resolves to a non-public address ({', '.join(bad)}); set "
                               "ledger.webhooks.allow_private to allow it")
    return u.copy_with(host=str(addrs[0])), u.host


class WebhookNotifier:
    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.sent = 0
        self.refused = 0
        self.failed = 0
        self._sending = False

    def notify(self, url: str | None, event: dict[str, Any]) -> None:
        """Queue a notice for ``url`` (or the configured default URL); returns at once."""
        target = url or self.settings.url
        if target is None:
            return
        if len(self._queue) >= self.settings.max_queue:
            log.error("webhooks: queue full; notice %s dropped", event.get("id"))
            return
        self._queue.append((target, orjson.dumps(event)))
        self._wake.set()
        if self._task is None:
            with contextlib.suppress(RuntimeError):  # no running loop: it starts with the gateway
                self._start_task()

    def _start_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="switchyard-webhooks")

    async def start(self) -> None:
        self._start_task()

    async def aclose(self, grace: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), grace)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self) -> None:
        """Wait until every queued notice has been sent (or given up on)."""
        while True:
            if not (self._queue or self._sending):
                return
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                url, body = self._queue.popleft()
                self._sending = True
                try:
                    await self._deliver(url, body)
                finally:
                    self._sending = False

    async def _deliver(self, url: str, body: bytes) -> None:
        import httpx

        s = self.settings
        headers = {"content-type": "application/json", "x-switchyard-event": "budget.threshold",
                   "user-agent": "switchyard-webhooks"}
        if s.secret:
            mac = hmac.new(s.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["x-switchyard-signature"] = "sha256=" + mac
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=s.timeout, follow_redirects=False, trust_env=False)
        for attempt in range(1, s.attempts + 1):
            try:
                target, host = await resolve_target(url, s.allow_private)
            except UnsafeTarget as e:
                self.refused += 1
                log.error("webhooks: refused to call %s: %s", _redact(url), e)
                return
            port = httpx.URL(url).port
            extensions = {"sni_hostname": host} if target.scheme == "https" else {}
            try:
                r = await self._client.post(target, content=body, extensions=extensions,
                                            headers={**headers, "host": f"{host}:{port}" if port else host})
                if r.status_code < 500:
                    if r.status_code >= 400:
                        log.warning("webhooks: %s answered %d", _redact(url), r.status_code)
                    self.sent += 1
                    return
                problem = f"HTTP {r.status_code}"
            except httpx.HTTPError as e:
                problem = type(e).__name__
            if attempt < s.attempts:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        self.failed += 1
        log.error("webhooks: giving up on %s after %d attempts (%s)", _redact(url), s.attempts, problem)


def _redact(url: str) -> str:
    """The URL without its query (which may hold a token)."""
    import httpx

    return str(httpx.URL(url).copy_with(query=None, fragment=None))
