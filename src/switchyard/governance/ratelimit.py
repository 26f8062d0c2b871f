"""Rate limits in one process: requests and tokens per sliding minute, and requests in flight.

The embedded ledger uses these; with Redis the same rules run in ``redis_scripts/reserve.lua``. A sliding log (not
a fixed window, not a token bucket) so that "60 a minute" means at most 60 in any 60 seconds, at a window boundary
too. Each check and its admission happen with no ``await`` in between: the event loop makes them atomic.

Tokens per minute count the prompt estimate at admission and are corrected to the real total when the request
settles. A request is refused when the window's tokens plus its estimate would pass the limit, unless the window is
empty (a single request larger than the limit would otherwise never pass).
"""

from __future__ import annotations

from collections import deque

from .ledger_model import WINDOW_S


class RequestWindow:
    """Admissions in the last minute."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def _purge(self, now: float) -> None:
        t = self.times
        edge = now - WINDOW_S
        while t and t[0] <= edge:
            t.popleft()

    def check(self, limit: int, now: float) -> float | None:
        """None when one more request fits, else the seconds until one does."""
        self._purge(now)
        if len(self.times) >= limit:
            return max(0.0, self.times[len(self.times) - limit] + WINDOW_S - now)
        return None

    def admit(self, now: float) -> None:
        self.times.append(now)

    @property
    def idle(self) -> bool:
        return not self.times


class TokenWindow:
    """Tokens admitted in the last minute, corrected in place at settlement.

    Entries live in two flat lists (admission times, token counts) read from ``head``: numbers, not one small
    container per request, so that a busy minute (tens of thousands of entries) gives the garbage collector
    nothing to walk. An admission returns its entry number, which stays valid while the entry is in the window.
    """

    __slots__ = ("base", "counts", "head", "times", "total")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.counts: list[int] = []
        self.head = 0  # the first entry still in the window
        self.base = 0  # the entry number of times[0]
        self.total = 0

    def _purge(self, now: float) -> None:
        t, h, n = self.times, self.head, len(self.times)
        edge = now - WINDOW_S
        while h < n and t[h] <= edge:
            self.total -= self.counts[h]
            h += 1
        if h > 1024 and 2 * h > n:  # drop the departed entries once they are the larger part
            del t[:h]
            del self.counts[:h]
            self.base += h
            h = 0
        self.head = h

    def check(self, limit: int, tokens: int, now: float) -> float | None:
        self._purge(now)
        if self.total == 0 or self.total + tokens <= limit:
            return None
        left = self.total
        for i in range(self.head, len(self.times)):  # the oldest leave first: when is there room?
            left -= self.counts[i]
            if left == 0 or left + tokens <= limit:
                return max(0.0, self.times[i] + WINDOW_S - now)
        return WINDOW_S

    def admit(self, tokens: int, now: float) -> int:
        self.times.append(now)
        self.counts.append(tokens)
        self.total += tokens
        return self.base + len(self.times) - 1

    def correct(self, entry: int, tokens: int, now: float) -> None:
        """Replace an admitted estimate by the real count, if the entry is still in the window."""
        self._purge(now)
        i = entry - self.base
        if self.head <= i < len(self.times):
            self.total += tokens - self.counts[i]
            self.counts[i] = tokens

    @property
    def idle(self) -> bool:
        return self.head >= len(self.times)


class InFlight:
    """Requests in flight."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def check(self, limit: int) -> float | None:
        return 1.0 if len(self.ids) >= limit else None

    def admit(self, request_id: str) -> None:
        self.ids.add(request_id)

    def release(self, request_id: str) -> None:
        self.ids.discard(request_id)

    @property
    def idle(self) -> bool:
        return not self.ids
