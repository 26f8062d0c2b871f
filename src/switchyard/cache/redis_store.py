"""``cache.store: redis``: entries shared by every replica, through ``redis.asyncio``.

Keys, all under the configured prefix (``P``)::

    P e:<key>       the entry: a JSON header (cost, latency, created, expires, route, bucket), a newline, the answer;
                    it expires with the entry (PX)
    P v:<bucket>    a hash of one scope and shape's similarity candidates: field <key>, value = the entry's expiry
                    (float64) and its question's embedding (float16); the hash expires with its newest entry
    P all           a sorted set of every entry (member <bucket>:<key>, score its creation time): the size bound

A lookup is one round trip (the exact entry and the candidates, pipelined), plus one to read a similar entry when
one is close enough; it is bounded by ``redis_timeout`` and any failure is a miss. Writes run in a task, after the
response: the entry, its candidate row, the size bound (the oldest go first) and the per-shape bound.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from .index import Entry, Found
from .memory import Embed

log = logging.getLogger("switchyard.cache")

_EXP = struct.Struct("<d")


class RedisStore:
    def __init__(self, url: str, prefix: str, max_entries: int, max_per_shape: int, timeout: float,
                 clock: Callable[[], float] | None = None, on_error: Callable[[], None] | None = None) -> None:
        import redis.asyncio as aioredis

        self.redis: Any = aioredis.Redis.from_url(url, socket_timeout=max(timeout, 1.0),
                                                  socket_connect_timeout=max(timeout, 1.0))
        self.prefix = prefix
        self.max_entries = max_entries
        self.max_per_shape = max_per_shape
        self.timeout = timeout
        self.on_error = on_error  # told of a lookup that failed or timed out (metrics)
        self._tasks: set[asyncio.Task[None]] = set()
        import time

        self.clock = clock or time.time

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        await self.redis.aclose()

    async def drain(self) -> None:
        """Wait for the writes in flight (tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    # --- lookups -------------------------------------------------------------------------------------------

    def lookup(self, key: str, bucket: str, embed: Embed | None, threshold: float, now: float) -> Any:
        return self._lookup(key, bucket, embed, threshold, now)

    async def _lookup(self, key: str, bucket: str, embed: Embed | None, threshold: float,
                      now: float) -> Found | None:
        try:
            return await asyncio.wait_for(self._find(key, bucket, embed, threshold, now), self.timeout)
        except Exception as e:  # a slow or failed store is a miss, never an error for the caller
            log.debug("cache lookup failed: %s", type(e).__name__)
            if self.on_error is not None:
                self.on_error()
            return None

    async def _find(self, key: str, bucket: str, embed: Embed | None, threshold: float, now: float) -> Found | None:
        p = self.prefix
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(p + "e:" + key)
        if embed is not None:
            pipe.hgetall(p + "v:" + bucket)
        got = await pipe.execute()
        if got[0] is not None:
            e = _entry(key, got[0])
            if e is not None and e.expires > now:
                return Found(e, "exact", 1.0)
        if embed is None or not got[1]:
            return None
        keys, vectors = [], []
        for k, v in got[1].items():
            if _EXP.unpack_from(v)[0] > now:
                keys.append(k)
                vectors.append(np.frombuffer(v, dtype=np.float16, offset=_EXP.size))
        if not keys:
            return None
        scores = np.vstack(vectors).astype(np.float32) @ embed()
        i = int(np.argmax(scores))
        score = float(scores[i])
        if score < threshold:
            return None
        k = keys[i].decode()
        raw = await self.redis.get(p + "e:" + k)
        e = _entry(k, raw) if raw is not None else None
        if e is None or e.expires <= now:
            return None
        return Found(e, "similar", min(score, 1.0))

    # --- writes --------------------------------------------------------------------------------------------

    def put(self, entry: Entry) -> None:
        task = asyncio.get_running_loop().create_task(self._put(entry), name="switchyard-cache-put")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put(self, e: Entry) -> None:
        p = self.prefix
        ttl_ms = max(1, int((e.expires - self.clock()) * 1000))
        head = orjson.dumps([e.cost, e.latency_ms, e.created, e.expires, e.route, e.bucket])
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.set(p + "e:" + e.key, head + b"\n" + e.payload, px=ttl_ms)
            if e.vector is not None:
                vkey = p + "v:" + e.bucket
                pipe.hset(vkey, e.key, _EXP.pack(e.expires) + e.vector.astype(np.float16).tobytes())
                pipe.pexpire(vkey, ttl_ms, gt=True)
                pipe.pexpire(vkey, ttl_ms, nx=True)
                pipe.hlen(vkey)
            pipe.zadd(p + "all", {f"{e.bucket}:{e.key}": e.created})
            pipe.zcard(p + "all")
            got = await pipe.execute()
            if e.vector is not None and got[4] > self.max_per_shape:
                await self._trim_shape(e.bucket)
            over = got[-1] - self.max_entries
            if over > 0:
                await self._evict(over)
        except Exception as exc:
            log.warning("the cache could not write to Redis: %s", type(exc).__name__)

    async def _trim_shape(self, bucket: str) -> None:
        p = self.prefix
        vkey = p + "v:" + bucket
        fields = await self.redis.hgetall(vkey)
        by_expiry = sorted(fields.items(), key=lambda kv: _EXP.unpack_from(kv[1])[0])
        drop = [k.decode() for k, _ in by_expiry[:len(by_expiry) - self.max_per_shape]]
        if drop:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(vkey, *drop)
            pipe.delete(*[p + "e:" + k for k in drop])
            pipe.zrem(p + "all", *[f"{bucket}:{k}" for k in drop])
            await pipe.execute()

    async def _evict(self, n: int) -> None:
        p = self.prefix
        oldest = await self.redis.zpopmin(p + "all", n)
        if not oldest:
            return
        pipe = self.redis.pipeline(transaction=False)
        for member, _ in oldest:
            bucket, _, key = member.decode().partition(":")
            pipe.delete(p + "e:" + key)
            pipe.hdel(p + "v:" + bucket, key)
        await pipe.execute()


def _entry(key: str, raw: bytes) -> Entry | None:
    head, sep, payload = raw.partition(b"\n")
    if not sep:
        return None
    cost, latency_ms, created, expires, route, bucket = orjson.loads(head)
    return Entry(key, bucket, None, payload, cost, latency_ms, created, expires, route)
