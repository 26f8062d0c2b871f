"""The admin API's RBAC matrix (issue 11), over HTTP against one real gateway: every actor role x every admin
operation x every target role, each cell its own assertion, every expected status read from TABLE below.

The rule TABLE spells out (docs/governance.md, *Roles*): an actor may create, change, delete or revoke something
only if its rights strictly exceed those of every principal the object holds or binds, before and after the change
(so never a peer's, never its own, never above itself); the one exception is its own keys, which it may revoke and
narrow but not widen. What it may not see is 404 when the path names it and 400 when the body does; what it sees
but may not change is 403. Then the two reported exploits, replayed as regression tests, and the limits that an
owner may not lift from its own keys, on the data plane too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client, unique

ACTORS = ("super", "org_admin", "team_admin", "member", "auditor", "other_org_admin")

# Who acts (the columns): the master key; an org admin of org O (in no team); a team admin, a member and an auditor,
# all three of team T1 of O; and an org admin of another org X.
# What they act on (the targets): users and their keys, each freshly made where the operation changes it:
#   org_admin, team_admin, member, auditor: a user with that role sitting in T1 (the org admin too: the exploit's);
#   member_t2: a member of T2; team: T1 itself, or its own key (no user); self: the actor's own user or key;
#   org: O; scopes of limits are written scope:target (key:member is a budget on a key of a member of T1).
# A cell is the HTTP status the actor gets; "-" where the cell does not exist (the master key has no user).
TABLE = """
operation        target           super  org_admin team_admin member auditor other_org_admin
user.read        org_admin        200    200       200        404    404     404
user.read        team_admin       200    200       200        404    404     404
user.read        member           200    200       200        404    404     404
user.read        member_t2        200    200       404        404    404     404
user.read        auditor          200    200       200        404    404     404
user.read        self             -      200       200        200    200     200
user.create      org_admin        201    403       403        403    400     400
user.create      team_admin       201    201       403        403    400     400
user.create      member           201    201       201        403    400     400
user.create      member_t2        201    201       400        400    400     400
user.create      auditor          201    201       403        403    400     400
user.rename      org_admin        200    403       403        404    404     404
user.rename      team_admin       200    200       403        404    404     404
user.rename      member           200    200       200        404    404     404
user.rename      member_t2        200    200       404        404    404     404
user.rename      auditor          200    200       403        404    404     404
user.rename      self             -      403       403        403    403     403
user.role        org_admin        200    403       403        404    404     404
user.role        team_admin       200    403       403        404    404     404
user.role        member           200    200       403        404    404     404
user.role        member_t2        200    200       404        404    404     404
user.role        auditor          200    200       403        404    404     404
user.role        self             -      403       403        403    403     403
user.move        org_admin        200    403       403        404    404     404
user.move        team_admin       200    200       403        404    404     404
user.move        member           200    200       400        404    404     404
user.move        member_t2        200    200       404        404    404     404
user.move        auditor          200    200       403        404    404     404
user.move        self             -      403       403        403    403     403
user.delete      org_admin        200    403       403        404    404     404
user.delete      team_admin       200    200       403        404    404     404
user.delete      member           200    200       200        404    404     404
user.delete      member_t2        200    200       404        404    404     404
user.delete      auditor          200    200       403        404    404     404
user.delete      self             -      403       403        403    403     403
key.create       org_admin        201    403       403        400    400     400
key.create       team_admin       201    201       403        400    400     400
key.create       member           201    201       201        400    400     400
key.create       member_t2        201    201       400        400    400     400
key.create       auditor          201    201       403        400    400     400
key.create       team             201    201       201        403    400     400
key.create       self             -      201       201        201    201     201
key.read         org_admin        200    200       200        404    404     404
key.read         team_admin       200    200       200        404    404     404
key.read         member           200    200       200        404    404     404
key.read         member_t2        200    200       404        404    404     404
key.read         auditor          200    200       200        404    404     404
key.read         team             200    200       200        404    404     404
key.read         self             -      200       200        200    200     200
key.narrow       org_admin        200    403       403        404    404     404
key.narrow       team_admin       200    200       403        404    404     404
key.narrow       member           200    200       200        404    404     404
key.narrow       member_t2        200    200       404        404    404     404
key.narrow       auditor          200    200       403        404    404     404
key.narrow       team             200    200       200        404    404     404
key.narrow       self             -      200       200        200    200     200
key.widen        org_admin        200    403       403        404    404     404
key.widen        team_admin       200    200       403        404    404     404
key.widen        member           200    200       200        404    404     404
key.widen        member_t2        200    200       404        404    404     404
key.widen        auditor          200    200       403        404    404     404
key.widen        team             200    200       200        404    404     404
key.widen        self             -      403       403        403    403     403
key.raise_class  org_admin        200    403       403        404    404     404
key.raise_class  team_admin       200    200       403        404    404     404
key.raise_class  member           200    200       200        404    404     404
key.raise_class  member_t2        200    200       404        404    404     404
key.raise_class  auditor          200    200       403        404    404     404
key.raise_class  team             200    200       200        404    404     404
key.raise_class  self             -      200       200        200    200     200
key.lower_class  org_admin        200    403       403        404    404     404
key.lower_class  team_admin       200    200       403        404    404     404
key.lower_class  member           200    200       200        404    404     404
key.lower_class  member_t2        200    200       404        404    404     404
key.lower_class  auditor          200    200       403        404    404     404
key.lower_class  team             200    200       200        404    404     404
key.lower_class  self             -      403       403        403    403     403
key.pii_mode     org_admin        200    403       403        404    404     404
key.pii_mode     team_admin       200    200       403        404    404     404
key.pii_mode     member           200    200       200        404    404     404
key.pii_mode     member_t2        200    200       404        404    404     404
key.pii_mode     auditor          200    200       403        404    404     404
key.pii_mode     team             200    200       200        404    404     404
key.pii_mode     self             -      403       403        403    403     403
key.revoke       org_admin        200    403       403        404    404     404
key.revoke       team_admin       200    200       403        404    404     404
key.revoke       member           200    200       200        404    404     404
key.revoke       member_t2        200    200       404        404    404     404
key.revoke       auditor          200    200       403        404    404     404
key.revoke       team             200    200       200        404    404     404
key.revoke       self             -      200       200        200    200     200
limit.create     key:org_admin    201    403       403        400    400     400
limit.create     key:team_admin   201    201       403        400    400     400
limit.create     key:member       201    201       201        400    400     400
limit.create     key:member_t2    201    201       400        400    400     400
limit.create     key:auditor      201    201       403        400    400     400
limit.create     key:team         201    201       201        400    400     400
limit.create     key:self         -      403       403        403    403     403
limit.create     user:org_admin   201    403       403        400    400     400
limit.create     user:team_admin  201    201       403        400    400     400
limit.create     user:member      201    201       201        400    400     400
limit.create     user:member_t2   201    201       400        400    400     400
limit.create     user:auditor     201    201       403        400    400     400
limit.create     user:self        -      403       403        403    403     403
limit.create     team:team        201    201       403        400    400     400
limit.create     org:org          201    403       400        400    400     400
limit.create     tag:org          201    403       400        400    400     400
limit.update     key:org_admin    200    403       403        404    404     404
limit.update     key:team_admin   200    200       403        404    404     404
limit.update     key:member       200    200       200        404    404     404
limit.update     key:member_t2    200    200       404        404    404     404
limit.update     key:auditor      200    200       403        404    404     404
limit.update     key:team         200    200       200        404    404     404
limit.update     key:self         -      403       403        403    403     403
limit.update     user:org_admin   200    403       403        404    404     404
limit.update     user:team_admin  200    200       403        404    404     404
limit.update     user:member      200    200       200        404    404     404
limit.update     user:member_t2   200    200       404        404    404     404
limit.update     user:auditor     200    200       403        404    404     404
limit.update     user:self        -      403       403        403    403     403
limit.update     team:team        200    200       403        404    404     404
limit.update     org:org          200    403       404        404    404     404
limit.update     tag:org          200    403       404        404    404     404
limit.delete     key:org_admin    200    403       403        404    404     404
limit.delete     key:team_admin   200    200       403        404    404     404
limit.delete     key:member       200    200       200        404    404     404
limit.delete     key:member_t2    200    200       404        404    404     404
limit.delete     key:auditor      200    200       403        404    404     404
limit.delete     key:team         200    200       200        404    404     404
limit.delete     key:self         -      403       403        403    403     403
limit.delete     user:org_admin   200    403       403        404    404     404
limit.delete     user:team_admin  200    200       403        404    404     404
limit.delete     user:member      200    200       200        404    404     404
limit.delete     user:member_t2   200    200       404        404    404     404
limit.delete     user:auditor     200    200       403        404    404     404
limit.delete     user:self        -      403       403        403    403     403
limit.delete     team:team        200    200       403        404    404     404
limit.delete     org:org          200    403       404        404    404     404
limit.delete     tag:org          200    403       404        404    404     404
team.read        team             200    200       200        200    404     404
team.read        team_t2          200    200       404        404    404     404
team.create      org              201    201       403        403    403     400
team.update      team             200    200       403        403    404     404
team.class       team             200    200       403        403    404     404
team.delete      team_new         200    200       404        404    404     404
org.read         org              200    200       200        200    200     404
org.update       org              200    200       403        403    403     404
audit.read       org              200    200       403        403    200     403
policies.read    org              200    200       403        403    200     404
policies.write   org              200    200       403        403    403     404
routes.health    -                200    403       403        403    403     403
"""

# limit.* rows run twice: for budgets, and (at the scopes rate limits have: key, user, team) for rate limits
RATE_LIMIT_SCOPES = ("key", "user", "team")
PLACES = {"org_admin": ("org_admin", "t1"), "team_admin": ("team_admin", "t1"), "member": ("member", "t1"),
          "member_t2": ("member", "t2"), "auditor": ("auditor", "t1")}
ROLE_CHANGES = {"org_admin": "member", "team_admin": "org_admin", "member": "team_admin",
                "member_t2": "team_admin", "auditor": "member"}


def cells() -> Iterator[Any]:
    header, *rows = [line.split() for line in TABLE.strip().splitlines()]
    assert tuple(header[2:]) == ACTORS
    for op, target, *statuses in rows:
        assert len(statuses) == len(ACTORS), (op, target)
        kinds = [op] if not op.startswith("limit.") else [op.replace("limit", "budget")] + (
            [op.replace("limit", "rate_limit")] if target.split(":")[0] in RATE_LIMIT_SCOPES else [])
        for kind in kinds:
            for who, status in zip(ACTORS, statuses, strict=True):
                if status != "-":
                    yield pytest.param(kind, target, who, int(status), id=f"{kind}-{target}-by-{who}")


@dataclass
class World:
    """Org O (teams T1, T2), org X, an actor of each role with its key, and targets made by the master key."""

    admin: Admin
    org: str
    t1: str
    t2: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # actor -> its user
    clients: dict[str, Admin] = field(default_factory=dict)  # actor -> an admin client with its key
    shared: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)  # target -> (user, key)

    def team(self, name: str) -> str:
        return {"t1": self.t1, "t2": self.t2}[name]

    def new_user(self, target: str) -> dict[str, Any]:
        role, team = PLACES[target]
        return self.admin.user(role, team_id=self.team(team))

    def new_key(self, owner: dict[str, Any]) -> dict[str, Any]:
        return self.admin.new_key(**owner, models=["sim-a", "sim-b"], data_class="confidential", pii_mode="detect")

    def user(self, who: str, target: str, fresh: bool = False) -> dict[str, Any]:
        if target == "self":
            return self.users[who]
        return self.new_user(target) if fresh else self.shared_of(target)[0]

    def key(self, who: str, target: str, fresh: bool = False) -> dict[str, Any]:
        if target == "team":
            return self.new_key({"team_id": self.t1}) if fresh else self.shared_of(target)[1]
        if target == "self":
            return self.new_key({"user_id": self.users[who]["id"]}) if fresh else self.shared_of(f"self:{who}")[1]
        return self.new_key({"user_id": self.user(who, target, fresh)["id"]}) if fresh else self.shared_of(target)[1]

    def shared_of(self, target: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if target not in self.shared:
            if target == "team":
                user: dict[str, Any] = {}
                key = self.new_key({"team_id": self.t1})
            elif target.startswith("self:"):
                user = self.users[target[5:]]
                key = self.new_key({"user_id": user["id"]})
            else:
                user = self.new_user(target)
                key = self.new_key({"user_id": user["id"]})
            self.shared[target] = (user, key)
        return self.shared[target]

    def scope(self, who: str, target: str) -> dict[str, Any]:
        """A limit's scope fields for ``scope:target``."""
        scope, of = target.split(":")
        if scope == "key":
            return {"scope": "key", "scope_id": self.key(who, of)["id"]}
        if scope == "user":
            return {"scope": "user", "scope_id": self.user(who, of)["id"]}
        if scope == "team":
            return {"scope": "team", "scope_id": self.t1}
        if scope == "org":
            return {"scope": "org", "scope_id": self.org}
        return {"scope": "tag", "scope_id": unique("proj"), "org_id": self.org}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    store = f"sqlite:///{Path(tmp_path_factory.mktemp('rbac'))}/s.db"
    with run_gateway(gov_config(store)) as running:
        yield running


