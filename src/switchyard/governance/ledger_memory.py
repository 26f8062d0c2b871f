"""The embedded ledger: budgets and rate limits in this process's memory.

A reservation checks every budget and rate limit in scope and then takes them all, with no ``await`` in between:
on one event loop that is atomic, with no lock. Settlement releases the hold and adds the real cost. Totals
survive a restart through the store (``budget_spend``, written by the spend writer) and are read back at start;
only one process may enforce a budget this way (several replicas need Redis).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from .ledger_model import BudgetHold, Hold, Refused, Settled, crosses
from .ratelimit import InFlight, RequestWindow, TokenWindow


class Bucket:
    """One budget period: settled and held USD (E8 units) and tokens."""

    __slots__ = ("ends", "held_tokens", "held_usd", "spent_tokens", "spent_usd")

    def __init__(self, spent_usd: int = 0, spent_tokens: int = 0, ends: float | None = None) -> None:
        self.spent_usd = spent_usd
        self.spent_tokens = spent_tokens
        self.held_usd = 0
        self.held_tokens = 0
        self.ends = ends

    def refuses(self, b: BudgetHold) -> bool:
        if b.limit_usd >= 0 and (self.spent_usd >= b.limit_usd
                                 or self.spent_usd + self.held_usd + b.usd > b.limit_usd):
            return True
        return b.limit_tokens >= 0 and (self.spent_tokens >= b.limit_tokens
                                        or self.spent_tokens + self.held_tokens + b.tokens > b.limit_tokens)


class MemoryBackend:
    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.requests: dict[str, RequestWindow] = {}
        self.tokens: dict[str, TokenWindow] = {}
        self.in_flight: dict[str, InFlight] = {}
        self._pruned = time.time()

    def load(self, rows: Iterable[tuple[str, str, int, int]]) -> None:
        """Settled totals from the store: (budget_id, period, usd E8, tokens). Replaces what is in memory."""
        for budget_id, period, usd, tokens in rows:
            b = self.buckets.get(f"{budget_id}:{period}")
            if b is None:
                self.buckets[f"{budget_id}:{period}"] = Bucket(usd, tokens)
            else:
                b.spent_usd, b.spent_tokens = usd, tokens

    def reserve(self, hold: Hold, now: float) -> None:
        """Take every budget and limit of ``hold`` or none of them (raising :class:`Refused`)."""
        buckets: list[Bucket] = []
        for i, b in enumerate(hold.budgets):
            bucket = self.buckets.get(b.bucket)
            if bucket is None:
                bucket = self.buckets[b.bucket] = Bucket(ends=b.resets_at)
            if bucket.refuses(b):
                raise Refused("budget", i, b.resets_at - now if b.resets_at is not None else None,
                              bucket.spent_usd, bucket.spent_tokens, bucket.held_usd, bucket.held_tokens)
            buckets.append(bucket)
        for i, lim in enumerate(hold.rpm):
            assert lim.rpm is not None
            rw = self.requests.get(lim.id)
            if rw is None:
                rw = self.requests[lim.id] = RequestWindow()
            wait = rw.check(lim.rpm, now)
            if wait is not None:
                raise Refused("rpm", i, wait)
        for i, (lim, est) in enumerate(hold.tpm):
            assert lim.tpm is not None
            w = self.tokens.get(lim.id)
            if w is None:
                w = self.tokens[lim.id] = TokenWindow()
            wait = w.check(lim.tpm, est, now)
            if wait is not None:
                raise Refused("tpm", i, wait, used=w.total)
        for i, lim in enumerate(hold.concurrent):
            assert lim.max_concurrent is not None
            f = self.in_flight.get(lim.id)
            if f is None:
                f = self.in_flight[lim.id] = InFlight()
            wait = f.check(lim.max_concurrent)
            if wait is not None:
                raise Refused("concurrent", i, wait)
        # every check passed: take them all
        for b, bucket in zip(hold.budgets, buckets, strict=True):
            bucket.held_usd += b.usd
            bucket.held_tokens += b.tokens
        for lim in hold.rpm:
            self.requests[lim.id].admit(now)
        if hold.tpm:
            hold.tpm_entries = [self.tokens[lim.id].admit(est, now) for lim, est in hold.tpm]
        for lim in hold.concurrent:
            self.in_flight[lim.id].admit(hold.request_id)

    def settle(self, hold: Hold, usd: int, tokens: int, now: float) -> list[Settled]:
        """Release ``hold`` and add the real cost. Returns the budgets whose thresholds this settlement crossed."""
        out: list[Settled] = []
        for b in hold.budgets:
            bucket = self.buckets.get(b.bucket)
            if bucket is None:  # pruned (its period long over), or never reserved (fail-open)
                bucket = self.buckets[b.bucket] = Bucket(ends=b.resets_at)
            elif hold.reserved:
                bucket.held_usd -= b.usd
                bucket.held_tokens -= b.tokens
            before_usd, before_tokens = bucket.spent_usd, bucket.spent_tokens
            bucket.spent_usd += usd
            bucket.spent_tokens += tokens
            # only thresholds call a webhook, and most settlements cross none
            if b.budget.thresholds and crosses(b, before_usd, bucket.spent_usd, before_tokens, bucket.spent_tokens):
                out.append(Settled(b, before_usd, bucket.spent_usd, before_tokens, bucket.spent_tokens))
        if hold.tpm_entries is not None:
            for (lim, _), entry in zip(hold.tpm, hold.tpm_entries, strict=True):
                w = self.tokens.get(lim.id)
                if w is not None:
                    w.correct(entry, tokens, now)
        for lim in hold.concurrent:
            f = self.in_flight.get(lim.id)
            if f is not None:
                f.release(hold.request_id)
        if now - self._pruned > 300:
            self.prune(now)
        return out

    def prune(self, now: float) -> None:
        """Forget periods that ended a day ago with nothing held, and idle rate-limit windows."""
        self._pruned = now
        for key in [k for k, b in self.buckets.items()
                    if b.ends is not None and b.ends < now - 86400 and not b.held_usd and not b.held_tokens]:
            del self.buckets[key]
        for windows in (self.requests, self.tokens, self.in_flight):
            for key in [k for k, w in windows.items() if w.idle]:
                del windows[key]
