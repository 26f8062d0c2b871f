"""The stored responses (``state/responses.py``) on SQLite and Postgres, and the pieces of the Responses protocol that
the end-to-end tests reach only through a fake: the chain prepended to a same-wire body, and the parsing of an
upstream's Responses stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard.errors import ServiceUnavailable
from switchyard.messages import Finish, FinishReason, StreamStart, TextDelta, ToolCallDelta, ToolCallStart, UsageUpdate
from switchyard.protocols import openai_responses as proto
from switchyard.providers.openai_responses_wire import StreamParser
from switchyard.state.responses import LazyResponseStore, ResponseStore, Stored
from tests.support.pg import pg_database_url


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResponseStore]:
    if request.param == "sqlite":
        s = ResponseStore.open(f"sqlite:///{tmp_path / 'state.db'}")
        yield s
        s.close()
        return
    with pg_database_url() as url:
        s = ResponseStore.open(url)
        yield s
        s.close()


def rec(rid: str, owner: str, prev: str | None = None, text: str = "hi") -> Stored:
    return Stored(rid, owner, "org1", time.time(), prev,
                  [{"type": "message", "role": "user", "content": text}],
                  {"id": rid, "object": "response", "output": [
                      {"type": "message", "role": "assistant", "id": f"msg_{rid}", "status": "completed",
                       "content": [{"type": "output_text", "text": f"re {text}", "annotations": []}]}]})


async def test_put_get_chain_delete_through_the_database(store: ResponseStore) -> None:
    store.put(rec("resp_a", "key:1", text="one"))
    store.put(rec("resp_b", "key:1", "resp_a", text="two"))
    store.put(rec("resp_x", "key:2"))
    store.flush()
    store.cache.clear()  # every read below goes to the table
    got = await store.get("resp_b", "key:1")
    assert got is not None and got.previous_response_id == "resp_a" and got.org_id == "org1"
    assert await store.get("resp_b", "key:2") is None  # another key: as if it did not exist
    assert await store.get("resp_x", "key:1") is None
    items = await store.chain("resp_b", "key:1")
    assert [i.get("content") if i["role"] == "user" else i["content"][0]["text"] for i in items] == [
        "one", "re one", "two", "re two"]
    assert not await store.delete("resp_a", "key:2")
    assert await store.delete("resp_a", "key:1")
    store.flush()
    store.cache.clear()
    assert await store.get("resp_a", "key:1") is None
    assert len(await store.chain("resp_b", "key:1")) == 2  # the chain starts after a deleted response


def test_prepend_expands_a_same_wire_body() -> None:
    req, call = proto.parse_request({"model": "m", "input": "next", "instructions": "rules",
                                     "previous_response_id": "resp_1", "prompt_cache_key": "k"})
    history: list[Any] = [{"type": "message", "role": "user", "content": "first"},
                          {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                          {"type": "function_call_output", "call_id": "c1", "output": "ok"}]
    proto.prepend(req, call, history)
    assert req.raw is not None and "previous_response_id" not in req.raw
    assert req.raw["input"] == [*history, {"type": "message", "role": "user",
                                           "content": [{"type": "input_text", "text": "next"}]}]
    assert req.raw["prompt_cache_key"] == "k"
    assert [m.role.value for m in req.messages] == ["system", "user", "assistant", "tool", "user"]


def test_stream_parser_reads_the_documented_sequence() -> None:
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-4o", "created_at": 5}},
        {"type": "response.in_progress", "response": {}},
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_1"}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hel"},
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "lo"},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{}"},
        {"type": "response.completed", "response": {"status": "completed", "usage": {
            "input_tokens": 3, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 1},
            "output_tokens_details": {"reasoning_tokens": 0}}}},
    ]
    p = StreamParser()
    out = [ev for e in events for ev in p.feed(e).events]
    assert isinstance(out[0], StreamStart) and out[0].id == "resp_1"
    assert [e.text for e in out if isinstance(e, TextDelta)] == ["Hel", "lo"]
    assert [(e.index, e.id, e.name) for e in out if isinstance(e, ToolCallStart)] == [(0, "call_1", "f")]
    assert [e.arguments for e in out if isinstance(e, ToolCallDelta)] == ["{}"]
    fin = next(e for e in out if isinstance(e, Finish))
    assert fin.reason is FinishReason.TOOL_CALLS
    usage = next(e for e in out if isinstance(e, UsageUpdate)).usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (3, 4, 1)
    assert p.done
    failing = StreamParser()
    failing.feed({"type": "response.failed", "response": {"error": {"message": "boom"}}})
    assert failing.failed == "boom"


async def test_an_id_stored_twice_keeps_the_first_and_the_rest_of_the_batch(tmp_path: Path) -> None:
    s = ResponseStore.open(f"sqlite:///{tmp_path / 'dup.db'}")
    try:
        s.put(rec("resp_d", "key:1", text="first"))
        s.flush()
        s.put(rec("resp_d", "key:1", text="second"))
        s.put(rec("resp_e", "key:1", text="other"))
        s.flush()
        s.cache.clear()
        first = await s.get("resp_d", "key:1")
        assert first is not None and first.input[0]["content"] == "first"
        assert await s.get("resp_e", "key:1") is not None
    finally:
        s.close()


async def test_a_store_that_cannot_open_is_a_503() -> None:
    def broken() -> ResponseStore:
        raise OSError("disk gone")

    with pytest.raises(ServiceUnavailable) as e:
        await LazyResponseStore(broken).get()
    assert e.value.status == 503 and "disk" not in e.value.message
