"""Budgets in one gateway process (the embedded ledger), on SQLite and on PostgreSQL: exactly as many requests as
the budget covers, refusals that name the budget and its reset, settlement in every outcome, totals that survive a
restart, token budgets, and threshold webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.auth import BudgetDef
from switchyard.governance.ledger_model import NO_LIMIT, BudgetPeriod, Settled
from switchyard.governance.spend import SpendWriter
from switchyard.routing import Router
from switchyard.store import Store
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import BACKENDS, Admin, store_url
from tests.support.ledger import EXACT, HI, budget_total, ledger_config, spend_of, tenant, wait_for
from tests.support.webhook_receiver import receiver

ONE_DOLLAR = {"max_usd": 1.0, "period": "daily", "name": "one-dollar"}


@contextlib.contextmanager
def gateway(backend: str, tmp: Path, **kw: Any) -> Iterator[tuple[RunningGateway, Store, Admin]]:
    with store_url(backend, tmp) as url:
        store = Store.open(url)
        cfg = ledger_config(url, tmp / "spool", **kw)
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
        try:
            with run_gateway(cfg, recorder=writer) as gw:
                admin = Admin(gw.url)
                yield gw, store, admin
                admin.close()
        finally:
            store.close()


async def fire(base: str, secret: str, n: int, **body: Any) -> list[httpx.Response]:
    payload = {"model": "exact", "messages": HI, "max_tokens": 50, **body}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
        return list(await asyncio.gather(*(
            c.post("/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {secret}"})
            for _ in range(n))))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_200_concurrent_requests_against_one_dollar_give_exactly_20(backend: str, tmp_path: Path) -> None:
    with gateway(backend, tmp_path, ttft_ms=30) as (gw, store, admin):
        t = tenant(admin, budget=ONE_DOLLAR)
        replies = await fire(gw.url, t["secret"], 200)
        ok = [r for r in replies if r.status_code == 200]
        refused = [r for r in replies if r.status_code == 429]
        assert len(ok) == 20 and len(refused) == 180, sorted({r.status_code for r in replies})
        err = refused[0].json()["error"]
        assert err["type"] == "insufficient_quota" and err["code"] == "budget_exceeded"
        assert t["budget"]["id"] in err["message"] and "'one-dollar'" in err["message"]
        assert "resets at" in err["message"] and "of $1.00 spent" in err["message"]
        h = refused[0].headers
        assert h["x-should-retry"] == "false" and h["x-switchyard-budget"] == t["budget"]["id"]
        tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
        assert h["x-switchyard-budget-reset"] == f"{tomorrow.isoformat()}T00:00:00+00:00"
        assert 0 < int(h["retry-after"]) <= 86400
        # settled spend equals the per-request records, to the cent (and beyond: to 1e-8)
        wait_for(lambda: spend_of(store.engine, t["key"])[0] == 200, what="200 spend records")
        assert spend_of(store.engine, t["key"])[1] == Decimal("1.00")
        wait_for(lambda: budget_total(store.engine, t["budget"]["id"])[1] == 20, what="budget totals")
        assert budget_total(store.engine, t["budget"]["id"]) == (Decimal("1.00"), 20)
        ledger = gw.gateway.ledger
        assert ledger is not None and ledger.memory is not None and not ledger.holds
        bucket = next(b for k, b in ledger.memory.buckets.items() if k.startswith(t["budget"]["id"]))
        assert (bucket.spent_usd, bucket.held_usd) == (100_000_000, 0)


def test_refusals_in_the_anthropic_protocol_and_a_total_budget(tmp_path: Path) -> None:
    with gateway("sqlite", tmp_path) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.05, "period": "total"})
        client = anthropic.Anthropic(base_url=gw.url, api_key=t["secret"], max_retries=2)
        client.messages.create(model="exact", max_tokens=50, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as e:
            client.messages.create(model="exact", max_tokens=50, messages=HI)
        wait_for(lambda: spend_of(store.engine, t["key"])[0] == 2)
        time.sleep(0.3)
        assert spend_of(store.engine, t["key"])[0] == 2  # x-should-retry: false: the SDK did not retry the 429
        body = e.value.response.json()
        assert body["error"]["type"] == "billing_error"
        assert "total budget: it never resets" in body["error"]["message"]
        assert "retry-after" not in e.value.response.headers
        assert e.value.response.headers["x-should-retry"] == "false"


async def test_the_worst_case_is_reserved_and_the_real_cost_settled(tmp_path: Path) -> None:
    """Without max_tokens, ``default_max_tokens`` (or the deployment's cap) is what may be spent, so that is what is
    held; the settlement is the real cost, and the rest of the hold goes back to the budget."""
    with gateway("sqlite", tmp_path, output_tokens=10, ledger={"default_max_tokens": 100}) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.1, "period": "monthly"})  # $0.10: one worst case of 100 tokens
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=t["secret"], max_retries=0) as c:
            c.chat.completions.create(model="exact", messages=HI)  # holds $0.10, spends $0.01 (10 tokens)
            with pytest.raises(openai.RateLimitError) as e:  # $0.01 + a $0.10 worst case > $0.10
                c.chat.completions.create(model="exact", messages=HI)
            assert "$0.01 of $0.10 spent" in e.value.message and "up to $0.10 needed" in e.value.message
            with pytest.raises(openai.RateLimitError) as e:  # n choices may each use max_tokens: 10 x 10
                c.chat.completions.create(model="exact", messages=HI, max_tokens=10, n=10)
            assert "up to $0.10 needed" in e.value.message
            for _ in range(9):  # capped at 10 tokens, a request fits until the budget is spent to the cent
                c.chat.completions.create(model="exact", messages=HI, max_tokens=10)
            with pytest.raises(openai.RateLimitError) as e:
                c.chat.completions.create(model="exact", messages=HI, max_tokens=10)
            assert "$0.10 of $0.10 spent" in e.value.message
        wait_for(lambda: spend_of(store.engine, t["key"])[0] == 13)
        assert spend_of(store.engine, t["key"])[1] == Decimal("0.10")


async def test_token_budgets_and_budgets_on_user_team_org_and_tag(tmp_path: Path) -> None:
    with gateway("sqlite", tmp_path) as (gw, _store, admin):
        for scope in ("user", "team", "org"):
            t = tenant(admin, budget={"max_tokens": 200, "period": "weekly"}, scope=scope)
            replies = await fire(gw.url, t["secret"], 10)  # each request holds 50 + ~5 prompt tokens
            assert sum(r.status_code == 200 for r in replies) == 3, scope
            assert "tokens used" in next(r for r in replies if r.status_code == 429).json()["error"]["message"]
        t = tenant(admin, tags=["research"])
        admin.post("/admin/budgets", {"scope": "tag", "scope_id": "research", "org_id": t["org"], "max_usd": 0.1,
                                      "period": "daily"})
        replies = await fire(gw.url, t["secret"], 5)
        assert sum(r.status_code == 200 for r in replies) == 2


async def test_a_failed_or_cancelled_call_releases_its_hold(tmp_path: Path) -> None:
    with gateway("sqlite", tmp_path, ttft_ms=300) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.1, "period": "daily"})  # two requests' worth
        headers = {"authorization": f"Bearer {t['secret']}"}
        body = {"model": "exact", "messages": HI, "max_tokens": 50, "stream": True}
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as c:
            async with c.stream("POST", "/v1/chat/completions", json=body,
                                headers={**headers, "x-switchyard-timeout": "0.1"}) as r:
                assert r.status_code == 504  # the deadline passed before the first token: nothing was spent
            ledger = gw.gateway.ledger
            assert ledger is not None
            wait_for(lambda: not ledger.holds, what="the hold to be released")
            async with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                assert r.status_code == 200
                await anext(r.aiter_raw())  # then the client leaves
            wait_for(lambda: not ledger.holds, what="the hold of a stream the client left")
            # each settled to what it really cost (the timed-out call nothing, the left stream at most $0.05)
            r = await c.post("/v1/chat/completions", json={**body, "stream": False}, headers=headers)
            assert r.status_code == 200
        wait_for(lambda: spend_of(store.engine, t["key"])[0] == 3)


async def test_totals_survive_a_restart(tmp_path: Path) -> None:
    with store_url("sqlite", tmp_path) as url:
        spool = tmp_path / "spool"
        cfg = ledger_config(url, spool)
        store = Store.open(url)
        try:
            with run_gateway(cfg, recorder=SpendWriter(store.engine, SpoolSettings(dir=str(spool)))) as gw:
                admin = Admin(gw.url)
                t = tenant(admin, budget={"max_usd": 0.1, "period": "monthly"})
                assert [r.status_code for r in await fire(gw.url, t["secret"], 1)] == [200]
                admin.close()
            with run_gateway(cfg, recorder=SpendWriter(store.engine, SpoolSettings(dir=str(spool)))) as gw:
                replies = await fire(gw.url, t["secret"], 3)
                assert sorted(r.status_code for r in replies) == [200, 429, 429]
        finally:
            store.close()


async def test_threshold_webhooks_fire_once_each_and_private_targets_need_allowing(tmp_path: Path) -> None:
    with receiver() as hooks:
        url = f"http://127.0.0.1:{hooks.port}/budget"
        webhooks = {"allow_private": True, "secret": "s" * 16}
        with gateway("sqlite", tmp_path, ledger={"webhooks": webhooks}) as (gw, _store, admin):
            t = tenant(admin, budget={**ONE_DOLLAR, "webhook_url": url, "thresholds": [0.5, 0.8, 1.0]})
            replies = await fire(gw.url, t["secret"], 25)
            assert sum(r.status_code == 200 for r in replies) == 20
            wait_for(lambda: len(hooks.requests) == 3, what="three threshold notices")
            got = sorted(((r.headers, r.json()) for r in hooks.requests), key=lambda x: x[1]["threshold"])
            assert [e["threshold"] for _, e in got] == [0.5, 0.8, 1.0]
            assert [e["spent_usd"] for _, e in got] == ["0.50000000", "0.80000000", "1.00000000"]
            assert got[0][1]["budget"]["id"] == t["budget"]["id"] and got[0][1]["type"] == "budget.threshold"
            for h, event in got:  # signed: HMAC-SHA256 of the exact body with the configured secret
                body = orjson.dumps(event)
                assert h["x-switchyard-signature"] == "sha256=" + hmac.new(b"s" * 16, body, hashlib.sha256).hexdigest()
        with gateway("sqlite", tmp_path / "strict") as (gw, _store, admin):
            # without allow_private, a loopback target is refused when it is set (a name that resolves to one is
            # refused when a notice is sent: tests/test_ssrf.py)
            t = tenant(admin)
            r = admin.request("POST", "/admin/budgets", {"scope": "key", "scope_id": t["key"], **ONE_DOLLAR,
                                                         "webhook_url": url})
            assert r.status_code == 400 and r.json()["error"]["param"] == "webhook_url", r.text
            assert len(hooks.requests) == 3


def test_a_threshold_is_crossed_when_either_limit_reaches_its_exact_amount() -> None:
    """Thresholds are integer amounts of each limit (the least amount at or past threshold x limit), so a
    settlement crosses exactly the thresholds its totals reach for the first time, by either limit."""
    bd = BudgetDef(id="bud_1", scope="key", scope_id="k", period="total", max_usd=Decimal("0.00000003"),
                   max_tokens=10, thresholds=(1.0, 0.5, 0.8))  # unsorted, as a user may write them
    b = BudgetPeriod.make(bd, "UTC", "total", None, 3, 10)
    assert (b.thresholds, b.marks_usd, b.marks_tokens) == ((0.5, 0.8, 1.0), (2, 3, 3), (5, 8, 10))

    def crossed(usd: tuple[int, int], tokens: tuple[int, int]) -> list[float]:
        found = Settled(b, usd[0], usd[1], tokens[0], tokens[1]).crossed()
        alarm_usd, alarm_tokens = b.next_marks(usd[0], tokens[0])  # where the embedded ledger looks next
        assert (usd[1] >= alarm_usd or tokens[1] >= alarm_tokens) or not found  # it never misses a crossing
        return found

    assert crossed((0, 1), (0, 4)) == []  # 1/3 of the money, 4/10 of the tokens
    assert crossed((1, 2), (0, 0)) == [0.5]  # 2/3 >= 0.5, < 0.8
    assert crossed((2, 2), (4, 8)) == [0.8]  # tokens reach 0.8 while the money stays at 2/3
    assert crossed((0, 3), (0, 0)) == [0.5, 0.8, 1.0]  # one settlement may cross several
    assert crossed((1, 2), (8, 9)) == []  # the money reaches 0.5, but the tokens were already past 0.8
    no_limit = BudgetPeriod.make(bd, "UTC", "total", None, -1, 0)  # no USD limit, and a zero token limit
    assert (no_limit.marks_usd, no_limit.marks_tokens) == ((), ())
    assert Settled(no_limit, 0, 10**9, 0, 10**9).crossed() == []
    assert b.next_marks(3, 0) == (NO_LIMIT, NO_LIMIT)  # every threshold reached: no alarm left


def test_the_worst_case_is_on_the_priciest_deployment_the_plan_may_use(tmp_path: Path) -> None:
    from switchyard.catalog import Catalog
    from switchyard.config import parse_config
    from switchyard.governance.ledger import Ledger

    cfg = parse_config(ledger_config(
        "sqlite:///:memory:", tmp_path / "spool",
        deployments=[EXACT, {"name": "cheap", "provider": "sim", "price": {"input": 1.0, "output": 2.0},
                             "max_output_tokens": 100}],
        routes={"plain": {"targets": ["cheap"], "fallbacks": ["exact"]},
                "hedged": {"targets": ["cheap", "exact"], "hedge": {"max_extra": 1}}}), "<t>", {})
    ledger = Ledger(cfg, None)
    router = Router(Catalog.from_config(cfg), cfg)
    # a fallback not yet expanded still counts: exact, 50 tokens at $0.001
    assert ledger.worst_case(router.plan("plain", set(), 10, 50), 10, 50) == (5_000_000, 60)
    # no max_tokens: cheap's own cap (100) but exact has none: default_max_tokens (4096) on exact
    assert ledger.worst_case(router.plan("plain", set(), 10, None), 10, None) == (409_600_000, 4106)
    # hedged: the worst case once more per possible hedge
    assert ledger.worst_case(router.plan("hedged", set(), 10, 50), 10, 50) == (10_000_000, 120)
    assert ledger.worst_case(router.plan("plain", set(), 10, 50), 10, 50, choices=3) == (15_000_000, 160)


async def test_settled_once_in_every_outcome_including_a_stream_never_relayed(tmp_path: Path) -> None:
    """Straight on the pipeline: a stream that is opened and then dropped unread still settles (and is recorded)
    exactly once; so do a refusal, a finished call and a cancelled one."""
    from switchyard.config import parse_config
    from switchyard.governance.auth import BudgetDef, Principal
    from switchyard.pipeline import CallContext
    from switchyard.protocols import openai_chat
    from switchyard.server.factory import build_gateway
    from tests.support.gateway import ListRecorder

    with store_url("sqlite", tmp_path) as url:
        cfg = parse_config(ledger_config(url, tmp_path / "spool", ttft_ms=200), "<t>", {})
        recorder = ListRecorder()
        gw = build_gateway(cfg, recorder=recorder)
        await gw.start()
        try:
            ledger = gw.ledger
            assert ledger is not None
            budget = BudgetDef(id="bud_x", scope="key", scope_id="vk_x", period="daily", max_usd=Decimal("0.1"),
                               max_tokens=None)
            p = Principal(id="vk_x", name=None, key_id="vk_x", budgets=(budget,))

            def req(stream: bool) -> Any:
                return openai_chat.parse_request({"model": "exact", "messages": HI, "max_tokens": 50,
                                                  "stream": stream})

            relay = await gw.chat_stream(CallContext("req_dropped", principal=p), req(True))
            assert set(ledger.holds) == {"req_dropped"}
            del relay  # never iterated: its ``finally`` never runs
            assert not ledger.holds and recorder.records[-1].status == "cancelled"
            await gw.chat(CallContext("req_ok", principal=p), req(False))
            task = asyncio.ensure_future(gw.chat(CallContext("req_cancelled", principal=p), req(False)))
            await asyncio.sleep(0.05)
            assert "req_cancelled" in ledger.holds
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert not ledger.holds
            statuses = [(r.request_id, r.status, r.cost) for r in recorder.records]
            assert statuses == [("req_dropped", "cancelled", 0.0), ("req_ok", "ok", pytest.approx(0.05)),
                                ("req_cancelled", "cancelled", 0.0)]
            assert ledger.memory is not None
            bucket = next(b for k, b in ledger.memory.buckets.items() if k.startswith("bud_x:"))
            assert (bucket.spent_usd, bucket.held_usd) == (5_000_000, 0)
        finally:
            await gw.aclose()
