"""Cascades (issue 14): the cheap step answers first, a check keeps it or escalates; streaming clients see only the
final answer; every step is charged; the record shows the path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from switchyard.catalog import Catalog
from switchyard.config import ConfigError, parse_config
from switchyard.governance.worst_case import worst_case
from switchyard.routing import Router
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
GOOD = '{"name": "Ada Lovelace"}'


def config(upstream: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream"}},
        "deployments": [
            {"name": "cheap", "provider": "up", "model": "gpt-4o-mini", "catalog": "gpt-4o-mini"},
            {"name": "big", "provider": "up", "model": "o3", "catalog": "o3"},
            {"name": "judge", "provider": "up", "model": "gpt-4.1-nano", "catalog": "gpt-4.1-nano"},
        ],
        "routes": {
            "extract": {"strategy": "cascade", "steps": ["cheap", "big"],
                        "check": {"type": "json_schema", "schema": SCHEMA}},
            "verified": {"strategy": "cascade", "targets": ["cheap", "big"],
                         "check": {"type": "verifier", "verifier": "judge", "rubric": "It names a person."}},
            "confident": {"strategy": "cascade", "targets": ["cheap", "big"],
                          "check": {"type": "logprobs", "threshold": -0.5}},
        },
        **overrides,
    }
    return base_config(**cfg)


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI) -> Iterator[tuple[RunningGateway, ListRecorder]]:
    assert fake_openai_server.base_url is not None
    rec = ListRecorder()
    with run_gateway(config(fake_openai_server.base_url), recorder=rec) as running:
        yield running, rec


def call(gw: RunningGateway, route: str, text: str = "Who wrote the first program? Answer as JSON.") -> Any:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(model=route, messages=[{"role": "user", "content": text}])
        return raw.parse(), raw.headers


def test_a_good_cheap_answer_is_kept(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    running, rec = gw
    fake_openai.replies.update({"gpt-4o-mini": GOOD, "o3": '{"name": "big"}'})
    resp, headers = call(running, "extract")
    assert resp.choices[0].message.content == GOOD and headers["x-switchyard-deployment"] == "cheap"
    assert fake_openai.chat_models == ["gpt-4o-mini"]
    assert "cascade: cheap kept (matches the schema)" in headers["x-switchyard-route-reason"]
    r = rec.records[-1]
    assert r.decisions is not None and [(s["deployment"], s["kept"]) for s in r.decisions["cascade"]] == [
        ("cheap", True)]
    assert not r.losers and r.cost > 0


def test_a_bad_cheap_answer_escalates_and_both_steps_are_charged(gw: tuple[RunningGateway, ListRecorder],
                                                                 fake_openai: FakeOpenAI) -> None:
    running, rec = gw
    fake_openai.replies.update({"gpt-4o-mini": '{"nom": 3}', "o3": GOOD})
    resp, headers = call(running, "extract")
    assert resp.choices[0].message.content == GOOD and headers["x-switchyard-deployment"] == "big"
    assert fake_openai.chat_models == ["gpt-4o-mini", "o3"]
    assert "cheap escalated (schema: the answer fails required ['name'])" in headers[
        "x-switchyard-route-reason"]
    r = rec.records[-1]
    path = r.decisions["cascade"]  # type: ignore[index]
    assert [(s["deployment"], s["kept"], s["check"]) for s in path] == [("cheap", False, "json_schema"),
                                                                         ("big", True, None)]
    assert len(r.losers) == 1 and r.losers[0].cost == pytest.approx(path[0]["cost"]) and path[0]["cost"] > 0
    assert r.total_cost == pytest.approx(r.cost + path[0]["cost"]) and r.cost > 0
    fake_openai.replies["gpt-4o-mini"] = "Ada Lovelace, I think."  # not JSON at all
    _, headers = call(running, "extract")
    assert "cheap escalated (not JSON)" in headers["x-switchyard-route-reason"]
    fake_openai.replies["gpt-4o-mini"] = '{"name": 31415926}'  # the reason names the schema, never the answer
    _, headers = call(running, "extract")
    assert "cheap escalated (schema: name fails type 'string')" in headers["x-switchyard-route-reason"]
    assert "31415926" not in headers["x-switchyard-route-reason"] and "31415926" not in str(rec.records[-1].decisions)


def test_the_verifier_keeps_or_escalates(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    running, rec = gw
    fake_openai.replies.update({"gpt-4o-mini": "Ada Lovelace", "o3": "Ada Lovelace (1843)", "gpt-4.1-nano": "Yes."})
    resp, headers = call(running, "verified")
    assert resp.choices[0].message.content == "Ada Lovelace" and headers["x-switchyard-deployment"] == "cheap"
    assert fake_openai.chat_models == ["gpt-4o-mini", "gpt-4.1-nano"]
    judged = fake_openai.requests[-1].json
    assert "It names a person." in judged["messages"][0]["content"] and "Ada Lovelace" in str(judged["messages"])
    assert rec.records[-1].losers and rec.records[-1].total_cost > rec.records[-1].cost  # the verifier is paid for
    fake_openai.requests.clear()
    fake_openai.replies["gpt-4.1-nano"] = "no"
    resp, headers = call(running, "verified")
    assert resp.choices[0].message.content == "Ada Lovelace (1843)" and headers["x-switchyard-deployment"] == "big"
    assert fake_openai.chat_models == ["gpt-4o-mini", "gpt-4.1-nano", "o3"]
    assert len(rec.records[-1].losers) == 2  # the cheap step and the verifier


def test_the_logprob_check_asks_for_logprobs(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    running, _ = gw
    fake_openai.replies.update({"gpt-4o-mini": "Ada", "o3": "Ada Lovelace"})
    _, headers = call(running, "confident")
    assert fake_openai.requests[0].json.get("logprobs") is True
    assert "mean logprob" in headers["x-switchyard-route-reason"]


def test_a_stream_sees_only_the_final_answer(gw: tuple[RunningGateway, ListRecorder],
                                             fake_openai: FakeOpenAI) -> None:
    running, rec = gw
    fake_openai.replies.update({"gpt-4o-mini": "definitely not json", "o3": GOOD})
    with openai.OpenAI(base_url=running.openai_base, api_key=USER_KEY, max_retries=0) as c:
        stream = c.chat.completions.create(model="extract", stream=True, stream_options={"include_usage": True},
                                           messages=[{"role": "user", "content": "Who? JSON please."}])
        chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == GOOD and "not json" not in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert fake_openai.chat_models == ["gpt-4o-mini", "o3"]
    assert fake_openai.requests[0].json.get("stream") in (None, False)  # the cheap step is buffered
    assert fake_openai.requests[1].json.get("stream") is True  # the final step streams for real
    r = rec.records[-1]
    assert r.status == "ok" and len(r.losers) == 1 and r.total_cost > r.cost > 0


def test_a_kept_answer_streams_back_in_the_anthropic_protocol(gw: tuple[RunningGateway, ListRecorder],
                                                              fake_openai: FakeOpenAI) -> None:
    running, rec = gw
    fake_openai.replies.update({"gpt-4o-mini": GOOD, "o3": "never"})
    with anthropic.Anthropic(base_url=running.url, api_key=USER_KEY, max_retries=0) as a, a.messages.stream(
            model="extract", max_tokens=100, messages=[{"role": "user", "content": "Who? JSON please."}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == GOOD and final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    assert fake_openai.chat_models == ["gpt-4o-mini"]
    assert rec.records[-1].deployment == "cheap" and rec.records[-1].status == "ok"


def test_the_budget_holds_every_step(fake_openai_server: FakeOpenAI) -> None:
    assert fake_openai_server.base_url is not None
    cfg = parse_config(config(fake_openai_server.base_url), "<test>", {})
    router = Router(Catalog.from_config(cfg), cfg)
    cheap, big = router.catalog.deployments["cheap"], router.catalog.deployments["big"]
    plan = router.plan("extract", set(), 1000, 100)
    e8, tokens = worst_case(plan, 1000, 100, 4096)
    assert e8 == round((1000 * (cheap.input_price + big.input_price) + 100 * (cheap.output_price + big.output_price))
                       * 1e8)
    assert tokens == 2 * 1100
    judge = router.catalog.deployments["judge"]
    e8v, _ = worst_case(router.plan("verified", set(), 1000, 100), 1000, 100, 4096)
    assert e8v > e8 and e8v - e8 == pytest.approx((1100 * judge.input_price + 8 * judge.output_price) * 1e8, abs=2)


@pytest.mark.parametrize(("route", "where"), [
    ({"strategy": "cascade", "targets": ["cheap", "big"]}, "needs a check"),
    ({"strategy": "cascade", "targets": ["cheap"], "check": {"type": "logprobs"}}, "at least two steps"),
    ({"strategy": "cascade", "targets": ["cheap", "big"], "check": {"type": "verifier"}}, "verifier"),
    ({"strategy": "cascade", "targets": ["cheap", "big"], "check": {"type": "verifier", "verifier": "nobody"}},
     "unknown deployment 'nobody'"),
    ({"strategy": "auto", "targets": ["cheap", "big"], "router": "r.bin"}, "go together"),
])
def test_bad_cascade_and_auto_routes_are_config_errors(fake_openai_server: FakeOpenAI, route: dict[str, Any],
                                                       where: str) -> None:
    assert fake_openai_server.base_url is not None
    with pytest.raises(ConfigError, match=where):
        parse_config(config(fake_openai_server.base_url, routes={"r": route}), "<test>", {})


def test_a_cascade_s_budget_holds_every_step_and_settles_both(tmp_path: Path) -> None:
    """Over HTTP with the embedded ledger: the hold is the sum of the steps' worst cases (a budget that covers the
    dearest step alone refuses before any call), and the settled spend is both steps' cost."""
    from decimal import Decimal

    from switchyard.config.ledger import SpoolSettings
    from switchyard.governance.spend import SpendWriter
    from switchyard.store import Store
    from tests.support.governance import Admin, store_url
    from tests.support.ledger import HI, budget_total, ledger_config, spend_of, tenant, wait_for

    route = {"strategy": "cascade", "targets": ["cheap", "exact"], "check": {"type": "json_schema"}}
    with store_url("sqlite", tmp_path) as url:
        store = Store.open(url)
        cfg = ledger_config(url, tmp_path / "spool", routes={"casc": route})
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp_path / "spool"), flush_interval=0.05))
        try:
            with run_gateway(cfg, recorder=writer) as running:
                admin = Admin(running.url)
                exact = running.gateway.catalog.deployments["exact"]
                dearest = 50 * exact.output_price  # its worst case: the prompt is free, 50 tokens out
                tight = tenant(admin, budget={"max_usd": round(dearest, 8), "period": "daily", "name": "tight"})
                roomy = tenant(admin, budget={"max_usd": 1.0, "period": "daily", "name": "roomy"})
                for t in (tight, roomy):
                    with openai.OpenAI(base_url=running.openai_base, api_key=t["secret"], max_retries=0) as c:
                        if t is tight:
                            with pytest.raises(openai.RateLimitError) as info:
                                c.chat.completions.create(model="casc", messages=HI, max_tokens=50)
                            assert info.value.body["code"] == "budget_exceeded"  # type: ignore[index]
                        else:
                            raw = c.chat.completions.with_raw_response.create(model="casc", messages=HI,
                                                                              max_tokens=50)
                            raw.parse()
                            assert raw.headers["x-switchyard-deployment"] == "exact"
                            assert "cheap escalated (not JSON)" in raw.headers["x-switchyard-route-reason"]
                wait_for(lambda: spend_of(store.engine, roomy["key"])[0] == 1)
                _, cost = spend_of(store.engine, roomy["key"])
                usd, requests = budget_total(store.engine, roomy["budget"]["id"])
                cheap = running.gateway.catalog.deployments["cheap"]
                assert requests == 1 and usd == cost
                assert cost > Decimal(str(round(dearest, 8)))  # the dear step's answer, plus the cheap step
                assert cost - Decimal(str(round(dearest, 8))) >= Decimal(str(round(50 * cheap.output_price, 8)))
                assert spend_of(store.engine, tight["key"])[0] in (0, 1)  # a refusal spends nothing
                assert budget_total(store.engine, tight["budget"]["id"])[0] == 0
                admin.close()
        finally:
            store.close()


