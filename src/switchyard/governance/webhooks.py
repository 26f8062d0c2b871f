"""Budget threshold webhooks: queued on the settle path, posted by a background task, never on the hot path.

A notice is a JSON POST (``x-switchyard-event: budget.threshold``), signed when ``ledger.webhooks.secret`` is set
(``x-switchyard-signature: sha256=<hex HMAC-SHA256 of the body>``), retried with backoff on a network error or a
5xx, and dropped (with an error in the log) after ``attempts`` tries.

SSRF: every attempt goes through :func:`switchyard.netguard.resolve_pinned`: the target's host is resolved once
and every address it resolves to must be public (see :mod:`switchyard.netguard` for what is not, IPv6 forms that
embed an IPv4 address included), unless ``allow_private`` is set or the target is the operator's own
``ledger.webhooks.url`` (from the config file: trusted, so it may name an in-cluster receiver). The request then
goes to a checked address itself (the Host header and TLS SNI keep the name; the next address is tried if one
refuses the connection), so that DNS cannot answer differently between the check and the connection. Redirects
are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from ..config.ledger import WebhookSettings
from ..netguard import Pinned, Resolver, UnsafeTarget, resolve_pinned
from ..worker import Worker

if TYPE_CHECKING:  # httpx is imported when a webhook is first sent (its import pulls in rich and pygments)
    import httpx

log = logging.getLogger("switchyard.ledger")


class WebhookNotifier:
    def __init__(self, settings: WebhookSettings, *, resolver: Resolver | None = None,
                 verify: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._resolver = resolver  # None: the system's resolver
        self._verify: ssl.SSLContext | bool = verify if verify is not None else True
        self._queue: deque[tuple[str, bytes]] = deque()
        # idle until a notice is queued (it wakes the worker); each notice retries on its own (see _deliver)
        self.worker = Worker("webhooks", self._send_queued, interval=None)
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
        if not self.worker.running:
            with contextlib.suppress(RuntimeError):  # no running loop: it starts with the gateway
                self.worker.start()
        self.worker.wake()

    async def start(self) -> None:
        self.worker.start()
        if self._queue:
            self.worker.wake()

    async def aclose(self, grace: float = 2.0) -> None:
        """Send what is queued (for at most ``grace`` seconds), then stop."""
        await self.worker.stop(grace)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def drain(self) -> None:
        """Wait until every queued notice has been sent (or given up on)."""
        while True:
            if not (self._queue or self._sending):
                return
            await asyncio.sleep(0.01)

    async def _send_queued(self) -> None:
        """The worker's step: send every queued notice, in order."""
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
            self._client = httpx.AsyncClient(timeout=s.timeout, follow_redirects=False, trust_env=False,
                                             verify=self._verify)
        problem = "no attempt"
        # the operator's own URL (ledger.webhooks.url) is trusted: it may be an in-cluster receiver
        allow_private = s.allow_private or url == s.url
        for attempt in range(1, s.attempts + 1):
            try:
                pinned = await resolve_pinned(url, allow_private, self._resolver)
            except UnsafeTarget as e:
                self.refused += 1
                log.error("webhooks: refused to call %s: %s", _redact(url), e)
                return
            headers["host"] = pinned.host_header
            try:
                r = await self._post(pinned, body, headers)
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

    async def _post(self, pinned: Pinned, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST to the first checked address that takes the connection (never to the name itself)."""
        import httpx

        assert self._client is not None
        for i, addr in enumerate(pinned.addresses):
            try:
                return await self._client.post(pinned.url_for(addr), content=body, headers=headers,
                                               extensions=pinned.extensions())
            except httpx.ConnectError:
                if i == len(pinned.addresses) - 1:
                    raise
        raise AssertionError("a pinned target has at least one address")


def _redact(url: str) -> str:
    """The URL without its query (which may hold a token)."""
    import httpx

    try:
        return str(httpx.URL(url).copy_with(query=None, fragment=None))
    except Exception:
        return "<an invalid URL>"
