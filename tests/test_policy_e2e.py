"""The policy engine over HTTP with both official SDKs, plain and streamed: each example of issue 13's first
paragraph is a Cedar policy, and a recording fake upstream shows that no forbidden deployment was reached."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from switchyard.governance.auth import Principal
from switchyard.messages import Chunk
from switchyard.policy.stage import Policy, PolicyWithTools
from switchyard.stages import CallContext
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway

POLICIES = '''
@id("au-residency")
@reason("confidential data never leaves Australia")
forbid(principal, action, resource)
when { context.data_class == "confidential" && resource.region != "au" };

@id("zdr-confidential")
@reason("confidential data goes only to zero-data-retention deployments")
forbid(principal, action, resource)
when { context.data_class == "confidential" && !resource.zdr };

@id("interns-small")
@reason("the interns team may use only the small models")
forbid(principal in Switchyard::Team::"interns", action, resource)
unless { resource.tags.contains("small") };

@id("cost-cap")
@reason("no single request may cost over $2")
forbid(principal, action, resource)
when { context.estimated_cost_usd.greaterThan(decimal("2.0")) };

@id("working-hours")
@reason("no tool calls outside working hours")
forbid(principal, action == Switchyard::Action::"tool_call", resource)
when { context.hour < 9 || context.hour >= 17 };

@id("interns-embed-au")
@reason("interns embed only in Australia")
forbid(principal in Switchyard::Team::"interns", action == Switchyard::Action::"embed", resource)
when { resource.region != "au" };
'''

INTERN_KEY = "sk-test-intern-0123456789"
CONF_KEY = "sk-test-confidential-0123456789"
PRINCIPALS = {
    INTERN_KEY: Principal(id="vk_intern", name="intern", key_id="vk_intern", team_id="interns", org_id="acme"),
    CONF_KEY: Principal(id="vk_conf", name="conf", key_id="vk_conf", data_class="confidential"),
}
HI = [{"role": "user", "content": "hello there"}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {
    "q": {"type": "string"}}}}}
ATOOL = {"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}


async def _resolve(key: str, digest: str) -> Principal | None:
    return PRINCIPALS.get(key)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(models=["small-us", "big-au", "big-au-nozdr", "embed-us", "embed-au"])
    with fake.serve():
        yield fake


@pytest.fixture(scope="module")
def gw(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    d: Path = tmp_path_factory.mktemp("policies")
    (d / "main.cedar").write_text(POLICIES)
    up = {"type": "openai", "base_url": f"{upstream.base_url}/v1", "api_key": "sk-upstream"}
    cfg = base_config(
        providers={"up": up},
        deployments=[
            {"name": "us-small", "provider": "up", "model": "small-us", "region": "us", "tags": ["small"],
             "price": {"input": 0.1, "output": 0.2}},
            {"name": "au-nozdr", "provider": "up", "model": "big-au-nozdr", "region": "au",
             "price": {"input": 1.0, "output": 2.0}},
            {"name": "au-big", "provider": "up", "model": "big-au", "region": "au", "zdr": True,
             "price": {"input": 100.0, "output": 400.0}},
            {"name": "emb-us", "provider": "up", "model": "embed-us", "region": "us", "tags": ["small"],
             "capabilities": ["embeddings"], "price": {"input": 0.02}},
            {"name": "emb-au", "provider": "up", "model": "embed-au", "region": "au", "tags": ["small"],
             "capabilities": ["embeddings"], "price": {"input": 0.02}},
        ],
        routes={"chat": {"targets": ["us-small", "au-nozdr", "au-big"], "strategy": "priority"},
                "embed": {"targets": ["emb-us", "emb-au"], "strategy": "priority"}},
        policies={"files": [str(d / "main.cedar")]},
    )
    with run_gateway(cfg) as running:
        running.gateway.auth.add_resolver(_resolve)
        yield running


@pytest.fixture(autouse=True)
def _reset(upstream: FakeOpenAI, gw: RunningGateway) -> Iterator[None]:
    upstream.reset()
    stage = policy_stage_of(gw)
    stage.clock = lambda: datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    yield


def policy_stage_of(gw: RunningGateway) -> Policy:
    return next(s for s in gw.gateway.chain.stages if isinstance(s, Policy))


def reached(upstream: FakeOpenAI) -> list[str]:
    return [r.json["model"] for r in upstream.requests_to("/chat/completions")]


def oai(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)


def ant(gw: RunningGateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)


def chat(gw: RunningGateway, protocol: str, key: str, stream: bool, **kw: Any) -> tuple[str, dict[str, str]]:
    """One call; the deployment that served and the response headers."""
    if protocol == "openai":
        with oai(gw, key) as c:
            if stream:
                with c.chat.completions.with_streaming_response.create(model=kw.pop("model", "chat"), messages=HI,
                                                                      stream=True, **kw) as r:
                    list(r.iter_lines())
                    return r.headers["x-switchyard-deployment"], dict(r.headers)
            raw = c.chat.completions.with_raw_response.create(model=kw.pop("model", "chat"), messages=HI, **kw)
            raw.parse()
            return raw.headers["x-switchyard-deployment"], dict(raw.headers)
    model, max_tokens = kw.pop("model", "chat"), kw.pop("max_tokens", 100)
    with ant(gw, key) as a:
        if stream:
            with a.messages.with_streaming_response.create(model=model, max_tokens=max_tokens,
                                                           messages=HI, stream=True, **kw) as r:
                list(r.iter_lines())
                return r.headers["x-switchyard-deployment"], dict(r.headers)
        raw2 = a.messages.with_raw_response.create(model=model, max_tokens=max_tokens, messages=HI, **kw)
        raw2.parse()
        return raw2.headers["x-switchyard-deployment"], dict(raw2.headers)


BOTH = [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)]


@pytest.mark.parametrize(("protocol", "stream"), BOTH)
def test_confidential_data_stays_in_australia_on_zero_retention(gw: RunningGateway, upstream: FakeOpenAI,
                                                                 protocol: str, stream: bool) -> None:
    dep, headers = chat(gw, protocol, CONF_KEY, stream, max_tokens=10)
    assert dep == "au-big"
    assert reached(upstream) == ["big-au"]  # never the US one, never the AU one that retains data
    assert "au-residency" in headers["x-switchyard-policy"] and "zdr-confidential" in headers["x-switchyard-policy"]
    reason = headers["x-switchyard-route-reason"]
    assert "us-small (" in reason and "au-residency" in reason and "au-nozdr (zdr-confidential)" in reason


@pytest.mark.parametrize(("protocol", "stream"), BOTH)
def test_interns_use_only_the_small_models(gw: RunningGateway, upstream: FakeOpenAI, protocol: str,
                                           stream: bool) -> None:
    dep, _ = chat(gw, protocol, INTERN_KEY, stream)
    assert dep == "us-small"
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)) as e:
        chat(gw, protocol, INTERN_KEY, stream, model="au-big")
    body: Any = e.value.body
    err = body if protocol == "openai" else body["error"]
    assert err.get("code", "policy_denied") == "policy_denied" if protocol == "openai" else err["type"]
    assert "interns-small" in err["message"] and "only the small models" in err["message"]
    assert "unless" not in err["message"]  # never the policy text
    assert reached(upstream) == ["small-us"]


@pytest.mark.parametrize(("protocol", "stream"), BOTH)
def test_no_request_costs_over_two_dollars(gw: RunningGateway, upstream: FakeOpenAI, protocol: str,
                                           stream: bool) -> None:
    # au-big: 400 USD per million output tokens; 10000 tokens of output cost 4 USD at worst
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)) as e:
        chat(gw, protocol, USER_KEY, stream, model="au-big", max_tokens=10000)
    assert "cost-cap" in str(e.value) and "over $2" in str(e.value)
    dep, _ = chat(gw, protocol, USER_KEY, stream, model="au-big", max_tokens=10)  # 0.004 USD: fine
    assert dep == "au-big"
    assert reached(upstream) == ["big-au"]


@pytest.mark.parametrize(("protocol", "stream"), BOTH)
def test_no_tool_calls_outside_working_hours(gw: RunningGateway, upstream: FakeOpenAI, protocol: str,
                                             stream: bool) -> None:
    tools = {"tools": [TOOL] if protocol == "openai" else [ATOOL]}
    dep, _ = chat(gw, protocol, USER_KEY, stream, model="us-small", **tools)  # 11:00: fine
    assert dep == "us-small" and len(reached(upstream)) == 1
    policy_stage_of(gw).clock = lambda: datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)) as e:
        chat(gw, protocol, USER_KEY, stream, model="us-small", **tools)
    assert "working-hours" in str(e.value) and "outside working hours" in str(e.value)
    assert len(reached(upstream)) == 1  # refused before the call
    chat(gw, protocol, USER_KEY, stream, model="us-small")  # no tools: fine at 20:00


def test_a_tool_call_in_a_reply_after_hours_is_refused(gw: RunningGateway, upstream: FakeOpenAI) -> None:
    """The tool definitions pass at 16:59; the model's tool call comes at 17:00 and is refused."""
    times = iter([datetime(2026, 12, 4, 16, 59, tzinfo=UTC)])
    policy_stage_of(gw).clock = lambda: next(times, datetime(2026, 12, 4, 17, 0, tzinfo=UTC))
    with oai(gw, USER_KEY) as c, pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="us-small", messages=HI, tools=[TOOL])  # type: ignore[list-item]
    assert "lookup" in str(e.value) and "working-hours" in str(e.value)
    times = iter([datetime(2026, 12, 4, 16, 59, tzinfo=UTC)])
    with oai(gw, USER_KEY) as c:
        s = c.chat.completions.create(model="us-small", messages=HI, tools=[TOOL], stream=True)  # type: ignore[list-item]
        with pytest.raises(openai.APIError) as e2:
            for _ in s:
                pass
    assert "working-hours" in str(e2.value)