def test_a_narrowing_binds_the_verifier(fake_openai_server: FakeOpenAI) -> None:
    """A stage (a policy, say) that keeps the request off the judge keeps the verifier from reading it: the check
    fails, and the next step answers."""
    from switchyard.stages import CallContext, Stage

    class OffTheJudge(Stage):
        def before(self, call: CallContext) -> None:
            call.narrow({"cheap", "big"}, "test: not the judge")

    assert fake_openai_server.base_url is not None
    fake_openai_server.reset()
    fake_openai_server.replies.update({"gpt-4o-mini": "Ada", "o3": "Ada Lovelace", "gpt-4.1-nano": "yes"})
    rec = ListRecorder()
    try:
        with run_gateway(config(fake_openai_server.base_url), recorder=rec, extra_stages=[OffTheJudge()]) as running:
            resp, headers = call(running, "verified")
        assert resp.choices[0].message.content == "Ada Lovelace" and headers["x-switchyard-deployment"] == "big"
        assert fake_openai_server.chat_models == ["gpt-4o-mini", "o3"]  # the judge never saw the request
        path = rec.records[-1].decisions["cascade"]  # type: ignore[index]
        assert path[0]["kept"] is False and "verifier failed" in path[0]["why"]
    finally:
        fake_openai_server.reset()


