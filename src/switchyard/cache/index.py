"""The cache's entries in memory: a dict by exact key (least recently used first) and, per scope and request
shape, a matrix of question embeddings searched with one matrix-vector product.

Bounded twice: ``max_entries`` in all (the least recently used goes first) and ``max_per_shape`` similarity
candidates per scope and shape (the oldest goes first). An expired entry is dropped when a lookup finds it, or
by :meth:`MemoryIndex.expire`. Times are epoch seconds given by the caller (its clock is injectable).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(slots=True)
class Entry:
    key: str  # the exact key (scope, shape and question)
    bucket: str  # the scope and shape's key: which similarity candidates it is among
    vector: Vector | None  # the question's embedding (None: exact matches only)
    payload: bytes  # the answer (switchyard.cache.codec)
    cost: float  # what the answer cost when it was made (USD)
    latency_ms: float  # how long it took to make
    created: float
    expires: float
    route: str = ""  # the route or deployment it was made for (for metrics)


@dataclass(slots=True)
class Found:
    entry: Entry
    kind: str  # exact | similar
    score: float  # 1.0 for an exact hit


class _Bucket:
    """One scope and shape's candidates: row i of ``matrix`` is ``entries[i]``'s vector."""

    __slots__ = ("entries", "matrix", "rows")

    def __init__(self, dim: int) -> None:
        self.matrix: Vector = np.empty((4, dim), dtype=np.float32)
        self.entries: list[Entry] = []
        self.rows: dict[str, int] = {}

    def add(self, e: Entry) -> None:
        assert e.vector is not None
        n = len(self.entries)
        if n == len(self.matrix):
            grown = np.empty((2 * n, self.matrix.shape[1]), dtype=np.float32)
            grown[:n] = self.matrix
            self.matrix = grown
        self.matrix[n] = e.vector
        self.entries.append(e)
        self.rows[e.key] = n

    def remove(self, key: str) -> None:
        i = self.rows.pop(key, None)
        if i is None:
            return
        last = len(self.entries) - 1
        if i != last:  # the last row moves into the hole
            moved = self.entries[last]
            self.entries[i] = moved
            self.matrix[i] = self.matrix[last]
            self.rows[moved.key] = i
        self.entries.pop()

    def oldest(self) -> Entry:
        return min(self.entries, key=lambda e: e.created)


class MemoryIndex:
    def __init__(self, max_entries: int, max_per_shape: int, dim: int = 256) -> None:
        self.max_entries = max_entries
        self.max_per_shape = max_per_shape
        self.dim = dim
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.buckets: dict[str, _Bucket] = {}
        self.evicted = 0  # entries dropped by a bound (not by expiry)

    def __len__(self) -> int:
        return len(self.entries)

    def has_candidates(self, bucket: str) -> bool:
        return bucket in self.buckets

    def put(self, e: Entry) -> None:
        self.remove(e.key)
        self.entries[e.key] = e
        if e.vector is not None:
            b = self.buckets.get(e.bucket)
            if b is None:
                b = self.buckets[e.bucket] = _Bucket(self.dim)
            elif len(b.entries) >= self.max_per_shape:
                self.remove(b.oldest().key)
                self.evicted += 1
                b = self.buckets.setdefault(e.bucket, b)
            b.add(e)
        while len(self.entries) > self.max_entries:
            self.remove(next(iter(self.entries)))
            self.evicted += 1

    def remove(self, key: str) -> Entry | None:
        e = self.entries.pop(key, None)
        if e is not None and e.vector is not None:
            b = self.buckets.get(e.bucket)
            if b is not None:
                b.remove(key)
                if not b.entries:
                    del self.buckets[e.bucket]
        return e

    def exact(self, key: str, now: float) -> Entry | None:
        e = self.entries.get(key)
        if e is None:
            return None
        if e.expires <= now:
            self.remove(key)
            return None
        self.entries.move_to_end(key)
        return e

    def similar(self, bucket: str, vector: Vector, threshold: float, now: float) -> Found | None:
        """The nearest live candidate of this scope and shape, if its cosine reaches ``threshold``."""
        b = self.buckets.get(bucket)
        while b is not None and b.entries:
            scores = b.matrix[:len(b.entries)] @ vector
            i = int(np.argmax(scores))
            score = float(scores[i])
            if score < threshold:
                return None
            e = b.entries[i]
            if e.expires > now:
                self.entries.move_to_end(e.key)
                return Found(e, "similar", score)
            self.remove(e.key)  # expired: look again without it
            b = self.buckets.get(bucket)
        return None

    def expire(self, now: float) -> int:
        """Drop every expired entry; returns how many."""
        dead = [k for k, e in self.entries.items() if e.expires <= now]
        for k in dead:
            self.remove(k)
        return len(dead)
