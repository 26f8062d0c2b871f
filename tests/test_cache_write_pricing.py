"""Prompt-cache writes are charged at their own price: Anthropic bills a five-minute write at 1.25x the input price
and a one-hour write at 2x (https://www.anthropic.com/pricing#api, "5m cache writes" and "1h cache writes"); its
usage says how many input tokens were written and, in ``cache_creation``, to which cache. Before, a write was
charged as a plain input token. The anthropic SDK calls the gateway, which calls the fake Anthropic upstream
(tests/support/fake_anthropic.py, which follows the Messages API's documented usage object)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from switchyard.catalog import Catalog
from switchyard.config import parse_config
from switchyard.messages import Usage
from switchyard.providers.anthropic_wire import parse_usage
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.gateway import USER_KEY, ListRecorder, base_config, run_gateway

API_KEY = "sk-ant-upstream-secret"
PREAMBLE = "A long shared preamble that the caller marks for the prompt cache. " * 20


def config(base_url: str) -> dict[str, Any]:
    return base_config(
        providers={"anth": {"type": "anthropic", "api_key": API_KEY, "base_url": base_url}},
        deployments=[
            # the catalog's prices: input 3, output 15, read 0.30, 5-minute write 3.75, 1-hour write 6 (USD per 1M)
            {"name": "sonnet", "provider": "anth", "model": "claude-sonnet-4-20250514", "catalog": "claude-sonnet-4"},
            # its own prices, with no cache-write price: a write costs an input token, as before
            {"name": "plain", "provider": "anth", "model": "claude-sonnet-4-20250514",
             "price": {"input": 3.0, "output": 15.0, "cached_input": 0.3}},
        ])


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    f = FakeAnthropic(api_key=API_KEY)
    with f.serve():
        yield f


def ask(base: str, model: str, ttl: str | None) -> None:
    cache: dict[str, str] = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
    with anthropic.Anthropic(base_url=base, api_key=USER_KEY, max_retries=0) as c:
        c.messages.create(model=model, max_tokens=50, system=[{"type": "text", "text": PREAMBLE,
                                                                 "cache_control": cache}],  # type: ignore[typeddict-item]
                          messages=[{"role": "user", "content": "hello there"}])


def expected(u: Usage, inp: float, out: float, read: float, write: float, write_1h: float) -> float:
    plain = u.input_tokens - u.cached_tokens - u.cache_write_tokens
    five = u.cache_write_tokens - u.cache_write_1h_tokens
    return (plain * inp + u.cached_tokens * read + five * write + u.cache_write_1h_tokens * write_1h
            + u.output_tokens * out) / 1e6


def test_cache_writes_are_charged_by_their_ttl(fake: FakeAnthropic) -> None:
    assert fake.base_url is not None
    rec = ListRecorder()
    with run_gateway(config(fake.base_url), recorder=rec) as gw:
        ask(gw.url, "sonnet", "1h")  # writes the preamble to a one-hour cache
        one_hour = rec.records[-1]
        ask(gw.url, "sonnet", "1h")  # reads it
        read = rec.records[-1]
        fake.reset()
        ask(gw.url, "sonnet", None)  # a five-minute write (the default TTL)
        five = rec.records[-1]
        fake.reset()
        ask(gw.url, "plain", None)  # the same write on a deployment without a cache-write price
        plain = rec.records[-1]
    assert one_hour.usage.cache_write_tokens > 0 and one_hour.usage.cache_write_1h_tokens \
        == one_hour.usage.cache_write_tokens
    assert five.usage.cache_write_tokens > 0 and five.usage.cache_write_1h_tokens == 0
    assert read.usage.cached_tokens > 0 and read.usage.cache_write_tokens == 0
    assert one_hour.cost == pytest.approx(expected(one_hour.usage, 3, 15, 0.3, 3.75, 6.0))
    assert five.cost == pytest.approx(expected(five.usage, 3, 15, 0.3, 3.75, 6.0))
    assert read.cost == pytest.approx(expected(read.usage, 3, 15, 0.3, 3.75, 6.0))
    assert plain.cost == pytest.approx(expected(plain.usage, 3, 15, 0.3, 3.0, 3.0))
    # the same tokens cost more written than read or sent plain: 2x and 1.25x the input price for the preamble
    w = five.usage.cache_write_tokens
    assert one_hour.cost - five.cost == pytest.approx(w * (6.0 - 3.75) / 1e6)
    assert five.cost - plain.cost == pytest.approx(w * (3.75 - 3.0) / 1e6)


def test_a_budget_reserves_a_prompt_token_at_its_dearest_price() -> None:
    cat = Catalog.from_config(parse_config(config("http://127.0.0.1:9"), "<test>", {}))
    sonnet, plain = cat.deployments["sonnet"], cat.deployments["plain"]
    assert sonnet.prompt_price * 1e6 == pytest.approx(6.0)
    assert plain.prompt_price * 1e6 == pytest.approx(3.0)
    assert (sonnet.cache_write_price * 1e6, sonnet.cache_write_1h_price * 1e6) == pytest.approx((3.75, 6.0))


def test_the_usage_parser_reads_the_ttl_breakdown() -> None:
    u = parse_usage({"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 10,
                     "cache_creation_input_tokens": 30,
                     "cache_creation": {"ephemeral_5m_input_tokens": 12, "ephemeral_1h_input_tokens": 18}})
    assert u == Usage(input_tokens=45, output_tokens=7, cached_tokens=10, cache_write_tokens=30,
                      cache_write_1h_tokens=18)
    # without the breakdown (older replies, Bedrock): every write is a five-minute one
    u = parse_usage({"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": 30})
    assert u is not None and u.cache_write_1h_tokens == 0
