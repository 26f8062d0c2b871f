"""The ``Cache`` stage: answers repeated and near-repeated chat requests from the cache, and stores the answers of
the calls it could not answer. In the chain only when a ``cache:`` section is configured (``server/factory.py``),
last among the extra stages and before ``Reserve``, so that a hit holds no budget and is recorded like any call.

* ``before``: a request that may be cached (see :func:`~.keys.uncacheable`, the key's logging mode and the route's
  settings) is looked up in its scope; a hit is the answer (a reply, or the chunks of a stream), with
  ``x-switchyard-cache: hit`` or ``similar <score>``; anything else goes on with ``miss``.
* ``wrap``: a stream that missed is teed, to assemble the answer it delivers.
* ``after``: a hit is charged ``charge`` times the original cost with no tokens, and its record's decisions say so;
  a miss that succeeded is stored, after the response (``call_soon``), so storing adds nothing to its latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..config import Config
from ..config.cache import CacheConfig, CacheSettings
from ..messages import ChatRequest, ChatResponse, Chunk, Usage
from ..stages import Answer, CallContext, Outcome, Stage
from . import codec
from .index import Entry, Found, Vector
from .keys import bucket_key, exact_key, question, shape_key, uncacheable
from .memory import CacheStore
from .metrics import CacheMetrics

_LOGGING_RANK = {"none": 0, "metadata": 1, "full": 2}


class _State:
    """One call's cache state (``CallContext.cache``)."""

    __slots__ = ("assembler", "bucket", "found", "key", "label", "settings", "text", "vector")

    def __init__(self, key: str, bucket: str, text: str, settings: CacheSettings, label: str) -> None:
        self.key = key
        self.bucket = bucket
        self.text = text
        self.settings = settings
        self.label = label
        self.vector: Vector | None = None
        self.found: Found | None = None
        self.assembler: codec.Assembler | None = None


