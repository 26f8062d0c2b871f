"""The web console over plain HTTP: sign-in and its cookie, CSRF on every change, RBAC on every page and direct URL,
revocation ending a session, payloads only where the key's logging mode kept them, and the console off.

The browser test (a real Chromium, driven by Playwright) is tests/test_console_browser.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from switchyard.config import ConfigError, parse_config
from tests.support.console import Console, Tenant, console_gateway, token_in
from tests.support.gateway import MASTER_KEY, USER_KEY, RunningGateway, base_config, run_gateway
from tests.support.governance import BACKENDS, Admin, sdk_http_client
from tests.support.ledger import wait_for

HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, Admin, Tenant]]:
    with console_gateway(tmp_path_factory.mktemp("console"), request.param) as running:
        yield running


@pytest.fixture
def console(env: tuple[RunningGateway, Admin, Tenant]) -> Iterator[Console]:
    c = Console(env[0].url)
    yield c
    c.close()


def call(gw: RunningGateway, key: str, n: int = 1, model: str = "sim-a") -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client()) as c:
        for _ in range(n):
            c.chat.completions.create(model=model, messages=HI)


def set_cookies(r: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in r.headers.get_list("set-cookie")}


# --- signing in ---------------------------------------------------------------------------------------------------


def test_sign_in_sets_a_strict_http_only_cookie_without_the_key(env: tuple[RunningGateway, Admin, Tenant],
                                                                 console: Console) -> None:
    gw, admin, t = env
    r = console.sign_in(t.org_admin)
    assert r.headers["location"] == "/ui/"
    cookie = set_cookies(r)["sy_console"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http here
    assert t.org_admin not in cookie and t.org_admin[6:] not in cookie  # the key is never in the cookie
    page = console.get("/ui/")
    assert page.status_code == 200 and "org admin" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    # behind a TLS-terminating proxy on loopback (uvicorn trusts its X-Forwarded-Proto): Secure
    other = Console(gw.url)
    form = other.http.get("/ui/sign-in", headers={"x-forwarded-proto": "https"})
    assert "Secure" in set_cookies(form)["sy_console_login"]
    other.close()
    # signing out ends the session: the old cookie no longer opens a page
    old = console.http.cookies.get("sy_console")
    out = console.post("/ui/sign-out")
    assert out.status_code == 303 and "Max-Age=0" in set_cookies(out)["sy_console"]
    replay = httpx.get(f"{gw.url}/ui/keys", cookies={"sy_console": old or ""})
    assert replay.status_code == 303 and replay.headers["location"].startswith("/ui/sign-in")
    actions = [r["action"] for r in admin.get("/admin/audit", kind="admin", limit=1000)["data"]]
    assert "console.sign_in" in actions and "console.sign_out" in actions


def test_signing_out_ends_the_session_on_every_replica(env: tuple[RunningGateway, Admin, Tenant],
                                                      console: Console) -> None:
    """A second gateway on the same store and key secret (another replica, or another worker of ``serve
    --workers``) refuses a copy of the cookie once the session was signed out on the first."""
    from switchyard.server.factory import build
    from tests.support.gateway import ListRecorder
    from tests.support.servers import serve_asgi

    gw, _, t = env
    console.sign_in(t.auditor)
    cookie = {"sy_console": console.http.cookies.get("sy_console") or ""}
    with serve_asgi(build(gw.config, recorder=ListRecorder())) as other:
        assert httpx.get(f"{other}/ui/", cookies=cookie).status_code == 200  # the session works on both
        assert console.post("/ui/sign-out").status_code == 303
        replay = httpx.get(f"{other}/ui/keys", cookies=cookie)
        assert replay.status_code == 303 and replay.headers["location"].startswith("/ui/sign-in")
    # a session of the same key signed in afterwards is a new one, and works
    console.sign_in(t.auditor)
    assert console.get("/ui/keys").status_code == 200


def test_who_may_sign_in(env: tuple[RunningGateway, Admin, Tenant], console: Console) -> None:
    _, _, t = env
    assert "was not accepted" in console.sign_in("sk-sy-" + "x" * 43, expect=401).text
    assert "no such role" in console.sign_in(t.member, expect=403).text  # a member has no console
    assert "no such role" in console.sign_in(USER_KEY, expect=403).text  # nor has a static key of the config
    console.sign_in(MASTER_KEY)
    assert "super admin" in console.get("/ui/").text
    assert console.get("/ui/keys").status_code == 200
    anonymous = httpx.get(console.base_url + "/ui/spend")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/ui/sign-in"
    htmx = httpx.get(console.base_url + "/ui/overview/stats", headers={"hx-request": "true"})
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/ui/sign-in"


def test_the_sign_in_form_needs_its_own_token(env: tuple[RunningGateway, Admin, Tenant]) -> None:
    gw, _, t = env
    # a cross-site form post (no sign-in cookie, no token of ours) is refused, even with a good key
    r = httpx.post(f"{gw.url}/ui/sign-in", data={"key": t.org_admin, "login": "forged"})
    assert r.status_code == 403 and "sy_console=" not in r.headers.get("set-cookie", "")


# --- CSRF ---------------------------------------------------------------------------------------------------------


def test_every_change_needs_the_sessions_csrf_token(env: tuple[RunningGateway, Admin, Tenant],
                                                   console: Console) -> None:
    gw, admin, t = env
    console.sign_in(t.org_admin)
    before = len(admin.get("/admin/keys", org_id=t.org["id"], limit=1000)["data"])
    form = {"name": "csrf-probe", "owner": ""}
    assert console.post("/ui/keys", form, csrf=False).status_code == 403  # no token
    r = console.http.post("/ui/keys", data={**form, "csrf": "forged"}, headers={"origin": gw.url})
    assert r.status_code == 403 and "CSRF" in r.text
    other = Console(gw.url)
    other.sign_in(t.org_admin)
    foreign = other.csrf  # a token of another session of the same user
    other.close()
    r = console.http.post("/ui/keys", data=form, headers={"origin": gw.url, "x-csrf-token": foreign or ""})
    assert r.status_code == 403
    assert console.post("/ui/keys", form, origin="https://evil.example").status_code == 403  # right token, wrong site
    assert len(admin.get("/admin/keys", org_id=t.org["id"], limit=1000)["data"]) == before  # nothing was created
    victim = admin.new_key(user_id=admin.user("member", team_id=t.red["id"])["id"])
    assert console.post(f"/ui/keys/{victim['id']}/revoke", csrf=False).status_code == 403
    assert console.http.request("DELETE", f"/ui/keys/{victim['id']}").status_code == 403
    assert admin.get(f"/admin/keys/{victim['id']}")["status"] == "active"
    assert console.post("/ui/audit/verify", csrf=False).status_code == 403
    assert console.post("/ui/sign-out", csrf=False).status_code == 403  # even signing out
    # the form field works as well as the header (a browser without scripts)
    r = console.http.post(f"/ui/keys/{victim['id']}/revoke", data={"csrf": console.csrf},
                          headers={"origin": gw.url})
    assert r.status_code == 303 and admin.get(f"/admin/keys/{victim['id']}")["status"] == "revoked"


# --- keys ---------------------------------------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_revoke_is_audited(env: tuple[RunningGateway, Admin, Tenant],
                                                           console: Console) -> None:
    gw, admin, t = env
    console.sign_in(t.red_admin)
    owner = admin.user("member", team_id=t.red["id"])
    r = console.post("/ui/keys", {"name": "made-in-console", "owner": f"user:{owner['id']}", "models": "sim-a",
                                  "expires_days": "7"}, htmx=True)
    assert r.status_code == 201, r.text
    secret = re.search(r'id="new-secret">(sk-sy-[^<]+)<', r.text)
    assert secret is not None
    key_id = re.search(r'id="key-(vk_[0-9a-f]+)"', r.text)
    assert key_id is not None
    listing = console.get("/ui/keys").text
    assert "made-in-console" in listing and secret.group(1) not in listing  # shown once, never again
    key = admin.get(f"/admin/keys/{key_id.group(1)}")
    assert key["models"] == ["sim-a"] and key["user_id"] == owner["id"] and key["expires_at"] is not None
    call(gw, secret.group(1))
    r = console.post(f"/ui/keys/{key_id.group(1)}/revoke", htmx=True)
    assert r.status_code == 200 and "revoked" in r.text
    with pytest.raises(openai.AuthenticationError):
        call(gw, secret.group(1))
    records = admin.get("/admin/audit", kind="admin", limit=1000)["data"]
    mine = {x["action"]: x for x in records if x["target"] == key_id.group(1)}
    assert mine["key.create"]["details"]["name"] == "made-in-console" and mine["key.revoke"]["decision"] == "allow"
    assert mine["key.create"]["actor"] == mine["key.revoke"]["actor"] != "master"  # the team admin's key did both
    # a key the team admin may not create (for a user outside the team) is refused, and nothing is made
    stranger = admin.user("member", team_id=t.blue["id"])
    bad = console.post("/ui/keys", {"name": "nope", "owner": f"user:{stranger['id']}"}, htmx=True)
    assert bad.status_code == 400 and 'id="error"' in bad.text and "No user with id" in bad.text


# --- RBAC ---------------------------------------------------------------------------------------------------------


def test_a_team_admin_sees_only_its_team(env: tuple[RunningGateway, Admin, Tenant], console: Console) -> None:
    gw, admin, t = env
    red_user = admin.user("member", team_id=t.red["id"])
    blue_user = admin.user("member", team_id=t.blue["id"])
    red_key = admin.new_key(user_id=red_user["id"], name="red-visible")
    blue_key = admin.new_key(user_id=blue_user["id"], name="blue-hidden")
    admin.post("/admin/budgets", {"scope": "team", "scope_id": t.blue["id"], "max_usd": 5, "period": "daily",
                                  "name": "blue-budget"})
    admin.post("/admin/budgets", {"scope": "team", "scope_id": t.red["id"], "max_usd": 5, "period": "daily",
                                  "name": "red-budget"})
    call(gw, red_key["secret"], 2)
    call(gw, blue_key["secret"], 2)
    wait_for(lambda: "blue" in _spend_page(gw, t.org_admin), what="both teams' spend in the rollups")
    console.sign_in(t.red_admin)
    keys = console.get("/ui/keys").text
    assert "red-visible" in keys and "blue-hidden" not in keys
    spend = console.get("/ui/spend", by="team").text
    assert "red" in spend and ">blue<" not in spend
    budgets = console.get("/ui/budgets").text
    assert "red-budget" in budgets and "blue-budget" not in budgets
    requests = console.get("/ui/requests").text
    assert "red-visible" in requests and "blue-hidden" not in requests
    # direct URLs to the other team: a 404, as the admin API answers (nobody learns the team exists)
    for path in ("/ui/keys", "/ui/spend", "/ui/requests", "/ui/budgets"):
        r = console.get(path, team=t.blue["id"])
        assert r.status_code == 404, path
        assert "blue" not in r.text
    blue_rid = _request_id_of(gw, t.org_admin, "blue-hidden")
    assert console.get(f"/ui/requests/{blue_rid}").status_code == 404
    r = console.post(f"/ui/keys/{blue_key['id']}/revoke", htmx=True)
    assert r.status_code == 404 and admin.get(f"/admin/keys/{blue_key['id']}")["status"] == "active"
    denials = [x for x in admin.get("/admin/audit", kind="admin", limit=1000)["data"]
               if x["action"] == "key.revoke" and x["target"] == blue_key["id"]]
    assert denials and denials[-1]["decision"] == "deny"
    assert console.get("/ui/audit").status_code == 403  # a team admin may not read the audit log
    assert "Audit log" not in console.get("/ui/").text  # nor is it offered
    # the org admin sees both teams, and may narrow to one
    org = Console(gw.url)
    org.sign_in(t.org_admin)
    assert "blue-hidden" in org.get("/ui/keys").text
    narrowed = org.get("/ui/keys", team=t.red["id"]).text
    assert "red-visible" in narrowed and "blue-hidden" not in narrowed
    org.close()


def _spend_page(gw: RunningGateway, key: str) -> str:
    c = Console(gw.url)
    c.sign_in(key)
    try:
        return c.get("/ui/spend", by="team", range="24h").text
    finally:
        c.close()


def _request_id_of(gw: RunningGateway, key: str, key_name: str) -> str:
    """The id of a request of ``key_name`` on the requests page (polled: the request log is shipped in batches)."""
    c = Console(gw.url)
    c.sign_in(key)
    deadline = time.monotonic() + 30
    try:
        while True:
            page = c.get("/ui/requests").text
            for row in page.split("<tr")[1:]:
                m = re.search(r'href="/ui/requests/(req_[0-9a-f]+)"', row)
                if m and key_name in row:
                    return m.group(1)
            if time.monotonic() > deadline:
                raise AssertionError(f"no request of {key_name}")
            time.sleep(0.2)
    finally:
        c.close()


def test_revoking_the_sign_in_key_ends_the_session(env: tuple[RunningGateway, Admin, Tenant],
                                                   console: Console) -> None:
    _gw, admin, t = env
    user, secret = admin.user_with_key("org_admin", org_id=t.org["id"])
    console.sign_in(secret)
    assert console.get("/ui/keys").status_code == 200
    key_id = admin.get("/admin/keys", user_id=user["id"])["data"][0]["id"]
    admin.post(f"/admin/keys/{key_id}/revoke", expect=200)
    r = console.get("/ui/keys")
    assert r.status_code == 303 and r.headers["location"] == "/ui/sign-in?reason=ended"
    assert "key you signed in with was revoked" in console.get("/ui/sign-in?reason=ended").text
    assert "phish" not in console.get("/ui/sign-in?reason=phish").text  # no free text from the URL
    # a role taken away ends it too
    user2, secret2 = admin.user_with_key("org_admin", org_id=t.org["id"])
    console.sign_in(secret2)
    admin.patch(f"/admin/users/{user2['id']}", {"role": "member"})
    assert console.get("/ui/").status_code == 403


# --- pages --------------------------------------------------------------------------------------------------------


def test_payloads_show_only_where_logging_kept_them_and_to_audit_readers(
        env: tuple[RunningGateway, Admin, Tenant], console: Console) -> None:
    gw, admin, t = env
    owner = admin.user("member", team_id=t.red["id"])
    kept = admin.new_key(user_id=owner["id"], name="logs-full", logging="full")
    with openai.OpenAI(base_url=gw.openai_base, api_key=kept["secret"], max_retries=0,
                       http_client=sdk_http_client()) as c:
        c.chat.completions.create(model="sim-a", messages=[{"role": "user", "content": "the secret word is plum"}])
    call(gw, t.member)  # logging none: nothing kept
    rid = _request_id_of(gw, t.org_admin, "logs-full")
    wait_for(lambda: _has_audit_record(admin, rid), what="the call's audit record")
    console.sign_in(t.auditor)
    detail = console.get(f"/ui/requests/{rid}").text
    assert "the secret word is plum" in detail and 'id="payload"' in detail
    reads = [x for x in admin.get("/admin/audit", kind="admin", action="audit.read", limit=1000)["data"]
             if x["target"] == rid]
    assert reads  # reading a payload is audited
    team_admin = Console(gw.url)
    team_admin.sign_in(t.red_admin)
    hidden = team_admin.get(f"/ui/requests/{rid}").text
    assert "plum" not in hidden and "org admins and auditors may read it" in hidden
    team_admin.close()
    plain = _request_id_of(gw, t.org_admin, t.member[:10])
    assert 'id="no-payload"' in console.get(f"/ui/requests/{plain}").text


def _has_audit_record(admin: Admin, rid: str) -> bool:
    return any(x["request_id"] == rid for x in admin.get("/admin/audit", kind="call", limit=1000)["data"])


def test_overview_spend_deployments_audit_and_verify(env: tuple[RunningGateway, Admin, Tenant],
                                                     console: Console) -> None:
    gw, _admin, t = env
    call(gw, t.member, 3)
    console.sign_in(t.auditor)
    wait_for(lambda: "$0.00<" not in console.get("/ui/overview/stats").text.split('id="spend-today">')[1][:20],
             what="spend today")
    stats = console.get("/ui/overview/stats").text
    assert re.search(r'id="rps">[0-9.]+<', stats) and 'id="p99">' in stats
    assert 'id="gateway"' not in stats  # the process-wide metrics are for super admins only
    spend = console.get("/ui/spend", by="model", range="24h").text
    assert "<svg" in spend and "sim-a" in spend
    deployments = console.get("/ui/deployments").text
    assert "sim-a" in deployments and "closed" in deployments and "<th class=\"n\">in flight</th>" not in deployments
    assert "<th>route</th>" in deployments and "fast" in deployments
    audit = console.get("/ui/audit").text
    assert 'id="verify-chain"' in audit and "chat" in audit
    verified = console.post("/ui/audit/verify", htmx=True)
    assert verified.status_code == 200 and "Chain intact" in verified.text
    assert "records," not in verified.text  # the chain's size spans every org: for super admins
    master = Console(gw.url)
    master.sign_in(MASTER_KEY)
    assert 'id="gateway"' in master.get("/ui/overview/stats").text
    assert "<th class=\"n\">in flight</th>" in master.get("/ui/deployments").text
    assert "records," in master.post("/ui/audit/verify", htmx=True).text
    master.close()
    assert token_in(console.get("/ui/keys").text) == console.csrf


def test_static_files_are_in_the_package(env: tuple[RunningGateway, Admin, Tenant]) -> None:
    gw, _, _ = env
    r = httpx.get(f"{gw.url}/ui/static/htmx.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript") and "htmx" in r.text
    assert httpx.get(f"{gw.url}/ui/static/htmx.min.js", headers={"if-none-match": r.headers["etag"]}
                     ).status_code == 304
    assert httpx.get(f"{gw.url}/ui/static/..%2F__init__.py").status_code == 404
    assert httpx.get(f"{gw.url}/ui/static/nothing.js").status_code == 404


# --- on and off ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"console": {"enabled": False}},
                                       {"governance": {"admin": {"enabled": False}}}], ids=["off", "no-admin-api"])
def test_the_console_is_off_when_asked_or_without_the_admin_api(overrides: dict[str, Any]) -> None:
    with run_gateway(base_config(**overrides)) as gw:
        r = httpx.get(f"{gw.url}/ui/sign-in")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"


def test_a_console_nobody_opens_is_never_loaded() -> None:
    """The app holds one Mount for /ui; the console's pages, templates and Jinja2 environment load on its first
    request (checked in a fresh interpreter, since this one has loaded them)."""
    code = ("import sys; from switchyard.config import parse_config; from switchyard.server.factory import build; "
            "build(parse_config({'master_key': 'sk-test-master-0123456789', 'store': 'sqlite:///:memory:'}, 't', {}));"
            "print(sorted(m for m in sys.modules if m.startswith('switchyard.server.ui')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "['switchyard.server.ui']", out.stdout + out.stderr


def test_the_console_needs_governance() -> None:
    with pytest.raises(ConfigError, match=r"console\.enabled"):
        parse_config({"console": {"enabled": True}, "governance": {"enabled": False}}, "<test>", {})
    assert parse_config({"governance": {"enabled": False}}, "<test>", {}).console.enabled is None
