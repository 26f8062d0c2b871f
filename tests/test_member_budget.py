"""A team's member budget: every user of the team gets a copy with its own spend and limit, enforced by the
ledger as any budget (``governance/member_budget.py``). Real spending over HTTP with the OpenAI SDK: each call to
``dear`` with ``max_tokens=1`` costs exactly $0.10 (see ``tests/test_simulated.py``)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from click.testing import CliRunner

from switchyard.cli.main import main
from switchyard.governance.member_budget import copy_id
from tests.support.governance import BACKENDS
from tests.support.ledger import wait_for
from tests.test_simulated import priced

HI: Any = [{"role": "user", "content": "hi"}]


def chat(gw: Any, secret: str) -> bool:
    """One $0.10 call; True if it was served, False if a budget refused it (429)."""
    c = openai.OpenAI(base_url=gw.openai_base, api_key=secret, max_retries=0)
    try:
        c.chat.completions.create(model="dear", max_tokens=1, messages=HI)
        return True
    except openai.RateLimitError as e:
        assert "budget" in str(e).lower(), e
        return False


def me(gw: Any, secret: str) -> dict[str, Any]:
    r = httpx.get(f"{gw.url}/v1/me", headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_member_spends_only_their_own_copy(tmp_path: Path, backend: str) -> None:
    with priced(tmp_path, backend) as (gw, _store, admin):
        org = admin.org()
        team = admin.team(org["id"])
        ann, ann_key = admin.user_with_key("member", team_id=team["id"])
        bob, bob_key = admin.user_with_key("member", team_id=team["id"])
        service_key = admin.new_key(team_id=team["id"])["secret"]
        assert chat(gw, ann_key)  # ann's key is cached before the template exists: the change must reach it
        template = admin.post("/admin/budgets", {"scope": "members", "scope_id": team["id"], "max_usd": 0.3,
                                                 "period": "daily", "name": "per member"})
        assert template["scope"] == "members" and template["template_id"] is None

        # ann spends her own $0.30 (the call before the template is not in it), and is refused past it
        assert [chat(gw, ann_key) for _ in range(4)] == [True, True, True, False]
        assert [chat(gw, bob_key) for _ in range(2)] == [True, True]  # bob's copy is untouched by ann's spending
        assert all(chat(gw, service_key) for _ in range(4))  # a team's own key has no user: no copy

        ann_copy = copy_id(template["id"], ann["id"])
        mine = me(gw, ann_key)["budgets"]
        assert [(b["budget_id"], b["template_id"], b["scope"], b["scope_id"]) for b in mine] == [
            (ann_copy, template["id"], "user", ann["id"])]
        assert (Decimal(mine[0]["spent_usd"]), Decimal(mine[0]["remaining_usd"])) == (Decimal("0.3"), 0)
        st = admin.get(f"/admin/budgets/{ann_copy}/status")
        assert (st["budget_id"], Decimal(st["spent_usd"]), Decimal(st["held_usd"])) == (ann_copy, Decimal("0.3"), 0)
        copy = admin.get(f"/admin/budgets/{ann_copy}")
        assert (copy["scope"], copy["scope_id"], copy["template_id"]) == ("user", ann["id"], template["id"])

        # the template's status lists each member's copy (read from the store, once the spool has shipped)
        def listed() -> dict[str, Any]:
            return dict(admin.get(f"/admin/budgets/{template['id']}/status"))
        wait_for(lambda: Decimal(listed()["spent_usd"]) == Decimal("0.5"), what="the copies' spend in the store")
        by_email = {m["email"]: m for m in listed()["members"]}
        assert set(by_email) == {ann["email"], bob["email"]}
        assert Decimal(by_email[bob["email"]]["remaining_usd"]) == Decimal("0.1")

        # a copy changes only with its template, which keeps what was spent
        r = admin.request("PATCH", f"/admin/budgets/{ann_copy}", {"max_usd": 5})
        assert r.status_code == 409 and template["id"] in r.json()["error"]["message"]
        assert admin.request("DELETE", f"/admin/budgets/{ann_copy}").status_code == 409
        admin.patch(f"/admin/budgets/{template['id']}", {"max_usd": 0.5})
        assert [chat(gw, ann_key) for _ in range(3)] == [True, True, False]

        # a user who joins gets a copy; one who leaves loses it
        carol, carol_key = admin.user_with_key("member", team_id=team["id"])
        assert [b["budget_id"] for b in me(gw, carol_key)["budgets"]] == [copy_id(template["id"], carol["id"])]
        other = admin.team(org["id"])
        admin.patch(f"/admin/users/{bob['id']}", {"team_id": other["id"]})
        wait_for(lambda: me(gw, bob_key)["budgets"] == [], what="bob's copy gone with his move")
        assert admin.request("GET", f"/admin/budgets/{copy_id(template['id'], bob['id'])}").status_code == 404


def test_who_may_set_a_member_budget(tmp_path: Path) -> None:
    with priced(tmp_path) as (_gw, _store, admin):
        org = admin.org()
        team = admin.team(org["id"])
        lead, lead_key = admin.user_with_key("team_admin", team_id=team["id"])
        _, boss_key = admin.user_with_key("org_admin", org_id=org["id"])
        body = {"scope": "members", "scope_id": team["id"], "max_usd": 200, "period": "weekly"}
        r = admin.as_key(lead_key).request("POST", "/admin/budgets", body)
        assert r.status_code == 403  # it binds the team's team admins too: an org admin's to set
        made = admin.as_key(boss_key).post("/admin/budgets", body)
        listed = admin.as_key(lead_key).get("/admin/budgets", scope="members")["data"]
        assert [b["id"] for b in listed] == [made["id"]]  # the team admin reads it
        admin.delete(f"/admin/users/{lead['id']}")
        admin.delete(f"/admin/teams/{team['id']}")
        admin.get(f"/admin/budgets/{made['id']}", expect=404)  # a deleted team's member budget goes with it


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    path = tmp_path / "switchyard.yaml"
    path.write_text(yaml.safe_dump({"store": "sqlite:///s.db", "governance": {"key_secret": "k" * 32}}))
    return path


def test_cli_sets_and_shows_a_member_budget(cli_config: Path) -> None:
    def cli(*args: str, code: int = 0) -> str:
        r = CliRunner().invoke(main, [*args, "--config", str(cli_config)], terminal_width=200)
        assert r.exit_code == code, r.output
        return r.stdout if code == 0 else r.stderr

    cli("teams", "create", "search", "--org", "acme")
    for email in ("ann@acme.io", "bob@acme.io"):
        cli("users", "create", email, "--team", "search")
    assert "no member budget" in cli("teams", "member-budget", "search")
    made = json.loads(cli("teams", "member-budget", "search", "--usd", "200", "--period", "weekly", "--json"))
    assert [(b["scope"], b["max_usd"], b["period"]) for b in made] == [("members", 200.0, "weekly")]
    changed = json.loads(cli("teams", "member-budget", "search", "--usd", "150", "--json"))
    assert [(b["id"], b["max_usd"], b["period"]) for b in changed] == [(made[0]["id"], 150.0, "weekly")]
    assert "$150.00 weekly" in cli("teams", "list")
    rows = cli("budgets", "status", "--csv").splitlines()
    assert rows[0].startswith("budget_id,name,scope,scope_id,for,")
    members = [r for r in rows[1:] if ",user," in r]
    assert sorted(r.split(",")[4] for r in members) == ["ann@acme.io", "bob@acme.io"]
    assert all(",0.00," in r and ",150.00," in r for r in members)  # plain amounts, never 0E-8
    cli("teams", "member-budget", "search", "--clear")
    assert json.loads(cli("budgets", "list", "--json")) == []
