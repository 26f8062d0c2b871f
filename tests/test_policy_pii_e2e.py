"""The PII mode chosen by policy (``@pii("<mode>")`` on a permit) over HTTP with the official SDKs, against a fake
OpenAI upstream that records what it received (tests/support/fake_openai.py, after the Chat Completions API
reference): a team's requests are masked (whole replies and streams restored), the strictest mode of the permits
that allowed the deployments left wins, a policy raises a key's own mode but never lowers it, an org policy set
that adds a mode applies at once, and a payload kept for the audit never holds a value, even when a policy
refuses the call after the scan."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from switchyard.governance.auth import Principal
from switchyard.policy.stage import Policy
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

POLICIES = '''
@id("support-mask") @reason("the support team's customers' data stays with us")
@pii("mask")
permit(principal in Switchyard::Team::"support", action, resource);

@id("phone-redact") @pii("redact")
permit(principal in Switchyard::Team::"support", action, resource)
when { !resource.zdr && context.pii.contains("PHONE") };

@id("no-secrets") @pii("block")
permit(principal, action, resource) when { context.pii.contains("SECRET") };

@id("no-us-for-restricted") @reason("restricted data stays in Australia")
forbid(principal, action, resource) when { context.data_class == "restricted" && resource.region == "us" };
'''

EMAIL, PHONE, SECRET = "jane.doe@example.com", "+1 415-555-2671", "sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz123456"
SUPPORT_KEY = "sk-test-support-0123456789"
SUPPORT_OFF_KEY = "sk-test-support-off-0123456789"
SUPPORT_BLOCK_KEY = "sk-test-support-block-0123456789"
ACME_KEY = "sk-test-acme-0123456789"
FULL_KEY = "sk-test-full-log-0123456789"
PRINCIPALS = {
    SUPPORT_KEY: Principal(id="vk_s", name="support", key_id="vk_s", team_id="support"),
    SUPPORT_OFF_KEY: Principal(id="vk_so", name="support-off", key_id="vk_so", team_id="support", pii_mode="off"),
    SUPPORT_BLOCK_KEY: Principal(id="vk_sb", name="support-block", key_id="vk_sb", team_id="support",
                                 pii_mode="block"),
    ACME_KEY: Principal(id="vk_a", name="acme", key_id="vk_a", org_id="acme"),
    FULL_KEY: Principal(id="vk_f", name="full", key_id="vk_f", team_id="support", logging="full"),
}


async def _resolve(key: str, digest: str) -> Principal | None:
    return PRINCIPALS.get(key)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(models=["small-us", "zdr-au"])
    with fake.serve():
        yield fake


@pytest.fixture(scope="module")
def running(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[tuple[RunningGateway, ListRecorder]]:
    d: Path = tmp_path_factory.mktemp("pii-policies")
    (d / "main.cedar").write_text(POLICIES)
    up = {"type": "openai", "base_url": f"{upstream.base_url}/v1", "api_key": "sk-upstream"}
    cfg = base_config(
        providers={"up": up},
        deployments=[{"name": "us-small", "provider": "up", "model": "small-us", "region": "us"},
                     {"name": "au-zdr", "provider": "up", "model": "zdr-au", "region": "au", "zdr": True}],
        routes={"chat": {"targets": ["us-small", "au-zdr"], "strategy": "priority"}},
        policies={"files": [str(d / "main.cedar")]},
        pii={"mode": "detect", "type_classes": {"SECRET": "restricted"}},
    )
    rec = ListRecorder()
    with run_gateway(cfg, recorder=rec) as gw:
        gw.gateway.auth.add_resolver(_resolve)
        yield gw, rec


@pytest.fixture
def gw(running: tuple[RunningGateway, ListRecorder], upstream: FakeOpenAI) -> Iterator[RunningGateway]:
    upstream.reset()
    running[1].records.clear()
    yield running[0]
    upstream.reset()


@pytest.fixture
def rec(running: tuple[RunningGateway, ListRecorder]) -> ListRecorder:
    return running[1]


def oai(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0)


def sent(upstream: FakeOpenAI) -> str:
    return json.dumps(upstream.last_request.json["messages"])


def last_record(rec: ListRecorder) -> Any:
    for _ in range(200):
        if rec.records:
            return rec.records[-1]
        time.sleep(0.01)
    raise AssertionError("no call was recorded")


def test_without_a_matching_policy_the_keys_mode_applies(gw: RunningGateway, upstream: FakeOpenAI,
                                                         rec: ListRecorder) -> None:
    with oai(gw, USER_KEY) as c:
        raw = c.chat.completions.with_raw_response.create(model="chat", messages=[
            {"role": "user", "content": f"mail {EMAIL}"}])
    assert EMAIL in sent(upstream)  # detect: the upstream sees the value
    assert raw.parse().choices[0].message.content == f"Echo: mail {EMAIL}"
    r = last_record(rec)
    assert r.decisions["pii"]["mode"] == "detect" and "pii_mode" not in r.decisions["policy"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_policy_masks_a_teams_requests(gw: RunningGateway, upstream: FakeOpenAI, rec: ListRecorder,
                                         stream: bool) -> None:
    upstream.stream_piece = 3  # "[EMAIL_1]" arrives split across chunks
    with oai(gw, SUPPORT_KEY) as c:
        if stream:
            with c.chat.completions.with_streaming_response.create(model="chat", stream=True, messages=[
                    {"role": "user", "content": f"mail {EMAIL}"}]) as r:
                headers = r.headers
                text = "".join(ch.choices[0].delta.content or "" for ch in r.parse() if ch.choices)
        else:
            raw = c.chat.completions.with_raw_response.create(model="chat", messages=[
                {"role": "user", "content": f"mail {EMAIL}"}])
            headers, text = raw.headers, raw.parse().choices[0].message.content or ""
    assert EMAIL not in sent(upstream) and "mail [EMAIL_1]" in sent(upstream)
    assert text == f"Echo: mail {EMAIL}"  # the caller gets its value back
    assert "support-mask" in headers["x-switchyard-policy"].split(",")
    r = last_record(rec)
    assert r.decisions["policy"]["pii_mode"] == {"mode": "mask", "ids": ["support-mask"]}
    assert r.decisions["pii"] == {"mode": "mask", "types": {"EMAIL": 1}, "data_class": "confidential"}
    assert EMAIL not in repr(r)


def test_a_policy_masks_an_anthropic_callers_request_too(gw: RunningGateway, upstream: FakeOpenAI) -> None:
    with anthropic.Anthropic(base_url=gw.url, api_key=SUPPORT_KEY, max_retries=0) as a:
        m = a.messages.create(model="chat", max_tokens=100, messages=[{"role": "user", "content": f"mail {EMAIL}"}])
        with a.messages.stream(model="chat", max_tokens=100,
                               messages=[{"role": "user", "content": f"mail {EMAIL}"}]) as s:
            streamed = s.get_final_text()
    assert m.content[0].type == "text" and m.content[0].text == f"Echo: mail {EMAIL}"
    assert streamed == f"Echo: mail {EMAIL}"
    assert all(EMAIL not in json.dumps(r.json) for r in upstream.requests_to("/chat/completions"))


def test_the_strictest_mode_of_the_deployments_left_wins(gw: RunningGateway, upstream: FakeOpenAI,
                                                          rec: ListRecorder) -> None:
    msg = [{"role": "user", "content": f"call {PHONE}"}]
    with oai(gw, SUPPORT_KEY) as c:
        # the route may reach us-small, which keeps data: redact beats mask, whichever deployment serves
        reply = c.chat.completions.create(model="chat", messages=msg).choices[0].message.content
        assert reply == "Echo: call [PHONE]"
        assert "call [PHONE]" in sent(upstream)
        assert last_record(rec).decisions["policy"]["pii_mode"] == {"mode": "redact", "ids": ["phone-redact"]}
        # asked of the zero-retention deployment alone, only the mask applies: the caller gets the number back
        reply = c.chat.completions.create(model="au-zdr", messages=msg).choices[0].message.content
        assert reply == f"Echo: call {PHONE}"
        assert PHONE not in sent(upstream) and "[PHONE_1]" in sent(upstream)


def test_a_block_policy_refuses_in_each_protocol_and_nothing_is_sent(gw: RunningGateway, upstream: FakeOpenAI,
                                                                     rec: ListRecorder) -> None:
    content = f"deploy with {SECRET}"
    with oai(gw, USER_KEY) as c, pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="au-zdr", messages=[{"role": "user", "content": content}])
    body: Any = e.value.body
    assert body["code"] == "pii_detected" and "SECRET" in body["message"] and SECRET not in body["message"]
    assert e.value.response.headers["x-switchyard-policy"] == "no-secrets"
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as a, \
            pytest.raises(anthropic.BadRequestError) as e2:
        a.messages.create(model="au-zdr", max_tokens=10, messages=[{"role": "user", "content": content}])
    assert "SECRET" in str(e2.value) and SECRET not in str(e2.value)
    assert upstream.requests_to("/chat/completions") == []
    r = last_record(rec)
    assert r.http_status == 400 and r.decisions["pii"]["mode"] == "block" and SECRET not in repr(r)


def test_a_policy_raises_a_keys_mode_and_never_lowers_it(gw: RunningGateway, upstream: FakeOpenAI) -> None:
    with oai(gw, SUPPORT_OFF_KEY) as c:  # the key says off; its team's policy says mask
        c.chat.completions.create(model="au-zdr", messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    assert EMAIL not in sent(upstream) and "[EMAIL_1]" in sent(upstream)
    with oai(gw, SUPPORT_BLOCK_KEY) as c, pytest.raises(openai.BadRequestError):  # block beats the policy's mask
        c.chat.completions.create(model="au-zdr", messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    with oai(gw, SUPPORT_BLOCK_KEY) as c:  # and a request without personal data passes
        c.chat.completions.create(model="au-zdr", messages=[{"role": "user", "content": "hello"}])


def test_an_org_policy_set_that_asks_for_a_mode_applies_at_once(gw: RunningGateway, upstream: FakeOpenAI) -> None:
    stage = next(s for s in gw.gateway.chain.stages if isinstance(s, Policy))
    base = stage.engine
    assert base is not None
    msg = [{"role": "user", "content": f"mail {EMAIL}"}]
    try:
        stage.engine = base.with_org_sets({"acme": '@id("acme-redact") @pii("redact") '
                                                   'permit(principal, action, resource);'})
        with oai(gw, ACME_KEY) as c:
            assert c.chat.completions.create(model="au-zdr", messages=msg).choices[0].message.content == (
                "Echo: mail [EMAIL]")
        with oai(gw, USER_KEY) as c:  # another org's key: the config's policies only
            c.chat.completions.create(model="au-zdr", messages=msg)
        assert EMAIL in sent(upstream)
    finally:
        stage.engine = base


def test_an_audited_payload_holds_no_value_even_when_a_policy_refuses_after_the_scan(
        gw: RunningGateway, upstream: FakeOpenAI, rec: ListRecorder) -> None:
    # a secret makes the request restricted: us-small is forbidden, and no other deployment is asked for
    with oai(gw, FULL_KEY) as c, pytest.raises(openai.PermissionDeniedError) as e:
        c.chat.completions.create(model="us-small", messages=[{"role": "user", "content": f"{EMAIL} {SECRET}"}])
    assert "no-us-for-restricted" in str(e.value)
    r = last_record(rec)
    assert r.http_status == 403 and r.payload is not None
    assert EMAIL not in json.dumps(r.payload) and SECRET not in json.dumps(r.payload)
    assert "[EMAIL]" in json.dumps(r.payload)
    with oai(gw, FULL_KEY) as c:  # allowed, masked by the team's policy: the payload keeps the placeholders
        c.chat.completions.create(model="au-zdr", messages=[{"role": "user", "content": f"mail {EMAIL}"}])
    r = last_record(rec)
    assert r.http_status == 200 and "[EMAIL_1]" in json.dumps(r.payload) and EMAIL not in json.dumps(r.payload)
    assert upstream.requests_to("/chat/completions") and EMAIL not in sent(upstream)
