"""``responses.create(conversation=...)`` over HTTP with the official openai SDK: the conversation's items are
prepended to the input, the turn is appended (whole and streamed), the items are listed by the Conversations API, a
chat completion continues the conversation (on another provider too), and the refusals: with
``previous_response_id`` (400), another tenant's or an unknown conversation (404), a key without retention (403)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .support.fake_anthropic import FakeAnthropic
from .support.fake_openai import make_fake_openai
from .support.gateway import USER_KEY, RunningGateway, run_gateway
from .test_conversations import ANTHROPIC_KEY, NORET_KEY, config, texts_of_openai

OTHER_KEY = "sk-test-other-tenant-0123"


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, Any]]:
    up = {"openai": make_fake_openai(), "anthropic": FakeAnthropic(api_key=ANTHROPIC_KEY)}
    with contextlib.ExitStack() as stack:
        for f in up.values():
            stack.enter_context(f.serve())
        yield up


@pytest.fixture
def gw(fakes: dict[str, Any], tmp_path: Path) -> Iterator[RunningGateway]:
    for f in fakes.values():
        f.reset()
    fakes["anthropic"].api_key = ANTHROPIC_KEY
    up = {**fakes, "gemini": fakes["openai"]}  # the config names a gemini provider; no test here calls it
    cfg = config(up, f"sqlite:///{tmp_path}/sy.db")
    cfg["keys"][0]["logging"] = "metadata"  # not zero retention: its responses are stored (store: true)
    cfg["keys"].append({"key": OTHER_KEY, "name": "other", "retention": {"conversations": "1d"},
                        "logging": "metadata"})
    with run_gateway(cfg) as running:
        yield running


def oai(gw: RunningGateway, key: str = USER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, timeout=30)


def listed(c: openai.OpenAI, conv_id: str) -> list[tuple[str, str]]:
    out = []
    for i in c.conversations.items.list(conv_id, order="asc"):
        assert i.type == "message"
        out.append((i.role, "".join(getattr(p, "text", "") for p in i.content)))
    return out


def test_two_turns_prepend_and_append(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    up = fakes["openai"]
    with oai(gw) as c:
        conv = c.conversations.create()
        r1 = c.responses.create(model="m-openai", conversation=conv.id, input="My name is Ada.")
        assert r1.output_text == "Echo: My name is Ada."
        assert r1.conversation is not None and r1.conversation.id == conv.id  # echoed, as OpenAI does
        assert c.responses.retrieve(r1.id).conversation.id == conv.id  # type: ignore[union-attr]
        assert texts_of_openai(up.requests[-1].json) == [("user", "My name is Ada.")]
        r2 = c.responses.create(model="m-openai", conversation={"id": conv.id}, instructions="Be brief.",
                                input=[{"role": "user", "content": "What is my name?"}])
        assert r2.output_text == "Echo: What is my name?"
        sent = up.requests[-1].json
        assert texts_of_openai(sent) == [("system", "Be brief."), ("user", "My name is Ada."),
                                         ("assistant", "Echo: My name is Ada."), ("user", "What is my name?")]
        assert "conversation" not in sent
        # the items, as the Conversations API lists them (instructions are not part of the conversation)
        assert listed(c, conv.id) == [("user", "My name is Ada."), ("assistant", "Echo: My name is Ada."),
                                      ("user", "What is my name?"), ("assistant", "Echo: What is my name?")]
        # the next turn on another provider gets the same history
        r3 = c.responses.create(model="m-anthropic", conversation=conv.id, input="And now?")
        assert r3.output_text
        sent_an = fakes["anthropic"].requests[-1].json["messages"]
        assert [m["role"] for m in sent_an] == ["user", "assistant", "user", "assistant", "user"]
        assert len(listed(c, conv.id)) == 6


def test_items_added_by_the_conversations_api_are_prepended(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    with oai(gw) as c:
        conv = c.conversations.create(items=[{"type": "message", "role": "user", "content": "Remember 7."},
                                             {"type": "message", "role": "assistant", "content": "Noted."}])
        c.responses.create(model="m-openai", conversation=conv.id, input="Which number?")
        assert texts_of_openai(fakes["openai"].requests[-1].json) == [
            ("user", "Remember 7."), ("assistant", "Noted."), ("user", "Which number?")]


def test_streamed_turns_and_a_chat_completion_continue_it(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    up = fakes["openai"]
    with oai(gw) as c:
        conv = c.conversations.create()
        with c.responses.stream(model="m-openai", conversation=conv.id, input="one two") as stream:
            final = stream.get_final_response()
        assert final.output_text == "Echo: one two"
        assert final.conversation is not None and final.conversation.id == conv.id
        events = c.responses.create(model="m-openai", conversation=conv.id, input="three", stream=True)
        kinds = [e.type for e in events]
        assert kinds[-1] == "response.completed"
        assert texts_of_openai(up.requests[-1].json) == [("user", "one two"), ("assistant", "Echo: one two"),
                                                         ("user", "three")]
        assert listed(c, conv.id)[-2:] == [("user", "three"), ("assistant", "Echo: three")]
        # a chat completion naming the conversation continues it, on another provider too
        chat = c.chat.completions.create(model="m-anthropic", extra_headers={"x-switchyard-conversation": conv.id},
                                         messages=[{"role": "user", "content": "four"}])
        assert chat.choices[0].message.content
        sent = fakes["anthropic"].requests[-1].json["messages"]
        texts = [(m["role"], m["content"] if isinstance(m["content"], str)
                  else "".join(p.get("text", "") for p in m["content"])) for m in sent]
        assert texts == [("user", "one two"), ("assistant", "Echo: one two"), ("user", "three"),
                         ("assistant", "Echo: three"), ("user", "four")]
        # and a Responses call after it sees the chat turn
        c.responses.create(model="m-openai", conversation=conv.id, input="five")
        assert texts_of_openai(up.requests[-1].json)[-3:-1] == [("user", "four"), ("assistant",
                                                                                   chat.choices[0].message.content)]


def test_refusals(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    with oai(gw) as c:
        conv = c.conversations.create()
        first = c.responses.create(model="m-openai", input="hi")
        n = len(fakes["openai"].requests)
        with pytest.raises(openai.BadRequestError) as e400:
            c.responses.create(model="m-openai", conversation=conv.id, previous_response_id=first.id, input="x")
        assert e400.value.body["param"] == "conversation"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError) as e404:
            c.responses.create(model="m-openai", conversation="conv_doesnotexist0000", input="x")
        assert e404.value.body["code"] == "conversation_not_found"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as bad:
            c.responses.create(model="m-openai", input="x", extra_body={"conversation": 42})
        assert bad.value.body["param"] == "conversation"  # type: ignore[index]
    with oai(gw, OTHER_KEY) as other, pytest.raises(openai.NotFoundError):  # another tenant's conversation
        other.responses.create(model="m-openai", conversation=conv.id, input="x")
    with oai(gw, NORET_KEY) as noret, pytest.raises(openai.PermissionDeniedError) as e403:
        noret.responses.create(model="m-openai", conversation=conv.id, input="x")
    assert e403.value.body["code"] == "retention_not_allowed"  # type: ignore[index]
    assert len(fakes["openai"].requests) == n  # no refused call went upstream
    with oai(gw) as c:
        assert listed(c, conv.id) == []  # and none was stored


def test_a_tool_call_and_its_output_keep_their_call_id(gw: RunningGateway, fakes: dict[str, Any]) -> None:
    tool = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {
        "q": {"type": "string"}}, "required": ["q"]}}
    with oai(gw) as c:
        conv = c.conversations.create()
        r1 = c.responses.create(model="m-openai", conversation=conv.id, input="Look it up.", tools=[tool])  # type: ignore[list-item]
        call = next(o for o in r1.output if o.type == "function_call")
        c.responses.create(model="m-openai", conversation=conv.id,
                           input=[{"type": "function_call_output", "call_id": call.call_id, "output": "42"}])
        sent = fakes["openai"].requests[-1].json["messages"]
        assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
        assert sent[1]["tool_calls"][0]["id"] == call.call_id and sent[2]["tool_call_id"] == call.call_id
        types = [i.type for i in c.conversations.items.list(conv.id, order="asc")]
        assert types[:3] == ["message", "function_call", "function_call_output"]
        got = next(i for i in c.conversations.items.list(conv.id, order="asc") if i.type == "function_call")
        assert got.call_id == call.call_id  # type: ignore[union-attr]


def test_store_without_a_conversation_and_previous_response_id_as_openai_does(gw: RunningGateway,
                                                                             fakes: dict[str, Any]) -> None:
    """``store: true`` alone keeps the response (no conversation: ``conversation`` is null) and chains by
    ``previous_response_id``; an id that is not the key's (unknown, deleted, or another tenant's) is OpenAI's 400
    ``previous_response_not_found`` naming the parameter."""
    with oai(gw) as c:
        r1 = c.responses.create(model="m-openai", input="Remember 7.", store=True)
        assert r1.conversation is None and r1.store is True
        assert c.responses.retrieve(r1.id).output_text == "Echo: Remember 7."
        r2 = c.responses.create(model="m-openai", input="Which number?", previous_response_id=r1.id)
        assert r2.previous_response_id == r1.id and r2.conversation is None
        assert texts_of_openai(fakes["openai"].requests[-1].json) == [
            ("user", "Remember 7."), ("assistant", "Echo: Remember 7."), ("user", "Which number?")]
        n = len(fakes["openai"].requests)
        for rid in ("resp_doesnotexist", r1.id):
            if rid == r1.id:
                c.responses.delete(r1.id)
            with pytest.raises(openai.BadRequestError) as e:
                c.responses.create(model="m-openai", input="x", previous_response_id=rid)
            body: Any = e.value.body
            assert (body["type"], body["param"], body["code"]) == (
                "invalid_request_error", "previous_response_id", "previous_response_not_found")
            assert rid in body["message"]
        with pytest.raises(openai.BadRequestError):  # streamed: refused before the stream starts
            c.responses.create(model="m-openai", input="x", previous_response_id="resp_nope", stream=True)
        assert len(fakes["openai"].requests) == n
    with oai(gw, OTHER_KEY) as other, pytest.raises(openai.BadRequestError) as e:
        other.responses.create(model="m-openai", input="x", previous_response_id=r2.id)
    assert e.value.body["code"] == "previous_response_not_found"  # type: ignore[index]


def test_an_unknown_conversation_is_a_404_error_object(gw: RunningGateway) -> None:
    """Naming a conversation that does not exist (never created, or deleted) is a 404 in OpenAI's error shape,
    whole or streamed; the Responses path never creates one (``conversations.create`` does)."""
    with oai(gw) as c:
        conv = c.conversations.create()
        c.conversations.delete(conv.id)
        for cid in ("conv_neverexisted0000", conv.id):
            for stream in (False, True):
                with pytest.raises(openai.NotFoundError) as e:
                    c.responses.create(model="m-openai", conversation=cid, input="x", stream=stream)
                body: Any = e.value.body
                assert (body["type"], body["param"], body["code"]) == (
                    "invalid_request_error", "conversation", "conversation_not_found")
        with pytest.raises(openai.NotFoundError):  # and it was not created by the attempt
            c.conversations.retrieve("conv_neverexisted0000")
