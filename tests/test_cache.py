"""The semantic cache over HTTP, with the official SDKs: exact and similar hits, what makes a miss, the request and
reply headers, streamed hits in each protocol, charges and records, zero retention, scopes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

OTHER_KEY = "sk-test-other-0123456789"
ZERO_KEY = "sk-test-zero-0123456789"


def config(upstream: str, **cache: Any) -> dict[str, Any]:
    return base_config(
        keys=[{"key": USER_KEY, "name": "user", "logging": "metadata"},
              {"key": OTHER_KEY, "name": "other", "logging": "full"},
              {"key": ZERO_KEY, "name": "zero"}],  # logging: none (zero retention)
        providers={"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream-secret"}},
        deployments=[{"name": "gpt-4o-mini", "provider": "up", "price": {"input": 1000.0, "output": 2000.0}}],
        routes={"chat": {"targets": ["gpt-4o-mini"]},
                "warm": {"targets": ["gpt-4o-mini"], "cache": {"temperature_any": True, "charge": 0.5}},
                "nocache": {"targets": ["gpt-4o-mini"], "cache": {"enabled": False}}},
        cache={"store": "memory", "threshold": 0.85, **cache},
    )


@pytest.fixture
def gw(fake_openai: FakeOpenAI) -> Iterator[tuple[RunningGateway, ListRecorder]]:
    assert fake_openai.base_url is not None
    rec = ListRecorder()
    with run_gateway(config(fake_openai.base_url), recorder=rec) as g:
        yield g, rec


def oai(g: RunningGateway, key: str = USER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.openai_base, api_key=key, max_retries=0)


def ant(g: RunningGateway, key: str = USER_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=g.url, api_key=key, max_retries=0)


def ask(g: RunningGateway, text: str, key: str = USER_KEY, model: str = "chat",
        headers: dict[str, str] | None = None, **kw: Any) -> Any:
    kw.setdefault("temperature", 0)
    return oai(g, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], extra_headers=headers or {}, **kw)


def upstream_calls(fake: FakeOpenAI) -> int:
    return len(fake.requests_to("/chat/completions"))


def settle(g: RunningGateway) -> None:
    time.sleep(0.05)  # the store is written just after the response (call_soon)


def records(rec: ListRecorder, n: int) -> list[Any]:
    for _ in range(200):
        if len(rec.records) >= n:
            break
        time.sleep(0.01)
    return rec.records


def test_miss_then_exact_hit_is_free_and_marked(gw: tuple[RunningGateway, ListRecorder],
                                                fake_openai: FakeOpenAI) -> None:
    g, rec = gw
    first = ask(g, "What is the capital of France?")
    assert first.headers["x-switchyard-cache"] == "miss"
    settle(g)
    second = ask(g, "What is the capital of France?")
    assert second.headers["x-switchyard-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.parse().id != first.parse().id
    assert upstream_calls(fake_openai) == 1
    r1, r2 = records(rec, 2)[:2]
    assert r1.cost > 0 and r1.decisions is None
    assert r2.status == "ok" and r2.cost == 0 and r2.usage.total_tokens == 0 and r2.deployment is None
    assert r2.decisions["cache"]["hit"] == "exact" and r2.decisions["cache"]["saved_usd"] == pytest.approx(r1.cost)


def test_a_paraphrase_is_a_similar_hit_with_its_score(gw: tuple[RunningGateway, ListRecorder],
                                                      fake_openai: FakeOpenAI) -> None:
    g, rec = gw
    ask(g, "How do I reverse a list in Python?")
    settle(g)
    r = ask(g, "How can I reverse a Python list?")
    status, score = r.headers["x-switchyard-cache"].split()
    assert status == "similar" and 0.85 <= float(score) <= 1.0
    assert r.parse().choices[0].message.content == "Echo: How do I reverse a list in Python?"
    assert upstream_calls(fake_openai) == 1
    assert records(rec, 2)[1].decisions["cache"]["hit"] == "similar"
    # an unrelated question of the same shape is a miss
    assert ask(g, "What is the capital of Germany?").headers["x-switchyard-cache"] == "miss"


@pytest.mark.parametrize("change", [
    {"temperature": 0, "max_tokens": 7},
    {"temperature": 0, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    {"temperature": 0, "response_format": {"type": "json_object"}},
    {"temperature": 0, "seed": 3},
])
def test_another_shape_is_a_miss(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI,
                                 change: dict[str, Any]) -> None:
    g, _ = gw
    ask(g, "Tell me a JSON fact about cats")
    settle(g)
    assert ask(g, "Tell me a JSON fact about cats", **change).headers["x-switchyard-cache"] == "miss"
    assert upstream_calls(fake_openai) == 2


def test_other_model_or_system_prompt_is_a_miss(gw: tuple[RunningGateway, ListRecorder],
                                                fake_openai: FakeOpenAI) -> None:
    g, _ = gw
    ask(g, "Name a colour")
    settle(g)
    assert ask(g, "Name a colour", model="gpt-4o-mini").headers["x-switchyard-cache"] == "miss"
    r = oai(g).chat.completions.with_raw_response.create(
        model="chat", temperature=0, messages=[{"role": "system", "content": "Be terse."},
                                               {"role": "user", "content": "Name a colour"}])
    assert r.headers["x-switchyard-cache"] == "miss"
    assert upstream_calls(fake_openai) == 3


def test_temperature_above_zero_is_not_cached_unless_the_route_opts_in(
        gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    g, rec = gw
    for _ in range(2):
        r = ask(g, "Write a haiku", temperature=0.7)
        assert "x-switchyard-cache" not in r.headers
        settle(g)
    assert upstream_calls(fake_openai) == 2
    ask(g, "Write a haiku", model="warm", temperature=0.7)
    settle(g)
    r = ask(g, "Write a haiku", model="warm", temperature=0.7)
    assert r.headers["x-switchyard-cache"] == "hit"
    assert upstream_calls(fake_openai) == 3
    recs = records(rec, 4)
    assert recs[3].cost == pytest.approx(recs[2].cost * 0.5) and recs[3].cost > 0  # charge: 0.5
    # a route with the cache off: no header, never stored
    for _ in range(2):
        assert "x-switchyard-cache" not in ask(g, "Write a haiku", model="nocache").headers
        settle(g)
    assert upstream_calls(fake_openai) == 5


def test_bypass_and_refresh(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    g, _ = gw
    fake_openai.set_reply("first answer")
    ask(g, "What time zone is Paris in?")
    settle(g)
    fake_openai.set_reply("second answer")
    r = ask(g, "What time zone is Paris in?", headers={"x-switchyard-cache": "bypass"})
    assert r.headers["x-switchyard-cache"] == "miss" and r.parse().choices[0].message.content == "second answer"
    settle(g)
    r = ask(g, "What time zone is Paris in?")  # bypass stored nothing: the first answer is still there
    assert r.headers["x-switchyard-cache"] == "hit" and r.parse().choices[0].message.content == "first answer"
    r = ask(g, "What time zone is Paris in?", headers={"x-switchyard-cache": "refresh"})
    assert r.headers["x-switchyard-cache"] == "miss" and r.parse().choices[0].message.content == "second answer"
    settle(g)
    r = ask(g, "What time zone is Paris in?")
    assert r.headers["x-switchyard-cache"] == "hit" and r.parse().choices[0].message.content == "second answer"
    assert upstream_calls(fake_openai) == 3


def test_a_bad_directive_is_a_400_in_each_protocol(gw: tuple[RunningGateway, ListRecorder]) -> None:
    g, _ = gw
    with pytest.raises(openai.BadRequestError) as e:
        ask(g, "hi", headers={"x-switchyard-cache": "maybe"})
    assert "x-switchyard-cache" in str(e.value)
    with pytest.raises(anthropic.BadRequestError) as ea:
        ant(g).messages.create(model="chat", max_tokens=20, extra_body={"temperature": 0},
                               messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"x-switchyard-cache": "maybe"})
    assert "x-switchyard-cache" in str(ea.value)


def test_a_streamed_hit_is_a_proper_stream_in_each_protocol(gw: tuple[RunningGateway, ListRecorder],
                                                           fake_openai: FakeOpenAI) -> None:
    g, rec = gw
    # stored from a stream (assembled from its chunks)
    with oai(g).chat.completions.with_streaming_response.create(
            model="chat", temperature=0, stream=True, messages=[{"role": "user", "content": "Stream me a fact"}]
    ) as r:
        assert r.headers["x-switchyard-cache"] == "miss"
        original = "".join(c.choices[0].delta.content or "" for c in r.parse() if c.choices)
    settle(g)
    with oai(g).chat.completions.with_streaming_response.create(
            model="chat", temperature=0, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Stream me a fact"}]) as r:
        assert r.headers["x-switchyard-cache"] == "hit"
        chunks = list(r.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == original
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    # the same entry, to an Anthropic caller, as Anthropic events
    with ant(g).messages.with_streaming_response.create(
            model="chat", max_tokens=1024, extra_body={"temperature": 0}, stream=True,
            messages=[{"role": "user", "content": "Stream me a fact"}]) as r:
        assert r.headers["x-switchyard-cache"] == "miss"  # another shape: Anthropic's max_tokens is a parameter
    settle(g)
    with ant(g).messages.stream(model="chat", max_tokens=1024, extra_body={"temperature": 0},
                                messages=[{"role": "user", "content": "Stream me a fact"}]) as s:
        types = [e.type for e in s]
        final = s.get_final_message()
    assert types[0] == "message_start" and types[-1] == "message_stop" and "content_block_delta" in types
    assert final.content[0].text == original and final.stop_reason == "end_turn"
    assert upstream_calls(fake_openai) == 2
    assert records(rec, 4)[3].decisions["cache"]["hit"] == "exact"


def test_anthropic_non_stream_hit(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    g, _ = gw
    first = ant(g).messages.with_raw_response.create(model="chat", max_tokens=50, extra_body={"temperature": 0},
                                                      messages=[{"role": "user", "content": "Say hi"}])
    assert first.headers["x-switchyard-cache"] == "miss"
    settle(g)
    second = ant(g).messages.with_raw_response.create(model="chat", max_tokens=50, extra_body={"temperature": 0},
                                                       messages=[{"role": "user", "content": "Say hi"}])
    assert second.headers["x-switchyard-cache"] == "hit"
    assert second.parse().content[0].text == first.parse().content[0].text
    assert upstream_calls(fake_openai) == 1


def test_a_zero_retention_key_is_never_cached(gw: tuple[RunningGateway, ListRecorder],
                                              fake_openai: FakeOpenAI) -> None:
    g, _ = gw
    for _ in range(2):
        r = ask(g, "A secret question", key=ZERO_KEY)
        assert "x-switchyard-cache" not in r.headers
        settle(g)
    assert upstream_calls(fake_openai) == 2
    index = next(s for s in g.gateway.services if hasattr(s, "index")).index  # the cache store
    assert len(index) == 0


def test_static_keys_have_their_own_scope(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    g, _ = gw
    ask(g, "Which planet is largest?")
    settle(g)
    assert ask(g, "Which planet is largest?", key=OTHER_KEY).headers["x-switchyard-cache"] == "miss"
    settle(g)
    assert ask(g, "Which planet is largest?", key=OTHER_KEY).headers["x-switchyard-cache"] == "hit"
    assert ask(g, "Which planet is largest?").headers["x-switchyard-cache"] == "hit"
    assert upstream_calls(fake_openai) == 2


def test_no_cache_section_no_stage_no_header(fake_openai: FakeOpenAI) -> None:
    assert fake_openai.base_url is not None
    cfg = config(fake_openai.base_url)
    del cfg["cache"]
    for r in cfg["routes"].values():
        r.pop("cache", None)
    with run_gateway(cfg) as g:
        assert "cache" not in g.gateway.chain.describe()
        assert "x-switchyard-cache" not in ask(g, "hi").headers


def test_metrics_count_hits_and_savings(gw: tuple[RunningGateway, ListRecorder]) -> None:
    g, _ = gw
    ask(g, "Count me")
    settle(g)
    ask(g, "Count me")
    text = httpx.get(g.url + "/metrics").text
    assert 'switchyard_cache_lookups_total{result="hit",route="chat"} 1.0' in text
    assert 'switchyard_cache_lookups_total{result="miss",route="chat"} 1.0' in text
    assert "switchyard_cache_saved_usd_total" in text and "switchyard_cache_saved_seconds_total" in text
