"""Rate limits in one process: requests and tokens per sliding minute, and requests in flight.

The embedded ledger uses these; with Redis the same rules run in ``redis_scripts/reserve.lua``. A sliding log (not
a fixed window, not a token bucket) so that "60 a minute" means at most 60 in any 60 seconds, at a window boundary
too. Each check and its admission happen with no ``await`` in between: the event loop makes them atomic.

Tokens per minute count the prompt estimate at admission and are corrected to the real total when the request
settles. A request is refused when the window's tokens plus its estimate would pass the limit, unless the window is
empty (a single request larger than the limit would otherwise never pass).

One :class:`LimitState` per limit keeps all three: a log of admissions (time and tokens) in two flat lists, read
from ``head``, and the ids of the requests in flight. Numbers in flat lists, not one small object per request, so
that a busy minute (tens of thousands of entries) gives the garbage collector nothing to walk. ``take`` checks and
admits in one step; ``undo`` gives back the newest admission, so that a reservation takes its limits one by one
and gives back what it took when a later one refuses: all or nothing, with one call per limit.
"""

from __future__ import annotations

import itertools

from .auth import RateLimitDef
from .ledger_model import WINDOW_S, Refused

# Each state numbers its entries from its own base, far from every other's: a request that settles after its
# limit's state was pruned and made anew cannot correct another request's entry.
_BASES = itertools.count(0, 1 << 40)


class LimitState:
    """One rate limit's admissions in the last minute, and its requests in flight."""

    __slots__ = ("base", "counts", "head", "ids", "times", "total")

    def __init__(self) -> None:
        self.times: list[float] = []  # admission times, oldest first
        self.counts: list[int] = []  # tokens counted for each admission
        self.head = 0  # the first entry still in the window
        self.base = next(_BASES)  # the entry number of times[0]
        self.total = 0  # tokens of the entries in the window
        self.ids: set[str] = set()  # requests in flight

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

    def take(self, lim: RateLimitDef, tokens: int, request_id: str, now: float) -> int:
        """Admit one request counting ``tokens`` and return its entry number, or raise :class:`Refused` (its index
        is left for the caller to set)."""
        self._purge(now)
        t = self.times
        rpm = lim.rpm
        if rpm is not None and len(t) - self.head >= rpm:
            raise Refused("rpm", -1, max(0.0, t[len(t) - rpm] + WINDOW_S - now))
        tpm = lim.tpm
        if tpm is not None and self.total and self.total + tokens > tpm:
            raise Refused("tpm", -1, self._room_at(tpm, tokens, now), used=self.total)
        if lim.max_concurrent is not None:
            if len(self.ids) >= lim.max_concurrent:
                raise Refused("concurrent", -1, 1.0)
            self.ids.add(request_id)
        t.append(now)
        self.counts.append(tokens)
        self.total += tokens
        return self.base + len(t) - 1

    def _room_at(self, tpm: int, tokens: int, now: float) -> float:
        """Seconds until ``tokens`` more fit: the oldest entries leave first."""
        left = self.total
        for i in range(self.head, len(self.times)):
            left -= self.counts[i]
            if left == 0 or left + tokens <= tpm:
                return max(0.0, self.times[i] + WINDOW_S - now)
        return WINDOW_S

    def undo(self, request_id: str) -> None:
        """Give back the newest admission (a later limit of the same reservation refused)."""
        self.times.pop()
        self.total -= self.counts.pop()
        self.ids.discard(request_id)

    def settle(self, entry: int, tokens: int, request_id: str, now: float) -> None:
        """The request ended: its estimate becomes its real token count (if its entry is still in the window),
        and it is no longer in flight."""
        i = entry - self.base
        if self.head <= i < len(self.times) and self.times[i] > now - WINDOW_S:
            self.total += tokens - self.counts[i]
            self.counts[i] = tokens
        self.ids.discard(request_id)

    def idle(self, now: float) -> bool:
        """Nothing in the window and nothing in flight (so the state can be forgotten)."""
        self._purge(now)
        return self.head >= len(self.times) and not self.ids
