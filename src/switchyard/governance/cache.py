"""The key directory: virtual keys to Principals, from an in-memory cache kept fresh by change-version polling.

**Hot path.** A virtual key (``sk-sy-...``) is hashed with the key secret (HMAC-SHA256, about a microsecond) and
looked up in a dict. A hit costs nothing more: no database round trip, no lock, no await. The cached Principal
carries ``expires_at``, checked on every call. A miss loads the key from the store on a worker thread: concurrent
misses for one key share one load, and misses that arrive while a read is under way are read together in the
next one (up to 500 a query), so a burst of distinct unknown keys costs a few reads, not one each.

**Unknown keys** are remembered apart from the valid ones, for ``negative_ttl`` seconds (10) and at most
``negative_size`` of them (the oldest are forgotten first), so a repeated bad key costs no query and a flood of
distinct ones can neither grow memory without bound nor push valid keys out of the cache. Every identity change
forgets them all (a new key is never refused for longer than one poll). What bounds a flood of distinct bad keys
is the failed-authentication limit per client address (:mod:`switchyard.governance.authlimit`).

**Revocation on every replica within one second.** Every identity change bumps ``identity_version`` and logs
what changed (see :func:`switchyard.governance.identity.bump`). Each process polls that one-row table every
``poll_interval`` (0.5 s); when the version moved, it reads the change notices, evicts the cached entries they
touch (a key, or every key of a changed user, team, org, budget or rate limit; and all unknown keys), then
reloads those entries in the background. A change made through this process's own admin API is applied at once.
A load that was in flight while a change arrived is used for its call but not cached (a generation counter), so
a stale read can never be cached after the eviction that should have removed it.

**Outages.** If the store is down, cached keys keep working (entries are not dropped because the poll fails) and
a miss answers 503 ``governance_unavailable``: a key is never called invalid because we could not look at it.
Entries are re-read every ``cache_ttl`` seconds as a safety net, but kept if that re-read fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import AuthenticationFailed
from ..worker import Worker
from .auth import Principal
from .db import Db
from .keys import KeyHasher, looks_like_virtual_key
from .principals import REVOKED, Loaded, load_versioned, read_changes, read_version

log = logging.getLogger("switchyard.governance")

_BATCH = 500  # key hashes per store read


@dataclass(slots=True)
class _Entry:
    principal: Principal | None  # None: not a valid key
    revoked: bool
    loaded_at: float  # the directory's clock (time.monotonic)
    version: int  # the identity version it was read at: a change notice at or below it is already in it


class KeyDirectory:
    def __init__(self, db: Db, hasher: KeyHasher, *, poll_interval: float = 0.5, ttl: float = 300.0,
                 max_entries: int = 100_000, negative_ttl: float = 10.0, negative_size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._hasher = hasher
        self.poll_interval = poll_interval
        self.ttl = ttl
        self.max_entries = max_entries
        self.negative_ttl = negative_ttl
        self.negative_size = negative_size
        self._clock = clock
        self._cache: dict[str, _Entry] = {}  # valid and revoked keys
        self._unknown: dict[str, float] = {}  # hash of an unknown key -> when to forget it (in expiry order)
        self._hashes: dict[str, str] = {}  # SHA-256 digest of a valid key -> its keyed hash (no key is kept)
        self._loads: dict[str, asyncio.Future[_Entry]] = {}  # hash -> its pending load
        self._queue: list[str] = []  # hashes waiting for the next read
        self._loader: asyncio.Task[None] | None = None
        self._gen = 0  # bumped by every eviction; a load that saw another generation is not cached
        self._version: int | None = None  # the identity version this cache reflects (None: unknown)
        self._applied = 0  # the newest change version any eviction so far was for
        # polls every poll_interval, failing or not (revocation within a second once the store is back)
        self.poller = Worker("key-directory", self._poll, interval=poll_interval, backoff_initial=poll_interval,
                             backoff_max=poll_interval, clock=clock)
        self.stats = {"hits": 0, "unknown_hits": 0, "misses": 0, "loads": 0, "evictions": 0, "polls": 0}

    # --- the hot path (a KeyResolver) --------------------------------------------------------------------------

    async def resolve(self, key: str, key_digest: str | None = None) -> Principal | None:
        if not looks_like_virtual_key(key):
            return None
        # the keyed hash of a valid key seen before, by the plain digest the authenticator already computed
        h = self._hashes.get(key_digest) if key_digest is not None else None
        known = h is not None
        if h is None:
            h = self._hasher.hash(key)
        e = self._cache.get(h)
        if e is None:
            until = self._unknown.get(h)
            if until is not None:
                if until > self._clock():
                    self.stats["unknown_hits"] += 1
                    return None
                del self._unknown[h]
            self.stats["misses"] += 1
            e = await self._load(h)
        else:
            self.stats["hits"] += 1
        p = e.principal
        if p is None:
            if e.revoked:
                raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
            return None
        if not known and key_digest is not None:
            if len(self._hashes) >= self.max_entries:
                self._hashes.clear()
            self._hashes[key_digest] = h
        if p.expires_at is not None and p.expires_at <= time.time():
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        return p

    def cached(self, key: str, key_digest: str | None = None) -> Principal | None:
        """The key's Principal if it is in the cache as a valid key; never a store read (a ``KeyPeek``)."""
        if not looks_like_virtual_key(key):
            return None
        h = self._hashes.get(key_digest) if key_digest is not None else None
        e = self._cache.get(h if h is not None else self._hasher.hash(key))
        return e.principal if e is not None else None

    async def _load(self, h: str) -> _Entry:
        fut = self._loads.get(h)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._loads[h] = fut
            self._queue.append(h)
            if self._loader is None or self._loader.done():
                self._loader = asyncio.ensure_future(self._load_queued())
        # shield: a caller that goes away must not cancel a load that others wait for
        return await asyncio.shield(fut)

    async def _load_queued(self) -> None:
        """Read every queued hash, a batch at a time; the misses that arrive meanwhile join the next batch."""
        while self._queue:
            batch = self._queue[:_BATCH]
            del self._queue[:_BATCH]
            gen = self._gen
            self.stats["loads"] += 1
            try:
                version, loaded = await self._db.run(self._read, batch)
                # An eviction while it loaded may have been about these keys, unless the load read the store at
                # (or after) every change notice applied so far, which is what each eviction is for.
                keep = gen == self._gen or version >= self._applied
                for h in batch:
                    e = self._entry(loaded.get(h), version)
                    if keep:
                        self._put(h, e)
                    fut = self._loads.pop(h, None)
                    if fut is not None and not fut.done():
                        fut.set_result(e)
            except Exception as exc:
                self._fail(batch, exc)
            except BaseException:  # cancelled (the directory stops): no waiter may be left hanging
                self._fail(batch, None)
                raise

    def _fail(self, batch: list[str], exc: Exception | None) -> None:
        """Fail the loads of ``batch`` with ``exc`` (None: cancel them)."""
        for h in batch:
            fut = self._loads.pop(h, None)
            if fut is None or fut.done():
                continue
            if exc is None:
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved: a waiter that went away must not log it

    def _read(self, hashes: list[str]) -> tuple[int, dict[str, Loaded]]:
        with self._db.read() as conn:
            return load_versioned(conn, hashes)

    def _entry(self, loaded: Loaded | None, version: int) -> _Entry:
        now = self._clock()
        if loaded is None:
            return _Entry(None, False, now, version)
        if loaded == REVOKED:
            return _Entry(None, True, now, version)
        assert isinstance(loaded, Principal)
        return _Entry(loaded, False, now, version)

    def _put(self, h: str, e: _Entry) -> None:
        if e.principal is None and not e.revoked:
            self._cache.pop(h, None)
            self._remember_unknown(h)
            return
        if h not in self._cache and len(self._cache) >= self.max_entries:
            # Drop the oldest tenth (dicts keep insertion order): a cheap, approximate LRU.
            for old in list(self._cache)[: max(1, self.max_entries // 10)]:
                del self._cache[old]
        self._cache[h] = e

    def _remember_unknown(self, h: str) -> None:
        if self.negative_ttl <= 0 or self.negative_size <= 0:
            return
        if h not in self._unknown and len(self._unknown) >= self.negative_size:
            for old in list(itertools.islice(self._unknown, max(1, self.negative_size // 10))):
                del self._unknown[old]  # the oldest, which expire first
        self._unknown.pop(h, None)  # re-inserted at the end: the dict stays in expiry order
        self._unknown[h] = self._clock() + self.negative_ttl

    def _forget_expired_unknown(self) -> None:
        now = self._clock()
        for h in [h for h, until in itertools.takewhile(lambda kv: kv[1] <= now, self._unknown.items())]:
            del self._unknown[h]

    def __len__(self) -> int:
        """Cached valid and revoked keys (unknown keys are counted apart, in ``snapshot()``)."""
        return len(self._cache)

    # --- invalidation ------------------------------------------------------------------------------------------

    def invalidate(self, changes: Iterable[tuple[int, str, str]]) -> list[str]:
        """Evict every entry that a change (version, kind, entity) touches and that was read before it (a revoked
        or unknown key is touched by every change); returns the evicted hashes that held valid keys."""
        newest: dict[tuple[str, str], int] = {}  # (scope, id) -> the newest change's version
        for version, kind, entity in changes:
            if kind in ("budget", "rate_limit"):
                scope, _, scope_id = entity.partition(":")
            else:
                scope, scope_id = kind, entity
            newest[(scope, scope_id)] = max(version, newest.get((scope, scope_id), 0))
        if not newest:
            return []
        latest = max(newest.values())
        self._applied = max(self._applied, latest)
        hit: list[str] = []
        for h, e in self._cache.items():
            if e.version >= latest:
                continue
            p = e.principal
            if p is None:
                hit.append(h)
                continue
            touched = [newest.get(("key", p.key_id or "")), newest.get(("user", p.user_id or "")),
                       newest.get(("team", p.team_id or "")), newest.get(("org", p.org_id or "")),
                       newest.get(("members", p.team_id or "")),
                       *(newest.get(("tag", t)) for t in p.tags)]
            if any(v is not None and v > e.version for v in touched):
                hit.append(h)
        return self._evict(hit)

    def _evict(self, hashes: list[str]) -> list[str]:
        """Drop entries, and every unknown key (any change may have created it); returns those that held a valid
        key (worth re-reading ahead of their next use)."""
        self._gen += 1
        self._unknown.clear()
        valid = [h for h in hashes if (e := self._cache.pop(h, None)) is not None and e.principal is not None]
        self.stats["evictions"] += len(hashes)
        return valid

    # --- polling -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            self._version = await self._db.run(self._read_version)
        self.poller.start()

    async def stop(self) -> None:
        await self.poller.stop()
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader
            self._loader = None
        for fut in list(self._loads.values()):
            fut.cancel()
        self._loads.clear()
        self._queue.clear()

    async def _poll(self) -> bool:
        """The poller's step."""
        try:
            await self.poll_once()
        except Exception as e:
            failures = self.poller.failures + 1
            if failures in (1, 20) or failures % 600 == 0:
                log.warning("key directory: poll failed (%s); %d cached keys keep working",
                            self._db.describe(e.__cause__ or e), len(self._cache))
            return False
        if self.poller.failures:
            log.info("key directory: the store is back after %d failed polls", self.poller.failures)
        return True

    def _read_version(self) -> int:
        with self._db.read() as conn:
            return read_version(conn)

    def _read_changes(self, after: int) -> tuple[int, list[tuple[int, str, str]], int | None]:
        with self._db.read() as conn:
            version = read_version(conn)
            if version == after:
                return version, [], None
            changes, oldest = read_changes(conn, after)
            return version, changes, oldest

    async def poll_once(self) -> None:
        """One poll: apply new change notices, then re-read entries older than the TTL."""
        self.stats["polls"] += 1
        known = self._version
        version, changes, oldest = await self._db.run(self._read_changes, known if known is not None else -1)
        if known is None or version != known:
            complete = known is not None and (oldest is None or oldest <= known + 1) and bool(changes)
            newest = max([version, *(c[0] for c in changes)])
            evicted = self.invalidate(changes) if complete else self._evict_older(newest)
            self._version = newest
            await self._refresh(evicted)
        self._forget_expired_unknown()
        cutoff = self._clock() - self.ttl
        stale = [h for h, e in self._cache.items() if e.loaded_at < cutoff]
        for h in [h for h in stale if self._cache[h].principal is None]:
            del self._cache[h]  # a revoked key is simply forgotten; it loads again if it is used again
        await self._refresh([h for h in stale if h in self._cache])

    def _evict_older(self, version: int) -> list[str]:
        """Evict every entry read before ``version`` (when the notices in between are no longer kept)."""
        self._applied = max(self._applied, version)
        return self._evict([h for h, e in self._cache.items() if e.version < version])

    async def _refresh(self, hashes: list[str]) -> None:
        """Re-read entries (a query per 500) and cache them, unless a newer eviction happened meanwhile."""
        for i in range(0, len(hashes), _BATCH):
            chunk = hashes[i:i + _BATCH]
            gen = self._gen
            try:
                version, loaded = await self._db.run(self._read, chunk)
            except Exception:
                return  # evicted entries load on their next use; stale ones stay as they are
            if gen != self._gen:
                return
            for h in chunk:
                self._put(h, self._entry(loaded.get(h), version))

    def snapshot(self) -> dict[str, Any]:
        return {"entries": len(self._cache), "unknown": len(self._unknown), "version": self._version, **self.stats}
