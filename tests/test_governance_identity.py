"""Identity in the store and the key cache, on SQLite and PostgreSQL: migrations, secrets, the Principal the ledger
reads, cache hits without database round trips, expiry, and change propagation between processes' caches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from switchyard.config import parse_config
from switchyard.errors import AuthenticationFailed
from switchyard.governance import identity, limits
from switchyard.governance.auth import BudgetDef, Principal, RateLimitDef
from switchyard.governance.keys import audit_key, key_secret
from switchyard.governance.models import (
    BudgetCreate,
    KeyCreate,
    KeyUpdate,
    OrgCreate,
    RateLimitCreate,
    TeamCreate,
    TeamUpdate,
    UserCreate,
)
from switchyard.governance.rbac import Actor
from switchyard.governance.runtime import Governance
from switchyard.store import Store
from switchyard.store.audit_tables import AUDIT_TABLES
from switchyard.store.db import alembic_config
from switchyard.store.identity_tables import IDENTITY_TABLES
from switchyard.store.tables import metadata
from tests.support.governance import BACKENDS, gov_config, store_url, unique

CLI = Actor.cli("test")


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One store per backend for the module; tests create their own orgs, teams, users and keys."""
    with store_url(request.param, tmp_path_factory.mktemp("identity")) as u:
        yield u


@pytest.fixture(params=BACKENDS)
def own_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store for this test alone."""
    with store_url(request.param, tmp_path) as u:
        yield u


@contextlib.asynccontextmanager
async def running(url: str, **governance: Any) -> AsyncIterator[Governance]:
    cfg = gov_config(url)
    cfg["governance"].update(governance)
    gov = Governance(parse_config(cfg, "<test>", {}), env={})
    await gov.start()
    try:
        yield gov
    finally:
        await gov.aclose()


@pytest.fixture
async def gov(url: str) -> AsyncIterator[Governance]:
    async with running(url) as g:
        yield g


async def do(gov: Governance, fn: Any, *args: Any) -> Any:
    return await gov.transact(gov.ops(CLI), fn, *args)


async def make_key(gov: Governance, **kw: Any) -> tuple[Any, str, dict[str, Any]]:
    """An org, a team and a user (org_admin), and a key of the user's; returns (key, secret, objects)."""
    org = await do(gov, identity.create_org, OrgCreate(name=unique("org")))
    team = await do(gov, identity.create_team, TeamCreate(name="t", org_id=org.id))
    user = await do(gov, identity.create_user, UserCreate(email=f"{unique('u')}@x.io", team_id=team.id,
                                                          role="team_admin"))
    key = await do(gov, identity.create_key, KeyCreate(user_id=user.id, **kw))
    return key, key.secret, {"org": org, "team": team, "user": user}


@contextlib.contextmanager
def count_statements(engine: sa.Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


# --- schema and secrets --------------------------------------------------------------------------------------


def test_migrations_match_the_tables_and_downgrade(own_url: str) -> None:
    store = Store.open(own_url)
    try:
        assert {t.name for t in (*IDENTITY_TABLES, *AUDIT_TABLES)} <= set(sa.inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
            assert conn.execute(sa.text("SELECT version FROM identity_version")).scalar() == 0
            assert conn.execute(sa.text("SELECT seq, hash FROM audit_head")).one() == (0, "0" * 64)
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), "0001")
        assert set(sa.inspect(store.engine).get_table_names()) == {"alembic_version", "request_log"}
    finally:
        store.close()


def test_key_secret_comes_from_config_then_env_then_master_key() -> None:
    def cfg(**kw: Any) -> Any:
        return parse_config({"master_key": kw.pop("master", None), **kw}, "<t>", {})

    explicit = cfg(governance={"key_secret": "s" * 20}, master="m" * 20)
    assert key_secret(explicit, {"SWITCHYARD_KEY_SECRET": "e" * 20}) == b"s" * 20
    assert key_secret(cfg(master="m" * 20), {"SWITCHYARD_KEY_SECRET": "e" * 20}) == b"e" * 20
    derived = key_secret(cfg(master="m" * 20), {})
    assert derived is not None and len(derived) == 32 and b"m" * 20 not in derived
    assert key_secret(cfg(master="n" * 20), {}) != derived
    assert key_secret(cfg(), {}) is None
    assert audit_key(cfg(master="m" * 20), {}) not in (None, derived)  # a different key for a different job
    with pytest.raises(ValueError, match="SWITCHYARD_KEY_SECRET"):
        key_secret(cfg(), {"SWITCHYARD_KEY_SECRET": "short"})


