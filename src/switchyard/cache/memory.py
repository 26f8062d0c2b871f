"""The cache's store interface, and the in-process store (``store: memory``) that the embedded one builds on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from .index import Entry, Found, MemoryIndex, Vector

Embed = Callable[[], Vector]  # the question's embedding, computed only when a lookup needs it


class CacheStore(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def lookup(self, key: str, bucket: str, embed: Embed | None, threshold: float,
               now: float) -> Found | Awaitable[Found | None] | None:
        """The exact entry, else (``embed`` given) the most similar one at ``threshold`` or above; an awaitable
        only for a store that must wait (Redis)."""
        ...

    def put(self, entry: Entry) -> None:
        """Keep ``entry`` (replacing one with its key). Never blocks: a store that writes elsewhere does so later."""
        ...


class MemoryStore:
    """Entries in this process's memory only (``store: memory``): lost at exit, not shared by workers."""

    def __init__(self, max_entries: int, max_per_shape: int) -> None:
        self.index = MemoryIndex(max_entries, max_per_shape)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def lookup(self, key: str, bucket: str, embed: Embed | None, threshold: float, now: float) -> Found | None:
        index = self.index
        e = index.exact(key, now)
        if e is not None:
            return Found(e, "exact", 1.0)
        if embed is not None and index.has_candidates(bucket):
            return index.similar(bucket, embed(), threshold, now)
        return None

    def put(self, entry: Entry) -> None:
        self.index.put(entry)
