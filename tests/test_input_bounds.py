"""Every size a caller controls is bounded, with a 400 naming the parameter (``switchyard.bounds``); JSON nested
deeper than ``MAX_JSON_DEPTH`` is refused before anything recurses into it; and nothing a caller sends (a bad
``x-switchyard-timeout``, a request the upstream refuses, a request the gateway refuses) counts against a
deployment's breaker, so no tenant can make a shared deployment unavailable to the others."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from switchyard.bounds import (
    MAX_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    MAX_JSON_DEPTH,
    MAX_MESSAGES,
    MAX_OUTPUT_TOKENS,
    MAX_STOP,
    MAX_TOOLS,
    MAX_TOOLS_OPENAI,
    too_deep,
)
from switchyard.config import SimulatedProviderConfig
from switchyard.errors import InvalidRequest
from switchyard.messages import ChatRequest, EmbeddingRequest, Message, Role, TextPart, Tool
from switchyard.providers.base import Target
from switchyard.providers.simulated import SimulatedProvider
from switchyard.routing.health import CLOSED, OPEN
from tests.support.chaos import scripted_router
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import MASTER_KEY, USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.servers import free_port, run_process

OTHER_KEY = "sk-test-other-tenant-0123"
HI: Any = [{"role": "user", "content": "hi"}]
# A breaker that opens at the second failure in a row and stays open: one miscounted 4xx shows.
TOUCHY = {"breaker": {"consecutive_failures": 2, "cooldown_s": 300, "cooldown_max_s": 300}}


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    cfg = base_config(
        keys=[{"key": USER_KEY, "name": "user"}, {"key": OTHER_KEY, "name": "other"}],
        providers={"sim": {"type": "simulated", "output_tokens": 3}},
        deployments=[
            {"name": "sim-chat", "provider": "sim"},
            {"name": "sim-capped", "provider": "sim", "max_output_tokens": 1000},
            {"name": "emb", "provider": "sim", "capabilities": ["embeddings"]},
        ],
        routes={"capped-only": {"targets": ["sim-capped"]},
                "mixed": {"strategy": "priority", "targets": ["sim-capped", "sim-chat"]}},
        routing=TOUCHY,
    )
    with run_gateway(cfg) as running:
        yield running


@pytest.fixture
def oai(gw: RunningGateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
def ant(gw: RunningGateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as c:
        yield c


def bad_request(call: Any, **kw: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as info:
        call(**kw)
    return info.value


def tool(i: int) -> dict[str, Any]:
    return {"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}}


# --- the chat completions bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 129}, "n"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"max_tokens": MAX_OUTPUT_TOKENS + 1}, "max_tokens"),
    ({"max_completion_tokens": 10**12}, "max_completion_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"tools": [tool(i) for i in range(MAX_TOOLS_OPENAI + 1)]}, "tools"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ({"metadata": {"k": {"nested": "object"}}}, "metadata.k"),
])
def test_each_chat_bound_is_a_400_naming_its_parameter(oai: openai.OpenAI, extra: dict[str, Any],
                                                       param: str) -> None:
    err = bad_request(oai.chat.completions.create, model="sim-chat", messages=HI, **extra)
    assert err.status_code == 400 and err.param == param, err.body
    assert param.split(".")[0] in err.message


def test_too_many_messages(oai: openai.OpenAI) -> None:
    err = bad_request(oai.chat.completions.create, model="sim-chat", messages=HI * (MAX_MESSAGES + 1))
    assert err.param == "messages" and str(MAX_MESSAGES) in err.message


def test_every_bound_itself_is_accepted(oai: openai.OpenAI) -> None:
    reply = oai.chat.completions.create(
        model="sim-chat", messages=HI * 50, n=128, top_logprobs=20, logprobs=True, max_tokens=MAX_OUTPUT_TOKENS,
        stop=["w", "x", "y", "z"], metadata={f"{i:064d}": "v" * 512 for i in range(16)})
    assert len(reply.choices) == 128


def test_max_tokens_over_a_deployments_output_limit(gw: RunningGateway, oai: openai.OpenAI) -> None:
    for model in ("sim-capped", "capped-only"):
        err = bad_request(oai.chat.completions.create, model=model, messages=HI, max_tokens=1001)
        assert err.param == "max_tokens" and "1000" in err.message, err.body
    # in a route, a deployment with a lower limit is skipped, not fatal
    raw = oai.chat.completions.with_raw_response.create(model="mixed", messages=HI, max_tokens=5000)
    assert "sim-capped (output limit 1000" in raw.headers["x-switchyard-route-reason"]
    assert raw.parse().choices[0].finish_reason == "stop"
    assert oai.chat.completions.create(model="sim-capped", messages=HI, max_tokens=1000).choices


# --- embeddings --------------------------------------------------------------------------------------------------


def test_dimensions_over_the_bound(oai: openai.OpenAI) -> None:
    # (the absurd values of the report are sent to a separate, memory-capped process below: a regression must not
    # take this test process's memory)
    for dims in (MAX_DIMENSIONS + 1, 100_000):
        err = bad_request(oai.embeddings.create, model="emb", input=["x"], dimensions=dims)
        assert err.param == "dimensions" and str(MAX_DIMENSIONS) in err.message
    assert len(oai.embeddings.create(model="emb", input=["x"], dimensions=MAX_DIMENSIONS).data[0].embedding) \
        == MAX_DIMENSIONS


def test_embedding_inputs_are_bounded(oai: openai.OpenAI) -> None:
    err = bad_request(oai.embeddings.create, model="emb", input=["x"] * (MAX_EMBEDDING_INPUTS + 1))
    assert err.param == "input"
    # within both bounds, but more numbers than the simulated provider builds in one reply: its own 400
    err = bad_request(oai.embeddings.create, model="emb", input=["x"] * 300, dimensions=MAX_DIMENSIONS)
    assert err.param == "dimensions" and "values per reply" in err.message


def test_the_gateway_process_stays_small(tmp_path: Path) -> None:
    """`switchyard serve` as a real process, its address space capped (so that a regression fails here rather
    than taking the machine's memory): the requests that once took it to 23.5 GB get a 400 at once, and its peak
    resident size barely moves."""
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(f"store: sqlite:///{tmp_path}/s.db\nkeys: [{{key: {USER_KEY}, name: u}}]\n"
                      "providers: {sim: {type: simulated}}\n"
                      "deployments: [{name: emb, provider: sim, capabilities: [embeddings]}]\n")
    cap = 1536 << 20
    launcher = (f"import resource, runpy; resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap})); "
                "runpy.run_module('switchyard.cli.main', run_name='__main__')")
    cmd = [sys.executable, "-c", launcher, "serve", "--config", str(config), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with run_process(cmd, f"{base}/health/ready", cwd=tmp_path, timeout=30) as proc, \
            openai.OpenAI(base_url=f"{base}/v1", api_key=USER_KEY, max_retries=0) as client:
        assert client.embeddings.create(model="emb", input=["warm"], dimensions=64).data
        start = _peak_rss(proc.proc.pid)
        for dims in (34029953201, 4_000_000):
            started = time.monotonic()
            err = bad_request(client.embeddings.create, model="emb", input=["x"], dimensions=dims)
            assert err.param == "dimensions"
            assert time.monotonic() - started < 10  # generous: the point is that nothing grows with dims
        assert _peak_rss(proc.proc.pid) - start < 64 << 20


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_the_simulated_provider_enforces_the_same_bounds() -> None:
    sim = SimulatedProvider("sim", SimulatedProviderConfig(type="simulated"))
    target = Target(deployment="d", model="m")
    # values over each bound that a regression could still afford to serve: it fails this test, not the machine
    for req, param in ((EmbeddingRequest(model="m", input=["x"], wire="test", dimensions=MAX_DIMENSIONS + 1),
                        "dimensions"),
                       (EmbeddingRequest(model="m", input=["x"] * 300, wire="test", dimensions=MAX_DIMENSIONS),
                        "dimensions"),
                       (EmbeddingRequest(model="m", input=["x"] * (MAX_EMBEDDING_INPUTS + 1), wire="test"), "input")):
        with pytest.raises(InvalidRequest) as info:
            await sim.embed(req, target)
        assert info.value.param == param
    msg = [Message(Role.USER, [TextPart("hi")])]
    for field, value in (("n", 129), ("max_tokens", 10**12), ("top_logprobs", 21), ("stop", ["s"] * 100),
                         ("tools", [Tool(name=f"t{i}") for i in range(MAX_TOOLS + 1)]),
                         ("messages", msg * (MAX_MESSAGES + 1))):
        req = ChatRequest(model="m", messages=msg, wire="test")
        setattr(req, field, value)
        with pytest.raises(InvalidRequest) as info:
            await sim.chat(req, target)
        assert info.value.param == field
        with pytest.raises(InvalidRequest):
            await anext(aiter(sim.stream(req, target)))


# --- the Anthropic Messages bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "field"), [
    ({"max_tokens": MAX_OUTPUT_TOKENS + 1}, "max_tokens"),
    ({"messages": HI * (MAX_MESSAGES + 1)}, "messages"),
    ({"tools": [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(MAX_TOOLS + 1)]}, "tools"),
    ({"stop_sequences": ["s"] * (MAX_STOP + 1)}, "stop_sequences"),
    ({"metadata": {"user_id": "u" * 513}}, "metadata.user_id"),
    ({"thinking": {"type": "enabled", "budget_tokens": MAX_OUTPUT_TOKENS + 1}}, "thinking.budget_tokens"),
])
def test_each_messages_bound_is_a_400_naming_its_field(ant: anthropic.Anthropic, extra: dict[str, Any],
                                                        field: str) -> None:
    body: dict[str, Any] = {"model": "sim-chat", "max_tokens": 10, "messages": HI, **extra}
    with pytest.raises(anthropic.BadRequestError) as info:
        ant.messages.create(**body, timeout=30)
    assert info.value.status_code == 400
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert f"'{field}'" in info.value.message


# --- JSON nesting ------------------------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """JSON text of objects nested ``depth`` deep (built as text: the json module would recurse)."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def _messages_tool_use(inner: str) -> str:
    return ('{"model": "sim-chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}, '
            '{"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": ' + inner
            + '}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]}')


def _messages_tool_schema(inner: str) -> str:
    return ('{"model": "sim-chat", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], '
            '"tools": [{"name": "f", "input_schema": ' + inner + '}]}')


def _chat_tool_parameters(inner: str) -> str:
    return ('{"model": "sim-chat", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", '
            '"function": {"name": "f", "parameters": ' + inner + '}}]}')


PLACES = {
    "messages tool_use.input": ("/v1/messages", _messages_tool_use),
    "messages tools[].input_schema": ("/v1/messages", _messages_tool_schema),
    "chat tools[].function.parameters": ("/v1/chat/completions", _chat_tool_parameters),
}


@pytest.mark.parametrize("depth", [600, 1000, 1100])
@pytest.mark.parametrize("place", list(PLACES))
def test_deep_json_is_a_400_at_every_place(gw: RunningGateway, place: str, depth: int) -> None:
    path, build = PLACES[place]
    headers = {"authorization": f"Bearer {USER_KEY}", "content-type": "application/json"}
    r = httpx.post(gw.url + path, content=build(nested(depth)), headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    body = r.json()
    message = body["error"]["message"]
    assert f"deeper than {MAX_JSON_DEPTH} levels" in message
    if path.startswith("/v1/chat"):
        assert body["error"]["param"] == "body" and body["error"]["code"] == "json_too_deep"
    # a shallow schema in the same place is served
    assert httpx.post(gw.url + path, content=build(nested(8)), headers=headers, timeout=30).status_code == 200


def test_the_depth_limit_is_exact() -> None:
    assert not too_deep(json.loads(nested(MAX_JSON_DEPTH)))
    assert too_deep(json.loads(nested(MAX_JSON_DEPTH + 1)))
    assert too_deep(json.loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)))
    assert not too_deep([[1, 2, {"a": []}]] * 1000)
    assert not too_deep("scalar") and not too_deep({})