@pytest.fixture(scope="module")
def world(gw: RunningGateway) -> Iterator[World]:
    admin = Admin(gw.url)
    org, other = admin.org()["id"], admin.org()["id"]
    w = World(admin, org, admin.team(org)["id"], admin.team(org)["id"])
    actors = (("org_admin", "org_admin", {"org_id": org}), ("team_admin", "team_admin", {"team_id": w.t1}),
              ("member", "member", {"team_id": w.t1}), ("auditor", "auditor", {"team_id": w.t1}),
              ("other_org_admin", "org_admin", {"org_id": other}))
    for who, role, place in actors:
        w.users[who], secret = admin.user_with_key(role, **place)
        w.clients[who] = admin.as_key(secret)
    w.clients["super"] = admin
    yield w
    admin.close()


Op = Callable[[World, str, str, Admin], httpx.Response]


def _user_change(body: Callable[[World, str, dict[str, Any]], dict[str, Any]]) -> Op:
    def op(w: World, who: str, target: str, c: Admin) -> httpx.Response:
        u = w.user(who, target, fresh=True)
        return c.request("PATCH", f"/admin/users/{u['id']}", body(w, target, u))
    return op


def _role_change(w: World, target: str, u: dict[str, Any]) -> dict[str, Any]:
    if target == "self":  # one step up (an org admin: down)
        return {"role": "member" if u["role"] == "org_admin" else "org_admin"}
    return {"role": ROLE_CHANGES[target]}


