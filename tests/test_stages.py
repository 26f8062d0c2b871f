"""The stage protocol (``switchyard/stages.py``): custom stages added through the app factory's list, over HTTP with
the official SDKs. Each test makes a stage do one thing a stage may do, and watches it from outside: the error the
caller gets, the body a fake upstream receives, the routing headers, the call records."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from switchyard.config import parse_config
from switchyard.errors import PermissionDenied
from switchyard.messages import (
    ChatRequest,
    ChatResponse,
    Choice,
    Chunk,
    FinishReason,
    Message,
    Role,
    StreamStart,
    TextDelta,
    TextPart,
    Usage,
    UsageUpdate,
)
from switchyard.pipeline import CallContext
from switchyard.server.factory import build_gateway
from switchyard.stages import Chain, Outcome, Stage
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, ListRecorder, base_config, run_gateway

HI = [{"role": "user", "content": "hello there"}]


def config(upstream: str | None = None) -> dict[str, Any]:
    providers: dict[str, Any] = {"sim": {"type": "simulated", "output_tokens": 4}}
    deployments: list[dict[str, Any]] = [
        {"name": "sim-a", "provider": "sim", "price": {"input": 1.0, "output": 2.0}},
        {"name": "sim-b", "provider": "sim", "price": {"input": 1.0, "output": 2.0}},
    ]
    if upstream is not None:
        providers["up"] = {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream-secret"}
        deployments.append({"name": "gpt-4o-mini", "provider": "up"})
    return base_config(providers=providers, deployments=deployments,
                       routes={"both": {"targets": ["sim-a", "sim-b"], "strategy": "priority"}})


def records_of(rec: ListRecorder, n: int) -> list[Any]:
    for _ in range(200):  # a stream's record is written when its relay ends, just after the last byte
        if len(rec.records) >= n:
            break
        time.sleep(0.01)
    return rec.records


# --- refuse -----------------------------------------------------------------------------------------------------


class NoShouting(Stage):
    def before(self, call: CallContext) -> None:
        req = call.request
        assert isinstance(req, ChatRequest)
        for m in req.messages:
            for p in m.parts:
                if isinstance(p, TextPart) and p.text.isupper():
                    raise PermissionDenied("Shouting is not allowed here.", param="messages", code="shouting")


def test_a_refusal_is_rendered_in_each_protocol_and_recorded() -> None:
    rec = ListRecorder()
    with run_gateway(config(), recorder=rec, extra_stages=[NoShouting()]) as gw:
        with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as oc:
            with pytest.raises(openai.PermissionDeniedError) as e:
                oc.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": "HELLO"}])
            body: Any = e.value.body
            assert e.value.status_code == 403
            assert body["code"] == "shouting" and body["param"] == "messages"
            ok = oc.chat.completions.create(model="sim-a", messages=HI)
            assert ok.choices[0].message.content
        with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as ac:
            with pytest.raises(anthropic.PermissionDeniedError) as ae:
                ac.messages.create(model="sim-a", max_tokens=10, messages=[{"role": "user", "content": "HELLO"}])
            abody: Any = ae.value.body
            assert abody["type"] == "error" and abody["error"]["type"] == "permission_error"
            assert "Shouting" in abody["error"]["message"]
    statuses = [(r.status, r.http_status, r.deployment) for r in records_of(rec, 3)]
    assert statuses == [("error", 403, None), ("ok", 200, "sim-a"), ("error", 403, None)]


# --- rewrite ----------------------------------------------------------------------------------------------------


class Polite(Stage):
    """Rewrites every user text part; the raw body must go, or an OpenAI upstream would get the caller's own."""

    def before(self, call: CallContext) -> None:
        req = call.request
        assert isinstance(req, ChatRequest) and req.raw is not None  # an OpenAI caller's body, for pass-through
        msgs = [Message(m.role, [TextPart("please: " + p.text) if isinstance(p, TextPart) else p for p in m.parts])
                if m.role == Role.USER else m for m in req.messages]
        req.messages = msgs
        call.rewrite(req)