# --- x-switchyard-timeout and the breaker ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-1", "0", "abc", "", "1e999"])
def test_a_bad_timeout_header_is_a_400_and_opens_no_breaker(gw: RunningGateway, value: str) -> None:
    health = gw.gateway.router.health.get("sim-chat", "chat")
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0,
                       default_headers={"x-switchyard-timeout": value}) as bad:
        for _ in range(5):
            err = bad_request(bad.chat.completions.create, model="sim-chat", messages=HI)
            assert err.param == "x-switchyard-timeout"
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0,
                             default_headers={"x-switchyard-timeout": value}) as bad_ant, \
            pytest.raises(anthropic.BadRequestError, match="x-switchyard-timeout"):
        bad_ant.messages.create(model="sim-chat", max_tokens=5, messages=HI)
    assert health.state == CLOSED and health.window(health.clock())[1] == 0
    with openai.OpenAI(base_url=gw.openai_base, api_key=OTHER_KEY, max_retries=0) as other:
        assert other.chat.completions.create(model="sim-chat", messages=HI).choices


def test_refusals_by_the_gateway_or_the_simulator_count_for_nothing(gw: RunningGateway, oai: openai.OpenAI) -> None:
    for _ in range(5):
        bad_request(oai.embeddings.create, model="emb", input=["x"] * 300, dimensions=MAX_DIMENSIONS)
        bad_request(oai.chat.completions.create, model="sim-chat", messages=HI, n=1000)
    for name, endpoint in (("emb", "embeddings"), ("sim-chat", "chat")):
        health = gw.gateway.router.health.get(name, endpoint)
        assert health.state == CLOSED and health.window(health.clock())[1] == 0


