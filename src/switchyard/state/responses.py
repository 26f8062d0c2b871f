"""Stored responses of the Responses API (``store: true``): kept per key, read back by id, chained by
``previous_response_id``.

Off the hot path. A stored response goes into a bounded in-memory cache at once (so that the next turn's
``previous_response_id`` finds it without a database read) and onto a queue that one writer thread drains into the
``responses`` table in batches, like the spend writer; reading a response the cache no longer holds is one primary
key lookup on a worker thread, and a chain the cache no longer holds one recursive query. Deletes go through the
same queue, so they land after the write they follow.

Retention: a key whose logging mode is ``none`` (zero retention) keeps nothing. Its ``store: true`` is accepted
(an OpenAI client sends it by default) and the response says ``"store": false``; a ``previous_response_id`` from such
a key is refused with a 400 that says why. Tenancy: every read is by (id, owner), the owner being the principal id
of the key that created it, so another key, in this org or another, gets a 404 as if it did not exist.

The seam for conversations (``state/conversations.py``): :class:`HistoryHook`, which the endpoint asks to load the
history to prepend and to append the finished turn, when the request names a ``conversation``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import sqlalchemy as sa

from ..errors import InvalidRequest, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from ..governance.auth import Principal

log = logging.getLogger("switchyard.state")

JSON = Any
MAX_CHAIN = 1000  # responses followed back through previous_response_id


@dataclass(slots=True)
class Stored:
    id: str
    owner: str
    org_id: str | None
    created_at: float
    previous_response_id: str | None
    input: list[JSON]  # this turn's input items
    response: dict[str, JSON]  # the response object


class HistoryHook(Protocol):
    """Conversation state for ``responses.create(conversation=...)``: the history to prepend (Responses input
    items, oldest first) and the turn to append once the response is done."""

    async def load(self, principal: Principal, conversation: JSON) -> list[JSON]: ...

    async def append(self, principal: Principal, conversation: JSON, input_items: list[JSON],
                     output_items: list[JSON], origin: str | None = None) -> None:
        """Store the turn atomically; ``origin``: the provider type that wrote the output (None: not known)."""
        ...


def may_store(principal: Principal) -> bool:
    """Whether the key's retention allows keeping content: not for logging mode ``none`` (zero retention)."""
    return principal.logging != "none"


def zero_retention(param: str) -> InvalidRequest:
    return InvalidRequest("This API key has zero data retention (logging mode 'none'): the gateway stores no "
                          "responses for it, so previous_response_id cannot be used. Send the whole conversation "
                          "as input instead.", param=param, code="zero_data_retention")


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The store of responses cannot be reached; try again shortly.",
                              code="store_unavailable")


def not_found(rid: str) -> NotFound:
    return NotFound(f"No response found with id {rid!r}.", param="response_id", code="not_found")


