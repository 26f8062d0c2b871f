"""Failed authentications per client address: a flood of bad keys is refused before it costs a lookup.

Each client address has a token bucket of ``limit`` failures, refilled at ``limit / window`` per second: a burst of
``limit`` failures, then one every ``window / limit`` seconds. A 401 takes a token. Once an address has failed, a
lookup from it holds a token while it runs (handed back if the key is valid), so concurrent requests cannot
overshoot the limit. With no token left, a request from that address is refused with 429 (and ``Retry-After``:
when the next token is due) *before* its key is looked up, unless its key is already known to be valid: the master
key, a static key, or a virtual key in the key cache. So a valid key is never slowed by someone else's flood, even
one from the same address (a NAT), once it has been used.

The address is the TCP peer (``X-Forwarded-For`` is not trusted). An IPv6 address counts by its /64, which is what
one host or one customer usually holds. At most ``max_clients`` addresses are tracked; past that the oldest are
forgotten (an address that has refilled its bucket holds nothing worth keeping anyway).

Cost on the hot path: none while no address has failed; else one dict lookup (plus an IPv6 prefix for IPv6 peers);
a valid key from an address that has failed lately costs one more cache lookup (is it known to be valid?).
"""

from __future__ import annotations

import ipaddress
import itertools
import time
from collections.abc import Callable

from ..config.governance import AuthFailureSettings
from ..errors import RateLimited


class AuthFailureLimiter:
    __slots__ = ("_buckets", "_clock", "limit", "max_clients", "rate", "window")

    def __init__(self, limit: int, window: float, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("the failed-authentication limit needs limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.rate = limit / window  # tokens per second
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when), oldest failure first

    @staticmethod
    def client_key(address: str) -> str:
        """What an address counts as: itself (IPv4), or its /64 (IPv6)."""
        if ":" not in address:
            return address
        try:
            return str(ipaddress.IPv6Network((address.split("%")[0], 64), strict=False))
        except ValueError:
            return address

    def _tokens(self, bucket: tuple[float, float], now: float) -> float:
        return min(float(self.limit), bucket[0] + (now - bucket[1]) * self.rate)

    def tracking(self, address: str) -> bool:
        """Whether ``address`` has failed lately (its bucket is not full). The hot path's only cost: nothing while
        no address has failed, else a dict lookup (plus an IPv6 prefix for an IPv6 peer)."""
        if not self._buckets:
            return False
        key = self.client_key(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        if self._tokens(bucket, self._clock()) >= self.limit:
            del self._buckets[key]  # refilled: nothing left to remember
            return False
        return True

    def take(self, address: str) -> float | None:
        """Hold a token for a lookup that may fail: None if one was held (hand it back with :meth:`refund` if the
        key turns out valid), else the seconds until the next token (the request is then refused)."""
        key = self.client_key(address)
        now = self._clock()
        bucket = self._buckets.get(key)
        tokens = self._tokens(bucket, now) if bucket is not None else float(self.limit)
        if tokens < 1:
            return (1 - tokens) / self.rate
        self._store(key, tokens - 1, now)
        return None

    def refund(self, address: str) -> None:
        key = self.client_key(address)
        bucket = self._buckets.get(key)
        if bucket is not None:
            now = self._clock()
            self._buckets[key] = (min(float(self.limit), self._tokens(bucket, now) + 1), now)

    def failed(self, address: str) -> None:
        """Count a failed authentication from ``address`` (one that held no token)."""
        key = self.client_key(address)
        now = self._clock()
        bucket = self._buckets.get(key)
        tokens = self._tokens(bucket, now) if bucket is not None else float(self.limit)
        self._store(key, max(0.0, tokens - 1), now)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if self._buckets.pop(key, None) is None and len(self._buckets) >= self.max_clients:
            for old in list(itertools.islice(self._buckets, max(1, self.max_clients // 10))):
                del self._buckets[old]
        self._buckets[key] = (tokens, now)  # re-inserted last: the dict stays least recently charged first

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may fail again; None if it may now."""
        bucket = self._buckets.get(self.client_key(address))
        if bucket is None:
            return None
        tokens = self._tokens(bucket, self._clock())
        return None if tokens >= 1 else (1 - tokens) / self.rate

    def refusal(self, wait: float) -> RateLimited:
        return RateLimited(f"Too many failed authentications from this address: limit {self.limit} per "
                           f"{self.window:g} s. Retry after {max(1, int(wait + 0.999))} s.", retry_after=wait,
                           code="too_many_failed_authentications")

    def __len__(self) -> int:
        return len(self._buckets)


def failure_limiter(settings: AuthFailureSettings) -> AuthFailureLimiter | None:
    """The limiter the settings ask for; None when ``limit`` is 0 (off)."""
    if settings.limit <= 0:
        return None
    return AuthFailureLimiter(settings.limit, settings.window, settings.max_clients)
