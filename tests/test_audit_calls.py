"""Data-plane calls in the audit log, over real HTTP with the openai SDK: who, what, when, the decision and why,
the deployment and the cost, and payloads only as the key's logging mode says (none, metadata, full)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import openai
import pytest

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client

PROMPT = "the secret recipe is 42 bananas"


@pytest.fixture(scope="module", params=["spool", "memory"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """``spool``: as ``switchyard serve`` runs, calls reach the audit log from the spend spool, chained in the
    transaction that stores their row; ``memory``: any other recorder, with the call auditor's own queue."""
    tmp = tmp_path_factory.mktemp("calls")
    url = f"sqlite:///{tmp}/s.db"
    if request.param == "memory":
        with run_gateway(gov_config(url)) as running:
            yield running
        return
    store = Store.open(url)
    writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
    try:
        with run_gateway(gov_config(url), recorder=writer) as running:
            assert running.gateway.recorder is writer and writer.audit is not None
            yield running
    finally:
        store.close()


def calls_of(admin: Admin, key_id: str, n: int) -> list[dict[str, Any]]:
    """The audit's call records of a key, once ``n`` of them have been appended."""
    for _ in range(200):
        records = [r for r in admin.get("/admin/audit", kind="call", actor=key_id, limit=1000)["data"]]
        if len(records) >= n:
            return records
        time.sleep(0.02)
    raise AssertionError(f"{n} call records for {key_id} did not arrive")


def run_calls(gw: RunningGateway, secret: str) -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as c:
        c.chat.completions.create(model="fast", messages=[{"role": "user", "content": PROMPT}], temperature=0.2,
                                  user="end-user-7", metadata={"ticket": "T-1"})
        list(c.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": PROMPT}], stream=True))


@pytest.mark.parametrize("mode", ["none", "metadata", "full"])
def test_call_records_and_payloads_follow_the_logging_mode(gw: RunningGateway, mode: str) -> None:
    admin = Admin(gw.url)
    org = admin.org()
    team = admin.team(org["id"])
    user = admin.user(team_id=team["id"])
    key = admin.new_key(user_id=user["id"], logging=mode, tags=["support"])
    started = datetime.now(UTC)
    run_calls(gw, key["secret"])
    plain, streamed = calls_of(admin, key["id"], 2)
    for r in (plain, streamed):
        # who, what, when, the decision and why, the deployment and the cost
        assert (r["actor"], r["actor_user_id"], r["team_id"], r["org_id"]) == (key["id"], user["id"], team["id"],
                                                                                 org["id"])
        assert r["action"] == "chat" and r["decision"] == "allow" and r["status"] == 200
        assert r["deployment"] == "sim-a" and r["cost"] > 0 and r["reason"]
        assert datetime.fromisoformat(r["ts"]) >= started.replace(microsecond=0)
        assert r["details"]["tokens"]["input"] > 0 and r["details"]["tags"] == ["support"]
        assert r["request_id"].startswith("req_")
    assert plain["target"] == "fast" and plain["details"]["route"] == "fast"
    text = str([plain, streamed])
    if mode == "none":
        assert plain["payload"] is None and streamed["payload"] is None
        assert PROMPT not in text and "end-user-7" not in text
    elif mode == "metadata":
        p = plain["payload"]
        assert p["params"]["temperature"] == 0.2 and p["user"] == "end-user-7" and p["metadata"] == {"ticket": "T-1"}
        assert p["roles"] == ["user"] and p["finish_reasons"] and streamed["payload"]["params"]["stream"] is True
        assert PROMPT not in text and "response" not in p and "request" not in p
    else:
        assert plain["payload"]["request"]["messages"][0]["content"] == PROMPT
        assert plain["payload"]["response"]["choices"][0]["text"]
        assert streamed["payload"]["response"]["choices"][0]["text"]
        assert streamed["payload"]["finish_reasons"]
    assert admin.get("/admin/audit/verify")["ok"] is True
    admin.close()


def test_a_model_outside_the_allow_list_is_audited_as_a_denial(gw: RunningGateway) -> None:
    admin = Admin(gw.url)
    team = admin.team(admin.org()["id"])
    user = admin.user(team_id=team["id"])
    key = admin.new_key(user_id=user["id"], models=["fast"])
    with openai.OpenAI(base_url=gw.openai_base, api_key=key["secret"], max_retries=0,
                       http_client=sdk_http_client()) as c:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            c.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": PROMPT}])
        assert denied.value.code == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError):
            c.embeddings.create(model="sim-c", input="x")
        c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    records = sorted(calls_of(admin, key["id"], 3), key=lambda r: r["ts"])
    by_target = {r["target"]: r for r in records}
    for target, action in (("sim-a", "chat"), ("sim-c", "embeddings")):
        r = by_target[target]
        assert (r["decision"], r["status"], r["action"]) == ("deny", 403, action)
        assert "may not use model" in r["reason"] and r["deployment"] is None and not r["cost"]
    assert by_target["fast"]["decision"] == "allow"
    admin.close()
