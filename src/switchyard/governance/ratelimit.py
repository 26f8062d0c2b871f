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
    """Tokens admitted in the last minute; an entry is ``[time, tokens]``, corrected in place at settlement."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque[list[float]] = deque()
        self.total = 0

    def _purge(self, now: float) -> None:
        e = self.entries
        edge = now - WINDOW_S
        while e and e[0][0] <= edge:
            self.total -= int(e.popleft()[1])

    def check(self, limit: int, tokens: int, now: float) -> float | None:
        self._purge(now)
        if self.total == 0 or self.total + tokens <= limit:
            return None
        left = self.total
        for t, n in self.entries:  # the oldest leave first: when is there room?
            left -= int(n)
            if left == 0 or left + tokens <= limit:
                return max(0.0, t + WINDOW_S - now)
        return WINDOW_S

    def admit(self, tokens: int, now: float) -> list[float]:
        entry = [now, float(tokens)]
        self.entries.append(entry)
        self.total += tokens
        return entry

    def correct(self, entry: list[float], tokens: int, now: float) -> None:
        """Replace an admitted estimate by the real count, if the entry is still in the window."""
        self._purge(now)
        if self.entries and entry[0] > now - WINDOW_S:
            self.total += tokens - int(entry[1])
            entry[1] = float(tokens)

    @property
    def idle(self) -> bool:
        return not self.entries


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