def _limit_op(kind: str, action: str) -> Op:
    path = f"/admin/{kind}s"

    def op(w: World, who: str, target: str, c: Admin) -> httpx.Response:
        amount = {"max_usd": 5} if kind == "budget" else {"rpm": 5}
        if action == "create":
            return c.request("POST", path, {**w.scope(who, target), **amount})
        made = w.admin.post(path, {**w.scope(who, target), **amount})
        if action == "update":
            return c.request("PATCH", f"{path}/{made['id']}", {"max_usd": 1000} if kind == "budget" else {"rpm": 1000})
        return c.request("DELETE", f"{path}/{made['id']}")
    return op


def _key_create(w: World, who: str, target: str, c: Admin) -> httpx.Response:
    body = ({} if target == "self" else {"team_id": w.t1} if target == "team"
            else {"user_id": w.user(who, target)["id"]})
    return c.request("POST", "/admin/keys", body)


def _user_create(w: World, who: str, target: str, c: Admin) -> httpx.Response:
    role, team = PLACES[target]
    return c.request("POST", "/admin/users", {"email": f"{unique('new')}@example.com", "role": role,
                                              "team_id": w.team(team)})


OPS: dict[str, Op] = {
    "user.read": lambda w, who, t, c: c.request("GET", f"/admin/users/{w.user(who, t)['id']}"),
    "user.create": _user_create,
    "user.rename": _user_change(lambda w, t, u: {"name": "renamed"}),
    "user.role": _user_change(_role_change),
    "user.move": _user_change(lambda w, t, u: {"team_id": w.t1 if u["team_id"] == w.t2 else w.t2}),
    "user.delete": lambda w, who, t, c: c.request("DELETE", f"/admin/users/{w.user(who, t, fresh=True)['id']}"),
    "key.create": _key_create,
    "key.read": lambda w, who, t, c: c.request("GET", f"/admin/keys/{w.key(who, t)['id']}"),
    "key.narrow": lambda w, who, t, c: c.request("PATCH", f"/admin/keys/{w.key(who, t, fresh=True)['id']}",
                                                 {"name": "narrower", "models": ["sim-a"]}),
    "key.widen": lambda w, who, t, c: c.request("PATCH", f"/admin/keys/{w.key(who, t, fresh=True)['id']}",
                                                {"models": None}),
    # a key's data class is a floor its owner may raise, never lower; its PII mode is an admin's to choose
    "key.raise_class": lambda w, who, t, c: c.request("PATCH", f"/admin/keys/{w.key(who, t, fresh=True)['id']}",
                                                      {"data_class": "restricted"}),
    "key.lower_class": lambda w, who, t, c: c.request("PATCH", f"/admin/keys/{w.key(who, t, fresh=True)['id']}",
                                                      {"data_class": "public"}),
    "key.pii_mode": lambda w, who, t, c: c.request("PATCH", f"/admin/keys/{w.key(who, t, fresh=True)['id']}",
                                                   {"pii_mode": "off"}),
    "key.revoke": lambda w, who, t, c: c.request("POST", f"/admin/keys/{w.key(who, t, fresh=True)['id']}/revoke"),
    **{f"{kind}.{action}": _limit_op(kind, action) for kind in ("budget", "rate_limit")
       for action in ("create", "update", "delete")},
    "team.read": lambda w, who, t, c: c.request("GET", f"/admin/teams/{w.t1 if t == 'team' else w.t2}"),
    "team.create": lambda w, who, t, c: c.request("POST", "/admin/teams", {"name": unique("t"), "org_id": w.org}),
    "team.update": lambda w, who, t, c: c.request("PATCH", f"/admin/teams/{w.t1}", {"metadata": {"by": who}}),
    "team.class": lambda w, who, t, c: c.request("PATCH", f"/admin/teams/{w.t1}",
                                                 {"data_class": "internal", "pii_mode": "detect"}),
    "team.delete": lambda w, who, t, c: c.request("DELETE", f"/admin/teams/{w.admin.team(w.org)['id']}"),
    "org.read": lambda w, who, t, c: c.request("GET", f"/admin/orgs/{w.org}"),
    "org.update": lambda w, who, t, c: c.request("PATCH", f"/admin/orgs/{w.org}", {"metadata": {"by": who}}),
    "audit.read": lambda w, who, t, c: c.request("GET", "/admin/audit", limit=1, org_id=w.org),
    "policies.read": lambda w, who, t, c: c.request("GET", f"/admin/orgs/{w.org}/policies"),
    "policies.write": lambda w, who, t, c: c.request("PUT", f"/admin/orgs/{w.org}/policies",
                                                     {"policies": f"// by {who}\n"}),
    "routes.health": lambda w, who, t, c: c.request("GET", "/admin/routes/health"),
}