@pytest.fixture
def upstream_gw(fake_openai: FakeOpenAI) -> Iterator[RunningGateway]:
    cfg = base_config(
        keys=[{"key": USER_KEY, "name": "user"}, {"key": OTHER_KEY, "name": "other"}],
        providers={"up": {"type": "openai", "base_url": f"{fake_openai.base_url}/v1", "api_key": "sk-up"}},
        deployments=[{"name": "gpt-4o-mini", "provider": "up"}],
        routing={"breaker": {"consecutive_failures": 3, "cooldown_s": 300, "cooldown_max_s": 300}},
    )
    with run_gateway(cfg) as running:
        yield running


def test_upstream_caller_errors_never_open_the_breaker_but_5xx_do(upstream_gw: RunningGateway,
                                                                  fake_openai: FakeOpenAI) -> None:
    health = upstream_gw.gateway.router.health.get("gpt-4o-mini", "chat")
    with openai.OpenAI(base_url=upstream_gw.openai_base, api_key=USER_KEY, max_retries=0) as c, \
            openai.OpenAI(base_url=upstream_gw.openai_base, api_key=OTHER_KEY, max_retries=0) as other:
        for status in (400, 404, 413, 422):
            fake_openai.fail_next(status, times=4)
            for _ in range(4):
                with pytest.raises(openai.APIStatusError) as info:
                    c.chat.completions.create(model="gpt-4o-mini", messages=HI)
                assert info.value.status_code == status
        assert health.state == CLOSED
        assert other.chat.completions.create(model="gpt-4o-mini", messages=HI).choices
        # a deadline the caller set, passing while the upstream thinks: not the deployment's failure either
        fake_openai.hang_next(3, times=4)
        for _ in range(4):
            with pytest.raises(openai.APIStatusError) as info:
                c.chat.completions.create(model="gpt-4o-mini", messages=HI,
                                          extra_headers={"x-switchyard-timeout": "0.2"})
            assert info.value.status_code == 504
        assert health.state == CLOSED
        fake_openai.reset()
        assert other.chat.completions.create(model="gpt-4o-mini", messages=HI).choices
        # the control: upstream 5xx are the deployment's failures, and three in a row open it
        fake_openai.fail_next(500, times=3)
        for _ in range(3):
            with pytest.raises(openai.APIStatusError) as info:
                c.chat.completions.create(model="gpt-4o-mini", messages=HI)
            assert info.value.status_code == 502
        assert health.state == OPEN
        with pytest.raises(openai.APIStatusError) as info:
            other.chat.completions.create(model="gpt-4o-mini", messages=HI)
        assert info.value.status_code == 503