async def test_refuses_to_start_when_keys_exist_but_no_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with running(url) as gov:
        await make_key(gov)
    cfg = gov_config(url, master_key=None)
    bare = Governance(parse_config(cfg, "<test>", {}), env={})
    with pytest.raises(RuntimeError, match="key_secret"):
        await bare.start()
    await bare.aclose()
    fresh = Governance(parse_config(gov_config(f"sqlite:///{tmp_path}/empty.db", master_key=None), "<t>", {}), env={})
    await fresh.start()  # no keys stored: runs, with virtual keys unavailable
    assert fresh.directory is None
    await fresh.aclose()


# --- the Principal -------------------------------------------------------------------------------------------


async def test_principal_carries_everything_the_ledger_needs(gov: Governance) -> None:
    key, secret, o = await make_key(gov, models=["sim-a", "sim-b", "fast"], tags=["batch", "eu"], logging="metadata",
                                    expires_in=3600, metadata={"cost_center": "42"})
    org, team, user = o["org"], o["team"], o["user"]
    await do(gov, identity.update_team, team.id, TeamUpdate(models=["sim-a", "fast"]))  # narrows the team's keys
    want = set()
    for scope, scope_id, extra in (("key", key.id, {}), ("user", user.id, {}), ("team", team.id, {}),
                                   ("org", org.id, {}), ("tag", "batch", {"org_id": org.id})):
        b = await do(gov, limits.create_budget, BudgetCreate(scope=scope, scope_id=scope_id, max_usd=Decimal("1.25"),
                                                             period="daily", **extra))
        want.add(b.id)
    other = await do(gov, identity.create_org, OrgCreate(name=unique("other")))
    await do(gov, limits.create_budget, BudgetCreate(scope="tag", scope_id="batch", max_tokens=5, org_id=other.id))
    unrelated = await do(gov, limits.create_budget, BudgetCreate(scope="tag", scope_id="other-tag", max_tokens=5))
    limit_ids = {(await do(gov, limits.create_rate_limit, RateLimitCreate(scope=s, scope_id=i, rpm=60))).id
                 for s, i in (("key", key.id), ("user", user.id), ("team", team.id))}
    assert gov.directory is not None
    p = await gov.directory.resolve(secret)
    assert isinstance(p, Principal)
    assert (p.id, p.key_id, p.user_id, p.team_id, p.org_id) == (key.id, key.id, user.id, team.id, org.id)
    assert p.roles == {"team_admin"} and p.tags == {"batch", "eu"} and p.logging == "metadata"
    assert p.models == frozenset({"sim-a", "fast"})  # the key's list, narrowed to its team's
    assert p.expires_at is not None and abs(p.expires_at - (time.time() + 3600)) < 60
    assert dict(p.metadata) == {"cost_center": "42"}
    assert {b.id for b in p.budgets} == want and unrelated.id not in {b.id for b in p.budgets}
    by_scope = {b.scope: b for b in p.budgets}
    assert by_scope["tag"] == BudgetDef(id=by_scope["tag"].id, scope="tag", scope_id="batch", period="daily",
                                        max_usd=Decimal("1.25"), max_tokens=None, thresholds=(0.5, 0.8, 1.0),
                                        org_id=org.id)
    assert {x.id for x in p.rate_limits} == limit_ids and all(isinstance(x, RateLimitDef) for x in p.rate_limits)
    assert all(x.rpm == 60 for x in p.rate_limits)


# --- the cache -----------------------------------------------------------------------------------------------


async def test_a_cache_hit_is_a_dict_lookup(gov: Governance) -> None:
    _, secret, _ = await make_key(gov)
    d = gov.directory
    assert d is not None
    assert await d.resolve(secret) is not None  # the miss: one load
    with count_statements(gov.db.engine) as statements:
        t = time.perf_counter()
        for _ in range(2000):
            await d.resolve(secret)
        per_call = (time.perf_counter() - t) / 2000
    assert statements == []  # not one query for 2000 authentications
    assert per_call < 200e-6, f"{per_call * 1e6:.1f} µs per cached authentication"
    assert d.stats["hits"] >= 2000


async def test_concurrent_misses_share_one_load_and_unknown_keys_are_cached(gov: Governance) -> None:
    _, secret, _ = await make_key(gov)
    d = gov.directory
    assert d is not None
    # Catch up with the key's own change notice first: a poll that applied it later would (rightly) evict the
    # negative entry that this test counts on, since every change may have created the key that was unknown.
    await d.poll_once()
    loads = d.stats["loads"]
    results = await asyncio.gather(*(d.resolve(secret) for _ in range(50)))
    assert all(r is not None for r in results) and d.stats["loads"] == loads + 1
    bogus = "sk-sy-" + "x" * 43
    assert await d.resolve(bogus) is None and await d.resolve(bogus) is None
    assert d.stats["loads"] == loads + 2
    assert await d.resolve("not-a-virtual-key") is None and d.stats["loads"] == loads + 2  # never looked up