@pytest.mark.parametrize(("op", "target", "who", "expected"), list(cells()))
def test_matrix(world: World, op: str, target: str, who: str, expected: int) -> None:
    r = OPS[op](world, who, target, world.clients[who])
    assert r.status_code == expected, f"{op} on {target} by {who}: {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        err = r.json()["error"]
        assert err["code"] and err["message"]
        if r.status_code == 403 and op != "routes.health":
            assert err["code"] == "forbidden", err


# --- the reported exploits, replayed --------------------------------------------------------------------------


def test_issue11_team_admin_cannot_mint_a_key_for_an_org_admin_of_its_team(world: World) -> None:
    """A team admin of T1 asked for a key of an org admin who sits in T1, got 201 and the secret, and then acted as
    an org admin. Now: 403, no key, and it cannot revoke that org admin's keys either."""
    boss = world.admin.user("org_admin", team_id=world.t1)
    boss_key = world.admin.new_key(user_id=boss["id"])
    ta = world.clients["team_admin"]
    r = ta.request("POST", "/admin/keys", {"user_id": boss["id"]})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden" and "secret" not in r.text
    assert [k["id"] for k in world.admin.get("/admin/keys", user_id=boss["id"])["data"]] == [boss_key["id"]]
    assert ta.request("POST", f"/admin/keys/{boss_key['id']}/revoke").status_code == 403
    assert ta.request("DELETE", f"/admin/keys/{boss_key['id']}").status_code == 403
    assert world.admin.get(f"/admin/keys/{boss_key['id']}")["status"] == "active"
    # nor for an auditor of its team (who reads the org's audit log, which a team admin may not)
    auditor = world.admin.user("auditor", team_id=world.t1)
    assert ta.request("POST", "/admin/keys", {"user_id": auditor["id"]}).status_code == 403
    # the refusal is in the audit log, as a denial
    denials = world.admin.get("/admin/audit", limit=1000, action="key.create", org_id=world.org)["data"]
    assert any(d["decision"] == "deny" and d["actor_user_id"] == world.users["team_admin"]["id"] for d in denials)


