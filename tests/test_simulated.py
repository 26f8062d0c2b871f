"""The simulated provider: honours max_tokens (so budgets hold), ends agent loops, answers deterministically."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from tests.support.gateway import USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.governance import Admin, store_url
from tests.support.ledger import budget_total, ledger_config, spend_of, tenant, wait_for

TOOL: Any = {"type": "function", "function": {"name": "lookup", "description": "look a word up",
                                              "parameters": {"type": "object",
                                                             "properties": {"word": {"type": "string"}}}}}
SCHEMA: Any = {"type": "json_schema", "json_schema": {"name": "r", "schema": {
    "type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}}}}}


@pytest.fixture
def client() -> Iterator[openai.OpenAI]:
    cfg = base_config(providers={"sim": {"type": "simulated", "output_tokens": 12}},
                      deployments=[{"name": "sim", "provider": "sim", "capabilities": ["chat", "tools", "json"]}])
    with run_gateway(cfg) as gw, openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("extra", [{}, {"tools": [TOOL]}, {"response_format": SCHEMA}],
                         ids=["text", "tools", "json"])
@pytest.mark.parametrize("max_tokens", [1, 3, 100])
def test_usage_never_exceeds_max_tokens(client: openai.OpenAI, extra: dict[str, Any], max_tokens: int) -> None:
    r = client.chat.completions.create(model="sim", max_tokens=max_tokens,
                                       messages=[{"role": "user", "content": "hello"}], **extra)
    assert r.usage is not None and 0 < r.usage.completion_tokens <= max_tokens
    with client.chat.completions.create(model="sim", max_tokens=max_tokens, stream=True,
                                        stream_options={"include_usage": True},
                                        messages=[{"role": "user", "content": "hello"}], **extra) as stream:
        usage = [c.usage for c in stream if c.usage is not None]
    assert usage and 0 < usage[-1].completion_tokens <= max_tokens
    if max_tokens == 1:
        assert r.choices[0].finish_reason == "length"


def test_agent_loop_ends_after_a_tool_result(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "what does 'gateway' mean?"}]
    first = client.chat.completions.create(model="sim", messages=messages, tools=[TOOL])
    calls = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and calls and calls[0].function.name == "lookup"
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": calls[0].id, "content": "a way through"}]
    second = client.chat.completions.create(model="sim", messages=messages, tools=[TOOL])
    assert second.choices[0].finish_reason == "stop" and not second.choices[0].message.tool_calls
    assert second.choices[0].message.content
    forced = client.chat.completions.create(model="sim", messages=messages, tools=[TOOL], tool_choice="required")
    assert forced.choices[0].message.tool_calls  # a forced call is still made


def test_answers_are_deterministic_per_prompt(client: openai.OpenAI) -> None:
    def ask(text: str) -> str | None:
        return client.chat.completions.create(model="sim", messages=[{"role": "user", "content": text}]
                                              ).choices[0].message.content
    assert ask("one question") == ask("one question")
    assert ask("one question") != ask("another question entirely")


@contextlib.contextmanager
def priced(tmp: Path, backend: str = "sqlite") -> Iterator[tuple[RunningGateway, Store, Admin]]:
    with store_url(backend, tmp) as url:
        store = Store.open(url)
        cfg = ledger_config(url, tmp / "spool")
        cfg["deployments"] = [{"name": "dear", "provider": "sim", "capabilities": ["chat", "tools", "json"],
                               "price": {"input": 0.0, "output": 100_000.0}}]  # $0.10 per output token
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
        try:
            with run_gateway(cfg, recorder=writer) as gw:
                admin = Admin(gw.url)
                yield gw, store, admin
                admin.close()
        finally:
            store.close()


def test_a_dollar_budget_never_settles_above_a_dollar(tmp_path: Path) -> None:
    with priced(tmp_path) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 1.0, "period": "total"})
        c = openai.OpenAI(base_url=gw.openai_base, api_key=t["secret"], max_retries=0)
        ok = refused = 0
        for i in range(14):
            extra: dict[str, Any] = [{"tools": [TOOL]}, {"response_format": SCHEMA}, {}][i % 3]
            try:
                c.chat.completions.create(model="dear", max_tokens=1, messages=[{"role": "user", "content": "hi"}],
                                          **extra)
                ok += 1
            except openai.RateLimitError:
                refused += 1
        assert (ok, refused) == (10, 4)  # each call reserves, and settles, one token: $0.10
        wait_for(lambda: budget_total(store.engine, t["budget"]["id"])[1] == 10, what="budget totals")
        assert budget_total(store.engine, t["budget"]["id"]) == (Decimal("1.00"), 10)
        wait_for(lambda: spend_of(store.engine, t["key"])[0] == 14, what="spend records")
        assert spend_of(store.engine, t["key"])[1] <= Decimal("1.00")
