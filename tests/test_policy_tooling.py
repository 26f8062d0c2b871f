"""Policy tooling: ``switchyard policy test`` on fixture files (the shipped example, mismatches, bad fixtures) and
``POST /admin/policy/explain`` over HTTP (rights, answers, bad input)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from switchyard.cli.main import main
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, store_url

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "policy"


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["policy", "test", *args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, r.output


def test_the_shipped_example_passes() -> None:
    code, out = run(str(EXAMPLES / "fixtures.yaml"), "--config", str(EXAMPLES / "gateway.yaml"))
    assert code == 0, out
    assert "10 passed, 0 failed" in out
    assert "PASS case 2 (confidential data stays in Australia, on zero retention)" in out


def _write(tmp: Path, text: str) -> str:
    p = tmp / "cases.yaml"
    p.write_text(text)
    return str(p)


def test_a_mismatch_prints_a_diff_and_exits_1(tmp_path: Path) -> None:
    f = _write(tmp_path, """
- name: interns
  principal: {key: vk_i, team: interns}
  request: {route: chat, hour: 10, weekday: 2}
  expect:
    us-small: allow
    au-large: allow
    au-large-zdr: {decision: deny, policies: [cost-cap]}
- name: fine
  principal: {key: vk_a}
  request: {route: us-small, hour: 10, weekday: 2}
  expect: {us-small: allow}
""")
    code, out = run(f, "--config", str(EXAMPLES / "gateway.yaml"))
    assert code == 1
    assert "FAIL case 1 (interns)" in out and "PASS case 2 (fine)" in out
    assert "au-large: expected allow, got deny [interns-small]" in out
    assert "au-large-zdr: expected deny [cost-cap], got deny [interns-small]" in out
    assert "us-small:" not in out.split("PASS")[0]  # a matching deployment is not in the diff
    assert "1 passed, 1 failed" in out


@pytest.mark.parametrize(("text", "message"), [
    ("- {principal: {key: k}, request: {route: chat}, expect: {us-small: allow}}\n"
     "- {name: two, principal: {key: k}, request: {route: chat, hour: 24}, expect: {us-small: allow}}",
     "case 2 (two): field request.hour: Input should be less than or equal to 23"),
    ("- {principal: {key: k}, request: {route: chat, data_class: secret}, expect: {us-small: allow}}",
     "case 1: field request.data_class: unknown data class 'secret'"),
    ("- {principal: {key: k, colour: red}, request: {route: chat}, expect: {us-small: allow}}",
     "case 1: field principal.colour: unknown field"),
    ("- {principal: {key: k}, request: {route: chat}, expect: {us-small: maybe}}",
     "case 1: field expect.us-small"),
    ("- {principal: {key: k}, request: {route: chat}, expect: {nope: allow}}",
     "case 1: field expect.nope: 'nope' is not a candidate of route 'chat'"),
    ("- {principal: {key: k}, request: {route: nowhere}, expect: {x: allow}}",
     "case 1: field request.route: unknown route or deployment 'nowhere'"),
    ("- {principal: {key: k}, request: {action: tool_call, route: chat}, expect: {us-small: allow}}",
     "case 1: field request: `tool` is required when action is tool_call"),
    ("- {principal: {key: k}, request: {route: chat, time: '2026-12-04T10:00:00Z', hour: 3},"
     " expect: {us-small: allow}}", "give either `time` or `hour`/`weekday`"),
    ("- {principal: {key: k}, request: {route: chat}}", "case 1: field expect: Field required"),
    ("cases: {a: 1}", "expected a non-empty list of cases"),
    ("- {principal: {key: k}, request: {route: chat}, expect: {us-small: allow}}\n  bad: [", "not valid YAML"),
])
def test_a_bad_fixture_file_exits_2_naming_the_case_and_field(tmp_path: Path, text: str, message: str) -> None:
    code, out = run(_write(tmp_path, text), "--config", str(EXAMPLES / "gateway.yaml"))
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out and "PASS" not in out and "FAIL" not in out


def test_policies_without_a_config_decide_on_the_fixture_deployments(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "policies.cedar", tmp_path / "p.cedar")
    f = _write(tmp_path, """
deployments:
  - {name: au, region: au, zdr: true}
  - {name: us, region: us, tags: [small]}
cases:
  - principal: {key: k, data_class: confidential}
    request: {route: any, estimated_cost_usd: {au: 0.5, us: 3}, hour: 10, weekday: 1}
    expect:
      au: allow
      us: {decision: deny, policies: [au-residency, cost-cap, zdr-confidential]}
  - principal: {key: k, team: interns}
    request: {route: au, hour: 10, weekday: 1}
    expect: {au: {decision: deny, policies: [interns-small]}}
