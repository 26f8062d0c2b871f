"""The admin API over real HTTP (httpx), on SQLite and on PostgreSQL: RBAC, tenant isolation, validation,
conflicts, secrets never shown twice, and every admin action in the audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support.gateway import MASTER_KEY, USER_KEY, RunningGateway, run_gateway
from tests.support.governance import BACKENDS, Admin, gov_config, store_url, unique


@pytest.fixture(scope="module", params=BACKENDS)
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    with store_url(request.param, tmp_path_factory.mktemp("admin")) as url, run_gateway(gov_config(url)) as running:
        yield running


@pytest.fixture
def admin(gw: RunningGateway) -> Iterator[Admin]:
    a = Admin(gw.url)
    yield a
    a.close()


@pytest.fixture
def tenant(admin: Admin) -> dict[str, Any]:
    """An org with two teams, and keys for an org admin, a team admin (team 1), a member (team 1), a member
    (team 2) and an auditor."""
    org = admin.org()
    t1, t2 = admin.team(org["id"]), admin.team(org["id"])
    out: dict[str, Any] = {"org": org, "t1": t1, "t2": t2}
    for name, role, place in (("oa", "org_admin", {"org_id": org["id"]}),
                              ("ta", "team_admin", {"team_id": t1["id"]}),
                              ("m1", "member", {"team_id": t1["id"]}), ("m2", "member", {"team_id": t2["id"]}),
                              ("au", "auditor", {"org_id": org["id"]})):
        out[name], out[name + "_key"] = admin.user_with_key(role, **place)
    return out


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items}


def test_authentication_is_required(admin: Admin) -> None:
    r = admin.as_key("").request("GET", "/admin/orgs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = admin.as_key("sk-sy-not-a-real-key-000000000000").request("GET", "/admin/orgs")
    assert r.status_code == 401
    r = admin.as_key(USER_KEY).request("GET", "/admin/whoami")  # a static config key has no admin rights
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    assert admin.get("/admin/whoami")["super_admin"] is True


def test_a_team_key_has_no_admin_rights(admin: Admin) -> None:
    org = admin.org()
    team = admin.team(org["id"])
    secret = admin.new_key(team_id=team["id"])["secret"]
    r = admin.as_key(secret).request("GET", "/admin/keys")
    assert r.status_code == 403


def test_tenants_never_see_each_other(admin: Admin, tenant: dict[str, Any]) -> None:
    other = admin.org()
    other_team = admin.team(other["id"])
    other_admin, other_key = admin.user_with_key("org_admin", org_id=other["id"])
    oa = admin.as_key(tenant["oa_key"])
    assert ids(oa.get("/admin/orgs")["data"]) == {tenant["org"]["id"]}
    assert ids(oa.get("/admin/teams")["data"]) == {tenant["t1"]["id"], tenant["t2"]["id"]}
    assert other["id"] not in {u["org_id"] for u in oa.get("/admin/users")["data"]}
    assert all(k["org_id"] == tenant["org"]["id"] for k in oa.get("/admin/keys")["data"])
    # another tenant's objects do not exist for it: 404 on read and on change, never 403
    for path in (f"/admin/orgs/{other['id']}", f"/admin/teams/{other_team['id']}", f"/admin/users/{other_admin['id']}"):
        assert oa.request("GET", path).status_code == 404
        assert oa.request("PATCH", path, {"name": "x"} if "users" not in path else {"name": "y"}).status_code == 404
    other_keys = admin.as_key(other_key).get("/admin/keys")["data"]
    assert other_keys and oa.request("POST", f"/admin/keys/{other_keys[0]['id']}/revoke").status_code == 404
    r = oa.request("POST", "/admin/teams", {"name": "sneaky", "org_id": other["id"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "org_id"
    # filters cannot widen the view
    assert oa.get("/admin/keys", org_id=other["id"])["data"] == []
    assert admin.as_key(other_key).get("/admin/audit")["data"]
    assert all(r["org_id"] == tenant["org"]["id"] for r in oa.get("/admin/audit", limit=1000)["data"])
    assert oa.request("GET", "/admin/audit", org_id=other["id"]).status_code == 403


def test_org_admin_manages_its_org_but_not_orgs(admin: Admin, tenant: dict[str, Any]) -> None:
    oa = admin.as_key(tenant["oa_key"])
    assert oa.request("POST", "/admin/orgs", {"name": unique("org")}).status_code == 403
    assert oa.request("DELETE", f"/admin/orgs/{tenant['org']['id']}").status_code == 403
    changed = oa.patch(f"/admin/orgs/{tenant['org']['id']}", {"metadata": {"tier": "gold"}})
    assert changed["metadata"] == {"tier": "gold"}
    team = oa.post("/admin/teams", {"name": unique("t"), "models": ["sim-a", "fast"]})  # org defaults to its own
    assert team["org_id"] == tenant["org"]["id"]
    auditor = oa.post("/admin/users", {"email": f"{unique('a')}@x.io", "role": "auditor"})
    assert auditor["org_id"] == tenant["org"]["id"]
    oa.delete(f"/admin/teams/{team['id']}")


def test_team_admin_sees_and_changes_only_its_team(admin: Admin, tenant: dict[str, Any]) -> None:
    ta = admin.as_key(tenant["ta_key"])
    t1, t2 = tenant["t1"]["id"], tenant["t2"]["id"]
    assert ids(ta.get("/admin/teams")["data"]) == {t1}
    assert ta.request("GET", f"/admin/teams/{t2}").status_code == 404
    assert ta.request("PATCH", f"/admin/teams/{t1}", {"models": ["sim-a"]}).status_code == 403  # org admins only
    assert {u["team_id"] for u in ta.get("/admin/users")["data"]} == {t1}
    assert ta.request("GET", f"/admin/users/{tenant['m2']['id']}").status_code == 404
    new = ta.post("/admin/users", {"email": f"{unique('n')}@x.io", "team_id": t1})
    assert new["role"] == "member"
    r = ta.request("POST", "/admin/users", {"email": f"{unique('n')}@x.io", "team_id": t1, "role": "org_admin"})
    assert r.status_code == 403
    r = ta.request("POST", "/admin/users", {"email": f"{unique('n')}@x.io", "team_id": t2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "team_id"
    assert ta.request("PATCH", f"/admin/users/{new['id']}", {"role": "auditor"}).status_code == 403
    # keys: its team's, for its team's users or the team itself
    key = ta.new_key(user_id=tenant["m1"]["id"], name="for m1")
    team_key = ta.new_key(team_id=t1)
    listed = ids(ta.get("/admin/keys")["data"])
    assert {key["id"], team_key["id"]} <= listed
    assert all(k["team_id"] == t1 for k in ta.get("/admin/keys")["data"])
    r = ta.request("POST", "/admin/keys", {"user_id": tenant["m2"]["id"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "user_id"
    # limits: on its team's users and keys; its team's own budget is the org admin's to set, but it sees it
    ta.post("/admin/budgets", {"scope": "user", "scope_id": tenant["m1"]["id"], "max_usd": 5})
    r = ta.request("POST", "/admin/budgets", {"scope": "team", "scope_id": t1, "max_usd": 500})
    assert r.status_code == 403
    team_budget = admin.post("/admin/budgets", {"scope": "team", "scope_id": t1, "max_usd": 500})
    other_budget = admin.post("/admin/budgets", {"scope": "team", "scope_id": t2, "max_usd": 50})
    seen = ids(ta.get("/admin/budgets")["data"])
    assert team_budget["id"] in seen and other_budget["id"] not in seen
    assert ta.request("DELETE", f"/admin/budgets/{team_budget['id']}").status_code == 403
    assert ta.request("GET", f"/admin/budgets/{other_budget['id']}").status_code == 404
    assert ta.request("GET", "/admin/audit").status_code == 403


def test_member_manages_only_its_own_keys(admin: Admin, tenant: dict[str, Any]) -> None:
    m1 = admin.as_key(tenant["m1_key"])
    own = m1.new_key(name="laptop", models=["sim-a"])  # no owner given: the caller's own user
    assert own["user_id"] == tenant["m1"]["id"] and own["team_id"] == tenant["t1"]["id"]
    assert {k["user_id"] for k in m1.get("/admin/keys")["data"]} == {tenant["m1"]["id"]}
    assert ids(m1.get("/admin/users")["data"]) == {tenant["m1"]["id"]}
    assert m1.request("POST", "/admin/keys", {"team_id": tenant["t1"]["id"]}).status_code == 403
    assert m1.request("POST", "/admin/users", {"email": "x@y.z"}).status_code == 403
    r = m1.request("POST", "/admin/budgets", {"scope": "key", "scope_id": own["id"], "max_usd": 1})
    assert r.status_code == 403
    m2_keys = admin.as_key(tenant["m2_key"]).get("/admin/keys")["data"]
    assert m1.request("POST", f"/admin/keys/{m2_keys[0]['id']}/revoke").status_code == 404
    assert m1.request("PATCH", f"/admin/keys/{own['id']}", {"tags": ["a"]}).status_code == 403  # tags carry budgets
    assert admin.patch(f"/admin/keys/{own['id']}", {"tags": ["a", "b", "a"]})["tags"] == ["a", "b"]
    assert m1.post(f"/admin/keys/{own['id']}/revoke", expect=200)["status"] == "revoked"
    assert own["id"] not in ids(m1.get("/admin/keys")["data"])
    assert own["id"] in ids(m1.get("/admin/keys", include_revoked="true")["data"])
    assert m1.request("GET", "/admin/audit").status_code == 403


def test_auditor_reads_the_audit_log_and_changes_nothing(admin: Admin, tenant: dict[str, Any]) -> None:
    au = admin.as_key(tenant["au_key"])
    records = au.get("/admin/audit", limit=1000)["data"]
    assert records and {r["org_id"] for r in records} == {tenant["org"]["id"]}
    assert {"user.create", "key.create", "team.create"} <= {r["action"] for r in records}
    assert au.get("/admin/teams")["data"] == []  # no team, no org-wide view of the structure
    assert au.request("POST", "/admin/teams", {"name": "x"}).status_code == 403
    assert au.request("POST", "/admin/users", {"email": "x@y.z"}).status_code == 403
    assert au.request("GET", "/admin/audit/verify").status_code == 403  # the chain spans every org: super only


def test_validation_errors_are_400_naming_the_field(admin: Admin) -> None:
    org = admin.org()
    user = admin.user(org_id=org["id"])
    cases: list[tuple[str, Any, str, str]] = [
        ("/admin/keys", {"user_id": user["id"], "modles": ["sim-a"]}, "modles", "unknown_parameter"),
        ("/admin/keys", {"user_id": user["id"], "models": ["sim-a", "nope"]}, "models[1]", "invalid_value"),
        ("/admin/keys", {"user_id": user["id"], "logging": "everything"}, "logging", "invalid_value"),
        ("/admin/keys", {"user_id": user["id"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "invalid_value"),
        ("/admin/keys", {}, "user_id", "missing_required_parameter"),
        ("/admin/users", {"org_id": org["id"]}, "email", "missing_required_parameter"),
        ("/admin/users", {"org_id": org["id"], "email": "not-an-email"}, "email", "invalid_value"),
        ("/admin/budgets", {"scope": "user", "scope_id": user["id"]}, "", "invalid_value"),
        ("/admin/budgets", {"scope": "user", "scope_id": user["id"], "max_usd": 1, "timezone": "Mars/Base"},
         "timezone", "invalid_value"),
        ("/admin/budgets", {"scope": "user", "scope_id": user["id"], "max_usd": -1}, "max_usd", "invalid_value"),
        ("/admin/rate_limits", {"scope": "org", "scope_id": org["id"], "rpm": 5}, "scope", "invalid_value"),
        ("/admin/rate_limits", {"scope": "user", "scope_id": user["id"], "rpm": 0}, "rpm", "invalid_value"),
    ]
    for path, body, param, code in cases:
        r = admin.request("POST", path, body)
        err = r.json()["error"]
        assert r.status_code == 400, (body, r.text)
        assert err["type"] == "invalid_request_error" and err["code"] == code, (body, err)
        assert err["param"] == (param or None), (body, err)
    r = admin.http.post("/admin/orgs", content=b"{nope", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    r = admin.request("GET", "/admin/keys", limit="lots")
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


def test_conflicts_are_409(admin: Admin) -> None:
    org = admin.org()
    r = admin.request("POST", "/admin/orgs", {"name": org["name"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    team = admin.team(org["id"])
    user = admin.user(team_id=team["id"])
    r = admin.request("POST", "/admin/users", {"email": user["email"], "org_id": org["id"]})
    assert r.status_code == 409
    assert admin.request("DELETE", f"/admin/teams/{team['id']}").status_code == 409  # it still has a user
    assert admin.request("DELETE", f"/admin/orgs/{org['id']}").status_code == 409
    key = admin.new_key(user_id=user["id"])
    admin.delete(f"/admin/users/{user['id']}")
    assert admin.get(f"/admin/keys/{key['id']}")["status"] == "revoked"  # a deleted user's keys are revoked
    assert admin.request("PATCH", f"/admin/keys/{key['id']}", {"name": "x"}).status_code == 409
    admin.delete(f"/admin/teams/{team['id']}")
    admin.delete(f"/admin/orgs/{org['id']}")
    assert admin.request("GET", f"/admin/orgs/{org['id']}").status_code == 404


def test_secrets_are_shown_once_and_never_stored_or_logged(gw: RunningGateway, admin: Admin,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    org = admin.org()
    user = admin.user(org_id=org["id"])
    created = admin.new_key(user_id=user["id"], name="ci")
    secret = created["secret"]
    assert secret.startswith("sk-sy-") and len(secret) >= 40
    assert created["prefix"] == secret[:10] + "…"
    gov = gw.gateway.governance
    assert gov is not None and gov.hasher is not None
    with gov.db.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT key_hash FROM api_keys WHERE id = :i"), {"i": created["id"]}).scalar()
        dump = " ".join(str(v) for table in ("api_keys", "audit_log", "identity_changes")
                        for row in conn.execute(sa.text(f"SELECT * FROM {table}")) for v in row)
    assert stored == gov.hasher.hash(secret) and len(stored) == 64
    assert secret not in dump and secret[10:] not in dump
    for body in (admin.get(f"/admin/keys/{created['id']}"), admin.get("/admin/keys", user_id=user["id"]),
                 admin.patch(f"/admin/keys/{created['id']}", {"name": "ci-2"})):
        text = str(body)
        assert secret not in text and stored not in text and "secret" not in text and "key_hash" not in text
    assert secret not in caplog.text and stored not in caplog.text


def test_budget_and_rate_limit_definitions_crud(admin: Admin) -> None:
    org = admin.org()
    team = admin.team(org["id"])
    user = admin.user(team_id=team["id"])
    key = admin.new_key(user_id=user["id"], tags=["batch"])
    b = admin.post("/admin/budgets", {"scope": "key", "scope_id": key["id"], "max_usd": "12.5", "period": "weekly",
                                      "timezone": "Europe/Paris", "webhook_url": "https://hooks.example/b"})
    assert (b["max_usd"], b["max_tokens"], b["period"], b["org_id"]) == (12.5, None, "weekly", org["id"])
    assert b["thresholds"] == [0.5, 0.8, 1.0]
    tag = admin.post("/admin/budgets", {"scope": "tag", "scope_id": "batch", "max_tokens": 10_000, "org_id": org["id"],
                                        "period": "total"})
    assert tag["org_id"] == org["id"]
    b = admin.patch(f"/admin/budgets/{b['id']}", {"max_tokens": 1000, "max_usd": None, "thresholds": [0.9, 0.5]})
    assert (b["max_usd"], b["max_tokens"], b["thresholds"]) == (None, 1000, [0.5, 0.9])
    r = admin.request("PATCH", f"/admin/budgets/{b['id']}", {"max_tokens": None})
    assert r.status_code == 400  # a budget must keep a limit
    assert ids(admin.get("/admin/budgets", scope="key", scope_id=key["id"])["data"]) == {b["id"]}
    rl = admin.post("/admin/rate_limits", {"scope": "team", "scope_id": team["id"], "rpm": 60, "max_concurrent": 4})
    assert admin.patch(f"/admin/rate_limits/{rl['id']}", {"tpm": 100_000})["tpm"] == 100_000
    assert admin.get(f"/admin/rate_limits/{rl['id']}")["rpm"] == 60
    admin.delete(f"/admin/rate_limits/{rl['id']}")
    admin.delete(f"/admin/budgets/{b['id']}")
    assert admin.request("GET", f"/admin/budgets/{b['id']}").status_code == 404
    r = admin.request("POST", "/admin/budgets", {"scope": "team", "scope_id": "team_nope", "max_usd": 1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "scope_id"


def test_every_admin_action_is_audited_including_refusals(admin: Admin, tenant: dict[str, Any]) -> None:
    last = admin.get("/admin/audit", limit=1000, after_seq=0)
    start = max((r["seq"] for r in last["data"]), default=0)
    while last["next_after"] is not None:
        last = admin.get("/admin/audit", limit=1000, after_seq=last["next_after"])
        start = max([start, *(r["seq"] for r in last["data"])])
    m1 = admin.as_key(tenant["m1_key"])
    key = m1.new_key(name="audited")
    m1.patch(f"/admin/keys/{key['id']}", {"name": "audited-2"})
    m1.get("/admin/keys")
    assert m1.request("POST", "/admin/users", {"email": "x@y.z"}).status_code == 403
    assert m1.request("GET", f"/admin/teams/{tenant['t2']['id']}").status_code == 404
    m1.post(f"/admin/keys/{key['id']}/revoke", expect=200)
    records = admin.get("/admin/audit", after_seq=start, limit=100, actor=key["created_by"])["data"]
    got = [(r["action"], r["decision"], r["target"]) for r in records]
    assert got == [
        ("key.create", "allow", key["id"]),
        ("key.update", "allow", key["id"]),
        ("key.list", "allow", None),
        ("user.create", "deny", None),
        ("team.read", "deny", tenant["t2"]["id"]),
        ("key.revoke", "allow", key["id"]),
    ]
    assert all(r["kind"] == "admin" and r["actor_user_id"] == tenant["m1"]["id"] for r in records)
    assert records[0]["reason"] == f"member of {tenant['org']['id']}"
    assert records[3]["status"] == 403 and "may not" in records[3]["reason"]
    assert records[1]["details"] == {"changed": ["name"]}
