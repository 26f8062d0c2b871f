"""Governance data for the policy plane (issue 13), over HTTP on SQLite and PostgreSQL: the data class and PII
mode of keys and teams (admin API, store, the Principal), the ``x-switchyard-data-class`` header through both
official SDKs, and org policy sets (``GET/PUT /admin/orgs/{id}/policies``: versions, audit, scope, validation)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
import sqlalchemy as sa

from switchyard.governance.auth import Principal
from switchyard.governance.db import Db
from switchyard.governance.org_policies import OrgPolicies, OrgPolicyWatcher, latest_org_policies
from switchyard.stages import CallContext, Stage
from switchyard.store.db import create_engine_for
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import BACKENDS, Admin, gov_config, sdk_http_client, store_url

CLASSY_KEY = "sk-test-classy-0123456789"


@dataclass
class Seen:
    data_class: str | None
    principal: Principal | None


@dataclass
class Capture(Stage):
    """What the stages after authentication see of each call."""

    calls: list[Seen] = field(default_factory=list)

    def before(self, call: CallContext) -> None:
        self.calls.append(Seen(call.data_class, call.principal))


@dataclass
class Env:
    gw: RunningGateway
    url: str
    capture: Capture


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    capture = Capture()
    with store_url(request.param, tmp_path_factory.mktemp("govdata")) as url:
        cfg = gov_config(url, keys=[{"key": CLASSY_KEY, "name": "classy", "data_class": "Confidential",
                                     "pii_mode": "redact"}])
        with run_gateway(cfg, extra_stages=[capture]) as running:
            yield Env(running, url, capture)


@pytest.fixture
def admin(env: Env) -> Iterator[Admin]:
    a = Admin(env.gw.url)
    yield a
    a.close()


def seen_by(env: Env, key: str, data_class: str | None = None) -> Seen:
    """One chat call with ``key`` (and the header, if given) through the openai SDK; what the stages saw."""
    headers = {"x-switchyard-data-class": data_class} if data_class is not None else {}
    with openai.OpenAI(base_url=env.gw.openai_base, api_key=key, max_retries=0,
                       http_client=sdk_http_client()) as client:
        before = len(env.capture.calls)
        client.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers=headers)
    assert len(env.capture.calls) == before + 1
    return env.capture.calls[-1]


# --- keys and teams ------------------------------------------------------------------------------------------


def test_teams_and_keys_carry_a_data_class_and_a_pii_mode(admin: Admin) -> None:
    org = admin.org()
    team = admin.team(org["id"], data_class="internal", pii_mode="redact")
    assert (team["data_class"], team["pii_mode"]) == ("internal", "redact")
    plain = admin.team(org["id"])
    assert (plain["data_class"], plain["pii_mode"]) == (None, None)
    changed = admin.patch(f"/admin/teams/{team['id']}", {"data_class": "confidential"})
    assert (changed["data_class"], changed["pii_mode"]) == ("confidential", "redact")  # the other is kept
    assert admin.get(f"/admin/teams/{team['id']}")["data_class"] == "confidential"
    key = admin.new_key(team_id=team["id"], data_class="restricted", pii_mode="mask")
    assert (key["data_class"], key["pii_mode"]) == ("restricted", "mask")
    got = admin.get(f"/admin/keys/{key['id']}")
    assert (got["data_class"], got["pii_mode"]) == ("restricted", "mask")
    listed = {k["id"]: k for k in admin.get("/admin/keys", team_id=team["id"])["data"]}
    assert listed[key["id"]]["pii_mode"] == "mask"
    cleared = admin.patch(f"/admin/keys/{key['id']}", {"data_class": None, "pii_mode": None})
    assert (cleared["data_class"], cleared["pii_mode"]) == (None, None)
    cleared = admin.patch(f"/admin/teams/{team['id']}", {"data_class": None, "pii_mode": None})
    assert (cleared["data_class"], cleared["pii_mode"]) == (None, None)
    plain_key = admin.new_key(team_id=plain["id"])
    assert (plain_key["data_class"], plain_key["pii_mode"]) == (None, None)


@pytest.mark.parametrize(("method", "path", "body", "param"), [
    ("POST", "/admin/keys", {"data_class": "secret"}, "data_class"),
    ("POST", "/admin/keys", {"pii_mode": "scrub"}, "pii_mode"),
    ("POST", "/admin/teams", {"data_class": "PUBLIC"}, "data_class"),
    ("POST", "/admin/teams", {"pii_mode": 3}, "pii_mode"),
    ("PATCH", "/admin/keys/{key}", {"data_class": ""}, "data_class"),
    ("PATCH", "/admin/keys/{key}", {"pii_mode": "on"}, "pii_mode"),
    ("PATCH", "/admin/teams/{team}", {"data_class": ["internal"]}, "data_class"),
    ("PATCH", "/admin/teams/{team}", {"pii_mode": "Redact"}, "pii_mode"),
])
def test_an_unknown_class_or_mode_is_a_400_naming_the_field(admin: Admin, method: str, path: str,
                                                             body: dict[str, Any], param: str) -> None:
    org = admin.org()
    team = admin.team(org["id"])
    key = admin.new_key(team_id=team["id"])
    full = {"team_id": team["id"]} if path == "/admin/keys" else {"name": "t", "org_id": org["id"]} \
        if path == "/admin/teams" else {}
    r = admin.request(method, path.format(key=key["id"], team=team["id"]), {**full, **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and param in err["message"]
    # nothing changed
    assert admin.get(f"/admin/keys/{key['id']}")["data_class"] is None
    assert admin.get(f"/admin/teams/{team['id']}")["pii_mode"] is None


def test_the_principal_takes_the_higher_class_and_the_key_s_pii_mode_first(env: Env, admin: Admin) -> None:
    org = admin.org()
    team = admin.team(org["id"], data_class="confidential", pii_mode="redact")
    member = admin.user("member", team_id=team["id"])
    low = admin.new_key(user_id=member["id"], data_class="internal")["secret"]
    high = admin.new_key(user_id=member["id"], data_class="restricted", pii_mode="block")["secret"]
    bare = admin.new_key(team_id=admin.team(org["id"])["id"])["secret"]
    p = seen_by(env, low).principal
    assert p is not None and (p.data_class, p.pii_mode) == ("confidential", "redact")  # the team's class is higher
    p = seen_by(env, high).principal
    assert p is not None and (p.data_class, p.pii_mode) == ("restricted", "block")  # the key's own
    p = seen_by(env, bare).principal
    assert p is not None and (p.data_class, p.pii_mode) == (None, None)
    # a team's change reaches its keys (this process's cache is told at once)
    admin.patch(f"/admin/teams/{team['id']}", {"data_class": "public", "pii_mode": "detect"})
    p = seen_by(env, low).principal
    assert p is not None and (p.data_class, p.pii_mode) == ("internal", "detect")


def test_a_static_key_carries_its_config_class_and_mode(env: Env) -> None:
    seen = seen_by(env, CLASSY_KEY)
    assert seen.principal is not None
    assert (seen.principal.data_class, seen.principal.pii_mode) == ("confidential", "redact")
    assert seen.data_class == "confidential"


# --- the header ----------------------------------------------------------------------------------------------


def test_the_header_raises_the_class_but_never_lowers_it(env: Env, admin: Admin) -> None:
    org = admin.org()
    team = admin.team(org["id"])
    plain = admin.new_key(team_id=team["id"])["secret"]
    internal = admin.new_key(team_id=team["id"], data_class="internal")["secret"]
    assert seen_by(env, plain).data_class is None  # no header, no class: nothing set
    assert seen_by(env, plain, "public").data_class == "public"
    assert seen_by(env, plain, "Restricted").data_class == "restricted"
    assert seen_by(env, internal).data_class == "internal"
    assert seen_by(env, internal, "public").data_class == "internal"  # never below the key's
    assert seen_by(env, internal, "confidential").data_class == "confidential"
    assert seen_by(env, CLASSY_KEY, "internal").data_class == "confidential"
    assert seen_by(env, CLASSY_KEY, "restricted").data_class == "restricted"


@pytest.mark.parametrize("value", ["secret", "", "top-secret", "publicc"])
def test_an_unknown_class_is_a_400_in_the_openai_protocol(env: Env, value: str) -> None:
    with openai.OpenAI(base_url=env.gw.openai_base, api_key=CLASSY_KEY, max_retries=0,
                       http_client=sdk_http_client()) as client:
        n = len(env.capture.calls)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": "hi"}],
                                           extra_headers={"x-switchyard-data-class": value})
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "invalid_data_class" and err["param"] == "x-switchyard-data-class"
    assert "confidential" in err["message"] and "Traceback" not in err["message"]
    assert len(env.capture.calls) == n  # refused before any stage ran


def test_an_unknown_class_is_a_400_in_the_anthropic_protocol(env: Env) -> None:
    with anthropic.Anthropic(base_url=env.gw.url, api_key=CLASSY_KEY, max_retries=0,
                             http_client=sdk_http_client()) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            client.messages.create(model="sim-a", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"x-switchyard-data-class": "classified"})
        assert info.value.type == "invalid_request_error"
        body = info.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert "x-switchyard-data-class" in body["error"]["message"]
        n = len(env.capture.calls)
        client.messages.create(model="sim-a", max_tokens=8, messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"x-switchyard-data-class": "restricted"})
        assert env.capture.calls[n].data_class == "restricted"


# --- org policy sets -----------------------------------------------------------------------------------------


class FakeCedarError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


def fake_validator(text: str) -> None:
    for n, line in enumerate(text.splitlines(), 1):
        col = line.find("BAD")
        if col >= 0:
            raise FakeCedarError("unexpected token `BAD`", n, col + 1)


@pytest.fixture
def validated(env: Env) -> Iterator[None]:
    gov = env.gw.gateway.governance
    assert gov is not None
    saved, gov.policy_validator = gov.policy_validator, fake_validator
    yield
    gov.policy_validator = saved


POLICY_1 = 'forbid (principal, action, resource) when { context.data_class == "restricted" };\n'
POLICY_2 = 'permit (principal, action, resource);\n'


def test_policy_sets_are_versioned(admin: Admin, env: Env) -> None:
    org = admin.org()["id"]
    path = f"/admin/orgs/{org}/policies"
    empty = admin.get(path)
    assert (empty["version"], empty["policies"], empty["sha256"]) == (0, "", None)
    v1 = admin.call("PUT", path, {"policies": POLICY_1, "comment": "no restricted data"})
    assert (v1["version"], v1["policies"], v1["comment"]) == (1, POLICY_1, "no restricted data")
    assert v1["sha256"] == hashlib.sha256(POLICY_1.encode()).hexdigest() and v1["created_by"] == "master"
    v2 = admin.call("PUT", path, {"policies": POLICY_2})
    assert (v2["version"], v2["comment"]) == (2, None)
    assert admin.get(path)["version"] == 2 and admin.get(path)["policies"] == POLICY_2
    assert admin.get(path, version=1)["policies"] == POLICY_1
    r = admin.request("GET", path, version=9)
    assert r.status_code == 404 and r.json()["error"]["code"] == "policy_version_not_found"
    r = admin.request("GET", path, version=0)
    assert r.status_code == 400 and r.json()["error"]["param"] == "version"
    assert admin.request("GET", "/admin/orgs/org_nope/policies").status_code == 404
    assert admin.request("PUT", "/admin/orgs/org_nope/policies", {"policies": ""}).status_code == 404
    # the runtime's view: every org's newest version
    with_engine = create_engine_for(env.url)
    try:
        with with_engine.connect() as conn:
            assert latest_org_policies(conn)[org] == (2, POLICY_2)
    finally:
        with_engine.dispose()


def test_a_policy_change_is_audited_with_its_version_and_hash_not_its_text(admin: Admin) -> None:
    org = admin.org()["id"]
    text = 'forbid (principal, action, resource) when { context.route == "secret-route-xyz" };'
    admin.call("PUT", f"/admin/orgs/{org}/policies", {"policies": text})
    records = admin.get("/admin/audit", org_id=org, action="org.policies.update")["data"]
    assert len(records) == 1
    rec = records[0]
    assert rec["target"] == org and rec["decision"] == "allow" and rec["actor"] == "master"
    assert rec["details"] == {"version": 1, "sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text)}
    assert "secret-route-xyz" not in str(records)
    reads = admin.get("/admin/audit", org_id=org, action="org.policies.read")["data"]
    assert reads == []
    admin.get(f"/admin/orgs/{org}/policies")
    assert len(admin.get("/admin/audit", org_id=org, action="org.policies.read")["data"]) == 1


def test_policy_sets_are_scoped_to_their_org(admin: Admin) -> None:
    org, other = admin.org()["id"], admin.org()["id"]
    team = admin.team(org)["id"]
    _, oa = admin.user_with_key("org_admin", org_id=org)
    _, au = admin.user_with_key("auditor", org_id=org)
    _, ta = admin.user_with_key("team_admin", team_id=team)
    _, other_admin = admin.user_with_key("org_admin", org_id=other)
    path = f"/admin/orgs/{org}/policies"
    assert admin.as_key(oa).call("PUT", path, {"policies": POLICY_2})["created_by"].startswith("vk_")
    assert admin.as_key(au).get(path)["version"] == 1
    r = admin.as_key(au).request("PUT", path, {"policies": POLICY_1})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert admin.as_key(ta).request("GET", path).status_code == 403
    for method, body in (("GET", None), ("PUT", {"policies": POLICY_1})):
        r = admin.as_key(other_admin).request(method, path, body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "org_not_found"
    assert admin.get(path)["version"] == 1  # nothing was added by the refused requests
    denials = admin.get("/admin/audit", action="org.policies.update", limit=1000)["data"]
    assert any(d["decision"] == "deny" and d["target"] == org for d in denials)


def test_an_invalid_policy_set_is_a_400_with_the_position(admin: Admin, validated: None) -> None:
    org = admin.org()["id"]
    path = f"/admin/orgs/{org}/policies"
    admin.call("PUT", path, {"policies": POLICY_1})
    r = admin.request("PUT", path, {"policies": POLICY_2 + "permit (principal, BAD, resource);\n"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "policies" and err["code"] == "invalid_policy"
    assert "line 2, column 20" in err["message"] and "unexpected token `BAD`" in err["message"]
    assert admin.get(path)["version"] == 1  # not stored
    r = admin.request("PUT", path, {"policies": 42})
    assert r.status_code == 400 and r.json()["error"]["param"] == "policies"
    r = admin.request("PUT", path, {"policies": "", "extra": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "extra"


def test_deleting_an_org_deletes_its_policy_sets(env: Env, admin: Admin) -> None:
    org = admin.org()["id"]
    admin.call("PUT", f"/admin/orgs/{org}/policies", {"policies": POLICY_1})
    admin.delete(f"/admin/orgs/{org}")
    engine = create_engine_for(env.url)
    try:
        with engine.connect() as conn:
            assert org not in latest_org_policies(conn)
    finally:
        engine.dispose()


def test_the_watcher_tells_its_listeners_of_every_change(env: Env, admin: Admin) -> None:
    org = admin.org()["id"]
    heard: list[OrgPolicies] = []

    async def scenario() -> None:
        db = Db(create_engine_for(env.url))
        watcher = OrgPolicyWatcher(db, poll_interval=0.05)
        try:
            await watcher.start()  # nobody listens: it does not poll
            assert not watcher.poller.running
            watcher.subscribe(heard.append)
            assert await watcher.poll_once()  # the first read is news
            assert not await watcher.poll_once()  # nothing moved: no read of the texts, no call
            assert len(heard) == 1 and org not in heard[0]
            await asyncio.to_thread(admin.call, "PUT", f"/admin/orgs/{org}/policies", {"policies": POLICY_2})
            assert await watcher.poll_once()
            assert heard[-1][org] == (1, POLICY_2) and watcher.current[org] == (1, POLICY_2)
            await watcher.start()
            assert watcher.poller.running
            await asyncio.to_thread(admin.call, "PUT", f"/admin/orgs/{org}/policies", {"policies": POLICY_1})
            for _ in range(200):
                if heard[-1].get(org) == (2, POLICY_1):
                    break
                await asyncio.sleep(0.02)
            assert heard[-1][org] == (2, POLICY_1)
        finally:
            await watcher.stop()
            db.engine.dispose()

    asyncio.run(scenario())


def test_the_gateway_reads_the_latest_sets(env: Env, admin: Admin) -> None:
    org = admin.org()["id"]
    admin.call("PUT", f"/admin/orgs/{org}/policies", {"policies": POLICY_1})
    admin.call("PUT", f"/admin/orgs/{org}/policies", {"policies": POLICY_2})
    gov = env.gw.gateway.governance
    assert gov is not None
    engine = create_engine_for(env.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM org_policies WHERE org_id = :o"), {"o": org}).scalar()
    finally:
        engine.dispose()
    assert rows == 2
    sets = asyncio.run(gov.latest_org_policies())
    assert sets[org] == (2, POLICY_2)


def test_a_key_its_owner_makes_keeps_the_calling_key_s_class_and_mode(admin: Admin) -> None:
    org = admin.org()["id"]
    member = admin.user("member", team_id=admin.team(org)["id"])
    own = admin.new_key(user_id=member["id"], data_class="confidential", pii_mode="mask")["secret"]
    me = admin.as_key(own)
    made = me.post("/admin/keys", {"name": "derived"})
    assert (made["data_class"], made["pii_mode"]) == ("confidential", "mask")  # copied from the calling key
    assert me.post("/admin/keys", {"data_class": "restricted"})["data_class"] == "restricted"  # raised: fine
    for body, param in (({"data_class": "public"}, "data_class"), ({"data_class": None}, "data_class"),
                        ({"pii_mode": "off"}, "pii_mode")):
        r = me.request("POST", "/admin/keys", body)
        assert r.status_code == 403 and r.json()["error"]["param"] == param, r.text


def test_a_store_at_the_previous_revision_is_upgraded_with_its_rows(tmp_path: Any) -> None:
    from alembic import command

    from switchyard.store.db import alembic_config, migrate

    engine = create_engine_for(f"sqlite:///{tmp_path}/old.db")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(connection=conn), "0004")
            conn.execute(sa.text("INSERT INTO orgs VALUES ('org_1', 'o', '{}', '2025-01-01', '2025-01-01')"))
            conn.execute(sa.text("INSERT INTO teams (id, org_id, name, models, metadata, created_at, updated_at) "
                                 "VALUES ('team_1', 'org_1', 't', NULL, '{}', '2025-01-01', '2025-01-01')"))
        migrate(engine)
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT name, data_class, pii_mode FROM teams")).one()
            assert tuple(row) == ("t", None, None)
            assert latest_org_policies(conn) == {}
    finally:
        engine.dispose()
