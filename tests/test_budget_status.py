"""Budgets as people look at them: GET /admin/budgets/{id}/status, GET /v1/me, and the CLI's orgs, users,
budgets and rate-limits commands."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import openai
from click.testing import CliRunner

from switchyard.cli.main import main
from tests.support.ledger import tenant, wait_for
from tests.test_simulated import priced

HI = [{"role": "user", "content": "hi"}]


def test_status_and_me_after_spending(tmp_path: Path) -> None:
    with priced(tmp_path) as (gw, _store, admin):
        t = tenant(admin, budget={"max_usd": 1.0, "period": "daily", "name": "day"},
                   rate_limit={"rpm": 100, "name": "steady"})
        bid = t["budget"]["id"]
        c = openai.OpenAI(base_url=gw.openai_base, api_key=t["secret"], max_retries=0)
        for _ in range(3):
            c.chat.completions.create(model="dear", max_tokens=1, messages=HI)  # $0.10 each
        st = admin.get(f"/admin/budgets/{bid}/status")
        assert st["object"] == "budget_status" and st["budget_id"] == bid and st["period"] == "daily"
        assert (Decimal(st["spent_usd"]), Decimal(st["held_usd"]), Decimal(st["remaining_usd"])) == (
            Decimal("0.30"), Decimal(0), Decimal("0.70"))
        assert st["resets_at"] is not None and st["spent_tokens"] > 0
        me = httpx.get(f"{gw.url}/v1/me", headers={"authorization": f"Bearer {t['secret']}"}).json()
        assert me["key_id"] == t["key"] and me["user_id"] == t["user"]
        assert [b["budget_id"] for b in me["budgets"]] == [bid]
        assert Decimal(me["budgets"][0]["remaining_usd"]) == Decimal("0.70")
        assert [r["name"] for r in me["rate_limits"]] == ["steady"] and me["rate_limits"][0]["rpm"] == 100
        assert httpx.get(f"{gw.url}/v1/me").status_code == 401  # only with a key
        # the CLI reads the settled total from the store (held amounts live in the gateway)
        wait_for(lambda: _cli_spent(gw.config, tmp_path, bid) == Decimal("0.30"), what="settled spend in the store")


def _cli_spent(cfg: object, tmp: Path, bid: str) -> Decimal:
    import yaml

    path = tmp / "gw.yaml"
    data = {"store": cfg.store, "governance": {"key_secret": "x" * 32}}  # type: ignore[attr-defined]
    path.write_text(yaml.safe_dump(data))
    r = CliRunner().invoke(main, ["budgets", "status", "--config", str(path), "--json", bid])
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)[0]
    assert row["held_usd"] is None
    return Decimal(row["spent_usd"])


def test_cli_orgs_users_budgets_rate_limits(tmp_path: Path) -> None:
    path = tmp_path / "switchyard.yaml"
    path.write_text("store: sqlite:///s.db\ngovernance: {key_secret: '0123456789abcdef0123456789abcdef'}\n")

    def cli(*args: str) -> str:
        r = CliRunner().invoke(main, [*args[:2], "--config", str(path), *args[2:]], terminal_width=200)
        assert r.exit_code == 0, r.output
        return r.stdout

    org = json.loads(cli("orgs", "create", "acme", "--json"))
    cli("teams", "create", "red", "--org", "acme")
    user = json.loads(cli("users", "create", "ann@example.com", "--team", "red", "--json"))
    assert user["org_id"] == org["id"]
    budget = json.loads(cli("budgets", "create", "--scope", "team", "--for", "red", "--usd", "200", "--period",
                            "weekly", "--json"))
    limit = json.loads(cli("rate-limits", "create", "--scope", "user", "--for", "ann@example.com", "--rpm", "60",
                           "--json"))
    assert limit["scope_id"] == user["id"]
    assert [o["name"] for o in json.loads(cli("orgs", "list", "--json"))] == ["acme"]
    assert "ann@example.com" in cli("users", "list", "--csv")
    status = json.loads(cli("budgets", "status", "--json"))
    assert status[0]["budget_id"] == budget["id"]
    assert (status[0]["spent_usd"], status[0]["remaining_usd"], status[0]["max_usd"]) == (
        "0.00000000", "200.00000000", "200.00000000")
    assert status[0]["held_usd"] is None and status[0]["resets_at"] is not None
    table = cli("budgets", "status")
    assert budget["id"] in table  # ids are never cut
    assert "60" in cli("rate-limits", "list", "--csv")
    r = CliRunner().invoke(main, ["orgs", "create", "acme", "--config", str(path)])
    assert r.exit_code == 1 and "409 conflict" in r.stderr and "IntegrityError" not in r.stderr