def _chat(gw: RunningGateway, secret: str, model: str) -> Any:
    c = openai.OpenAI(base_url=gw.openai_base, api_key=secret, max_retries=0, http_client=sdk_http_client())
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_issue11_member_cannot_lift_the_limits_on_its_own_key(gw: RunningGateway, world: World) -> None:
    """A member PATCHed its own key with models null, tags [], expires_at null and logging none, and got 200: its
    $0 tag budget stopped applying and a forbidden model became allowed. Now every one of those is a 403 naming
    the field, the key is unchanged, and on the data plane the model is still refused and the budget still holds."""
    tag = unique("capped")
    world.admin.post("/admin/budgets", {"scope": "tag", "scope_id": tag, "org_id": world.org, "max_usd": 0})
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    key = world.admin.new_key(user_id=world.users["member"]["id"], models=["sim-a", "sim-b"], tags=[tag],
                              logging="metadata", expires_at=expires.isoformat())
    me = world.admin.as_key(key["secret"])
    with pytest.raises(openai.PermissionDeniedError):
        _chat(gw, key["secret"], "sim-c")
    with pytest.raises(openai.RateLimitError) as e:
        _chat(gw, key["secret"], "sim-a")
    assert e.value.code == "budget_exceeded"
    r = me.request("PATCH", f"/admin/keys/{key['id']}",
                   {"models": None, "tags": [], "expires_at": None, "logging": "none"})
    assert r.status_code == 403
    for change, param in (({"models": None}, "models"), ({"models": ["sim-a", "sim-c"]}, "models"),
                          ({"tags": []}, "tags"), ({"tags": None}, "tags"), ({"expires_at": None}, "expires_at"),
                          ({"expires_at": (expires + timedelta(days=1)).isoformat()}, "expires_at"),
                          ({"logging": "none"}, "logging"), ({"logging": "full"}, "logging")):
        r = me.request("PATCH", f"/admin/keys/{key['id']}", change)
        assert r.status_code == 403, (change, r.text)
        assert r.json()["error"]["param"] == param and r.json()["error"]["code"] == "forbidden"
    now = world.admin.get(f"/admin/keys/{key['id']}")
    assert (now["models"], now["tags"], now["logging"]) == (["sim-a", "sim-b"], [tag], "metadata")
    assert datetime.fromisoformat(now["expires_at"]) == expires
    with pytest.raises(openai.PermissionDeniedError):
        _chat(gw, key["secret"], "sim-c")
    with pytest.raises(openai.RateLimitError):
        _chat(gw, key["secret"], "sim-a")
    # adding a tag would charge another's tag budget: an admin's choice too
    r = me.request("PATCH", f"/admin/keys/{key['id']}", {"tags": [tag, "extra"]})
    assert r.status_code == 403 and r.json()["error"]["param"] == "tags", r.text
    # narrowing is the owner's: rename, drop a model, expire sooner (tags given unchanged are fine)
    sooner = (expires - timedelta(days=1)).isoformat()
    narrowed = me.patch(f"/admin/keys/{key['id']}", {"name": "mine", "models": ["sim-a"], "tags": [tag],
                                                     "expires_at": sooner})
    assert (narrowed["name"], narrowed["models"], narrowed["tags"]) == ("mine", ["sim-a"], [tag])
    assert me.patch(f"/admin/keys/{key['id']}", {"name": None})["name"] is None
    # an admin over the key (here its team's admin) may widen it
    widened = world.clients["team_admin"].patch(f"/admin/keys/{key['id']}", {"models": None, "tags": None,
                                                                             "expires_at": None, "logging": "none"})
    assert (widened["models"], widened["tags"], widened["expires_at"], widened["logging"]) == (None, [], None, "none")


