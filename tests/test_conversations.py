"""Conversations kept by the gateway, over HTTP with the official SDKs: the ``/v1/conversations`` API, chat
completions and messages that name a conversation, a provider switch mid-conversation (Anthropic → OpenAI →
Gemini), the scratchpad, retention refusal, tenant isolation, TTL deletion and encryption at rest. SQLite here;
``test_conversations_store.py`` runs the store on PostgreSQL too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import sqlalchemy as sa

from .support.fake_anthropic import FakeAnthropic
from .support.fake_gemini import make_fake_gemini
from .support.fake_openai import make_fake_openai
from .support.gateway import USER_KEY, RunningGateway, base_config, run_gateway

ANTHROPIC_KEY = "sk-ant-upstream-conv"
GEMINI_KEY = "gemini-upstream-conv"
NORET_KEY = "sk-test-noretention-0123"
SECRET = "a-long-random-state-encryption-secret-0123456789"


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    up = {"openai": make_fake_openai(), "anthropic": FakeAnthropic(api_key=ANTHROPIC_KEY),
          "gemini": make_fake_gemini(api_key=GEMINI_KEY)}
    with contextlib.ExitStack() as stack:
        for f in up.values():
            stack.enter_context(f.serve())
        yield up


def config(up: dict[str, Any], store: str, **state: Any) -> dict[str, Any]:
    caps = ["chat", "tools"]
    return base_config(
        store=store,
        keys=[{"key": USER_KEY, "name": "user", "retention": {"conversations": "30d"}},
              {"key": NORET_KEY, "name": "noret"}],
        providers={
            "openai": {"type": "openai", "base_url": f"{up['openai'].base_url}/v1", "api_key": "sk-upstream"},
            "anthropic": {"type": "anthropic", "base_url": up["anthropic"].base_url, "api_key": ANTHROPIC_KEY},
            "gemini": {"type": "gemini", "base_url": up["gemini"].base_url, "api_key": GEMINI_KEY},
        },
        deployments=[
            {"name": "m-anthropic", "provider": "anthropic", "model": "claude-sonnet-4-5", "capabilities": caps},
            {"name": "m-openai", "provider": "openai", "model": "gpt-4o-mini", "capabilities": caps},
            {"name": "m-gemini", "provider": "gemini", "model": "gemini-2.5-flash", "capabilities": caps},
        ],
        state={"encryption_key": SECRET, **state},
    )


@pytest.fixture
def gw(fakes: dict[str, Any], tmp_path: Path) -> Iterator[RunningGateway]:
    for f in fakes.values():
        f.reset()
    fakes["anthropic"].api_key = ANTHROPIC_KEY
    with run_gateway(config(fakes, f"sqlite:///{tmp_path}/sy.db")) as running:
        yield running


def oai(gw: RunningGateway, key: str = USER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, timeout=30)


def ant(gw: RunningGateway, key: str = USER_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=30)


def texts_of_openai(body: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for m in body["messages"]:
        c = m.get("content")
        text = c if isinstance(c, str) else "".join(p.get("text", "") for p in c or [] if isinstance(p, dict))
        out.append((m["role"], text))
    return out


# --- the Conversations API ---------------------------------------------------------------------------------------


def test_conversations_api_with_the_openai_sdk(gw: RunningGateway) -> None:
    with oai(gw) as c:
        conv = c.conversations.create(metadata={"topic": "demo"},
                                      items=[{"type": "message", "role": "user", "content": "Hello there"}])
        assert conv.object == "conversation" and conv.id.startswith("conv_")
        assert c.conversations.retrieve(conv.id).metadata == {"topic": "demo"}
        assert c.conversations.update(conv.id, metadata={"topic": "other"}).metadata == {"topic": "other"}
        added = c.conversations.items.create(conv.id, items=[
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{\"q\": 1}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        ])
        assert [i.type for i in added.data] == ["message", "function_call", "function_call_output"]
        listed = list(c.conversations.items.list(conv.id, order="asc", limit=2))  # pages through
        assert [i.type for i in listed] == ["message", "message", "function_call", "function_call_output"]
        assert listed[0].content[0].text == "Hello there"  # type: ignore[union-attr]
        one = c.conversations.items.retrieve(listed[2].id, conversation_id=conv.id)
        assert one.type == "function_call" and one.call_id == "call_1"  # type: ignore[union-attr]
        assert c.conversations.items.delete(listed[3].id, conversation_id=conv.id).id == conv.id
        assert len(list(c.conversations.items.list(conv.id))) == 3
        deleted = c.conversations.delete(conv.id)
        assert deleted.deleted and deleted.id == conv.id
        with pytest.raises(openai.NotFoundError):
            c.conversations.retrieve(conv.id)


def test_bad_items_are_400s_naming_the_field(gw: RunningGateway) -> None:
    with oai(gw) as c:
        conv = c.conversations.create()
        with pytest.raises(openai.BadRequestError) as e:
            c.conversations.items.create(conv.id, items=[{"type": "message", "role": "robot",  # type: ignore
                                                          "content": "x"}])
        assert e.value.body["param"] == "items[0].role"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError):
            c.conversations.create(metadata={"k" * 65: "v"})


# --- chat and messages continue a conversation -------------------------------------------------------------------


def test_chat_with_the_header_prepends_and_appends(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    up = fakes["openai"]
    with oai(gw) as c:
        conv = c.conversations.create()
        h = {"x-switchyard-conversation": conv.id}
        r1 = c.chat.completions.create(model="m-openai", extra_headers=h, messages=[
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "My name is Ada."}])
        assert r1.choices[0].message.content == "Echo: My name is Ada."
        r2 = c.chat.completions.create(model="m-openai", extra_headers=h,
                                       messages=[{"role": "user", "content": "What is my name?"}])
        assert r2.choices[0].message.content == "Echo: What is my name?"
        sent = texts_of_openai(up.requests[-1].json)
        assert sent == [("system", "Be brief."), ("user", "My name is Ada."), ("assistant", "Echo: My name is Ada."),
                        ("user", "What is my name?")]
        assert "conversation" not in up.requests[-1].json
        items = list(c.conversations.items.list(conv.id, order="asc"))
        assert [(i.role, i.content[0].text) for i in items] == [  # type: ignore[union-attr]
            ("user", "My name is Ada."), ("assistant", "Echo: My name is Ada."), ("user", "What is my name?"),
            ("assistant", "Echo: What is my name?")]


def test_the_body_field_and_a_stream_are_kept(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    with oai(gw) as c:
        stream = c.chat.completions.create(model="m-openai", stream=True, extra_body={"conversation": "my-chat-0001"},
                                           messages=[{"role": "user", "content": "one two three"}])
        assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == "Echo: one two three"
        items = list(c.conversations.items.list("my-chat-0001", order="asc"))  # created on first use
        assert [i.content[0].text for i in items] == ["one two three", "Echo: one two three"]  # type: ignore
        c.chat.completions.create(model="m-openai", extra_body={"conversation": {"id": "my-chat-0001"}},
                                  messages=[{"role": "user", "content": "four"}])
        assert texts_of_openai(fakes["openai"].requests[-1].json)[-3:] == [
            ("user", "one two three"), ("assistant", "Echo: one two three"), ("user", "four")]


def test_anthropic_messages_with_the_header_and_a_stream(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    up = fakes["anthropic"]
    with ant(gw) as a:
        h = {"x-switchyard-conversation": "claude-chat-01"}
        r = a.messages.create(model="m-anthropic", max_tokens=200, extra_headers=h, system="You are terse.",
                              messages=[{"role": "user", "content": "first question"}])
        first = "".join(b.text for b in r.content if b.type == "text")
        with a.messages.stream(model="m-anthropic", max_tokens=2000, extra_headers=h,
                               thinking={"type": "enabled", "budget_tokens": 1024},
                               messages=[{"role": "user", "content": "second question"}]) as s:
            second = s.get_final_message()
        body = up.requests[-1].json
        assert body["system"] in ("You are terse.", [{"type": "text", "text": "You are terse."}])
        roles = [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0].get("text"))
                 for m in body["messages"]]
        assert roles == [("user", "first question"), ("assistant", first), ("user", "second question")]
        signed = next(b for b in second.content if b.type == "thinking")
        a.messages.create(model="m-anthropic", max_tokens=2000, extra_headers=h,
                          thinking={"type": "enabled", "budget_tokens": 1024},
                          messages=[{"role": "user", "content": "third"}])
        sent = [b for m in up.requests[-1].json["messages"] if m["role"] == "assistant"
                and isinstance(m["content"], list) for b in m["content"]]
        # the streamed reply was assembled and stored with its signed thinking, sent back to the same provider
        assert {"type": "thinking", "thinking": signed.thinking, "signature": signed.signature} in sent
    with oai(gw) as c:
        types = [i.type for i in c.conversations.items.list("claude-chat-01", order="asc")]
        assert types == ["message", "message", "message", "reasoning", "message", "message", "reasoning", "message"]


def test_provider_switch_mid_conversation(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    """Anthropic (with thinking and a tool call) → OpenAI → Gemini: each gets the whole history in its own wire
    format; Anthropic's signed thinking goes to none of the others; tool call ids stay as issued."""
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    with oai(gw) as c:
        conv = c.conversations.create()
        h = {"x-switchyard-conversation": conv.id}
        r1 = c.chat.completions.create(model="m-anthropic", extra_headers=h, tools=tools,  # type: ignore[arg-type]
                                       extra_body={"reasoning_effort": "low"}, max_tokens=2000,
                                       messages=[{"role": "user", "content": "Weather in Paris?"}])
        calls = r1.choices[0].message.tool_calls
        assert calls, "the fake Anthropic calls the tool"
        call_id = calls[0].id
        c.chat.completions.create(model="m-openai", extra_headers=h, tools=tools,  # type: ignore[arg-type]
                                  tool_choice="none", messages=[
                                      {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"}])
        sent = fakes["openai"].requests[-1].json["messages"]
        assistant = next(m for m in sent if m["role"] == "assistant" and m.get("tool_calls"))
        assert assistant["tool_calls"][0]["id"] == call_id
        assert sent[-1] == {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"}
        assert "signature" not in str(sent) and "thinking" not in str(sent)
        r3 = c.chat.completions.create(model="m-gemini", extra_headers=h,
                                       messages=[{"role": "user", "content": "And tomorrow?"}])
        assert r3.choices[0].message.content
        contents = fakes["gemini"].requests[-1].json["contents"]
        fc = [p for m in contents for p in m["parts"] if "functionCall" in p]
        fr = [p for m in contents for p in m["parts"] if "functionResponse" in p]
        assert fc and fr and fc[0]["functionCall"]["name"] == "get_weather"
        assert not any(p.get("thought") for m in contents for p in m["parts"])
        # back on Anthropic: its own signed thinking is sent back as it was
        c.chat.completions.create(model="m-anthropic", extra_headers=h, max_tokens=2000,
                                  extra_body={"reasoning_effort": "low"},
                                  messages=[{"role": "user", "content": "Thanks"}])
        msgs = fakes["anthropic"].requests[-1].json["messages"]
        blocks = [b for m in msgs if m["role"] == "assistant" and isinstance(m["content"], list) for b in m["content"]]
        assert any(b["type"] == "thinking" and b.get("signature") for b in blocks)
        assert any(b["type"] == "tool_use" and b["id"] == call_id for b in blocks)


# --- context management ------------------------------------------------------------------------------------------


def test_truncate_keeps_the_system_prompt_and_the_newest_turns(fakes: dict[str, Any], tmp_path: Path) -> None:
    cfg = config(fakes, f"sqlite:///{tmp_path}/t.db", max_history_tokens=120)
    with run_gateway(cfg) as g, oai(g) as c:
        h = {"x-switchyard-conversation": "trunc-conv-1"}
        for i in range(8):
            c.chat.completions.create(model="m-openai", extra_headers=h, messages=[
                {"role": "system", "content": "SYS"}, {"role": "user", "content": f"turn {i} " + "word " * 20}])
        sent = texts_of_openai(fakes["openai"].requests[-1].json)
        assert sent[0] == ("system", "SYS")
        assert sent[-1][1].startswith("turn 7")
        assert not any(t.startswith("turn 0") for _, t in sent)  # the oldest turns were dropped
        assert any(t.startswith("turn 6") for _, t in sent)  # the newest kept
        assert len(list(c.conversations.items.list("trunc-conv-1", limit=100))) == 16  # all still stored


def test_summarize_stores_a_summary_and_charges_it(fakes: dict[str, Any], tmp_path: Path) -> None:
    from .support.gateway import ListRecorder

    cfg = config(fakes, f"sqlite:///{tmp_path}/s.db", max_history_tokens=120, context="summarize",
                 summarize_deployment="m-gemini")
    cfg["deployments"][2]["price"] = {"input": 1.0, "output": 2.0}
    fakes["gemini"].reply = "SUMMARY-TEXT about the turns"
    rec = ListRecorder()
    try:
        with run_gateway(cfg, recorder=rec) as g, oai(g) as c:
            h = {"x-switchyard-conversation": "summ-conv-1"}
            for i in range(6):
                c.chat.completions.create(model="m-openai", extra_headers=h, messages=[
                    {"role": "user", "content": f"turn {i} " + "word " * 20}])
            assert fakes["gemini"].requests, "the summariser was called"
            sent = texts_of_openai(fakes["openai"].requests[-1].json)
            assert sent[0][0] == "system" and "SUMMARY-TEXT" in sent[0][1]
            summarized = [r for r in rec.records if (r.decisions or {}).get("conversation", {}).get("summarized")]
            assert summarized
            d = summarized[0].decisions["conversation"]  # type: ignore[index]
            assert d["summary_deployment"] == "m-gemini" and d["summary_cost"] > 0
            assert summarized[0].cost >= d["summary_cost"]  # charged with the call
    finally:
        fakes["gemini"].reply = None


def test_routing_sees_the_history(fakes: dict[str, Any], tmp_path: Path) -> None:
    """A route of a short-window and a long-window deployment: once the history outgrows the short one, the call
    goes to the long one."""
    cfg = config(fakes, f"sqlite:///{tmp_path}/r.db")
    cfg["deployments"][1]["context_window"] = 200  # m-openai: short
    cfg["routes"] = {"chat": {"targets": ["m-openai", "m-gemini"], "strategy": "priority"}}
    with run_gateway(cfg) as g, oai(g) as c:
        h = {"x-switchyard-conversation": "route-conv-1"}
        served = []
        for i in range(6):
            raw = c.chat.completions.with_raw_response.create(model="chat", extra_headers=h, messages=[
                {"role": "user", "content": f"turn {i} " + "word " * 30}])
            served.append(raw.headers["x-switchyard-deployment"])
        assert served[0] == "m-openai" and served[-1] == "m-gemini"


# --- scratchpad, retention, isolation, TTL, encryption -----------------------------------------------------------


def test_scratchpad_state(gw: RunningGateway) -> None:
    with oai(gw) as c:
        conv = c.conversations.create()
    url = f"{gw.openai_base}/conversations/{conv.id}/state"
    auth = {"authorization": f"Bearer {USER_KEY}"}
    with httpx.Client(headers=auth, timeout=10) as h:
        assert h.get(url).json() == {"object": "conversation.state", "conversation_id": conv.id, "scratchpad": {},
                                     "tool_outputs": []}
        r = h.put(url, json={"scratchpad": {"step": 1, "plan": {"a": 1}}, "tool_outputs": [{"call_id": "c1",
                                                                                           "output": "ok"}]})
        assert r.status_code == 200
        r = h.patch(url, json={"scratchpad": {"plan": {"b": 2}, "step": None}, "tool_outputs": [{"output": 2}]})
        assert r.json()["scratchpad"] == {"plan": {"a": 1, "b": 2}}
        assert r.json()["tool_outputs"] == [{"call_id": "c1", "output": "ok"}, {"output": 2}]
        big = h.put(url, json={"scratchpad": {"x": "y" * 20_000}})
        assert big.status_code == 400 and big.json()["error"]["code"] == "scratchpad_too_large"
        assert h.get(url).json()["scratchpad"] == {"plan": {"a": 1, "b": 2}}  # unchanged by the refused write


def test_retention_is_required(gw: RunningGateway) -> None:
    with oai(gw, NORET_KEY) as c:
        with pytest.raises(openai.PermissionDeniedError) as e:
            c.chat.completions.create(model="m-openai", extra_headers={"x-switchyard-conversation": "noret-conv1"},
                                      messages=[{"role": "user", "content": "hi"}])
        assert e.value.body["code"] == "retention_not_allowed"  # type: ignore[index]
        with pytest.raises(openai.PermissionDeniedError):
            c.conversations.create()
    with ant(gw, NORET_KEY) as a, pytest.raises(anthropic.PermissionDeniedError):
        a.messages.create(model="m-anthropic", max_tokens=50, extra_headers={"x-switchyard-conversation": "noret-c2"},
                          messages=[{"role": "user", "content": "hi"}])


def test_a_bad_conversation_id_is_a_400(gw: RunningGateway) -> None:
    with oai(gw) as c, pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="m-openai", extra_headers={"x-switchyard-conversation": "bad id!"},
                                  messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["param"] == "x-switchyard-conversation"  # type: ignore[index]


def test_without_a_state_section_naming_one_is_a_400(fakes: dict[str, Any]) -> None:
    cfg = config(fakes, "sqlite:///:memory:")
    del cfg["state"]
    with run_gateway(cfg) as g:
        with oai(g) as c, pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="m-openai", extra_body={"conversation": "some-conv-1"},
                                      messages=[{"role": "user", "content": "hi"}])
        assert e.value.body["code"] == "conversations_disabled"  # type: ignore[index]
        with ant(g) as a, pytest.raises(anthropic.BadRequestError):
            a.messages.create(model="m-anthropic", max_tokens=50, extra_headers={
                "x-switchyard-conversation": "some-conv-1"}, messages=[{"role": "user", "content": "hi"}])


def test_encrypted_at_rest(gw: RunningGateway, tmp_path: Path) -> None:
    secret_text = "The launch code is PINEAPPLE-7731"
    with oai(gw) as c:
        conv = c.conversations.create(metadata={"project": "HUSH-PROJECT"})
        c.chat.completions.create(model="m-openai", extra_headers={"x-switchyard-conversation": conv.id},
                                  messages=[{"role": "system", "content": "SYSTEM-SECRET-PROMPT"},
                                            {"role": "user", "content": secret_text}])
        with httpx.Client(timeout=10) as h:
            h.put(f"{gw.openai_base}/conversations/{conv.id}/state", json={"scratchpad": {"note": "PAD-SECRET"}},
                  headers={"authorization": f"Bearer {USER_KEY}"}).raise_for_status()
    engine = sa.create_engine(f"sqlite:///{tmp_path}/sy.db")
    with engine.connect() as conn:
        raw = b"".join(bytes(v) for row in conn.execute(sa.text("SELECT * FROM conversation_items")) for v in row
                       if isinstance(v, bytes | memoryview))
        raw += b"".join(bytes(v) for row in conn.execute(sa.text("SELECT * FROM conversations")) for v in row
                        if isinstance(v, bytes | memoryview))
    engine.dispose()
    assert raw, "content was stored"
    for plain in (b"PINEAPPLE", b"Echo", b"SYSTEM-SECRET", b"HUSH-PROJECT", b"PAD-SECRET"):
        assert plain not in raw
    with oai(gw) as c:  # and it reads back
        first = next(iter(c.conversations.items.list(conv.id, order="asc")))
        assert first.content[0].text == secret_text  # type: ignore[union-attr]


def test_ttl_deletes_expired_conversations(gw: RunningGateway) -> None:
    import asyncio

    store = gw.gateway.conversations
    with oai(gw) as c:
        keep, old = c.conversations.create(), c.conversations.create()
    real = store.clock
    store.clock = lambda: real() + 31 * 86400  # a month later: both are past their 30 days
    try:
        with oai(gw) as c, pytest.raises(openai.NotFoundError):
            c.conversations.retrieve(old.id)  # expired reads as gone even before the sweep
        deleted = asyncio.run(store.sweep())
    finally:
        store.clock = real
    assert deleted == 2
    with oai(gw) as c:
        for conv in (keep, old):
            with pytest.raises(openai.NotFoundError):
                c.conversations.retrieve(conv.id)
