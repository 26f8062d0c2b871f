"""Spend reports name who spent: orgs, teams and keys by name, users by email (admin API and CLI), and amounts are
plain decimals (``0.00``, never ``0E-8``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from click.testing import CliRunner

from switchyard.cli.main import main
from tests.support.ledger import wait_for
from tests.test_simulated import priced

HI: Any = [{"role": "user", "content": "hi"}]


def test_spend_reports_show_names_and_emails(tmp_path: Path) -> None:
    with priced(tmp_path) as (gw, _store, admin):
        org = admin.org()
        team = admin.team(org["id"])
        user = admin.user("member", team_id=team["id"])
        key = admin.new_key(user_id=user["id"], name="laptop")
        free = admin.new_key(user_id=user["id"], name="free")
        admin.post("/admin/budgets", {"scope": "key", "scope_id": free["id"], "max_usd": 0, "period": "total"})
        c = openai.OpenAI(base_url=gw.openai_base, api_key=key["secret"], max_retries=0)
        for _ in range(2):
            c.chat.completions.create(model="dear", max_tokens=1, messages=HI)
        refused = openai.OpenAI(base_url=gw.openai_base, api_key=free["secret"], max_retries=0)
        with pytest.raises(openai.RateLimitError):  # a call that costs nothing: a row of zeros
            refused.chat.completions.create(model="dear", max_tokens=1, messages=HI)

        def rows() -> list[dict[str, Any]]:
            return list(admin.get("/admin/spend", group_by="org,team,user,key")["data"])
        wait_for(lambda: sum(r["requests"] for r in rows()) == 3, what="spend rollups")
        row, zero = rows()  # costliest first
        assert (row["org"], row["org_name"], row["team"], row["team_name"]) == (
            org["id"], org["name"], team["id"], team["name"])
        assert (row["user"], row["user_email"], row["key"], row["key_name"]) == (
            user["id"], user["email"], key["id"], "laptop")
        assert row["key_prefix"] == key["prefix"] and row["cost_usd"] == 0.2
        assert (zero["key_name"], zero["cost_usd"]) == ("free", 0)

        path = tmp_path / "cli.yaml"
        path.write_text(yaml.safe_dump({"store": gw.config.store, "governance": {"key_secret": "k" * 32}}))
        r = CliRunner().invoke(main, ["spend", "report", "--config", str(path), "--group-by", "user,key", "--csv"])
        assert r.exit_code == 0, r.output
        lines = list(csv.DictReader(io.StringIO(r.stdout)))
        assert [(x["user_email"], x["key_name"], x["cost_usd"]) for x in lines] == [
            (user["email"], "laptop", "0.20"), (user["email"], "free", "0.00")]
        r = CliRunner().invoke(main, ["spend", "report", "--config", str(path), "--group-by", "user", "--json"])
        assert json.loads(r.stdout)[0]["user_email"] == user["email"]
        r = CliRunner().invoke(main, ["spend", "report", "--config", str(path), "--group-by", "user"],
                               terminal_width=300)
        assert user["email"] in r.stdout and user["id"] in r.stdout  # the table: the id whole, the email beside it
        r = CliRunner().invoke(main, ["spend", "report", "--config", str(path), "--group-by", "team", "--csv",
                                      "--to", "2001-01-02", "--from", "2001-01-01"])
        assert r.exit_code == 0 and r.stdout.splitlines() == ["team,team_name,requests,errors,input_tokens,"
                                                              "output_tokens,cached_tokens,reasoning_tokens,"
                                                              "cost_usd,avg_latency_ms"]
