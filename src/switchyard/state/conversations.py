"""Conversations kept by the gateway: the store API that the chat and messages stage, ``/v1/conversations`` and
the Responses API's ``conversation`` parameter all call.

A conversation is a list of neutral messages (:mod:`switchyard.messages`), never a wire format, so it continues on
any provider (:func:`switchyard.state.codec.for_provider` drops another provider's reasoning signatures and meta).
Besides its messages it keeps its newest system prompt, a summary of its oldest messages (context management,
:mod:`switchyard.state.context`), the caller's metadata, and a small scratchpad with a list of stored tool outputs.

Every call names a *scope*, the tenant (:func:`scope_of`): an id of another scope is not found, exactly as an id
that does not exist. The store is SQLAlchemy Core over SQLite or PostgreSQL, run on worker threads
(``asyncio.to_thread``): the event loop never waits on the database. The two statements of every call, the load and
the append, run on the driver's own cursor (:mod:`switchyard.state.hotpath`). :meth:`ConversationStore.append`
stores a turn in one transaction (all its messages or none) and hands out consecutive sequence numbers under the
conversation row's lock, so two replicas appending to one conversation never interleave a turn.

Use::

    store = ConversationStore.open(url, encryption_key=None)
    conv = await store.create(scope, ttl=30 * 86400)
    history = await store.load(scope, conv.id)          # History: system, summary, messages, origins
    await store.append(scope, conv.id, [user_msg, reply], origins=[None, "anthropic"], ttl=30 * 86400)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ..errors import InvalidRequest, NotFound, ServiceUnavailable, SwitchyardError
from ..messages import Message
from ..store.state_tables import conversation_items as items_t
from ..store.state_tables import conversations as conv_t
from .codec import for_provider, message_from_json, message_to_json
from .crypto import SealedWithoutKey, Sealer
from .hotpath import HotPath

T = TypeVar("T")

MAX_METADATA_KEYS = 16


def scope_of(principal: Any) -> str:
    """The tenant a principal's conversations belong to: its organization, else the key itself."""
    org = getattr(principal, "org_id", None)
    return f"org:{org}" if org else f"key:{principal.id}"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass(slots=True)
class Conversation:
    id: str
    created_at: float
    metadata: dict[str, str]
    expires_at: float


@dataclass(slots=True)
class StoredMessage:
    id: str
    seq: int
    message: Message
    origin: str | None  # the provider type that wrote it; None: the caller's
    created_at: float


@dataclass(slots=True)
class History:
    """What a conversation holds for the next call: its system prompt, the summary of its oldest messages (those up
    to ``summary_through``), and its messages after the summary, oldest first, with their origins."""

    id: str
    system: Message | None = None
    summary: str | None = None
    summary_through: int = -1
    messages: list[Message] = field(default_factory=list)
    origins: list[str | None] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    def for_provider(self, kind: str | None) -> list[Message]:
        """The messages as a deployment of provider type ``kind`` gets them (see :func:`codec.for_provider`)."""
        return for_provider(self.messages, self.origins, kind)


@dataclass(slots=True)
class State:
    """The scratchpad (a JSON object) and the stored tool outputs (newest last)."""

    scratchpad: dict[str, Any] = field(default_factory=dict)
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)


def _not_found(conv_id: str) -> NotFound:
    return NotFound(f"No conversation found with id {conv_id[:80]!r}.", param="conversation_id",
                    code="conversation_not_found")