def test_embeddings_are_narrowed_and_refused_by_a_policy_on_the_embed_action(gw: RunningGateway,
                                                                              upstream: FakeOpenAI) -> None:
    with oai(gw, USER_KEY) as c:  # no policy speaks of this key: the route's first target serves
        raw = c.embeddings.with_raw_response.create(model="embed", input=["hello"])
        assert len(raw.parse().data) == 1 and raw.headers["x-switchyard-deployment"] == "emb-us"
    with oai(gw, INTERN_KEY) as c:
        raw = c.embeddings.with_raw_response.create(model="embed", input=["hello", "world"])
        assert len(raw.parse().data) == 2
        assert raw.headers["x-switchyard-deployment"] == "emb-au"  # narrowed: emb-us is forbidden for interns
        assert "emb-us (interns-embed-au)" in raw.headers["x-switchyard-route-reason"]
        assert raw.headers["x-switchyard-policy"] == "interns-embed-au"
        with pytest.raises(openai.PermissionDeniedError) as e:
            c.embeddings.create(model="emb-us", input="hello")
    body: Any = e.value.body
    assert body["code"] == "policy_denied" and "interns-embed-au (interns embed only in Australia)" in body["message"]
    assert e.value.response.headers["x-switchyard-policy"] == "interns-embed-au"
    with oai(gw, INTERN_KEY) as c:  # the chat policies do not apply to embeddings, nor this one to chat
        assert c.chat.completions.with_raw_response.create(model="us-small", messages=HI).headers[
            "x-switchyard-deployment"] == "us-small"
    assert [r.json["model"] for r in upstream.requests_to("/embeddings")] == ["embed-us", "embed-au"]