async def test_a_request_no_provider_can_encode_is_not_the_deployments_failure() -> None:
    router, ex, _ = scripted_router({"providers": {"p": {"type": "simulated"}},
                                     "deployments": [{"name": "a", "provider": "p"}],
                                     "routing": TOUCHY})

    async def unencodable(_: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    for _ in range(5):
        with pytest.raises(InvalidRequest):
            await ex.call(router.plan("a", set()), unencodable, [])
    health = router.health.get("a", "chat")
    assert health.state == CLOSED and health.window(router.clock())[1] == 0
    # a deadline with no instant to schedule is no deadline, and no failure
    for deadline in (float("inf"), float("nan")):
        async def fine(_: object) -> str:
            return "ok"

        assert (await ex.call(router.plan("a", set()), fine, [], deadline))[1] == "ok"
    assert health.state == CLOSED and health.window(router.clock())[1] == 0


# --- the admin API ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def admin_gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[RunningGateway, httpx.Client]]:
    from tests.support.governance import gov_config, no_keepalive_client, store_url

    with store_url(request.param, tmp_path_factory.mktemp("bounds")) as url, run_gateway(gov_config(url)) as running, \
            no_keepalive_client(running.url) as http:
        http.headers["authorization"] = f"Bearer {MASTER_KEY}"
        yield running, http


@pytest.mark.parametrize(("query", "param"), [
    ({"since": "2025-06-01"}, "since"),
    ({"until": "2025-06-01"}, "until"),
    ({"since": "2025-06-01T00:00:00"}, "since"),
    ({"until": "2025-06-01T12:30:00.5"}, "until"),
    ({"until": "0.5"}, "until"),
    ({"since": "1748736000"}, "since"),
    ({"since": "1e300"}, "since"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2025-13-01T00:00:00Z"}, "since"),
    ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
    ({"until": "9999-12-31T23:59:59-01:00"}, "until"),
])
def test_audit_times_must_be_date_times_with_a_zone(admin_gw: tuple[RunningGateway, httpx.Client],
                                                    query: dict[str, str], param: str) -> None:
    _, http = admin_gw
    r = http.get("/admin/audit", params=query)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_audit_times_with_a_zone_are_served(admin_gw: tuple[RunningGateway, httpx.Client]) -> None:
    _, http = admin_gw
    for query in ({"since": "2025-06-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
                  {"since": "0001-01-01T00:00:00Z"}, {"until": "2025-06-01T02:00:00+02:00"}):
        r = http.get("/admin/audit", params=query)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(("query", "status", "param"), [
    ({"to": "9999-12-31T23:30:00Z"}, 400, "to"),
    ({"to": "0.5"}, 400, "to"),
    ({"from": "1748736000"}, 400, "from"),
    ({"from": "0001-01-01T00:00:00+01:00"}, 400, "from"),
    ({"to": "0001-01-01"}, 400, "to"),
    ({"to": "0001-01-10"}, 200, None),
    ({"to": "9999-12-31T23:00:00Z", "group_by": "day"}, 200, None),
    ({"from": "2025-05-01", "to": "2025-06-01"}, 200, None),
])
def test_spend_ranges_at_the_edges_of_time(admin_gw: tuple[RunningGateway, httpx.Client], query: dict[str, str],
                                          status: int, param: str | None) -> None:
    _, http = admin_gw
    r = http.get("/admin/spend", params=query)
    assert r.status_code == status, r.text
    if param is not None:
        assert r.json()["error"]["param"] == param
    elif query.get("to") == "0001-01-10":
        assert r.json()["start"] == "0001-01-01T00:00:00Z"  # 30 days back, clamped to the first hour there is


@pytest.mark.parametrize("depth", [600, 1000, 1100])
def test_deep_org_metadata_is_a_400(admin_gw: tuple[RunningGateway, httpx.Client], depth: int) -> None:
    _, http = admin_gw
    r = http.post("/admin/orgs", content='{"name": "deep", "metadata": ' + nested(depth) + "}",
                  headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "body" and r.json()["error"]["code"] == "json_too_deep"


def test_admin_metadata_is_bounded(admin_gw: tuple[RunningGateway, httpx.Client]) -> None:
    _, http = admin_gw
    for metadata in ({"k": "v" * 20_000}, {f"k{i}": 1 for i in range(65)}, {"k" * 65: 1}):
        r = http.post("/admin/orgs", json={"name": "big", "metadata": metadata})
        assert r.status_code == 400 and r.json()["error"]["param"] == "metadata", r.text
    ok = http.post("/admin/orgs", json={"name": "fits", "metadata": {"tier": "gold", "nested": {"a": [1, 2]}}})
    assert ok.status_code == 201, ok.text

