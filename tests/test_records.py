"""The call record's spool line: one typed shape, encoded and decoded side by side, and lines of the previous
format (left on disk by an older gateway) still read."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import orjson
import pytest

from switchyard.governance.auth import Principal
from switchyard.governance.intents import interrupted_record, orphans
from switchyard.messages import Usage
from switchyard.records import (
    INTENT,
    VERSION,
    CallRecord,
    Intent,
    Stored,
    dump,
    encode,
    is_intent,
    peek,
    read_line,
    stored,
)


@dataclass
class Lost:  # a hedge loser, as the record sees one
    cost: float
    usage: Usage | None = None


def full_record() -> CallRecord:
    p = Principal(id="vk_1", name="k", key_id="vk_1", user_id="usr_1", team_id="team_1", org_id="org_1",
                  tags=frozenset({"b", "a"}))
    return CallRecord(
        request_id="req_1", ts=1_764_800_000.123456, principal_id="vk_1", endpoint="chat", model="gpt-x",
        route="fast", deployment="d1", provider="openai", status="error", http_status=502,
        usage=Usage(input_tokens=1, output_tokens=2, cached_tokens=3, cache_write_tokens=4, reasoning_tokens=5),
        cost=0.25, latency_ms=12.34567, ttft_ms=3.45678, attempts=2, error="upstream failed",
        client_request_id="cli-1", principal=p, reason="cheapest", payload={"request": {"messages": []}},
        losers=(Lost(0.5),), charges=[("bud_1", "total", 75_000_000, 15)])


def test_every_field_round_trips() -> None:
    line = encode(full_record())
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.startswith(b"[%d," % VERSION)
    assert read_line(line) == Stored(
        VERSION, "req_1", 1_764_800_000.123456, "chat", "gpt-x", "error", 502, 1, 2, 3, 4, 5, 75_000_000, 12.346, 2,
        client_request_id="cli-1", principal_id="vk_1", route="fast", deployment="d1", provider="openai",
        ttft_ms=3.457, error="upstream failed", reason="cheapest", key_id="vk_1", user_id="usr_1",
        team_id="team_1", org_id="org_1", tags=["a", "b"], charges=[["bud_1", "total", 75_000_000, 15]],
        own_cost=25_000_000, payload={"request": {"messages": []}})
    assert read_line(dump(read_line(line))) == read_line(line)  # a decoded record encodes to the same line
    assert peek(line) == ("req_1", False) and not is_intent(line)


def test_a_record_without_a_principal_or_options_keeps_none() -> None:
    rec = CallRecord(request_id="req_2", ts=1.5, principal_id=None, endpoint="embeddings", model="m", route=None,
                     deployment=None, provider=None, status="error", http_status=401, usage=Usage(), cost=0.0,
                     latency_ms=0.1, ttft_ms=None, attempts=0)
    s = read_line(encode(rec))
    assert isinstance(s, Stored) and s == stored(rec)
    assert s[15:] == (None,) * (len(Stored._fields) - 15)  # every optional field, the principal's included


def test_a_line_of_the_previous_format_is_read() -> None:
    """Format 1 (a JSON object of short keys), as the previous version wrote it, with every key it knew."""
    old = orjson.dumps({
        "v": 1, "rid": "req_old", "ts": 1_700_000_000.5, "ep": "chat", "model": "gpt-x", "st": "ok", "http": 200,
        "in": 10, "out": 5, "cached": 2, "cw": 1, "rsn": 3, "cost": 12345, "lat": 12.5, "att": 1, "crid": "c",
        "pid": "vk_1", "route": "fast", "dep": "d1", "prov": "openai", "ttft": 3.25, "err": None, "why": "only",
        "pl": {"x": 1}, "dcost": 100, "key": "vk_1", "user": "u", "team": "t", "org": "o", "tags": ["a"],
        "ch": [["b1", "total", 12345, 15]]}) + b"\n"
    s = read_line(old)
    assert isinstance(s, Stored) and s.v == 1
    assert (s.request_id, s.status, s.http_status, s.cost, s.own_cost, s.payload, s.key_id, s.tags, s.charges) == (
        "req_old", "ok", 200, 12345, 100, {"x": 1}, "vk_1", ["a"], [["b1", "total", 12345, 15]])
    assert (s.input_tokens, s.output_tokens, s.cached_tokens, s.cache_write_tokens, s.reasoning_tokens) == (
        10, 5, 2, 1, 3)
    assert peek(old) == ("req_old", False)


def test_intents_of_both_formats_and_their_interrupted_records() -> None:
    new = dump(Intent(INTENT, "req_n", 2.0, "chat", "m", 700, 10, 20, "cli", "fast", "vk_1", "vk_1", "u", "t", "o",
                      ["a"], [("b1", "total", 700, 30)], True, ["rl_1"]))
    old = orjson.dumps({"t": "i", "rid": "req_o", "ts": 1.0, "ep": "chat", "model": "m", "cost": 7, "in": 1,
                        "out": 2, "pid": "vk_2", "key": "vk_2", "ch": [["b2", "total", 7, 3]], "r": 1,
                        "cc": ["rl_2"]}) + b"\n"
    assert is_intent(new) and is_intent(old)
    found = {it.request_id: it for it in orphans([new, old, b'{"torn'])}
    assert set(found) == {"req_n", "req_o"}
    assert found["req_o"].reserved and found["req_o"].concurrent == ["rl_2"] and found["req_o"].key_id == "vk_2"
    rec = read_line(interrupted_record(found["req_n"]))
    assert isinstance(rec, Stored)
    assert (rec.request_id, rec.status, rec.http_status, rec.cost, rec.input_tokens, rec.output_tokens) == (
        "req_n", "interrupted", 0, 700, 10, 20)
    assert (rec.client_request_id, rec.route, rec.key_id, rec.tags, rec.charges) == (
        "cli", "fast", "vk_1", ["a"], [["b1", "total", 700, 30]])
    ended = encode(full_record())  # an outcome in the same files: not an orphan
    assert [it.request_id for it in orphans([dump(found["req_n"]._replace(request_id="req_1")), ended])] == []


@pytest.mark.parametrize("line", [b"not json\n", b'{"no": "rid"}\n', b"[2]\n", b'[2, "req", 1.0]\n', b"[9, 1]\n",
                                  b'{"rid": "req_bad", "not": "a record"}\n'])
def test_anything_else_is_refused_as_a_value_error(line: bytes) -> None:
    with pytest.raises(ValueError):
        read_line(line)


def test_a_later_versions_extra_fields_are_not_read() -> None:
    line = encode(full_record()).rstrip(b"\n")[:-1] + b',"a field added later"]\n'
    assert read_line(line) == read_line(encode(full_record()))


def test_the_record_module_stays_low() -> None:
    """The record imports nothing of the package but the neutral model; importing the store or the record loads no
    provider and no pipeline."""
    code = ("import sys, switchyard.records, switchyard.store.spool, switchyard.governance.spend; "
            "print(sorted(m for m in sys.modules if m.startswith(('switchyard.providers', 'switchyard.pipeline',"
            " 'switchyard.routing'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