""")
    code, out = run(f, "--policies", str(tmp_path / "p.cedar"))
    assert code == 0, out
    assert "2 passed" in out
    (tmp_path / "bad.cedar").write_text("forbid(principal, action, resource) when { context.nope };")
    code, out = run(f, "--policies", str(tmp_path / "bad.cedar"))
    assert code == 2 and "invalid policy" in out and "bad.cedar:1:" in out
    code, out = run(f)
    assert code == 2 and "--config" in out


# --- POST /admin/policy/explain --------------------------------------------------------------------------------

POLICIES = '''
@id("au-residency") @reason("confidential data never leaves Australia")
forbid(principal, action, resource) when { context.data_class == "confidential" && resource.region != "au" };

@id("acme-tools") @reason("acme calls no tools at night")
forbid(principal in Switchyard::Org::"acme", action == Switchyard::Action::"tool_call", resource)
when { context.hour < 8 };
'''


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    tmp = tmp_path_factory.mktemp("explain")
    (tmp / "p.cedar").write_text(POLICIES)
    with store_url("sqlite", tmp) as url:
        cfg = gov_config(url, policies={"files": [str(tmp / "p.cedar")]})
        cfg["deployments"][1]["region"] = "au"  # sim-b
        cfg["routes"]["both"] = {"targets": ["sim-a", "sim-b"]}
        with run_gateway(cfg) as running:
            yield running


@pytest.fixture(scope="module")
def admin(gw: RunningGateway) -> Iterator[Admin]:
    a = Admin(gw.url)
    yield a
    a.close()


def described(org: str = "", **request: Any) -> dict[str, Any]:
    return {"principal": {"key": "vk_x", "org": org}, "request": {"route": "both", **request}}


def test_explain_gives_each_candidates_decision_with_reasons(admin: Admin) -> None:
    out = admin.post("/admin/policy/explain", described(data_class="confidential", max_tokens=100000),
                     expect=200)
    assert out["decision"] == "allow" and out["data_class"] == "confidential" and out["policies_configured"]
    assert out["candidates"] == ["sim-a", "sim-b"]
    a, b = out["deployments"]
    assert a["deployment"] == "sim-a" and a["decision"] == "deny" and not a["error"]
    assert a["policies"] == [{"id": "au-residency", "reason": "confidential data never leaves Australia"}]
    assert a["estimated_cost_usd"] == "0.2000"  # 100000 output tokens at $2 per million
    assert b == {"deployment": "sim-b", "decision": "allow", "policies": [], "error": False,
                 "estimated_cost_usd": "0.0000", "pii_mode": None}
    night = admin.post("/admin/policy/explain", described("acme", tools=["search"], hour=3, weekday=1), expect=200)
    assert night["decision"] == "deny"
    assert all(d["policies"][0]["id"] == "acme-tools" for d in night["deployments"])
    tool = admin.post("/admin/policy/explain", described("acme", action="tool_call", tool="search", hour=9,
                                                         weekday=1), expect=200)
    assert tool["decision"] == "allow"


def test_org_admins_explain_only_their_orgs_principals(admin: Admin) -> None:
    org = admin.org()
    _, oa_key = admin.user_with_key("org_admin", org_id=org["id"])
    _, member_key = admin.user_with_key("member", org_id=org["id"])
    oa = admin.as_key(oa_key)
    assert oa.post("/admin/policy/explain", described(org["id"]), expect=200)["decision"] == "allow"
    err = oa.post("/admin/policy/explain", described("another-org"), expect=403)["error"]
    assert err["code"] == "forbidden" and err["param"] == "principal.org"
    oa.post("/admin/policy/explain", described(""), expect=403)  # a static key belongs to no org
    assert admin.as_key(member_key).post("/admin/policy/explain", described(org["id"]), expect=403)[
        "error"]["code"] == "forbidden"
    admin.as_key("sk-nope").post("/admin/policy/explain", described(), expect=401)


@pytest.mark.parametrize(("body", "param", "text"), [
    ({"principal": {"key": "k"}, "request": {"route": "nowhere"}}, "request.route", "unknown route"),
    ({"principal": {"key": "k"}, "request": {"route": "both", "deployments": ["sim-a", "zz"]}},
     "request.deployments[1]", "unknown deployment 'zz'"),
    ({"principal": {"key": "k"}, "request": {"route": "both", "data_class": "top"}}, "request.data_class",
     "unknown data class"),
    ({"principal": {"key": "k"}, "request": {"route": "both", "weekday": 8}}, "request.weekday", "less than"),
    ({"principal": {"key": "k"}, "request": {"route": "both", "pii": ["EMAIL", "PASSPORT"]}}, "request.pii",
     "unknown PII type 'PASSPORT'"),
    ({"principal": {"key": "k"}, "request": {"route": "both", "action": "delete"}}, "request.action", "chat"),
    ({"principal": {}, "request": {"route": "both"}}, "principal.key", "required"),
    ({"principal": {"key": "k"}, "request": {"route": "both"}, "expect": {}}, "expect", "Unknown parameter"),
])
def test_explain_refuses_bad_input_with_a_400_naming_the_field(admin: Admin, body: dict[str, Any], param: str,
                                                               text: str) -> None:
    err = admin.post("/admin/policy/explain", body, expect=400)["error"]
    assert err["param"] == param and text in err["message"]


def test_explain_without_policies_allows_everything(tmp_path: Path) -> None:
    with store_url("sqlite", tmp_path) as url, run_gateway(gov_config(url)) as running:
        a = Admin(running.url)
        try:
            out = a.post("/admin/policy/explain", {"principal": {"key": "k"}, "request": {"model": "fast"}},
                         expect=200)
        finally:
            a.close()
    assert out["policies_configured"] is False and out["decision"] == "allow"
    assert [d["deployment"] for d in out["deployments"]] == ["sim-a"]


# --- @pii: the PII mode a policy asks for ---------------------------------------------------------------------

PII_POLICIES = '''
@id("mask-support") @pii("mask") permit(principal in Switchyard::Team::"support", action, resource);
@id("redact-retaining") @pii("redact") permit(principal, action, resource) when { !resource.zdr };
'''


def test_a_fixture_checks_the_pii_mode_a_deployment_gets(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text(PII_POLICIES)
    f = _write(tmp_path, """