def test_a_key_an_owner_makes_for_itself_is_no_wider_than_the_key_it_calls_with(world: World) -> None:
    """Otherwise a new key would be the way around every limit above: it inherits what it does not name, and may
    only narrow what it names; while its calling key has a budget or rate limit of its own, it may make none."""
    expires = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    key = world.admin.new_key(user_id=world.users["member"]["id"], models=["sim-a", "sim-b"], tags=["held"],
                              logging="metadata", expires_at=expires.isoformat())
    me = world.admin.as_key(key["secret"])
    child = me.new_key(name="child")
    assert (child["models"], child["tags"], child["logging"]) == (["sim-a", "sim-b"], ["held"], "metadata")
    assert datetime.fromisoformat(child["expires_at"]) == expires
    narrower = me.new_key(models=["sim-b"], tags=["held"], expires_in=3600)
    assert narrower["models"] == ["sim-b"] and narrower["tags"] == ["held"]
    for body, param in (({"models": None}, "models"), ({"models": ["sim-c"]}, "models"), ({"tags": []}, "tags"),
                        ({"tags": ["held", "more"]}, "tags"),
                        ({"logging": "none"}, "logging"), ({"expires_at": None}, "expires_at"),
                        ({"expires_in": 86400 * 11}, "expires_at")):
        r = me.request("POST", "/admin/keys", body)
        assert r.status_code == 403 and r.json()["error"]["param"] == param, (body, r.text)
    world.admin.post("/admin/budgets", {"scope": "key", "scope_id": key["id"], "max_usd": 1})
    r = me.request("POST", "/admin/keys", {"name": "escape"})
    assert r.status_code == 403 and "budget or rate limit" in r.json()["error"]["message"]


