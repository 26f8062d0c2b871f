"""The PII stage over HTTP with both official SDKs, against fake upstreams that record what they received: in mask
mode no value reaches the upstream and the caller gets its values back (whole replies, streams whose placeholders
are split across chunks, tool call arguments), redact, block (a 400 in each protocol) and detect; every text part
is covered (system prompts, tool call arguments, tool results, embeddings input); the records and the audit keep
types and counts, never a value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import anthropic
import openai
import pytest

from switchyard.config import parse_config
from switchyard.governance.auth import Principal
from switchyard.messages import WIRE_OPENAI_CHAT, ChatRequest, Message, Role, TextPart
from switchyard.pii.stage import PiiDetected, PiiMaskStage, PiiStage, pii_stages
from switchyard.stages import CallContext
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client

EMAIL, PHONE, CARD = "jane.doe@example.com", "+1 415-555-2671", "4111 1111 1111 1111"
SSN, SECRET = "123-45-6789", "sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz123456"
VALUES = (EMAIL, PHONE, CARD, SSN, SECRET, "4111111111111111")
PROMPT = f"Contact {EMAIL} or {PHONE}; card {CARD}."
SYSTEM = f"The customer's SSN is {SSN}. Never reveal {SECRET}."
MASKED_PROMPT = "Contact [EMAIL_1] or [PHONE_1]; card [CREDIT_CARD_1]."


def no_value_in(obj: Any) -> None:
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    for v in VALUES:
        assert v not in text, f"{v!r} leaked"


def config(oa: FakeOpenAI, an: FakeAnthropic, mode: str | None, **pii: Any) -> dict[str, Any]:
    cfg = base_config(
        providers={"oa": {"type": "openai", "base_url": f"{oa.base_url}/v1", "api_key": "sk-upstream-openai"},
                   "an": {"type": "anthropic", "base_url": an.base_url, "api_key": "sk-upstream-anthropic"}},
        deployments=[{"name": "gpt-4o-mini", "provider": "oa"},
                     {"name": "claude", "provider": "an", "model": "claude-sonnet-4-5"},
                     {"name": "text-embedding-3-small", "provider": "oa", "capabilities": ["embeddings"]}],
    )
    if mode is not None:
        cfg["pii"] = {"mode": mode, **pii}
    return cfg


@pytest.fixture
def gateway(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, request: pytest.FixtureRequest,
            ) -> Iterator[tuple[RunningGateway, ListRecorder]]:
    rec = ListRecorder()
    with run_gateway(config(fake_openai, fake_anthropic, request.param), recorder=rec) as gw:
        yield gw, rec


def oai(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0, http_client=sdk_http_client())


def ant(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0, http_client=sdk_http_client())


def last_record(rec: ListRecorder) -> Any:
    for _ in range(200):
        if rec.records:
            break
        import time

        time.sleep(0.01)
    return rec.records[-1]


CHAT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]


# --- mask ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", ["mask"], indirect=True)
def test_mask_openai_whole_reply(gateway: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    gw, rec = gateway
    with oai(gw) as c:
        r = c.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    sent = fake_openai.last_request.json
    no_value_in(sent)
    assert sent["messages"][1]["content"] == MASKED_PROMPT
    assert sent["messages"][0]["content"] == "The customer's SSN is [US_SSN_1]. Never reveal [SECRET_1]."
    assert r.choices[0].message.content == f"Echo: {PROMPT}"
    record = last_record(rec)
    assert record.decisions == {"pii": {"mode": "mask", "data_class": "confidential", "types": {
        "CREDIT_CARD": 1, "EMAIL": 1, "PHONE": 1, "SECRET": 1, "US_SSN": 1}}}
    no_value_in(repr(record))


@pytest.mark.parametrize("gateway", ["mask"], indirect=True)
def test_mask_openai_stream_with_placeholders_split_across_chunks(
        gateway: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    gw, rec = gateway
    fake_openai.stream_piece = 3  # "[EMAIL_1]" arrives as "[EM", "AIL", "_1]" or so
    with oai(gw) as c:
        stream = c.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)  # type: ignore
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    no_value_in(fake_openai.last_request.json)
    assert text == f"Echo: {PROMPT}"
    no_value_in(repr(last_record(rec)))


@pytest.mark.parametrize("gateway", ["mask"], indirect=True)
def test_mask_anthropic_whole_and_streamed(gateway: tuple[RunningGateway, ListRecorder],
                                           fake_anthropic: FakeAnthropic) -> None:
    gw, _ = gateway
    fake_anthropic.stream_piece = 2
    with ant(gw) as c:
        r = c.messages.create(model="claude", max_tokens=200, system=SYSTEM,
                              messages=[{"role": "user", "content": PROMPT}])
        assert r.content[0].type == "text" and r.content[0].text == f"Echo: {PROMPT}"
        with c.messages.stream(model="claude", max_tokens=200, system=SYSTEM,
                               messages=[{"role": "user", "content": PROMPT}]) as s:
            streamed = "".join(s.text_stream)
            final = s.get_final_message()
    assert streamed == f"Echo: {PROMPT}" and final.content[0].type == "text"
    assert len(fake_anthropic.requests) == 2
    for req in fake_anthropic.requests:
        no_value_in(req.json)
        assert "[US_SSN_1]" in json.dumps(req.json["system"])


@pytest.mark.parametrize("gateway", ["mask"], indirect=True)
def test_mask_across_protocols_anthropic_caller_openai_upstream(
        gateway: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    gw, _ = gateway
    fake_openai.stream_piece = 4
    with ant(gw) as c, c.messages.stream(model="gpt-4o-mini", max_tokens=200,
                                         messages=[{"role": "user", "content": PROMPT}]) as s:
        assert "".join(s.text_stream) == f"Echo: {PROMPT}"
    no_value_in(fake_openai.last_request.json)


LOOKUP = {"type": "function", "function": {"name": "send_mail", "parameters": {
    "type": "object", "properties": {"to": {"type": "string", "enum": ["[EMAIL_1]"]}}, "required": ["to"]}}}


@pytest.mark.parametrize("gateway", ["mask"], indirect=True)
def test_mask_restores_tool_call_arguments_whole_and_streamed(
        gateway: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    # the fake answers a tool call with the schema's first enum value: a model that uses the placeholder it saw
    gw, _ = gateway
    msgs = [{"role": "user", "content": f"Mail {EMAIL} please"}]
    with oai(gw) as c:
        r = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=[LOOKUP])  # type: ignore
        calls = r.choices[0].message.tool_calls
        assert calls is not None and json.loads(calls[0].function.arguments) == {"to": EMAIL}  # type: ignore
        stream = c.chat.completions.create(model="gpt-4o-mini", messages=msgs, tools=[LOOKUP],  # type: ignore
                                           stream=True)
        args = "".join(tc.function.arguments or "" for ch in stream if ch.choices
                       for tc in ch.choices[0].delta.tool_calls or [] if tc.function)
    assert json.loads(args) == {"to": EMAIL}
    for req in fake_openai.requests:
        no_value_in(req.json)


@pytest.mark.parametrize("gateway", ["mask"], indirect=True)
def test_every_text_part_is_covered(gateway: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI,
                                    fake_anthropic: FakeAnthropic) -> None:
    gw, _ = gateway
    with oai(gw) as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=[  # type: ignore[arg-type]
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "lookup", "arguments": json.dumps({"email": EMAIL, "ssn": SSN})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": f"phone {PHONE}, key {SECRET}"},
        ], prediction={"type": "content", "content": f"Dear {EMAIL},"}, service_tier="default",
            extra_body={"vendor_field": {"note": f"card {CARD}"}})
        emb = c.embeddings.create(model="text-embedding-3-small", input=[PROMPT, "nothing personal"])
    assert len(emb.data) == 2
    chat, embed = fake_openai.requests_to("/chat/completions")[-1].json, fake_openai.requests_to("/embeddings")[-1].json
    no_value_in(chat)
    no_value_in(embed)
    assert json.loads(chat["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {
        "email": "[EMAIL_1]", "ssn": "[US_SSN_1]"}
    assert embed["input"] == [MASKED_PROMPT, "nothing personal"]
    # the fields the gateway does not model go upstream (same wire), their texts masked like the rest
    assert chat["prediction"] == {"type": "content", "content": "Dear [EMAIL_1],"}
    assert chat["service_tier"] == "default" and chat["vendor_field"] == {"note": "card [CREDIT_CARD_1]"}
    with ant(gw) as a:
        a.messages.create(model="claude", max_tokens=50, messages=[
            {"role": "user", "content": "find the customer"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup",
                                               "input": {"email": EMAIL}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": f"card {CARD}"}]}]},
        ], service_tier="auto", extra_body={"vendor_field": f"for {EMAIL}"})
    sent = fake_anthropic.last_request.json
    no_value_in(sent)
    assert sent["service_tier"] == "auto" and sent["vendor_field"] == "for [EMAIL_1]"


# --- redact, block, detect -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gateway", ["redact"], indirect=True)
def test_redact_replaces_values_with_their_type(gateway: tuple[RunningGateway, ListRecorder],
                                                fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    gw, rec = gateway
    with oai(gw) as c:
        r = c.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    assert fake_openai.last_request.json["messages"][1]["content"] == "Contact [EMAIL] or [PHONE]; card [CREDIT_CARD]."
    assert r.choices[0].message.content == "Echo: Contact [EMAIL] or [PHONE]; card [CREDIT_CARD]."
    with ant(gw) as a:
        m = a.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": PROMPT}])
    assert m.content[0].type == "text" and "[EMAIL]" in m.content[0].text
    no_value_in(fake_anthropic.last_request.json)
    assert last_record(rec).decisions["pii"]["mode"] == "redact"


@pytest.mark.parametrize("gateway", ["block"], indirect=True)
def test_block_is_a_400_in_each_protocol_naming_types_never_values(
        gateway: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI,
        fake_anthropic: FakeAnthropic) -> None:
    gw, rec = gateway
    with oai(gw) as c:
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
        assert e.value.status_code == 400 and e.value.code == "pii_detected"
        assert "CREDIT_CARD, EMAIL, PHONE, SECRET, US_SSN" in e.value.message
        no_value_in(e.value.message)
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="gpt-4o-mini", messages=CHAT, stream=True)  # type: ignore
        with pytest.raises(openai.BadRequestError):
            c.embeddings.create(model="text-embedding-3-small", input=PROMPT)
        ok = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
        assert ok.choices[0].message.content == "Echo: hello"
    with ant(gw) as a:
        with pytest.raises(anthropic.BadRequestError) as ae:
            a.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": PROMPT}])
        assert ae.value.status_code == 400
        body: Any = ae.value.body
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert "EMAIL" in body["error"]["message"]
        no_value_in(body)
    assert len(fake_openai.requests) == 1 and not fake_anthropic.requests  # only the clean request went out
    refused = [r for r in rec.records if r.http_status == 400]
    assert refused and all(r.decisions["pii"]["mode"] == "block" for r in refused)
    no_value_in(repr(rec.records))


@pytest.mark.parametrize("gateway", ["block"], indirect=True)
def test_a_block_refusal_keeps_no_value_in_the_audited_payload(gateway: tuple[RunningGateway, ListRecorder],
                                                              fake_openai: FakeOpenAI) -> None:
    gw, rec = gateway
    full = "sk-test-full-logging-0123456789"

    async def resolve(key: str, digest: str) -> Principal | None:
        return Principal(id="vk_full", name="full", key_id="vk_full", logging="full") if key == full else None

    gw.gateway.auth.add_resolver(resolve)
    with openai.OpenAI(base_url=gw.openai_base, api_key=full, max_retries=0, http_client=sdk_http_client()) as c, \
            pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    r = last_record(rec)
    assert r.http_status == 400 and r.payload is not None  # the request, as the key's logging mode keeps it
    assert "[EMAIL]" in json.dumps(r.payload)
    no_value_in(r.payload)
    assert not fake_openai.requests


@pytest.mark.parametrize("gateway", ["detect"], indirect=True)
def test_detect_records_types_and_changes_nothing(gateway: tuple[RunningGateway, ListRecorder],
                                                  fake_openai: FakeOpenAI) -> None:
    gw, rec = gateway
    with oai(gw) as c:
        r = c.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    assert fake_openai.last_request.json["messages"][1]["content"] == PROMPT
    assert r.choices[0].message.content == f"Echo: {PROMPT}"
    record = last_record(rec)
    assert record.decisions["pii"]["types"] == {"CREDIT_CARD": 1, "EMAIL": 1, "PHONE": 1, "SECRET": 1, "US_SSN": 1}
    assert record.decisions["pii"]["data_class"] == "confidential"
    no_value_in(repr(record))


@pytest.mark.parametrize("gateway", ["detect"], indirect=True)
def test_an_upstream_error_that_quotes_the_request_is_recorded_without_its_values(
        gateway: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    gw, rec = gateway
    fake_openai.fail_next(400, {"error": {"message": f"Invalid content: {PROMPT}", "type": "invalid_request_error",
                                          "param": "messages", "code": None}})
    with oai(gw) as c, pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    assert EMAIL in str(e.value)  # the caller sent the values, and gets the upstream's message as it was
    record = last_record(rec)
    assert record.error is not None and "Invalid content: Contact [EMAIL]" in record.error
    no_value_in(repr(record))


@pytest.mark.parametrize("gateway", [None], indirect=True)
def test_without_a_pii_section_the_stage_is_not_in_the_chain(gateway: tuple[RunningGateway, ListRecorder],
                                                              fake_openai: FakeOpenAI) -> None:
    gw, rec = gateway
    assert "PII" not in gw.gateway.chain.describe() and not gw.gateway.chain.reply
    with oai(gw) as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=CHAT)  # type: ignore[arg-type]
    assert fake_openai.last_request.json["messages"][1]["content"] == PROMPT
    assert last_record(rec).decisions is None


# --- the audit log, with a key whose logging mode is full --------------------------------------------------------


def test_the_audit_keeps_types_and_counts_and_the_payload_keeps_placeholders(tmp_path: Any) -> None:
    with run_gateway(gov_config(f"sqlite:///{tmp_path}/s.db", pii={"mode": "mask",
                                                                    "type_classes": {"SECRET": "restricted"}})) as gw:
        admin = Admin(gw.url)
        team = admin.team(admin.org()["id"])
        key = admin.new_key(user_id=admin.user(team_id=team["id"])["id"], logging="full")
        with openai.OpenAI(base_url=gw.openai_base, api_key=key["secret"], max_retries=0,
                           http_client=sdk_http_client()) as c:
            c.chat.completions.create(model="sim-a", messages=CHAT, user=EMAIL)  # type: ignore[arg-type]
            list(c.chat.completions.create(model="sim-a", messages=CHAT, stream=True))  # type: ignore
        records: list[dict[str, Any]] = []
        for _ in range(200):
            records = admin.get("/admin/audit", kind="call", actor=key["id"], limit=100)["data"]
            if len(records) >= 2:
                break
            import time

            time.sleep(0.02)
        assert len(records) == 2
        for r in records:
            assert r["details"]["decisions"]["pii"] == {"mode": "mask", "data_class": "restricted", "types": {
                "CREDIT_CARD": 1, "EMAIL": 1, "PHONE": 1, "SECRET": 1, "US_SSN": 1}}
            assert "[EMAIL_1]" in json.dumps(r["payload"]["request"])  # the full payload, as the upstream saw it
            no_value_in(r)
        admin.close()


# --- the mode of a key or team ---------------------------------------------------------------------------------


def _call(principal: Principal) -> CallContext:
    req = ChatRequest(model="m", messages=[Message(Role.USER, [TextPart(PROMPT)])], wire=WIRE_OPENAI_CHAT)
    return CallContext(request_id="r1", principal=principal, request=req)


def test_a_principal_mode_overrides_the_config_unless_key_modes_is_off() -> None:
    cfg = parse_config(base_config(pii={"mode": "detect"}), "<test>", {}).pii
    assert cfg is not None
    stage = pii_stages(cfg)[0]
    assert isinstance(stage, PiiMaskStage)  # keys may choose mask: the restoring stage is in the chain
    blocked = Principal(id="key:x", name="x", pii_mode="block")
    with pytest.raises(PiiDetected):
        stage.before(_call(blocked))
    off = _call(replace(blocked, pii_mode="off"))
    stage.before(off)
    assert off.pii_types is None and off.decisions is None
    strict = parse_config(base_config(pii={"mode": "redact", "key_modes": False}), "<test>", {}).pii
    assert strict is not None
    (plain,) = pii_stages(strict)
    assert type(plain) is PiiStage  # no wrap, no reply hook: streams pass untouched
    call = _call(blocked)
    plain.before(call)  # the key's block is ignored: the config's redact applies
    assert isinstance(call.request, ChatRequest) and call.request.messages[0].text() == (
        "Contact [EMAIL] or [PHONE]; card [CREDIT_CARD].")
    assert call.data_class == "confidential" and call.pii_types == frozenset({"EMAIL", "PHONE", "CREDIT_CARD"})