def test_a_policy_that_forbids_the_verifier_keeps_the_request_from_it(fake_openai_server: FakeOpenAI,
                                                                       tmp_path: Any) -> None:
    """The verifier reads the request, so it is one of the route's candidates for the policies: one that forbids it
    narrows it out (the check fails and the next step answers) even though every step is allowed."""
    (tmp_path / "p.cedar").write_text('@id("no-judge") forbid(principal, action, '
                                      'resource == Switchyard::Deployment::"judge");')
    assert fake_openai_server.base_url is not None
    fake_openai_server.reset()
    fake_openai_server.replies.update({"gpt-4o-mini": "Ada", "o3": "Ada Lovelace", "gpt-4.1-nano": "yes"})
    rec = ListRecorder()
    try:
        cfg = config(fake_openai_server.base_url, policies={"files": [str(tmp_path / "p.cedar")]})
        with run_gateway(cfg, recorder=rec) as running:
            resp, headers = call(running, "verified")
        assert resp.choices[0].message.content == "Ada Lovelace" and headers["x-switchyard-deployment"] == "big"
        assert fake_openai_server.chat_models == ["gpt-4o-mini", "o3"]  # the judge never saw the request
        assert "judge (no-judge)" in headers["x-switchyard-route-reason"]
        assert rec.records[-1].decisions["policy"]["denied"] == {"judge": ["no-judge"]}  # type: ignore[index]
    finally:
        fake_openai_server.reset()