@pytest.mark.parametrize(("protocol", "stream"), BOTH)
def test_a_policy_denial_names_the_policies_in_its_header(gw: RunningGateway, upstream: FakeOpenAI, protocol: str,
                                                         stream: bool) -> None:
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)) as e:
        chat(gw, protocol, INTERN_KEY, stream, model="au-big")
    assert e.value.status_code == 403
    assert e.value.response.headers["x-switchyard-policy"] == "interns-small"
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)) as e:
        chat(gw, protocol, CONF_KEY, stream, model="us-small", max_tokens=10)
    assert set(e.value.response.headers["x-switchyard-policy"].split(",")) == {"au-residency", "zdr-confidential"}
    assert reached(upstream) == []


def test_a_refused_tool_call_in_a_reply_names_the_policy_in_its_header(gw: RunningGateway) -> None:
    times = iter([datetime(2026, 12, 4, 16, 59, tzinfo=UTC)])
    policy_stage_of(gw).clock = lambda: next(times, datetime(2026, 12, 4, 17, 0, tzinfo=UTC))
    with oai(gw, USER_KEY) as c, pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="us-small", messages=HI, tools=[TOOL])  # type: ignore[list-item]
    assert e.value.response.headers["x-switchyard-policy"] == "working-hours"


def test_an_org_policy_set_added_later_checks_the_tool_calls_of_replies(upstream: FakeOpenAI,
                                                                         tmp_path: Path) -> None:
    """The config's policies say nothing of tool_call; an org's set, swapped in while serving, does: the stage
    (always the one with reply checks) starts checking that org's replies, and leaves other streams untouched."""
    (tmp_path / "p.cedar").write_text('@id("no-au") forbid(principal, action in [Switchyard::Action::"chat", '
                                      'Switchyard::Action::"embed"], resource) when { resource.region == "au" };')
    up = {"type": "openai", "base_url": f"{upstream.base_url}/v1", "api_key": "sk-upstream"}
    cfg = base_config(providers={"up": up},
                      deployments=[{"name": "us-small", "provider": "up", "model": "small-us", "region": "us"}],
                      policies={"files": [str(tmp_path / "p.cedar")]})
    with run_gateway(cfg) as g:
        g.gateway.auth.add_resolver(_resolve)
        stage = policy_stage_of(g)
        assert isinstance(stage, PolicyWithTools)
        with oai(g, INTERN_KEY) as c:  # acme's key: a tool call in the reply passes (nothing concerns tool_call)
            r = c.chat.completions.create(model="us-small", messages=HI, tools=[TOOL])  # type: ignore[list-item]
            assert r.choices[0].message.tool_calls
        call = CallContext("req_t1", principal=PRINCIPALS[INTERN_KEY])
        relay = _chunks()
        assert g.gateway.chain.wrap_stream(call, relay) is relay  # no layer around the stream
        times = iter([datetime(2026, 12, 4, 16, 59, tzinfo=UTC)])
        stage.clock = lambda: next(times, datetime(2026, 12, 4, 17, 0, tzinfo=UTC))
        stage.engine = stage.engine.with_org_sets({"acme": '@id("late") @reason("no tools late") forbid(principal, '
                                                   'action == Switchyard::Action::"tool_call", resource) when '
                                                   '{ context.hour >= 17 };'})
        assert g.gateway.chain.wrap_stream(call, relay) is not relay
        other = CallContext("req_t2", principal=PRINCIPALS[CONF_KEY])  # no org: the config's policies only
        assert g.gateway.chain.wrap_stream(other, relay) is relay
        with oai(g, INTERN_KEY) as c, pytest.raises(openai.PermissionDeniedError) as e:
            c.chat.completions.create(model="us-small", messages=HI, tools=[TOOL])  # type: ignore[list-item]
        assert "org:acme/late (no tools late)" in str(e.value)
        assert e.value.response.headers["x-switchyard-policy"] == "org:acme/late"
        times = iter([datetime(2026, 12, 4, 16, 59, tzinfo=UTC)])
        with oai(g, INTERN_KEY) as c:
            s = c.chat.completions.create(model="us-small", messages=HI, tools=[TOOL],  # type: ignore[list-item]
                                          stream=True)
            with pytest.raises(openai.APIError) as e2:
                for _ in s:
                    pass
        assert "org:acme/late" in str(e2.value)


async def _chunks() -> AsyncIterator[Chunk]:
    return
    yield


@pytest.mark.parametrize(("protocol", "stream"), [("openai", False), ("anthropic", True)])
def test_model_auto_chooses_only_among_the_deployments_the_policies_allow(gw: RunningGateway, upstream: FakeOpenAI,
                                                                          protocol: str, stream: bool) -> None:
    """``model: "auto"`` names no route: its candidates are every chat deployment, and the policies judge each."""
    for _ in range(3):
        dep, headers = chat(gw, protocol, CONF_KEY, stream, model="auto", max_tokens=10)
        assert dep == "au-big"  # the only chat deployment in Australia with zero retention
        assert "au-residency" in headers["x-switchyard-policy"]
    assert set(reached(upstream)) == {"big-au"}
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)):
        chat(gw, protocol, CONF_KEY, stream, model="auto", max_tokens=100000)  # too dear there: nothing is left
