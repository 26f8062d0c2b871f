"""Org-scoped, versioned workflow definitions through the admin API; runs record the version they ran; runs are
listed per key, team and org under RBAC (virtual keys of users with roles)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gateway import MASTER_KEY, RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, store_url
from tests.support.tool_server import ToolServer


def _flow(text: str) -> str:
    return yaml.safe_dump({"name": "greet", "steps": [
        {"id": "ask", "type": "model", "model": "sim-a", "messages": [{"role": "user", "content": text}]},
        {"id": "out", "type": "transform", "needs": ["ask"], "template": text + ": {{ steps.ask }}"}]})


TOOLS = ToolServer()
REVOCABLE = {"name": "revocable", "steps": [
    {"id": "wait", "type": "tool", "tool": "slow", "input": {}},
    {"id": "ask", "type": "model", "model": "sim-a", "needs": ["wait"],
     "messages": [{"role": "user", "content": "hi"}]}]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("wforg")
    (tmp / "revocable.yaml").write_text(yaml.safe_dump(REVOCABLE))
    with TOOLS.serve() as tools_url, store_url("sqlite", tmp) as url, run_gateway(gov_config(url, workflows={
            "database": f"sqlite:///{tmp}/wf.sqlite", "files": [str(tmp / "revocable.yaml")],
            "tools": {"slow": {"url": f"{tools_url}/slow", "allow_hosts": ["127.0.0.1"],
                               "allow_private": True}}})) as running:
        yield running


def _run(gw: RunningGateway, key: str, name: str = "greet", wait_as: str | None = None) -> dict[str, Any]:
    h = {"authorization": f"Bearer {key}"}
    r = httpx.post(f"{gw.url}/v1/workflows/{name}/runs", json={"input": {}}, headers=h, timeout=10)
    assert r.status_code == 202, r.text
    end = time.monotonic() + 15
    while True:
        headers = {"authorization": f"Bearer {wait_as}"} if wait_as else h
        run = httpx.get(f"{gw.url}/v1/workflows/runs/{r.json()['id']}", headers=headers, timeout=10).json()
        if run["status"] not in ("running", "queued") or time.monotonic() > end:
            return run  # type: ignore[no-any-return]
        time.sleep(0.05)


def _list(gw: RunningGateway, key: str, **params: str) -> httpx.Response:
    return httpx.get(f"{gw.url}/v1/workflows/runs", params=params, headers={"authorization": f"Bearer {key}"})


def test_org_definitions_are_versioned_validated_and_scoped(gw: RunningGateway, tmp_path: Path) -> None:
    admin = Admin(gw.url)
    try:
        org, other = admin.org()["id"], admin.org()["id"]
        team = admin.team(org)["id"]
        _, member = admin.user_with_key("member", org_id=org, team_id=team)
        _, teammate = admin.user_with_key("member", org_id=org, team_id=team)
        _, lead = admin.user_with_key("team_admin", org_id=org, team_id=team)
        _, boss = admin.user_with_key("org_admin", org_id=org)
        _, stranger = admin.user_with_key("org_admin", org_id=other)
        # an invalid definition is a 400 naming the step and the field
        bad = admin.request("PUT", f"/admin/orgs/{org}/workflows/greet",
                            {"definition": yaml.safe_dump({"name": "greet", "steps": [
                                {"id": "a", "type": "transform", "jmespath": "steps.b", "needs": ["b"]}]})})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_workflow"
        assert "steps[0] (a).needs[0]: unknown step 'b'" in bad.json()["error"]["message"]
        # a member may not store one; the org admin may; versions count up
        denied = admin.as_key(member).request("PUT", f"/admin/orgs/{org}/workflows/greet",
                                              {"definition": _flow("one")})
        assert denied.status_code == 403
        v1 = admin.as_key(boss).call("PUT", f"/admin/orgs/{org}/workflows/greet", {"definition": _flow("one")})
        assert v1["version"] == 1
        run1 = _run(gw, member)
        assert run1["status"] == "completed" and run1["version"] == 1 and run1["source"] == f"org:{org}"
        assert run1["output"].startswith("one: ")
        v2 = admin.call("PUT", f"/admin/orgs/{org}/workflows/greet", {"definition": _flow("two"),
                                                                      "comment": "second"})
        assert v2["version"] == 2
        run2 = _run(gw, teammate)
        assert run2["version"] == 2 and run2["output"].startswith("two: ")
        assert admin.get(f"/admin/orgs/{org}/workflows/greet", version=1)["definition"] == _flow("one")
        assert [w["version"] for w in admin.get(f"/admin/orgs/{org}/workflows")["data"]] == [2]
        # the other org has no such workflow (and the gateway's config has none)
        missing = httpx.post(f"{gw.url}/v1/workflows/greet/runs", json={"input": {}},
                             headers={"authorization": f"Bearer {stranger}"})
        assert missing.status_code == 404
        assert admin.as_key(stranger).request("GET", f"/admin/orgs/{org}/workflows").status_code == 404
        # listing under RBAC: a member sees its own runs; the team admin its team's; the org admin the org's
        assert [r["id"] for r in _list(gw, member).json()["data"]] == [run1["id"]]
        assert _list(gw, member, scope="team").status_code == 403
        team_runs = {r["id"] for r in _list(gw, lead, scope="team").json()["data"]}
        assert team_runs == {run1["id"], run2["id"]}
        assert {r["id"] for r in _list(gw, boss, scope="org").json()["data"]} == {run1["id"], run2["id"]}
        assert _list(gw, stranger, scope="org").json()["data"] == []
        # a single run: its key, its team's admin and its org's admin see it; a teammate and another org do not
        for key, status in ((member, 200), (lead, 200), (boss, 200), (teammate, 404), (stranger, 404)):
            got = httpx.get(f"{gw.url}/v1/workflows/runs/{run1['id']}", headers={"authorization": f"Bearer {key}"})
            assert got.status_code == status, key
    finally:
        admin.close()


def test_a_key_revoked_mid_run_makes_no_further_model_call(gw: RunningGateway) -> None:
    admin = Admin(gw.url)
    try:
        org = admin.org()["id"]
        user = admin.user("member", org_id=org)
        key = admin.new_key(user_id=user["id"])
        TOOLS.stall["/slow"] = 1.5
        before = TOOLS.calls["/slow"]
        import threading

        def revoke_when_waiting() -> None:
            end = time.monotonic() + 10
            while TOOLS.calls["/slow"] == before and time.monotonic() < end:
                time.sleep(0.02)
            admin.post(f"/admin/keys/{key['id']}/revoke", expect=200)

        t = threading.Thread(target=revoke_when_waiting)
        t.start()
        try:
            run = _run(gw, key["secret"], "revocable", wait_as=MASTER_KEY)
        finally:
            t.join()
            TOOLS.stall["/slow"] = 0.0
        assert run["status"] == "failed" and run["error"]["step"] == "ask", run
        assert run["error"]["code"] == "key_revoked" and "has been revoked" in run["error"]["message"]
        assert run["steps"]["wait"]["status"] == "completed"
    finally:
        admin.close()