class Cache(Stage):
    name = "cache"

    def __init__(self, config: Config, store: CacheStore, embedder: Callable[[], Any],
                 metrics: CacheMetrics | None = None, clock: Callable[[], float] = time.time) -> None:
        assert config.cache is not None
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self._embedder = embedder  # returns the Embedder (loaded on first use)
        self._min_rank = _LOGGING_RANK[config.cache.min_logging]
        self.max_entry_bytes = config.cache.max_entry_bytes
        self._config: Config | None = None
        self._table: dict[str, tuple[CacheSettings, str]] = {}
        self._default: tuple[CacheSettings, str] = (config.cache.settings(), "")
        self._settings_of(config)

    # --- settings per route ----------------------------------------------------------------------------------

    def _settings_of(self, config: Config) -> None:
        """The settings of every route and deployment of ``config`` (rebuilt when a reload changes it)."""
        section: CacheConfig | None = config.cache
        if section is None:  # a reload removed the section: the stage stays, the cache is off
            off = CacheSettings(enabled=False)
            self._table, self._default = {}, (off, "")
        else:
            table = {d.name: (section.settings(), d.name) for d in config.deployments}
            for name, r in config.routes.items():
                table[name] = (section.settings(r.cache), name)
            self._table, self._default = table, (section.settings(), "")
        self._config = config

    def settings_for(self, call: CallContext, model: str) -> tuple[CacheSettings, str]:
        gen = call.generation
        if gen is not None and gen.config is not self._config:
            self._settings_of(gen.config)
        return self._table.get(model, self._default)

    # --- before ----------------------------------------------------------------------------------------------

    def before(self, call: CallContext) -> Answer | Awaitable[Answer | None] | None:
        req = call.request
        p = call.principal
        if not isinstance(req, ChatRequest) or p is None or _LOGGING_RANK[p.logging] < self._min_rank:
            return None  # zero retention (or below the configured mode): never cached, no header
        settings, label = self.settings_for(call, req.model)
        if not settings.enabled or uncacheable(req, settings.temperature_any) is not None:
            return None
        call.cache_status = "miss"
        directive = call.cache_directive
        if directive == "bypass":
            return None
        scope = f"org:{p.org_id}" if settings.scope == "org" and p.org_id else f"key:{p.id}"
        shape = shape_key(req)
        text = question(req)
        st = call.cache = _State(exact_key(scope, shape, text), bucket_key(scope, shape), text, settings, label)
        if directive == "refresh":
            self._count(label, "miss")
            return None
        got = self.store.lookup(st.key, st.bucket, (lambda: self._vector(st)) if settings.similarity else None,
                                settings.threshold, self.clock())
        if got is None or isinstance(got, Found):
            return self._answer(call, req, st, got)
        return self._later(call, req, st, got)

    async def _later(self, call: CallContext, req: ChatRequest, st: _State,
                     got: Awaitable[Found | None]) -> Answer | None:
        return self._answer(call, req, st, await got)

    def _answer(self, call: CallContext, req: ChatRequest, st: _State, found: Found | None) -> Answer | None:
        if found is None:
            self._count(st.label, "miss")
            return None
        st.found = found
        if found.kind == "exact":
            call.cache_status = "hit"
            self._count(st.label, "hit")
        else:
            call.cache_status = f"similar {found.score:.3f}"
            self._count(st.label, "similar")
        call.decisions = {**(call.decisions or {}),
                          "cache": {"hit": found.kind, "score": round(found.score, 4)}}
        rid = ("msg_" if call.protocol == "anthropic" else "chatcmpl-") + call.request_id
        resp = codec.decode(found.entry.payload, rid, int(self.clock()))
        return codec.to_chunks(resp) if req.stream else resp

    def _vector(self, st: _State) -> Vector:
        if st.vector is None:
            st.vector = self._embedder().embed([st.text])[0]
        return st.vector

    def _count(self, label: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.lookup(label, result)

    # --- wrap and after --------------------------------------------------------------------------------------

    def wrap(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        st = call.cache
        if not isinstance(st, _State) or st.found is not None:
            return chunks
        st.assembler = codec.Assembler()
        return _tee(st.assembler, chunks)

    def after(self, call: CallContext, outcome: Outcome) -> None:
        st = call.cache
        if not isinstance(st, _State):
            return
        found = st.found
        if found is not None:  # a hit: charged a share of the original cost, no tokens
            e = found.entry
            charged = e.cost * st.settings.charge
            outcome.cost = charged
            outcome.usage = Usage()
            cache = (call.decisions or {}).get("cache")
            if isinstance(cache, dict):
                cache["charged_usd"] = round(charged, 8)
                cache["saved_usd"] = round(e.cost - charged, 8)
            if self.metrics is not None:
                self.metrics.hit(st.label, e.cost - charged, e.latency_ms / 1000)
            return
        if outcome.status != "ok":
            return
        answer: ChatResponse | None
        if isinstance(outcome.answer, ChatResponse):
            answer = outcome.answer
        elif st.assembler is not None:
            answer = st.assembler.response()
        else:
            answer = None
        if answer is None:
            return
        latency_ms = (time.monotonic() - call.started) * 1000
        cost = outcome.total_cost
        try:
            asyncio.get_running_loop().call_soon(self._store, st, answer, cost, latency_ms)
        except RuntimeError:  # no loop (a synchronous test): store now
            self._store(st, answer, cost, latency_ms)

    def _store(self, st: _State, answer: ChatResponse, cost: float, latency_ms: float) -> None:
        payload = codec.encode(answer)
        if payload is None or len(payload) > self.max_entry_bytes:
            return
        vector = self._vector(st) if st.settings.similarity else None
        now = self.clock()
        self.store.put(Entry(st.key, st.bucket, vector, payload, cost, latency_ms, now, now + st.settings.ttl_s,
                             st.label))
        if self.metrics is not None:
            self.metrics.stored(st.label)


async def _tee(assembler: codec.Assembler, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        async for c in chunks:
            assembler.feed(c)
            yield c
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
