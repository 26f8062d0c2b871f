"""Streams cut by their client are charged for what the upstream produced (issue 11, item 4).

A client that reads every content chunk and hangs up before the finish and usage chunks used to be recorded as
``cancelled`` with 0 tokens and $0, so any number of full replies went through a small budget. Now the gateway
reads the rest of the upstream stream in the background (bounded) and records the real usage; where the upstream
is cut or stalls too, it charges the estimate of the text it sent. Over HTTP, with the official SDKs, through the
embedded ledger and through Redis, for the OpenAI and the Anthropic inbound protocol.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import sqlalchemy as sa

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, store_url
from tests.support.ledger import ledger_config, redis_prefix, redis_url, tenant, wait_for

WORDS = [f"word{i:02d}" for i in range(20)]
REPLY = " ".join(WORDS)  # the fake upstream streams one word a chunk and reports 20 completion tokens
PRICE = {"input": 0.0, "output": 1000.0}  # $0.001 an output token: a full reply costs $0.02, the worst case $0.05


@contextlib.contextmanager
def gateway(tmp: Path, fake: FakeOpenAI, ledger: str, **ledger_keys: Any) -> Iterator[tuple[RunningGateway, Store,
                                                                                              Admin]]:
    """A gateway with one priced deployment on the fake OpenAI upstream, its ledger embedded or in Redis."""
    assert fake.base_url is not None
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(store_url("sqlite", tmp))
        redis: dict[str, Any] = {}
        if ledger == "redis":
            redis = {"redis": redis_url(), "prefix": stack.enter_context(redis_prefix())}
        cfg = ledger_config(url, tmp / "spool", ledger=ledger_keys, **redis)
        cfg["providers"] = {"up": {"type": "openai", "base_url": fake.base_url + "/v1", "api_key": "sk-upstream"}}
        cfg["deployments"] = [{"name": "metered", "provider": "up", "model": "gpt-4o-mini", "price": PRICE}]
        store = Store.open(url)
        stack.callback(store.close)
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
        gw = stack.enter_context(run_gateway(cfg, recorder=writer))
        admin = Admin(gw.url)
        stack.callback(admin.close)
        yield gw, store, admin


def records(engine: sa.Engine, key_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT request_id, status, http_status, input_tokens, output_tokens, cost, "
                                    "error FROM request_log WHERE key_id = :k ORDER BY id"), {"k": key_id})
        return [{**r._mapping, "cost": Decimal(str(r.cost)).quantize(Decimal("1e-8"))} for r in rows]


def settled(gw: RunningGateway) -> bool:
    """Nothing held, and (Redis) every settlement has reached Redis."""
    ledger = gw.gateway.ledger
    assert ledger is not None
    return not ledger.holds and (ledger.redis is None or ledger.redis.idle()) and not len(gw.gateway.drains)


def read_then_hang_up(gw: RunningGateway, secret: str, chars: int, then: Callable[[], None] = lambda: None,
                      include_usage: bool = False) -> str:
    """Read a streamed reply until ``chars`` characters of content have come (all before its finish chunk), call
    ``then``, and hang up."""
    with openai.OpenAI(base_url=gw.openai_base, api_key=secret, max_retries=0) as client:
        stream = client.chat.completions.create(model="metered", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=50, stream=True,
                                                stream_options={"include_usage": include_usage})
        delivered = ""
        for chunk in stream:
            assert chunk.choices and chunk.choices[0].finish_reason is None, "the finish came before the hang-up"
            delivered += chunk.choices[0].delta.content or ""
            if len(delivered) >= chars:
                then()
                break
        stream.close()
    return delivered


def read_content_then_hang_up(gw: RunningGateway, secret: str, fake: FakeOpenAI) -> str:
    """Read every content chunk of the reply, and hang up before its finish and usage chunks (which the upstream is
    made to send slowly from then on, so that the gateway sees the hang-up first)."""
    fake.stream_delay(0.05)
    return read_then_hang_up(gw, secret, len(REPLY), lambda: fake.stream_delay(0.5), include_usage=True)


@pytest.mark.parametrize("ledger", ["embedded", "redis"])
def test_a_client_that_hangs_up_before_the_usage_chunk_is_charged_the_real_usage(
        tmp_path: Path, fake_openai: FakeOpenAI, ledger: str) -> None:
    fake_openai.set_reply(REPLY)
    fake_openai.stream_delay(0.05)  # the finish chunk comes after the client has left
    with gateway(tmp_path, fake_openai, ledger) as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.10, "period": "daily"})  # the worst case ($0.05) twice
        for n in range(1, 4):  # $0.02 each: 0.00 + 0.05, 0.02 + 0.05 and 0.04 + 0.05 fit under $0.10
            assert read_content_then_hang_up(gw, t["secret"], fake_openai) == REPLY
            wait_for(lambda n=n: len(records(store.engine, t["key"])) == n, what=f"record {n}")
            wait_for(lambda: settled(gw), what="the settlement")
        with pytest.raises(openai.RateLimitError) as refused:  # 0.06 spent + 0.05 held > 0.10
            read_content_then_hang_up(gw, t["secret"], fake_openai)
        assert "Budget" in str(refused.value) and "$0.06 of $0.10 spent" in str(refused.value)
        wait_for(lambda: len(records(store.engine, t["key"])) == 4, what="the refusal's record")
        recs = records(store.engine, t["key"])
        assert [(r["status"], r["http_status"], r["output_tokens"]) for r in recs[:3]] == [("cancelled", 499, 20)] * 3
        assert all(r["cost"] == Decimal("0.02") for r in recs[:3]), recs
        assert "read for its usage" in recs[0]["error"]
        assert recs[3]["status"] == "error" and recs[3]["http_status"] == 429
        # the upstream streamed each reply to its end: the gateway read what the client did not
        assert all(r.json["stream_options"] == {"include_usage": True} for r in fake_openai.requests)


def test_the_anthropic_protocol_is_charged_the_same_way(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_reply(REPLY)
    fake_openai.stream_delay(0.05)
    fake_openai.tail_delay = 0.5  # the gateway sees the hang-up before the usage, however late the client reads
    with gateway(tmp_path, fake_openai, "embedded") as (gw, store, admin):
        t = tenant(admin, budget={"max_usd": 0.10, "period": "daily"})
        with anthropic.Anthropic(base_url=gw.url, api_key=t["secret"], max_retries=0) as client:
            stream = client.messages.create(model="metered", max_tokens=50, stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
            text = ""
            for event in stream:
                assert event.type not in ("message_delta", "message_stop"), "the usage came before the hang-up"
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text += event.delta.text
                    if text == REPLY:
                        break
            stream.close()
        assert text == REPLY
        wait_for(lambda: len(records(store.engine, t["key"])) == 1, what="the record")
        (rec,) = records(store.engine, t["key"])
        assert (rec["status"], rec["http_status"], rec["output_tokens"]) == ("cancelled", 499, 20)
        assert rec["cost"] == Decimal("0.02")


@pytest.mark.parametrize("cut", ["stall", "break"])
def test_an_upstream_cut_after_the_client_left_is_charged_at_least_what_was_delivered(
        tmp_path: Path, fake_openai: FakeOpenAI, cut: str) -> None:
    """The upstream stalls (past ``drain_timeout``) or drops the connection after the client hangs up: no usage is
    ever reported, so the call is charged the estimate of the text it sent (about four characters a token)."""
    fake_openai.set_reply(REPLY)
    fake_openai.stream_delay(0.05)
    if cut == "break":
        fake_openai.break_stream_after(9)  # the role chunk and eight words, then the connection drops
    with gateway(tmp_path, fake_openai, "embedded", drain_timeout=1.0) as (gw, store, admin):
        t = tenant(admin)
        # five words; on a stall, every frame from the next one on comes far too late
        delivered = read_then_hang_up(gw, t["secret"], 5 * len("word00 "),
                                      lambda: fake_openai.stream_delay(30 if cut == "stall" else 0.05))
        wait_for(lambda: len(records(store.engine, t["key"])) == 1, timeout=20, what="the record")
        (rec,) = records(store.engine, t["key"])
        floor = (len(delivered) + 3) // 4
        assert rec["status"] == "cancelled" and rec["http_status"] == 499
        assert rec["output_tokens"] >= floor > 0, (rec, delivered)
        assert rec["output_tokens"] < 20 * 8  # an estimate of what was sent, not of the whole reply
        assert rec["cost"] == Decimal(rec["output_tokens"]) / 1000
        assert "charged an estimate" in rec["error"], rec["error"]
        wait_for(lambda: settled(gw), what="the drain to end")


def test_without_drains_a_hang_up_cuts_the_upstream_at_once_and_charges_the_estimate(
        tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.set_reply(REPLY)
    fake_openai.stream_delay(0.25)  # 22 frames: more than five seconds if read to the end
    with gateway(tmp_path, fake_openai, "embedded", drain_timeout=0) as (gw, store, admin):
        t = tenant(admin)
        started = time.monotonic()
        delivered = read_then_hang_up(gw, t["secret"], 1)
        wait_for(lambda: len(records(store.engine, t["key"])) == 1, what="the record")
        assert time.monotonic() - started < 22 * 0.25  # recorded long before the upstream would have finished
        (rec,) = records(store.engine, t["key"])
        assert rec["status"] == "cancelled" and "charged an estimate" in rec["error"]
        assert rec["output_tokens"] >= (len(delivered) + 3) // 4 > 0


def test_a_drain_cut_by_shutdown_records_the_estimate(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """The gateway stops while a drain waits on a stalled upstream: the drain is cut, and the call recorded (and
    shipped before the spool closes) with the estimate of what was sent."""
    fake_openai.set_reply(REPLY)
    fake_openai.stream_delay(0.05)
    with gateway(tmp_path, fake_openai, "embedded") as (gw, store, admin):
        t = tenant(admin)  # after 20 characters the upstream stalls: only the gateway's shutdown ends the drain
        delivered = read_then_hang_up(gw, t["secret"], 21, lambda: fake_openai.stream_delay(60))
        wait_for(lambda: len(gw.gateway.drains) == 1, what="the drain to start")
        assert records(store.engine, t["key"]) == []
        engine = store.engine
    (rec,) = records(engine, t["key"])  # written as the gateway stopped
    assert rec["status"] == "cancelled" and "the gateway shut down" in rec["error"], rec["error"]
    assert rec["output_tokens"] >= (len(delivered) + 3) // 4 > 0
