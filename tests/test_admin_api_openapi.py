"""The admin API's OpenAPI document: served without a key, covering exactly the routes that exist, and accurate:
every status a real call returns is documented, and every real body validates against the documented schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from switchyard.server import admin, admin_routes
from switchyard.server.admin.api import model_by_name
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, no_keepalive_client, unique


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    store = f"sqlite:///{Path(tmp_path_factory.mktemp('openapi'))}/s.db"
    with run_gateway(gov_config(store)) as running:
        yield running


@pytest.fixture(scope="module")
def doc(gw: RunningGateway) -> dict[str, Any]:
    with no_keepalive_client(gw.url) as c:
        r = c.get("/admin/openapi.json")  # no key needed
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


def test_document_lists_exactly_the_routes(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    served = {(m.lower(), r.path) for r in [*admin.ROUTES, *admin_routes.ROUTES] if isinstance(r, Route)
              for m in (r.methods or ()) if m != "HEAD"}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    for path in ("/admin/orgs", "/admin/teams/{team_id}", "/admin/users", "/admin/keys/{key_id}/revoke",
                 "/admin/budgets/{budget_id}", "/admin/rate_limits", "/admin/audit", "/admin/audit/verify"):
        assert path in doc["paths"]


def test_every_reference_resolves_to_a_model(doc: dict[str, Any]) -> None:
    text = str(doc)
    refs = set(re.findall(r"#/components/schemas/(\w+)", text))
    assert refs <= set(doc["components"]["schemas"])
    for name in refs:
        if name in {op.body.__name__ for op in admin.OPERATIONS if op.body} | {
                op.response.__name__ for op in admin.OPERATIONS if op.response} | {"ErrorResponse"}:
            assert model_by_name(name) is not None, name


def test_schemas_say_what_the_models_say(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "secret" in schemas["KeyCreated"]["properties"] and "secret" in schemas["KeyCreated"]["required"]
    assert "secret" not in schemas["Key"]["properties"] and "key_hash" not in schemas["Key"]["properties"]
    assert set(schemas["BudgetCreate"]["required"]) == {"scope", "scope_id"}
    assert schemas["KeyCreate"]["additionalProperties"] is False  # unknown fields are refused
    assert set(schemas["Key"]["properties"]["logging"]["enum"]) == {"none", "metadata", "full"}
    assert set(schemas["ErrorResponse"]["properties"]) == {"error"}
    keys_get = doc["paths"]["/admin/keys"]["get"]
    assert {p["name"] for p in keys_get["parameters"]} >= {"limit", "offset", "team_id", "user_id", "include_revoked"}


def _template(doc: dict[str, Any], path: str) -> str:
    for template in doc["paths"]:
        if re.fullmatch(re.sub(r"\{\w+\}", r"[^/]+", template), path):
            return str(template)
    raise AssertionError(f"{path} is not documented")


def _check(doc: dict[str, Any], r: httpx.Response) -> None:
    """The status is documented for this operation, and the body validates against the documented model."""
    op = doc["paths"][_template(doc, r.request.url.path)][r.request.method.lower()]
    documented = op["responses"].get(str(r.status_code))
    assert documented is not None, f"{r.request.method} {r.request.url.path} answered {r.status_code}, undocumented"
    content = documented.get("content")
    if content is None:
        assert not r.content
        return
    name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    model = model_by_name(name)
    assert model is not None
    model.model_validate(r.json())


def test_real_replies_match_the_document(gw: RunningGateway, doc: dict[str, Any]) -> None:
    a = Admin(gw.url)
    seen: list[httpx.Response] = []

    def call(method: str, path: str, json: Any = None, key: str | None = None, **params: Any) -> httpx.Response:
        r = (a.as_key(key) if key else a).request(method, path, json, **params)
        seen.append(r)
        return r

    org = call("POST", "/admin/orgs", {"name": unique("o")}).json()
    call("POST", "/admin/orgs", {"name": org["name"]})  # 409
    team = call("POST", "/admin/teams", {"name": "t", "org_id": org["id"]}).json()
    user = call("POST", "/admin/users", {"email": f"{unique('u')}@x.io", "team_id": team["id"],
                                         "role": "team_admin"}).json()
    key = call("POST", "/admin/keys", {"user_id": user["id"], "tags": ["x"]}).json()
    call("POST", "/admin/keys", {"user_id": user["id"], "models": ["nope"]})  # 400
    budget = call("POST", "/admin/budgets", {"scope": "team", "scope_id": team["id"], "max_usd": 10}).json()
    rl = call("POST", "/admin/rate_limits", {"scope": "user", "scope_id": user["id"], "rpm": 10}).json()
    for path in ("/admin/whoami", "/admin/orgs", f"/admin/orgs/{org['id']}", "/admin/teams",
                 f"/admin/teams/{team['id']}", "/admin/users", f"/admin/users/{user['id']}", "/admin/keys",
                 f"/admin/keys/{key['id']}", "/admin/budgets", f"/admin/budgets/{budget['id']}", "/admin/rate_limits",
                 f"/admin/rate_limits/{rl['id']}", "/admin/audit", "/admin/audit/verify", "/admin/keys/vk_nope"):
        call("GET", path)
    call("GET", "/admin/teams", key=key["secret"])
    call("PATCH", f"/admin/teams/{team['id']}", {"name": "t2"}, key=key["secret"])  # 403
    call("GET", "/admin/orgs", key="sk-sy-wrong-key-0000000000000000")  # 401
    call("PATCH", f"/admin/orgs/{org['id']}", {"name": unique("o")})
    call("PATCH", f"/admin/teams/{team['id']}", {"models": ["sim-a"]})
    call("PATCH", f"/admin/users/{user['id']}", {"name": "Ada"})
    call("PATCH", f"/admin/keys/{key['id']}", {"logging": "metadata"})
    call("PATCH", f"/admin/budgets/{budget['id']}", {"period": "daily"})
    call("PATCH", f"/admin/rate_limits/{rl['id']}", {"tpm": 1000})
    call("DELETE", f"/admin/rate_limits/{rl['id']}")
    call("DELETE", f"/admin/budgets/{budget['id']}")
    call("POST", f"/admin/keys/{key['id']}/revoke")
    call("DELETE", f"/admin/keys/{key['id']}")
    call("DELETE", f"/admin/users/{user['id']}")
    call("DELETE", f"/admin/teams/{team['id']}")
    call("DELETE", f"/admin/orgs/{org['id']}")
    statuses = set()
    for r in seen:
        _check(doc, r)
        statuses.add(r.status_code)
    assert statuses == {200, 201, 400, 401, 403, 404, 409}
    a.close()


def _nullable(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(_nullable(s) for s in schema.get("anyOf", ()))


def test_null_works_exactly_where_the_document_says_nullable(gw: RunningGateway, doc: dict[str, Any]) -> None:
    """Every field of every PATCH body, set to null on a fresh object: where the schema allows null, it is a 200
    that clears the field (to null, [] or {}); where it does not, a 400 naming the field, and no default of null."""
    a = Admin(gw.url)
    org = a.org()
    team = a.team(org["id"])
    user = a.user(team_id=team["id"])
    fresh: dict[str, Any] = {
        "/admin/orgs/{org_id}": lambda: a.org()["id"],
        "/admin/teams/{team_id}": lambda: a.team(org["id"], models=["sim-a"], metadata={"k": 1})["id"],
        "/admin/users/{user_id}": lambda: a.user(team_id=team["id"], name="Ada", metadata={"k": 1})["id"],
        "/admin/keys/{key_id}": lambda: a.new_key(user_id=user["id"], name="k", models=["sim-a"], tags=["t"],
                                                  metadata={"k": 1}, expires_in=3600)["id"],
        "/admin/budgets/{budget_id}": lambda: a.post("/admin/budgets", {
            "scope": "user", "scope_id": user["id"], "name": "b", "max_usd": 5, "max_tokens": 100,
            "timezone": "Europe/Paris", "webhook_url": "https://hooks.example/b"})["id"],
        "/admin/rate_limits/{limit_id}": lambda: a.post("/admin/rate_limits", {
            "scope": "user", "scope_id": user["id"], "name": "r", "rpm": 5, "tpm": 100})["id"],
    }
    patched = {path for path, ops in doc["paths"].items() if "patch" in ops}
    assert patched == set(fresh)
    checked = 0
    for path in sorted(patched):
        ref = doc["paths"][path]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        for name, prop in schema["properties"].items():
            obj = re.sub(r"\{\w+\}", fresh[path](), path)
            r = a.request("PATCH", obj, {name: None})
            if _nullable(prop):
                assert r.status_code == 200, (path, name, r.text)
                assert r.json()[name] in (None, [], {}), (path, name, r.json()[name])
            else:
                assert r.status_code == 400 and r.json()["error"]["param"] == name, (path, name, r.text)
                assert "default" not in prop, (path, name)
            checked += 1
    assert checked >= 25
    a.close()