async def test_expiry_is_enforced_on_a_cached_key_without_the_database(gov: Governance) -> None:
    key, secret, _ = await make_key(gov, expires_in=2.0)  # slack for a slow, loaded CI machine
    d = gov.directory
    assert d is not None
    assert await d.resolve(secret) is not None
    await asyncio.sleep(max(0.0, key.expires_at.timestamp() + 0.2 - time.time()))  # just past its own expiry
    with count_statements(gov.db.engine) as statements, pytest.raises(AuthenticationFailed) as e:
        await d.resolve(secret)
    assert e.value.code == "expired_api_key" and statements == []


async def test_changes_reach_another_process_cache_at_its_next_poll(url: str) -> None:
    async with running(url, poll_interval=5) as a, running(url, poll_interval=5) as b:  # polls driven by hand
        key, secret, o = await make_key(a, tags=["t1"])
        assert a.directory is not None and b.directory is not None
        pb = await b.directory.resolve(secret)
        assert pb is not None and pb.budgets == () and pb.logging == "none"
        # a change to a definition in scope (here: the team's budget) refreshes the cached Principal
        budget = await do(a, limits.create_budget, BudgetCreate(scope="team", scope_id=o["team"].id, max_usd=3))
        await do(a, identity.update_key, key.id, KeyUpdate(logging="full"))
        assert (await b.directory.resolve(secret)) == pb  # B has not polled yet: still its cached entry
        await b.directory.poll_once()
        pb = await b.directory.resolve(secret)
        assert pb is not None and [x.id for x in pb.budgets] == [budget.id] and pb.logging == "full"
        # revocation through A: A refuses at once, B at its next poll, without a query per call afterwards
        await do(a, identity.revoke_key, key.id)
        with pytest.raises(AuthenticationFailed):
            await a.directory.resolve(secret)
        assert await b.directory.resolve(secret) is not None
        await b.directory.poll_once()
        with pytest.raises(AuthenticationFailed) as e:
            await b.directory.resolve(secret)
        assert e.value.code == "revoked_api_key"


async def test_a_load_that_raced_a_change_is_not_cached(gov: Governance) -> None:
    _, secret, _ = await make_key(gov)
    d = gov.directory
    assert d is not None
    real_read = d._read

    def slow_read(hashes: list[str]) -> Any:
        rows = real_read(hashes)
        time.sleep(0.2)  # the change lands while this (already stale) read is on its way back
        return rows

    d._read = slow_read  # type: ignore[method-assign]
    pending = asyncio.ensure_future(d.resolve(secret))
    await asyncio.sleep(0.05)
    d.invalidate([(10**9, "key", "vk_anything")])
    assert await pending is not None  # the call itself is served ...
    assert len(d) == 0  # ... but its possibly stale result was not cached
    d._read = real_read  # type: ignore[method-assign]


async def test_a_load_that_read_past_every_eviction_is_cached(gov: Governance) -> None:
    """An eviction for a change the load's read already reflects (an earlier version) cannot make it stale: the key
    is cached, so it keeps working if the store goes away right after (the race the outage test once lost)."""
    _, secret, _ = await make_key(gov)
    d = gov.directory
    assert d is not None
    await d.poll_once()
    real_read = d._read

    def slow_read(hashes: list[str]) -> Any:
        rows = real_read(hashes)
        time.sleep(0.2)
        return rows

    d._read = slow_read  # type: ignore[method-assign]
    pending = asyncio.ensure_future(d.resolve(secret))
    await asyncio.sleep(0.05)
    d.invalidate([(1, "key", "vk_anything")])  # a notice from long before this load's read
    assert await pending is not None
    assert len(d) == 1
    d._read = real_read  # type: ignore[method-assign]


async def test_entries_are_reread_after_the_ttl_even_without_a_notice(url: str) -> None:
    async with running(url, poll_interval=5, cache_ttl=0.1) as gov:
        key, secret, _ = await make_key(gov)
        d = gov.directory
        assert d is not None
        p = await d.resolve(secret)
        assert p is not None and p.logging == "none"
        with gov.db.engine.begin() as conn:  # a change made behind the API's back: no change notice
            conn.execute(sa.text("UPDATE api_keys SET logging = 'full' WHERE id = :i"), {"i": key.id})
        await asyncio.sleep(0.15)
        await d.poll_once()
        p = await d.resolve(secret)
        assert p is not None and p.logging == "full"