def test_a_rewrite_drops_raw_so_the_upstream_gets_the_neutral_fields(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    with (run_gateway(config(fake_openai.base_url), extra_stages=[Polite()]) as gw,
          openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as oc):
        oc.chat.completions.create(model="gpt-4o-mini", messages=HI)
    sent = fake_openai.last_request.json
    assert sent["messages"][-1]["content"] in ("please: hello there",
                                              [{"type": "text", "text": "please: hello there"}])


# --- narrow -----------------------------------------------------------------------------------------------------


class OnlyB(Stage):
    def before(self, call: CallContext) -> None:
        call.narrow(lambda name: name == "sim-b", "tenant pinned to sim-b")


def test_a_narrowing_skips_deployments_and_says_why() -> None:
    with run_gateway(config(), extra_stages=[OnlyB()]) as gw:
        r = httpx.post(gw.openai_base + "/chat/completions", headers={"authorization": f"Bearer {USER_KEY}"},
                       json={"model": "both", "messages": HI}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["x-switchyard-deployment"] == "sim-b"
        why = r.headers["x-switchyard-route-reason"]
        assert "narrowed: tenant pinned to sim-b" in why and "sim-a (narrowed out)" in why
        r = httpx.post(gw.openai_base + "/chat/completions", headers={"authorization": f"Bearer {USER_KEY}"},
                       json={"model": "sim-a", "messages": HI}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "no_suitable_deployment"
        assert "tenant pinned to sim-b" in r.json()["error"]["message"]


# --- short circuit ----------------------------------------------------------------------------------------------


class Canned(Stage):
    """Answers every request itself (what a cache does on a hit)."""

    def __init__(self) -> None:
        self.seen: list[Outcome] = []

    async def before(self, call: CallContext) -> ChatResponse | list[Chunk]:  # type: ignore[override]
        req = call.request
        assert isinstance(req, ChatRequest)
        usage = Usage(input_tokens=3, output_tokens=2)
        if req.stream:
            return [Chunk([StreamStart("cached-1", req.model, 0)]), Chunk([TextDelta("from the cache")]),
                    Chunk([UsageUpdate(usage)])]
        msg = Message(Role.ASSISTANT, [TextPart("from the cache")])
        return ChatResponse("cached-1", req.model, 0, [Choice(0, msg, FinishReason.STOP)], usage)

    def after(self, call: CallContext, outcome: Outcome) -> None:
        self.seen.append(outcome)


def test_a_short_circuit_calls_no_upstream_and_is_still_recorded(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    rec = ListRecorder()
    canned = Canned()
    with (run_gateway(config(fake_openai.base_url), recorder=rec, extra_stages=[canned]) as gw,
          openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as oc):
        raw = oc.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        assert raw.parse().choices[0].message.content == "from the cache"
        assert raw.headers["x-switchyard-route-reason"] == "answered by a stage; not routed"
        text = "".join(c.choices[0].delta.content or "" for c in oc.chat.completions.create(
            model="gpt-4o-mini", messages=HI, stream=True) if c.choices)
        assert text == "from the cache"
    assert fake_openai.requests == []
    records = records_of(rec, 2)
    assert [(r.status, r.deployment, r.usage.output_tokens) for r in records] == [("ok", None, 2), ("ok", None, 2)]
    assert [o.status for o in canned.seen] == ["ok", "ok"]


# --- observe ----------------------------------------------------------------------------------------------------


class Meter(Stage):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, int, float]] = []

    def after(self, call: CallContext, outcome: Outcome) -> None:
        dep = call.deployment.name if call.deployment is not None else None
        self.seen.append((outcome.status, dep, outcome.usage.output_tokens, outcome.cost))


def test_after_sees_usage_and_cost_once_per_call() -> None:
    meter = Meter()
    with (run_gateway(config(), extra_stages=[meter]) as gw,
          openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as oc):
        r = oc.chat.completions.create(model="sim-a", messages=HI)
        with pytest.raises(openai.NotFoundError):
            oc.chat.completions.create(model="nope", messages=HI)
    assert r.usage is not None
    (status, dep, out, cost), (status2, dep2, _, cost2) = meter.seen
    assert (status, dep, out) == ("ok", "sim-a", r.usage.completion_tokens)
    assert cost == pytest.approx((r.usage.prompt_tokens * 1.0 + r.usage.completion_tokens * 2.0) / 1e6)
    assert (status2, dep2, cost2) == ("error", None, 0.0)


# --- wrap -------------------------------------------------------------------------------------------------------


class Upper(Stage):
    """Transforms each text delta on its way out (what restoring redacted text does)."""

    async def _upper(self, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        async for chunk in chunks:
            for ev in chunk.events:
                if isinstance(ev, TextDelta):
                    ev.text = ev.text.upper()
                    chunk.raw = None  # the events changed: the renderer must not send the upstream's own chunk
            yield chunk

    def wrap(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        return self._upper(chunks)


def test_a_wrapping_stage_transforms_the_stream_in_both_protocols(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    rec = ListRecorder()
    with run_gateway(config(fake_openai.base_url), recorder=rec, extra_stages=[Upper()]) as gw:
        with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as oc:
            text = "".join(c.choices[0].delta.content or "" for c in oc.chat.completions.create(
                model="gpt-4o-mini", messages=HI, stream=True) if c.choices)
        assert text == text.upper() and "HELLO THERE" in text
        with (anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as ac,
              ac.messages.stream(model="sim-a", max_tokens=20, messages=HI) as s):
            atext = "".join(s.text_stream)
        assert atext and atext == atext.upper()
    assert [r.status for r in records_of(rec, 2)] == ["ok", "ok"]


# --- the chain itself -------------------------------------------------------------------------------------------


class Nothing(Stage):
    pass


def test_a_stage_is_only_in_the_tuples_of_the_hooks_it_overrides() -> None:
    nothing, meter, upper, refuse = Nothing(), Meter(), Upper(), NoShouting()
    chain = Chain([nothing, refuse, meter, upper])
    assert chain.stages == (nothing, refuse, meter, upper)
    assert chain.before == (refuse,) and chain.after == (meter,) and chain.wrap == (upper,)
    assert chain.admit == () and chain.routed == ()
    assert Chain([meter, Canned()]).after[0].__class__ is Canned  # after hooks unwind: the last declared first
    with pytest.raises(ValueError, match="admits callers"):
        class Late(Stage):
            def admit(self, call: CallContext) -> None:
                return None
        Chain([meter, Late()])


async def test_without_a_wrapping_stage_the_stream_is_not_wrapped() -> None:
    cfg = parse_config(config(), "<t>", {})
    gw = build_gateway(cfg, extra_stages=[Meter()])
    # only the policy stage may wrap (per call: when the caller's org's policies concern tool calls; none here)
    assert [type(s).__name__ for s in gw.chain.wrap] == ["PolicyWithTools"]
    relays: list[AsyncIterator[Chunk]] = []
    follow = gw._follow

    def spy(*args: Any, **kwargs: Any) -> AsyncIterator[Chunk]:
        relays.append(follow(*args, **kwargs))
        return relays[-1]

    gw._follow = spy  # type: ignore[method-assign]
    ctx = CallContext("req_s")
    await gw.authenticate(ctx, USER_KEY)
    req = ChatRequest(model="sim-a", messages=[Message(Role.USER, [TextPart("hi")])], wire="openai", stream=True)
    out = await gw.chat_stream(ctx, req)
    assert out is relays[0]  # the relay itself: no layer around it
    assert [c async for c in out]
    wrapped = build_gateway(cfg, extra_stages=[Upper()])
    assert wrapped.chain.wrap and wrapped.chain.wrap_stream(ctx, relays[0]) is not relays[0]


@pytest.mark.parametrize("recorder", [True, False])
def test_the_factory_leaves_out_what_the_configuration_does_not_use(recorder: bool) -> None:
    cfg = parse_config(base_config(governance={"enabled": False}), "<t>", {})
    gw = build_gateway(cfg, recorder=ListRecorder() if recorder else None)
    names = [type(s).__name__ for s in gw.chain.stages]
    expected = ["Authenticate", "Telemetry", "AllowList", "Record"] if recorder else [
        "Authenticate", "Telemetry", "AllowList"]
    assert names == expected
    assert gw.ledger is None and gw.governance is None
