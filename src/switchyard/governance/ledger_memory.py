"""The embedded ledger: budgets and rate limits in this process's memory.

A reservation checks every budget and rate limit in scope and then takes them all, with no ``await`` in between:
on one event loop that is atomic, with no lock. Settlement releases the hold and adds the real cost. Totals
survive a restart through the store (``budget_spend``, written by the spend writer) and are read back at start;
only one process may enforce a budget this way (several replicas need Redis).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .ledger_model import BudgetPeriod, Hold, Refused, Settled
from .ratelimit import LimitState


class Bucket:
    """One budget period: settled and held USD (E8 units) and tokens, and the amounts at which its next threshold
    fires (``alarm_*``, worked out from ``alarm_of``'s thresholds; NO_LIMIT: none left)."""

    __slots__ = ("alarm_of", "alarm_tokens", "alarm_usd", "ends", "held_tokens", "held_usd", "spent_tokens",
                 "spent_usd")

    def __init__(self, spent_usd: int = 0, spent_tokens: int = 0, ends: float | None = None) -> None:
        self.spent_usd = spent_usd
        self.spent_tokens = spent_tokens
        self.held_usd = 0
        self.held_tokens = 0
        self.ends = ends
        self.alarm_of: BudgetPeriod | None = None  # none yet: the first settlement works the alarms out
        self.alarm_usd = self.alarm_tokens = 0


class MemoryBackend:
    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.limits: dict[str, LimitState] = {}
        self._pruned = time.time()

    def load(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """Settled totals from the store: (budget_id, period, usd E8, tokens). Replaces what is in memory."""
        for budget_id, period, usd, tokens in rows:
            b = self.buckets.get(f"{budget_id}:{period}")
            if b is None:
                self.buckets[f"{budget_id}:{period}"] = Bucket(usd, tokens)
            else:
                b.spent_usd, b.spent_tokens = usd, tokens
                b.alarm_of = None

    def reserve(self, hold: Hold, now: float) -> None:
        """Take every budget and limit of ``hold`` or none of them (raising :class:`Refused`).

        Budgets are checked first (checking changes nothing); then each rate limit is taken in turn, and when one
        refuses, those already taken are given back before the refusal is raised."""
        usd, tokens = hold.usd, hold.tokens
        buckets = self.buckets
        for b in hold.budgets:
            k = buckets.get(b.bucket)
            if k is None:
                k = buckets[b.bucket] = Bucket(ends=b.resets_at)
            if (k.spent_usd >= b.cap_usd or k.spent_usd + k.held_usd + usd > b.cap_usd
                    or k.spent_tokens >= b.cap_tokens or k.spent_tokens + k.held_tokens + tokens > b.cap_tokens):
                raise Refused("budget", hold.budgets.index(b), b.resets_at - now if b.resets_at is not None else None,
                              k.spent_usd, k.spent_tokens, k.held_usd, k.held_tokens)
        if hold.limits:
            hold.entries = self._take_limits(hold, now)
        for b in hold.budgets:
            k = buckets[b.bucket]
            k.held_usd += usd
            k.held_tokens += tokens

    def _take_limits(self, hold: Hold, now: float) -> list[int]:
        entries: list[int] = []
        states = self.limits
        rid = hold.request_id
        for lim in hold.limits:
            st = states.get(lim.id)
            if st is None:
                st = states[lim.id] = LimitState()
            try:
                entries.append(st.take(lim, hold.prompt, rid, now))
            except Refused as r:
                for taken in hold.limits[:len(entries)]:
                    states[taken.id].undo(rid)
                r.index = list(getattr(hold, r.kind)).index(lim)  # its place among the hold's limits of its kind
                raise
        return entries

    def settle(self, hold: Hold, usd: int, tokens: int, now: float) -> list[Settled]:
        """Release ``hold`` and add the real cost. Returns the budgets whose thresholds this settlement crossed."""
        out: list[Settled] = []
        buckets = self.buckets
        hu, ht = (hold.usd, hold.tokens) if hold.reserved else (0, 0)
        for b in hold.budgets:
            k = buckets.get(b.bucket)
            if k is None:  # pruned (its period long over), or never reserved (fail-open)
                k = buckets[b.bucket] = Bucket(ends=b.resets_at)
                k.held_usd, k.held_tokens = hu, ht
            k.held_usd -= hu
            k.held_tokens -= ht
            bu, bt = k.spent_usd, k.spent_tokens
            k.spent_usd = au = bu + usd
            k.spent_tokens = at = bt + tokens
            # Only thresholds call a webhook, and most settlements cross none: the alarms (where the next
            # threshold is, from the last look) spare them the exact test. Spend only grows, so an alarm not
            # reached means no threshold crossed; a look through another BudgetPeriod works them out anew.
            if au >= k.alarm_usd or at >= k.alarm_tokens or k.alarm_of is not b:
                s = Settled(b, bu, au, bt, at)
                if s.crossed():
                    out.append(s)
                k.alarm_of = b
                k.alarm_usd, k.alarm_tokens = b.next_marks(au, at)
        if hold.entries is not None:
            states = self.limits
            for lim, entry in zip(hold.limits, hold.entries, strict=True):
                st = states.get(lim.id)
                if st is not None:
                    st.settle(entry, tokens, hold.request_id, now)
        if now - self._pruned > 300:
            self.prune(now)
        return out

    def prune(self, now: float) -> None:
        """Forget periods that ended a day ago with nothing held, and idle rate limits."""
        self._pruned = now
        for key in [k for k, b in self.buckets.items()
                    if b.ends is not None and b.ends < now - 86400 and not b.held_usd and not b.held_tokens]:
            del self.buckets[key]
        for key in [k for k, st in self.limits.items() if st.idle(now)]:
            del self.limits[key]