def check_metadata(metadata: Any) -> dict[str, str]:
    """OpenAI's metadata rules: at most 16 pairs, keys of at most 64 characters, string values of at most 512."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS or any(
            not isinstance(k, str) or len(k) > 64 or not isinstance(v, str) or len(v) > 512
            for k, v in metadata.items()):
        raise InvalidRequest("metadata must be an object of at most 16 string pairs (keys up to 64 characters, "
                             "values up to 512).", param="metadata", code="invalid_metadata")
    return dict(metadata)


class ConversationStore:
    """Conversations in a SQL store. All public methods are coroutines that run their SQL on a worker thread."""

    def __init__(self, engine: sa.Engine, *, encryption_key: str | None = None, max_items: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        from ..governance.db import Db

        self.db = Db(engine)
        self.pg = engine.dialect.name == "postgresql"
        # reads run without BEGIN/ROLLBACK round trips on PostgreSQL
        self._auto = engine.execution_options(isolation_level="AUTOCOMMIT") if self.pg else engine
        self.hot = HotPath(self.db)  # the load and the append, on the driver's cursor
        self.sealer = Sealer(encryption_key)
        self.max_items = max_items
        self.clock = clock

    @classmethod
    def open(cls, url: str, *, synchronous_commit: bool = False, **kw: Any) -> ConversationStore:
        """A store on ``url``. On PostgreSQL, ``synchronous_commit`` False (the default) lets a commit return before
        its WAL reaches the disk: a crash of the database server may lose the last fraction of a second of turns
        (never corrupt one), and a turn is stored in a fraction of a millisecond instead of a disk flush."""
        from ..store.db import create_engine_for, normalize_url

        u = normalize_url(url)
        if u.get_backend_name() == "postgresql":  # no pre-ping: a round trip per call is half the budget
            from ..store.db import _JSON

            args: dict[str, Any] = {"connect_timeout": 5} if "connect_timeout" not in u.query else {}
            if not synchronous_commit:
                args["options"] = "-c synchronous_commit=off"
            return cls(sa.create_engine(u, pool_size=10, max_overflow=20, pool_recycle=1800, connect_args=args,
                                        **_JSON), **kw)
        return cls(create_engine_for(url), **kw)

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A read: on PostgreSQL in autocommit (one round trip a statement, no BEGIN and ROLLBACK)."""
        if not self.pg:
            with self.db.read() as conn:
                yield conn
            return
        with self._auto.connect() as conn:
            yield conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except SwitchyardError:
            raise
        except SealedWithoutKey as e:
            raise ServiceUnavailable(str(e), code="conversation_store_key_missing") from None
        except (DBAPIError, PoolTimeout, OSError, self.hot.dbapi_error) as e:
            raise ServiceUnavailable("The conversation store is unavailable; try again shortly.",
                                     code="conversation_store_unavailable") from e

    def _aad(self, conv_id: str, column: str) -> bytes:
        return f"{conv_id}/{column}".encode()

    def _seal(self, conv_id: str, column: str, value: Any) -> bytes:
        return self.sealer.seal(value, self._aad(conv_id, column))

    def _open(self, conv_id: str, column: str, blob: bytes | None) -> Any:
        return self.sealer.open(blob, self._aad(conv_id, column))

    # --- conversations ----------------------------------------------------------------------------------------

    async def create(self, scope: str, *, ttl: float, metadata: dict[str, str] | None = None,
                     messages: Sequence[Message] = (), conv_id: str | None = None) -> Conversation:
        """A new conversation, with ``messages`` as its first items (the caller's: no origin)."""
        conv_id = conv_id or new_id("conv")
        return await self._run(self._create, scope, conv_id, ttl, check_metadata(metadata), list(messages))

    def _create(self, scope: str, conv_id: str, ttl: float, metadata: dict[str, str],
                messages: list[Message]) -> Conversation:
        now = self.clock()
        with self.db.write() as conn:
            conn.execute(sa.insert(conv_t).values(
                id=conv_id, scope=scope, created_at=now, updated_at=now, expires_at=now + ttl,
                next_seq=len(messages), meta=self._seal(conv_id, "meta", metadata), system=None, summary=None,
                summary_through=-1, pad=None))
            if messages:
                conn.execute(sa.insert(items_t), self._rows(conv_id, 0, messages, [None] * len(messages), now))
        return Conversation(conv_id, now, metadata, now + ttl)

    def _rows(self, conv_id: str, first: int, messages: Sequence[Message], origins: Sequence[str | None],
              now: float) -> list[dict[str, Any]]:
        out = []
        for i, (m, origin) in enumerate(zip(messages, origins, strict=True)):
            item_id = new_id("msg")
            out.append({"conversation_id": conv_id, "seq": first + i, "id": item_id, "origin": origin,
                        "created_at": now, "data": self._seal(conv_id, item_id, message_to_json(m))})
        return out

    def _row(self, conn: sa.Connection, scope: str, conv_id: str, *, lock: bool = False) -> sa.Row[Any]:
        q = sa.select(conv_t).where(conv_t.c.id == conv_id, conv_t.c.scope == scope,
                                    conv_t.c.expires_at > self.clock())
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        r = conn.execute(q).first()
        if r is None:
            raise _not_found(conv_id)
        return r

    async def get(self, scope: str, conv_id: str) -> Conversation:
        return await self._run(self._get, scope, conv_id)

    def _get(self, scope: str, conv_id: str) -> Conversation:
        with self._read() as conn:
            r = self._row(conn, scope, conv_id)
        return Conversation(r.id, r.created_at, self._open(r.id, "meta", r.meta) or {}, r.expires_at)

    async def update(self, scope: str, conv_id: str, metadata: dict[str, str] | None) -> Conversation:
        meta = check_metadata(metadata)

        def work() -> Conversation:
            with self.db.write() as conn:
                r = self._row(conn, scope, conv_id, lock=True)
                conn.execute(sa.update(conv_t).where(conv_t.c.id == conv_id).values(
                    meta=self._seal(conv_id, "meta", meta), updated_at=self.clock()))
            return Conversation(r.id, r.created_at, meta, r.expires_at)

        return await self._run(work)

    async def delete(self, scope: str, conv_id: str) -> None:
        """Delete the conversation and everything it stores; not found if it is not the scope's."""

        def work() -> None:
            with self.db.write() as conn:
                self._row(conn, scope, conv_id, lock=True)
                conn.execute(sa.delete(items_t).where(items_t.c.conversation_id == conv_id))
                conn.execute(sa.delete(conv_t).where(conv_t.c.id == conv_id))

        await self._run(work)

    # --- history: the hot path --------------------------------------------------------------------------------

    async def load(self, scope: str, conv_id: str) -> History:
        """The conversation's system prompt, summary and messages after the summary (oldest first)."""
        return await self._run(self._load, scope, conv_id)

    def _load(self, scope: str, conv_id: str) -> History:
        rows = self.hot.load(scope, conv_id, self.clock())
        if not rows:
            raise _not_found(conv_id)
        system_blob, summary, summary_through = rows[0][:3]
        system = self._open(conv_id, "system", system_blob)
        h = History(conv_id, message_from_json(system) if system else None, self._open(conv_id, "summary", summary),
                    summary_through)
        messages, origins, seqs, unseal = h.messages, h.origins, h.seqs, self._open
        for _, _, _, seq, item_id, origin, data in rows:
            if seq is None:
                continue
            messages.append(message_from_json(unseal(conv_id, item_id, data)))
            origins.append(origin)
            seqs.append(seq)
        return h

    async def append(self, scope: str, conv_id: str, messages: Sequence[Message],
                     origins: Sequence[str | None] | None = None, *, ttl: float | None = None,
                     system: Message | None = None) -> list[str]:
        """Store a turn atomically: ``messages`` (with their ``origins``: None for the caller's, the provider type
        for the model's) after the newest, and ``system`` as the conversation's system prompt when given. ``ttl``
        renews the conversation's life from now. Returns the new items' ids."""
        origins = list(origins) if origins is not None else [None] * len(messages)
        if len(origins) != len(messages):
            raise ValueError("one origin per message")
        return await self._run(self._append, scope, conv_id, list(messages), origins, ttl, system)

    def _append(self, scope: str, conv_id: str, messages: list[Message], origins: list[str | None],
                ttl: float | None, system: Message | None) -> list[str]:
        now = self.clock()
        ids = [new_id("msg") for _ in messages]
        data = [self._seal(conv_id, i, message_to_json(m)) for i, m in zip(ids, messages, strict=True)]
        stored = self.hot.append(
            scope, conv_id, now, max_items=self.max_items, exp=now + ttl if ttl is not None else None,
            system=self._seal(conv_id, "system", message_to_json(system)) if system is not None else None,
            ids=ids, origins=origins, data=data)
        if not stored:
            with self._read() as conn:  # nothing stored: not this tenant's (or gone), or full
                self._row(conn, scope, conv_id)
            raise InvalidRequest(f"The conversation holds its limit of {self.max_items} items; start a new one.",
                                 param="conversation", code="conversation_full")
        return ids

    async def summarize_through(self, scope: str, conv_id: str, seq: int, summary: str) -> None:
        """Record that the messages up to ``seq`` are summarised by ``summary`` (they stay listed as items)."""

        def work() -> None:
            with self.db.write() as conn:
                self._row(conn, scope, conv_id, lock=True)
                conn.execute(sa.update(conv_t).where(conv_t.c.id == conv_id).values(
                    summary=self._seal(conv_id, "summary", summary), summary_through=seq))

        await self._run(work)

    # --- items ------------------------------------------------------------------------------------------------

    async def items(self, scope: str, conv_id: str, *, after: str | None = None, limit: int = 20,
                    order: str = "desc") -> tuple[list[StoredMessage], bool]:
        """A page of the conversation's messages, and whether more follow."""

        def work() -> tuple[list[StoredMessage], bool]:
            with self._read() as conn:
                self._row(conn, scope, conv_id)
                q = sa.select(items_t).where(items_t.c.conversation_id == conv_id)
                if after is not None:
                    seq = conn.execute(sa.select(items_t.c.seq).where(items_t.c.conversation_id == conv_id,
                                                                      items_t.c.id == after)).scalar()
                    if seq is None:
                        raise InvalidRequest(f"No item {after[:80]!r} in this conversation.", param="after")
                    q = q.where(items_t.c.seq > seq if order == "asc" else items_t.c.seq < seq)
                q = q.order_by(items_t.c.seq if order == "asc" else items_t.c.seq.desc()).limit(limit + 1)
                rows = conn.execute(q).all()
            return [self._stored(r) for r in rows[:limit]], len(rows) > limit

        return await self._run(work)

    def _stored(self, r: Any) -> StoredMessage:
        return StoredMessage(r.id, r.seq, message_from_json(self._open(r.conversation_id, r.id, r.data)), r.origin,
                             r.created_at)

    async def item(self, scope: str, conv_id: str, item_id: str) -> StoredMessage:
        def work() -> StoredMessage:
            with self._read() as conn:
                self._row(conn, scope, conv_id)
                r = conn.execute(sa.select(items_t).where(items_t.c.conversation_id == conv_id,
                                                          items_t.c.id == item_id)).first()
            if r is None:
                raise NotFound(f"No item found with id {item_id[:80]!r}.", param="item_id", code="item_not_found")
            return self._stored(r)

        return await self._run(work)

    async def delete_item(self, scope: str, conv_id: str, item_id: str) -> Conversation:
        def work() -> Conversation:
            with self.db.write() as conn:
                r = self._row(conn, scope, conv_id, lock=True)
                n = conn.execute(sa.delete(items_t).where(items_t.c.conversation_id == conv_id,
                                                          items_t.c.id == item_id)).rowcount
            if not n:
                raise NotFound(f"No item found with id {item_id[:80]!r}.", param="item_id", code="item_not_found")
            return Conversation(r.id, r.created_at, self._open(r.id, "meta", r.meta) or {}, r.expires_at)

        return await self._run(work)

    # --- scratchpad and tool outputs --------------------------------------------------------------------------

    async def get_state(self, scope: str, conv_id: str) -> State:
        def work() -> State:
            with self._read() as conn:
                r = self._row(conn, scope, conv_id)
            return self._state(conv_id, r.pad)

        return await self._run(work)

    def _state(self, conv_id: str, blob: bytes | None) -> State:
        pad = self._open(conv_id, "pad", blob) or {}
        return State(pad.get("scratchpad") or {}, pad.get("tool_outputs") or [])

    async def put_state(self, scope: str, conv_id: str, change: Callable[[State], State]) -> State:
        """Read the state, apply ``change`` (which may raise to refuse), and store the result, in one
        transaction (a PATCH and a concurrent tool output never lose each other's writes)."""

        def work() -> State:
            with self.db.write() as conn:
                r = self._row(conn, scope, conv_id, lock=True)
                new = change(self._state(conv_id, r.pad))
                conn.execute(sa.update(conv_t).where(conv_t.c.id == conv_id).values(
                    pad=self._seal(conv_id, "pad", {"scratchpad": new.scratchpad,
                                                    "tool_outputs": new.tool_outputs}),
                    updated_at=self.clock()))
            return new

        return await self._run(work)

    # --- retention --------------------------------------------------------------------------------------------

    async def sweep(self, batch: int = 500) -> int:
        """Delete conversations past their ``expires_at`` (a batch at a time); returns how many."""
        return await self._run(self._sweep, batch)

    def _sweep(self, batch: int) -> int:
        now = self.clock()
        with self.db.write() as conn:
            ids = list(conn.execute(sa.select(conv_t.c.id).where(conv_t.c.expires_at <= now).limit(batch))
                       .scalars())
            if ids:
                conn.execute(sa.delete(items_t).where(items_t.c.conversation_id.in_(ids)))
                conn.execute(sa.delete(conv_t).where(conv_t.c.id.in_(ids)))
        return len(ids)

    def close(self) -> None:
        self.db.engine.dispose()