deployments:
  - {name: zdr, zdr: true}
  - {name: keeps}
cases:
  - principal: {key: k, team: support}
    request: {route: any, hour: 10, weekday: 1}
    expect:
      zdr: {decision: allow, pii_mode: mask}
      keeps: {decision: allow, pii_mode: redact}
  - principal: {key: k}
    request: {route: zdr, hour: 10, weekday: 1}
    expect: {zdr: {decision: allow, pii_mode: "off"}}
""")
    code, out = run(f, "--policies", str(tmp_path / "p.cedar"))
    assert code == 0, out
    wrong = _write(tmp_path, """
deployments: [{name: zdr, zdr: true}]
cases:
  - principal: {key: k}
    request: {route: zdr, hour: 10, weekday: 1}
    expect: {zdr: {decision: allow, pii_mode: mask}}
""")
    code, out = run(wrong, "--policies", str(tmp_path / "p.cedar"))
    assert code == 1 and "zdr: expected PII mode mask, got off" in out


def test_explain_names_the_pii_mode_the_policies_ask_for(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text(PII_POLICIES)
    with store_url("sqlite", tmp_path) as url:
        cfg = gov_config(url, policies={"files": [str(tmp_path / "p.cedar")]}, pii={"mode": "detect"})
        cfg["deployments"][1]["zdr"] = True  # sim-b
        cfg["routes"]["both"] = {"targets": ["sim-a", "sim-b"]}
        with run_gateway(cfg) as running:
            admin = Admin(running.url)
            out = admin.post("/admin/policy/explain", {"principal": {"key": "vk_x", "team": "support"},
                                                       "request": {"route": "both"}}, expect=200)
            assert out["pii_mode"] == "redact"  # sim-a keeps data: the strictest over the deployments left
            assert [(d["deployment"], d["pii_mode"]) for d in out["deployments"]] == [("sim-a", "redact"),
                                                                                    ("sim-b", "mask")]
            out = admin.post("/admin/policy/explain", {"principal": {"key": "vk_x"},
                                                       "request": {"route": "sim-b"}}, expect=200)
            assert out["pii_mode"] is None
            admin.close()


# --- switchyard route explain, with policy files -----------------------------------------------------------------


def test_route_explain_names_the_policies_that_drop_deployments() -> None:
    def explain(*args: str) -> tuple[int, str]:
        r = CliRunner().invoke(main, ["route", "explain", "--config", str(EXAMPLES / "gateway.yaml"), *args])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
        return r.exit_code, r.output

    code, out = explain("--model", "chat", "--principal", '{"key": "vk_a", "data_class": "confidential"}',
                        "--max-tokens", "100", "--hour", "10", "--weekday", "2")
    assert code == 0, out
    assert "narrowed: policy: us-small (au-residency, zdr-confidential), au-large (zdr-confidential)" in out
    assert "│ 1 │ au-large-zdr" in out
    code, out = explain("--model", "chat", "--max-tokens", "100", "--hour", "10", "--weekday", "2")
    assert code == 0 and "narrowed" not in out  # a public request: nothing is dropped
    code, out = explain("--model", "au-large", "--principal", '{"key": "k", "team": "interns"}', "--hour", "10",
                        "--weekday", "2")
    assert code == 1 and "403 policy_denied: forbidden by policy: interns-small (" in out
    code, out = explain("--model", "chat", "--principal", '{"key": "k", "data_class": "secret"}')
    assert code == 2 and "unknown data class 'secret'" in out
