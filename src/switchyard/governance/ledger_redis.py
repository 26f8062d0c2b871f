"""The ledger across replicas: budgets and rate limits held in Redis, one Lua script per step.

* **reserve** — one ``EVALSHA`` (``redis_scripts/reserve.lua``) checks every budget and rate limit in scope and
  takes them all, or none. Holds are sorted-set members that carry their amounts and expire with a lease: a
  replica that dies mid-request stops renewing, and its holds are released by the next reservation that looks.
* **settle** — one ``EVALSHA`` per request (``settle.lua``), off the hot path: queued, sent in pipelined batches,
  retried while Redis is away. Idempotent, so a retry after an ambiguous failure never counts twice.
* **renew** — every ``lease / 3`` seconds one ``EVALSHA`` extends the leases of this replica's requests in flight.
* **rebuild** — Redis keeps a ready marker. If it is missing (a fresh or flushed Redis), the first replica to see
  it seeds every recent budget period's settled totals from the store (``budget_spend``, the source of truth)
  under a short lock; the others wait for the marker.
* **reconcile** — every ``reconcile_interval`` seconds one replica raises any recent bucket whose settled totals
  are below the store's (``reconcile.lua``; never lowers): a bucket evicted alone, or Redis restored from an old
  snapshot, is repaired within that interval.

Run Redis with ``maxmemory-policy noeviction`` all the same: between an eviction and the repair, a bucket counts
from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from ..config.ledger import LedgerConfig
from ..records import Intent
from .errors import GovernanceUnavailable
from .ledger_model import BudgetPeriod, Hold, Refused, Settled

log = logging.getLogger("switchyard.ledger")

BUCKET_GRACE_S = 2 * 86400  # a period's bucket outlives the period by this much (for late settlements, reports)
SEED_TTL_S = 40 * 86400  # seeded buckets of non-total periods expire after this (the period key holds no end)
_SETTLE_BATCH = 256
_MAX_QUEUE = 100_000

Rows = list[tuple[str, str, int, int]]


def _is_script_error(e: BaseException) -> bool:
    from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

    return isinstance(e, ResponseError) and not isinstance(e, NoScriptError | ReadOnlyError) and "BUSY" not in str(e)


def _script(name: str) -> str:
    return (resources.files("switchyard.governance") / "redis_scripts" / name).read_text()


class RedisBackend:
    def __init__(self, settings: LedgerConfig, load_totals: Callable[[], Awaitable[Rows]],
                 on_settled: Callable[[list[Settled]], None], in_flight: Callable[[], Iterable[Hold]]) -> None:
        import redis.asyncio as aioredis

        assert settings.redis is not None
        self.settings = settings
        self.prefix = settings.key_prefix
        self.lease_ms = int(settings.reservation_lease * 1000)
        pool = aioredis.BlockingConnectionPool.from_url(  # a burst queues for a connection rather than failing
            settings.redis, max_connections=settings.redis_max_connections,
            timeout=max(2.0, 4 * settings.redis_timeout),
            decode_responses=True, socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout)
        self.client: Any = aioredis.Redis(connection_pool=pool)
        self._reserve = self.client.register_script(_script("reserve.lua"))
        self._settle = self.client.register_script(_script("settle.lua"))
        self._renew = self.client.register_script(_script("renew.lua"))
        self._seed = self.client.register_script(_script("seed.lua"))
        self._reconcile = self.client.register_script(_script("reconcile.lua"))
        self.marker = f"{self.prefix}ledger:ready"
        self._load_totals = load_totals
        self._on_settled = on_settled
        self._in_flight = in_flight
        self._queue: deque[tuple[Hold, int, int]] = deque()
        self._wake = asyncio.Event()
        self._busy = False
        self._down = False  # the last attempt to send settlements failed
        self._tasks: list[asyncio.Task[None]] = []
        self._rebuilding = asyncio.Lock()
        self.settle_failures = 0

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._settler(), name="switchyard-ledger-settle"),
                       asyncio.create_task(self._renewer(), name="switchyard-ledger-renew"),
                       asyncio.create_task(self._reconciler(), name="switchyard-ledger-reconcile")]

    async def aclose(self, grace: float = 5.0) -> None:
        deadline = time.monotonic() + grace
        while (self._queue or self._busy) and not self._down and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        if self._queue:
            log.error("ledger: %d settlements could not reach Redis before shutdown; their holds expire with "
                      "their lease", len(self._queue))
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.client.aclose(close_connection_pool=True)

    def idle(self) -> bool:
        """No settlement queued or on its way to Redis."""
        return not self._queue and not self._busy

    async def drain(self, within: float = 10.0) -> None:
        """Wait until every queued settlement has reached Redis (for tests and shutdown)."""
        deadline = time.monotonic() + within
        while self._queue or self._busy:
            if time.monotonic() > deadline:
                raise TimeoutError("ledger settlements still queued")
            self._wake.set()
            await asyncio.sleep(0.005)

    # --- keys --------------------------------------------------------------------------------------------------

    def _bucket(self, b: BudgetPeriod) -> str:
        return f"{self.prefix}b:{b.bucket}"

    def _limit(self, limit_id: str, kind: str) -> str:
        return f"{self.prefix}rl:{limit_id}:{kind}"

    @staticmethod
    def _expire_at(b: BudgetPeriod) -> int:
        return 0 if b.resets_at is None else int(b.resets_at) + BUCKET_GRACE_S

    # --- reserve -----------------------------------------------------------------------------------------------

    async def reserve(self, hold: Hold) -> None:
        keys: list[str] = [self.marker]
        args: list[Any] = [hold.request_id, self.lease_ms, len(hold.budgets), len(hold.rpm), len(hold.tpm),
                           len(hold.concurrent)]
        for b in hold.budgets:
            bucket = self._bucket(b)
            keys += [bucket, bucket + ":h", bucket + ":x"]
            args += [b.limit_usd, b.limit_tokens, hold.usd, hold.tokens, self._expire_at(b)]
        for lim in hold.rpm:
            keys.append(self._limit(lim.id, "r"))
            args.append(lim.rpm)
        for lim in hold.tpm:
            keys += [self._limit(lim.id, "t"), self._limit(lim.id, "ts")]
            args += [lim.tpm, hold.prompt]
        for lim in hold.concurrent:
            keys.append(self._limit(lim.id, "c"))
            args.append(lim.max_concurrent)
        hold.renewable = bool(hold.budgets or hold.concurrent)
        for _ in range(3):
            try:
                res = await self._reserve(keys=keys, args=args)
            except Exception as e:
                raise self._unavailable(e) from e
            kind = res[0]
            if kind == "ok":
                return
            if kind == "rebuild":
                await self.rebuild()
                continue
            i = int(res[1]) - 1
            if kind == "budget":
                b = hold.budgets[i]
                wait = b.resets_at - time.time() if b.resets_at is not None else None
                raise Refused("budget", i, wait, int(res[2]), int(res[3]), int(res[4]), int(res[5]))
            used = int(res[3]) if kind == "tpm" else 0
            raise Refused(kind, i, int(res[2]) / 1000, used=used)
        raise GovernanceUnavailable("The ledger's Redis state is being rebuilt; try again.")

    def _unavailable(self, e: BaseException) -> GovernanceUnavailable:
        return GovernanceUnavailable(f"The ledger cannot reach Redis ({type(e).__name__}); budgets and rate limits "
                                     "cannot be checked.")

    # --- rebuild -----------------------------------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Seed settled totals from the store if Redis lost them (one replica does it; the others wait)."""
        async with self._rebuilding:
            try:
                if await self.client.exists(self.marker):
                    return
                lock, token = f"{self.prefix}ledger:rebuild", secrets.token_hex(8)
                if not await self.client.set(lock, token, nx=True, px=15_000):
                    for _ in range(300):
                        await asyncio.sleep(0.01)
                        if await self.client.exists(self.marker):
                            return
                    raise GovernanceUnavailable("Another gateway is rebuilding the ledger's Redis state.")
                try:
                    rows = await self._load_totals()
                    await self._seed_rows(rows)
                finally:
                    if await self.client.get(lock) == token:
                        await self.client.delete(lock)
            except GovernanceUnavailable:
                raise
            except Exception as e:
                raise self._unavailable(e) from e
        log.warning("ledger: Redis had no ledger state; rebuilt %d budget periods from the store", len(rows))

    async def reconcile(self) -> int:
        """Raise every recent bucket whose settled totals are below the store's; returns how many were raised."""
        rows = await self._load_totals()
        now = int(time.time())
        raised = 0
        for i in range(0, len(rows), 500):
            chunk = rows[i:i + 500]
            args: list[Any] = []
            for _, period, usd, tokens in chunk:
                args += [usd, tokens, 0 if period == "total" else now + SEED_TTL_S]
            raised += int(await self._reconcile(keys=[f"{self.prefix}b:{b}:{p}" for b, p, _, _ in chunk], args=args))
        return raised

    async def _reconciler(self) -> None:
        """Every ``reconcile_interval`` one replica (whichever takes the turn) compares Redis with the store."""
        every = self.settings.reconcile_interval
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.client.set(f"{self.prefix}ledger:reconcile", "1", nx=True,
                                             px=int(every * 900)):
                    continue
                raised = await self.reconcile()
            except Exception as e:
                log.debug("ledger: reconciliation skipped (%s)", type(e).__name__)
                continue
            if raised:
                log.warning("ledger: %d budget period(s) in Redis were below the store's totals and were raised "
                            "(evicted keys, or Redis restored from an old snapshot)", raised)

    async def _seed_rows(self, rows: Rows) -> None:
        now = int(time.time())
        chunks = [rows[i:i + 500] for i in range(0, len(rows), 500)] or [[]]
        for n, chunk in enumerate(chunks):
            keys = [self.marker]
            args: list[Any] = []
            for budget_id, period, usd, tokens in chunk:
                keys.append(f"{self.prefix}b:{budget_id}:{period}")
                args += [usd, tokens, 0 if period == "total" else now + SEED_TTL_S]
            args.append(1 if n == len(chunks) - 1 else 0)
            await self._seed(keys=keys, args=args)

    # --- settle ------------------------------------------------------------------------------------------------

    def settle(self, hold: Hold, usd: int, tokens: int) -> None:
        """Queue the settlement (no I/O here); the settler sends it within milliseconds."""
        if len(self._queue) >= _MAX_QUEUE:
            dropped = self._queue.popleft()
            log.error("ledger: settlement queue full; request %s settles by lease expiry only",
                      dropped[0].request_id)
        self._queue.append((hold, usd, tokens))
        self._wake.set()

    def _settle_call(self, hold: Hold, usd: int, tokens: int) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        args: list[Any] = [hold.request_id, len(hold.budgets), len(hold.tpm), len(hold.concurrent),
                           1 if hold.reserved else 0]
        for b in hold.budgets:
            bucket = self._bucket(b)
            keys += [bucket, bucket + ":h", bucket + ":x"]
            args += [hold.usd, hold.tokens, usd, tokens, self._expire_at(b)]
        for lim in hold.tpm:
            keys += [self._limit(lim.id, "t"), self._limit(lim.id, "ts")]
            args += [hold.prompt, tokens]
        for lim in hold.concurrent:
            keys.append(self._limit(lim.id, "c"))
        return keys, args

    async def _settler(self) -> None:
        delay = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(_SETTLE_BATCH, len(self._queue)))]
                self._busy = True
                try:
                    results = await self._send_settlements(batch)
                except Exception as e:
                    if _is_script_error(e):  # not Redis being away: retrying cannot help
                        log.error("ledger: Redis refused %d settlements (%s); their holds expire with their lease",
                                  len(batch), e)
                        continue
                    self._queue.extendleft(reversed(batch))
                    self.settle_failures += 1
                    self._down = True
                    log.warning("ledger: %d settlements could not reach Redis (%s); retrying in %.2fs",
                                len(self._queue), type(e).__name__, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                finally:
                    self._busy = False
                delay = 0.05
                self._down = False
                for (hold, usd, tokens), res in zip(batch, results, strict=True):
                    self._report(hold, usd, tokens, res)

    async def _send_settlements(self, batch: Sequence[tuple[Hold, int, int]]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for hold, usd, tokens in batch:
                keys, args = self._settle_call(hold, usd, tokens)
                await self._settle(keys=keys, args=args, client=pipe)
            return list(await pipe.execute())

    def _report(self, hold: Hold, usd: int, tokens: int, res: Sequence[Any]) -> None:
        out: list[Settled] = []
        for i, b in enumerate(hold.budgets):
            counted, su, st = int(res[3 * i]), int(res[3 * i + 1]), int(res[3 * i + 2])
            if counted:
                out.append(Settled(b, su - usd, su, st - tokens, st))
        if out:
            self._on_settled(out)

    async def settle_interrupted(self, intents: Sequence[Intent]) -> None:
        """Settle the holds of calls that a stopped gateway left in flight, each at the amount it held (its intent
        record's charges), and free their concurrency slots. Best effort: a hold this misses expires with its
        lease, and reconciliation raises Redis to the store's totals, which count the call."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for d in intents:
                    charges, slots = d.charges or (), d.concurrent or ()
                    keys: list[str] = []
                    args: list[Any] = [d.request_id, len(charges), 0, len(slots), 1]
                    for budget_id, period, usd, tokens in charges:
                        bucket = f"{self.prefix}b:{budget_id}:{period}"
                        keys += [bucket, bucket + ":h", bucket + ":x"]
                        args += [usd, tokens, usd, tokens, 0]
                    keys += [self._limit(lim, "c") for lim in slots]
                    await self._settle(keys=keys, args=args, client=pipe)
                results = await pipe.execute()
        except Exception as e:
            log.warning("ledger: could not settle %d interrupted calls in Redis (%s); their holds expire with their "
                        "lease and reconciliation counts their spend", len(intents), type(e).__name__)
            return
        counted = sum(1 for r in results if any(int(x) for x in r[0::3]))
        log.info("ledger: settled %d of %d interrupted calls' holds in Redis", counted, len(intents))

    # --- lease renewal -----------------------------------------------------------------------------------------

    async def _renewer(self) -> None:
        every = self.lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            keys: list[str] = []
            members: list[str] = []
            for hold in self._in_flight():
                if not hold.renewable:
                    continue
                for b in hold.budgets:
                    keys.append(self._bucket(b) + ":h")
                    members.append(f"{hold.request_id}|{hold.usd}|{hold.tokens}")
                for lim in hold.concurrent:
                    keys.append(self._limit(lim.id, "c"))
                    members.append(hold.request_id)
            for i in range(0, len(keys), 1000):
                try:
                    await self._renew(keys=keys[i:i + 1000], args=[self.lease_ms, *members[i:i + 1000]])
                except Exception as e:
                    log.warning("ledger: could not renew leases in Redis (%s)", type(e).__name__)
                    break
