"""Org policy sets end to end (issue 13): a set stored through ``PUT /admin/orgs/{id}/policies`` reaches the
running gateway's policy engine, applies to that org's keys only, and a later version replaces it. The gateway has
no policy files: Cedar loads with the first set. A set may raise its keys' PII mode (``@pii``) when the gateway has a
``pii:`` section, and is refused (400, with the position) when it has none."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client, store_url

FORBID_A = """
@id("no-sim-a")
@reason("sim-a is not approved for this org")
forbid (principal, action == Switchyard::Action::"chat", resource == Switchyard::Deployment::"sim-a");
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with store_url("sqlite", tmp_path_factory.mktemp("orgsets")) as url, run_gateway(gov_config(url)) as running:
        yield running


def _chat(gw: RunningGateway, key: str, model: str) -> tuple[int, str]:
    with openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client()) as c:
        try:
            r = c.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as e:
            return e.status_code, e.response.text
        return r.status_code, r.headers.get("x-switchyard-deployment", "")


def _until(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the gateway did not apply the org policy set in time"
        time.sleep(0.05)


def test_an_org_policy_set_applies_to_its_org_only_and_a_new_version_replaces_it(gw: RunningGateway) -> None:
    admin = Admin(gw.url)
    try:
        org, other = admin.org()["id"], admin.org()["id"]
        _, key = admin.user_with_key("member", org_id=org)
        _, other_key = admin.user_with_key("member", org_id=other)
        assert _chat(gw, key, "sim-a") == (200, "sim-a")  # no set yet: allowed
        admin.call("PUT", f"/admin/orgs/{org}/policies", {"policies": FORBID_A})
        _until(lambda: _chat(gw, key, "sim-a")[0] == 403)
        status, body = _chat(gw, key, "sim-a")
        assert status == 403
        assert "policy_denied" in body and "no-sim-a" in body and "not approved" in body
        assert "forbid (" not in body  # the policy's text is never shown
        assert _chat(gw, key, "sim-b") == (200, "sim-b")  # only sim-a is forbidden
        assert _chat(gw, other_key, "sim-a") == (200, "sim-a")  # the other org is untouched
        admin.call("PUT", f"/admin/orgs/{org}/policies", {"policies": ""})  # version 2: no policies
        _until(lambda: _chat(gw, key, "sim-a")[0] == 200)
    finally:
        admin.close()


def test_a_pii_mode_in_an_org_set_needs_the_gateways_pii_section(gw: RunningGateway) -> None:
    admin = Admin(gw.url)  # this gateway has no pii: section: nothing would be scanned
    try:
        org = admin.org()["id"]
        r = admin.request("PUT", f"/admin/orgs/{org}/policies",
                          {"policies": 'permit(principal, action, resource);\n@pii("mask")\n'
                                       'permit(principal, action, resource);'})
        err = r.json()["error"]
        assert r.status_code == 400 and err["code"] == "invalid_policy" and err["param"] == "policies"
        assert "at line 2, column 1" in err["message"] and "`pii:` section" in err["message"]
    finally:
        admin.close()


def test_an_org_policy_set_may_raise_its_keys_pii_mode(fake_openai: FakeOpenAI,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    up = {"type": "openai", "base_url": f"{fake_openai.base_url}/v1", "api_key": "sk-upstream"}
    email = "jane.doe@example.com"
    with store_url("sqlite", tmp_path_factory.mktemp("orgpii")) as url, run_gateway(gov_config(
            url, pii={"mode": "detect"}, providers={"up": up},
            deployments=[{"name": "gpt-4o-mini", "provider": "up"}], routes={})) as g:
        admin = Admin(g.url)
        try:
            org = admin.org()["id"]
            _, key = admin.user_with_key("member", org_id=org)

            def upstream_saw() -> str:
                with openai.OpenAI(base_url=g.openai_base, api_key=key, max_retries=0,
                                   http_client=sdk_http_client()) as c:
                    c.chat.completions.create(model="gpt-4o-mini",
                                              messages=[{"role": "user", "content": f"mail {email}"}])
                return str(fake_openai.last_request.json["messages"][0]["content"])

            assert upstream_saw() == f"mail {email}"  # detect: the config's mode
            admin.call("PUT", f"/admin/orgs/{org}/policies",
                       {"policies": '@id("redact") @pii("redact") permit(principal, action, resource);'})
            _until(lambda: upstream_saw() == "mail [EMAIL]")
        finally:
            admin.close()
