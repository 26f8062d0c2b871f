"""The conversation store itself, on SQLite and PostgreSQL: the hot path's load and append (the driver's cursor,
:mod:`switchyard.state.hotpath`) against the tables, their refusals (another scope, expired, full), and a
PostgreSQL connection lost under the pool (one 503, then the store works again)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from switchyard.errors import InvalidRequest, NotFound, ServiceUnavailable
from switchyard.messages import Message, ReasoningPart, Role, TextPart, ToolCallPart, ToolResultPart
from switchyard.state.conversations import ConversationStore
from switchyard.store.db import create_engine_for, migrate
from tests.support.governance import BACKENDS, store_url
from tests.support.pg import pg_database_url

SCOPE = "org:store-test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path) as u:
        engine = create_engine_for(u)
        migrate(engine)
        engine.dispose()
        yield u


def open_store(url: str, clock: Clock, **kw: object) -> ConversationStore:
    return ConversationStore.open(url, clock=clock, **kw)  # type: ignore[arg-type]


def user(text: str) -> Message:
    return Message(Role.USER, [TextPart(text)])


def test_load_and_append_round_trip(url: str) -> None:
    clock = Clock()
    store = open_store(url, clock, encryption_key="store-test-secret-0123456789abcdef")

    async def run() -> None:
        conv = await store.create(SCOPE, ttl=100, messages=[user("first")])
        reply = Message(Role.ASSISTANT, [ReasoningPart("think", "sig-1"), TextPart("ok"),
                                         ToolCallPart("call_1", "lookup", '{"q": 1}')])
        result = Message(Role.TOOL, [ToolResultPart("call_1", [TextPart("42")])])
        ids = await store.append(SCOPE, conv.id, [user("second"), reply], [None, "anthropic"], ttl=100,
                                 system=Message(Role.SYSTEM, [TextPart("Be brief.")]))
        assert len(ids) == 2 and len(set(ids)) == 2
        await store.append(SCOPE, conv.id, [result], ttl=100)  # the caller's only (every origin null)
        await store.append(SCOPE, conv.id, [])  # nothing to store: the conversation is touched, nothing added
        h = await store.load(SCOPE, conv.id)
        assert [m.text() for m in h.messages] == ["first", "second", "ok", ""]
        assert h.messages[2] == reply and h.messages[3] == result
        assert h.origins == [None, None, "anthropic", None] and h.seqs == [0, 1, 2, 3]
        assert h.system is not None and h.system.text() == "Be brief."
        page, more = await store.items(SCOPE, conv.id, order="asc")
        assert [s.id for s in page][1:3] == ids and not more
        # the append renewed the conversation's life: alive past its first expiry, gone after the new one
        clock.now += 60
        await store.append(SCOPE, conv.id, [user("third")], ttl=100)  # now + 100
        clock.now += 90
        assert len((await store.load(SCOPE, conv.id)).messages) == 5
        clock.now += 20
        with pytest.raises(NotFound):
            await store.load(SCOPE, conv.id)
        with pytest.raises(NotFound):
            await store.append(SCOPE, conv.id, [user("late")])

    try:
        asyncio.run(run())
    finally:
        store.close()


def test_another_scope_and_a_full_conversation_store_nothing(url: str) -> None:
    clock = Clock()
    store = open_store(url, clock, max_items=3)

    async def run() -> None:
        conv = await store.create(SCOPE, ttl=100)
        with pytest.raises(NotFound):
            await store.load("org:someone-else", conv.id)
        with pytest.raises(NotFound):
            await store.append("org:someone-else", conv.id, [user("intruder")])
        await store.append(SCOPE, conv.id, [user("a"), user("b")])
        with pytest.raises(InvalidRequest) as full:  # a turn of two would pass the limit of three: none of it
            await store.append(SCOPE, conv.id, [user("c"), user("d")])
        assert full.value.code == "conversation_full"
        await store.append(SCOPE, conv.id, [user("c")])
        assert [m.text() for m in (await store.load(SCOPE, conv.id)).messages] == ["a", "b", "c"]

    try:
        asyncio.run(run())
    finally:
        store.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database_url() as u:
        engine = create_engine_for(u)
        migrate(engine)
        engine.dispose()
        yield u


def test_a_lost_postgres_connection_is_one_503_then_it_works(pg_url: str) -> None:
    clock = Clock()
    store = open_store(pg_url, clock)

    async def run() -> None:
        conv = await store.create(SCOPE, ttl=100, messages=[user("kept")])
        await store.load(SCOPE, conv.id)
        await store.append(SCOPE, conv.id, [user("more")])
        killer = sa.create_engine(store.db.engine.url, poolclass=NullPool)
        with killer.connect() as c:  # the store's connections end under its pool (as in a server restart)
            ended = c.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
        killer.dispose()
        assert ended
        with pytest.raises(ServiceUnavailable) as e:
            await store.load(SCOPE, conv.id)
        assert e.value.code == "conversation_store_unavailable"
        for i in range(3):  # the pool replaced its connections: no second failure
            assert [m.text() for m in (await store.load(SCOPE, conv.id)).messages] == ["kept", "more"] + ["again"] * i
            await store.append(SCOPE, conv.id, [user("again")])

    try:
        asyncio.run(run())
    finally:
        store.close()