def test_a_team_key_has_no_admin_rights_at_all(world: World) -> None:
    secret = world.admin.new_key(team_id=world.t1)["secret"]
    c = world.admin.as_key(secret)
    for method, path, body in (("GET", "/admin/whoami", None), ("GET", "/admin/keys", None),
                               ("POST", "/admin/keys", {"team_id": world.t1}), ("GET", "/admin/routes/health", None)):
        r = c.request(method, path, body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required", (path, r.text)


def test_the_auditor_sees_no_team_and_reads_its_org_audit_log(world: World) -> None:
    au = world.clients["auditor"]
    assert au.get("/admin/teams")["data"] == []
    assert au.request("GET", f"/admin/teams/{world.t1}").status_code == 404
    assert au.get("/admin/audit", limit=5)["data"]


def test_expires_in_out_of_range_is_a_400_naming_it(world: World) -> None:
    owner = {"user_id": world.users["member"]["id"]}
    for body, param in (({"expires_in": 1e300}, "expires_in"), ({"expires_in": 101 * 366 * 86400}, "expires_in"),
                        ({"expires_at": "9999-12-31T23:59:59-14:00"}, "expires_at"),
                        ({"expires_at": "2300-01-01T00:00:00Z"}, "expires_at")):
        r = world.admin.request("POST", "/admin/keys", {**owner, **body})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    key = world.admin.new_key(**owner, expires_in=99 * 365 * 86400)
    r = world.admin.request("PATCH", f"/admin/keys/{key['id']}", {"expires_at": "9999-12-31T23:59:59-14:00"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "expires_at"