class ResponseStore:
    """The ``responses`` table behind a write-behind queue and a read cache."""

    def __init__(self, engine: sa.Engine, cache_size: int = 10_000, batch: int = 256) -> None:
        from ..store.responses_tables import responses

        self.engine = engine
        self.table = responses
        self.cache: OrderedDict[str, Stored] = OrderedDict()
        self.cache_size = cache_size
        self.batch = batch
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the cache is touched by the loop and (on a read miss) worker threads
        self._db_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def open(cls, url: str) -> ResponseStore:
        """A store on the database at ``url``, migrated to head."""
        from ..store.db import create_engine_for, migrate

        engine = create_engine_for(url)
        migrate(engine)
        return cls(engine)

    # --- writes ---------------------------------------------------------------------------------------------

    def put(self, rec: Stored) -> None:
        """Keep ``rec``: in the cache now, in the table soon (never blocks the caller)."""
        self._remember(rec)
        self._send(("put", rec))

    def _send(self, op: tuple[str, Any]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="switchyard-responses", daemon=True)
            self._thread.start()
        self._queue.put(op)

    def _remember(self, rec: Stored) -> None:
        with self._lock:
            self.cache[rec.id] = rec
            self.cache.move_to_end(rec.id)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    def _drain(self) -> None:
        while True:
            op = self._queue.get()
            ops = [op]
            while len(ops) < self.batch:
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in ops
            work = [o for o in ops if o is not None]
            try:
                self._apply(work)
            except sa.exc.IntegrityError:  # an id stored twice: keep the first, write the others one by one
                for one in work:
                    try:
                        self._apply([one])
                    except sa.exc.IntegrityError:
                        log.warning("a response with id %r is stored already", one[1].id if one[0] == "put" else "")
                    except Exception:
                        log.exception("storing a response failed")
            except Exception:
                log.exception("storing %d response operations failed", len(ops))
            if stop:
                return

    def _apply(self, ops: list[tuple[str, Any]]) -> None:
        if not ops:
            return
        t = self.table
        with self._guard(), self.engine.begin() as conn:
            puts: list[dict[str, Any]] = []
            for kind, arg in ops:
                if kind == "put":
                    puts.append({"id": arg.id, "owner": arg.owner, "org_id": arg.org_id,
                                 "created_at": datetime.fromtimestamp(arg.created_at, UTC),
                                 "previous_response_id": arg.previous_response_id,
                                 "input": orjson.dumps(arg.input).decode(),
                                 "response": orjson.dumps(arg.response).decode()})
                else:
                    if puts:
                        conn.execute(t.insert(), puts)
                        puts = []
                    conn.execute(t.delete().where(t.c.id == arg[0], t.c.owner == arg[1]))
            if puts:
                conn.execute(t.insert(), puts)

    def _guard(self) -> Any:
        import contextlib

        return self._db_lock if self._db_lock is not None else contextlib.nullcontext()

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything queued (the writer thread stops; the next put starts another)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def close(self) -> None:
        self.flush()
        self.engine.dispose()

    # --- reads ----------------------------------------------------------------------------------------------

    def _cached(self, rid: str, owner: str) -> Stored | None:
        with self._lock:
            rec = self.cache.get(rid)
        return rec if rec is not None and rec.owner == owner else None

    def _read(self, rid: str, owner: str) -> Stored | None:
        t = self.table
        with self._guard(), self.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == rid, t.c.owner == owner)).first()
        if row is None:
            return None
        rec = Stored(row.id, row.owner, row.org_id, row.created_at.timestamp(), row.previous_response_id,
                     orjson.loads(row.input), orjson.loads(row.response))
        self._remember(rec)
        return rec

    async def get(self, rid: str, owner: str) -> Stored | None:
        """The response ``rid`` if ``owner`` created it (else None, as if it did not exist)."""
        rec = self._cached(rid, owner)
        if rec is not None:
            return rec
        try:
            if not self._queue.empty():  # a write of it may still be queued; a miss must not outrun it
                await asyncio.to_thread(self.flush)
            return await asyncio.to_thread(self._read, rid, owner)
        except sa.exc.SQLAlchemyError as e:
            log.error("reading a stored response failed: %s", type(e).__name__)
            raise unavailable() from None

    async def delete(self, rid: str, owner: str) -> bool:
        rec = await self.get(rid, owner)
        if rec is None:
            return False
        with self._lock:
            self.cache.pop(rid, None)
        self._send(("delete", (rid, owner)))
        return True

    def _read_chain(self, rid: str, owner: str) -> list[Stored]:
        """``rid`` and the responses before it, newest first, in one query (a recursive walk of
        ``previous_response_id``, each step the owner's)."""
        sql = sa.text(
            "WITH RECURSIVE chain(id, prev, depth) AS ("
            " SELECT id, previous_response_id, 0 FROM responses WHERE id = :rid AND owner = :owner"
            " UNION ALL SELECT r.id, r.previous_response_id, c.depth + 1 FROM responses r"
            " JOIN chain c ON r.id = c.prev WHERE r.owner = :owner AND c.depth < :cap)"
            " SELECT r.id, r.owner, r.org_id, r.created_at, r.previous_response_id, r.input, r.response"
            " FROM responses r JOIN chain c ON r.id = c.id ORDER BY c.depth")
        with self._guard(), self.engine.connect() as conn:
            rows = conn.execute(sql, {"rid": rid, "owner": owner, "cap": MAX_CHAIN}).all()
        out: list[Stored] = []
        for row in rows:
            created = row.created_at
            if isinstance(created, str):  # SQLite hands a text query's timestamps back as text
                created = datetime.fromisoformat(created)
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            rec = Stored(row.id, row.owner, row.org_id, created.timestamp(), row.previous_response_id,
                         orjson.loads(row.input), orjson.loads(row.response))
            self._remember(rec)
            out.append(rec)
        return out

    async def _load_chain(self, rid: str, owner: str) -> dict[str, Stored]:
        try:
            if not self._queue.empty():  # a write of it may still be queued; a read must not outrun it
                await asyncio.to_thread(self.flush)
            return {r.id: r for r in await asyncio.to_thread(self._read_chain, rid, owner)}
        except sa.exc.SQLAlchemyError as e:
            log.error("reading a stored response chain failed: %s", type(e).__name__)
            raise unavailable() from None

    async def chain(self, rid: str, owner: str) -> list[JSON]:
        """The items of ``rid`` and every response before it (their inputs and outputs), oldest first. From the
        cache; at the first response it does not hold, the rest of the chain in one query."""
        turns: list[Stored] = []
        seen: set[str] = set()
        loaded: dict[str, Stored] | None = None
        cur: str | None = rid
        while cur is not None:
            if cur in seen or len(turns) >= MAX_CHAIN:
                break
            seen.add(cur)
            rec = self._cached(cur, owner)
            if rec is None:
                if loaded is None:
                    loaded = await self._load_chain(cur, owner)
                rec = loaded.get(cur)
            if rec is None:
                if not turns:
                    raise not_found(rid)
                break  # an earlier response was deleted: the chain starts after it
            turns.append(rec)
            cur = rec.previous_response_id
        items: list[JSON] = []
        for rec in reversed(turns):
            items.extend(rec.input)
            items.extend(_as_input(o) for o in rec.response.get("output") or [])
        return items


def _as_input(item: JSON) -> JSON:
    """An output item, as the input item of a later turn."""
    return item


class LazyResponseStore:
    """The store, opened (and migrated) on first use, so that a gateway whose clients never store a response opens
    nothing."""

    def __init__(self, opener: Callable[[], ResponseStore]) -> None:
        self._opener = opener
        self._store: ResponseStore | None = None
        self._opening: asyncio.Lock | None = None

    @property
    def opened(self) -> ResponseStore | None:
        return self._store

    async def get(self) -> ResponseStore:
        if self._store is not None:
            return self._store
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._store is None:
                try:
                    self._store = await asyncio.to_thread(self._opener)
                except Exception as e:
                    log.error("cannot open the store of responses: %s", type(e).__name__)
                    raise unavailable() from None
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
