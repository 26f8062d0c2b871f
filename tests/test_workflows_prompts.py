"""Model steps with a managed prompt and a stored conversation, over HTTP: the prompt (published through the admin
API) is rendered by the gateway's prompt stage with variables taken from an earlier step's output, the step
continues a conversation that the next run continues again, all under the caller's key: another org's key cannot
see the org's prompt, and a key whose retention allows no conversations is refused. ``switchyard workflow
validate --config`` and the admin API name the step and field of an unknown prompt or label, a missing variable,
and a conversation on a gateway that keeps none."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from switchyard.cli.main import main
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config

PROMPT = "support-reply"
SPEC = {"model": "cheap",
        "variables": {"type": "object", "required": ["customer", "category"],
                      "properties": {"customer": {"type": "string"}, "category": {"type": "string"}}},
        "messages": [{"role": "system", "content": "You help {{ customer }} with {{ category }} questions."}]}


def _flow(**reply: Any) -> dict[str, Any]:
    step = {"id": "reply", "type": "model", "needs": ["classify"],
            "prompt": {"name": PROMPT, "label": "production",
                       "variables": {"customer": "input.customer", "category": "steps.classify.category"}},
            "conversation": "ticket-{{ input.ticket_id }}",
            "messages": [{"role": "user", "content": "Ticket: {{ input.ticket }}"}], **reply}
    return {"name": "support", "steps": [
        {"id": "classify", "type": "model", "model": "cheap",
         "messages": [{"role": "user", "content": "Classify: {{ input.ticket }}"}],
         "output_schema": {"type": "object", "required": ["category"],
                           "properties": {"category": {"enum": ["billing", "technical"]}}}},
        step], "output": "steps.reply"}


def _config(tmp: Path, store: str, upstream: str, **extra: Any) -> dict[str, Any]:
    (tmp / "support.yaml").write_text(yaml.safe_dump(_flow()))
    return gov_config(
        store,
        providers={"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-up"}},
        deployments=[{"name": "cheap", "provider": "up", "model": "gpt-4o-mini",
                      "price": {"input": 1.0, "output": 2.0}}],
        routes={},
        workflows={"files": [str(tmp / "support.yaml")], "database": f"sqlite:///{tmp}/wf.sqlite"},
        **extra)


@pytest.fixture
def gw(tmp_path: Path, fake_openai: FakeOpenAI) -> Iterator[RunningGateway]:
    assert fake_openai.base_url is not None
    with run_gateway(_config(tmp_path, f"sqlite:///{tmp_path}/gw.db", fake_openai.base_url, state={})) as running:
        yield running


def _run(gw: RunningGateway, key: str, value: dict[str, Any]) -> dict[str, Any]:
    h = {"authorization": f"Bearer {key}"}
    r = httpx.post(f"{gw.url}/v1/workflows/support/runs", json={"input": value}, headers=h, timeout=10)
    assert r.status_code == 202, r.text
    end = time.monotonic() + 30
    while True:
        run = httpx.get(f"{gw.url}/v1/workflows/runs/{r.json()['id']}", headers=h, timeout=10).json()
        if run["status"] not in ("running", "queued") or time.monotonic() > end:
            return run  # type: ignore[no-any-return]
        time.sleep(0.05)


def _sent(fake: FakeOpenAI) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in fake.requests[-1].json["messages"]]


def _tenant(admin: Admin, retention: dict[str, str] | None) -> tuple[str, str]:
    """An org whose team may keep conversations (or not); returns (org id, a member's key)."""
    org = admin.org()["id"]
    team = admin.team(org, **({"retention": retention} if retention else {}))["id"]
    return org, admin.user_with_key("member", org_id=org, team_id=team)[1]


def test_a_prompt_and_a_conversation_in_a_model_step(gw: RunningGateway, fake_openai: FakeOpenAI) -> None:
    admin = Admin(gw.url)
    org, member = _tenant(admin, {"conversations": "1d"})
    prompt = admin.post("/admin/prompts", {"name": PROMPT, "org_id": org})
    admin.post(f"/admin/prompts/{prompt['id']}/versions", {"spec": SPEC, "labels": ["production"]})

    first = _run(gw, member, {"ticket_id": "4711-abc", "customer": "Ada", "ticket": "I was charged twice"})
    assert first["status"] == "completed", first
    # the prompt's system message, rendered with the run's input and the classify step's output, then the step's
    # own message; the model is the prompt version's ("cheap")
    assert _sent(fake_openai) == [("system", "You help Ada with billing questions."),
                                  ("user", "Ticket: I was charged twice")]
    assert fake_openai.requests[-1].json["model"] == "gpt-4o-mini"
    assert first["output"] == "Echo: Ticket: I was charged twice"
    assert first["steps"]["reply"]["deployments"] == ["cheap"] and first["steps"]["reply"]["cost"] > 0

    # the next run continues the stored conversation: its history comes between the system prompt and the new turn
    second = _run(gw, member, {"ticket_id": "4711-abc", "customer": "Ada", "ticket": "Any news?"})
    assert second["status"] == "completed", second
    assert _sent(fake_openai) == [("system", "You help Ada with billing questions."),
                                  ("user", "Ticket: I was charged twice"),
                                  ("assistant", "Echo: Ticket: I was charged twice"),
                                  ("user", "Ticket: Any news?")]
    # stored under the caller's key: its Conversations API lists the four messages
    items = httpx.get(f"{gw.url}/v1/conversations/ticket-4711-abc/items", params={"order": "asc"},
                      headers={"authorization": f"Bearer {member}"}, timeout=10)
    assert items.status_code == 200, items.text
    assert [i["role"] for i in items.json()["data"]] == ["user", "assistant", "user", "assistant"]

    # another org's key runs the same workflow: the org's prompt is not visible to it
    _, stranger = _tenant(admin, {"conversations": "1d"})
    calls = len(fake_openai.requests)
    other = _run(gw, stranger, {"ticket_id": "4712-abc", "customer": "Bo", "ticket": "hello"})
    assert other["status"] == "failed" and other["error"]["step"] == "reply", other
    assert other["error"]["code"] == "prompt_not_found"
    assert len(fake_openai.requests) == calls + 1  # classify ran; reply never reached the upstream

    # a key of the org whose retention allows no conversations may not keep one through a workflow either
    team = admin.team(org)["id"]
    _, forgetful = admin.user_with_key("member", org_id=org, team_id=team)
    refused = _run(gw, forgetful, {"ticket_id": "4713-abc", "customer": "Cy", "ticket": "hi"})
    assert refused["status"] == "failed" and refused["error"]["code"] == "retention_not_allowed", refused


def _validate(tmp: Path, flow: dict[str, Any], config: dict[str, Any], *extra: str) -> tuple[int, str]:
    (tmp / "check.yaml").write_text(yaml.safe_dump(flow))
    (tmp / "gateway.yaml").write_text(yaml.safe_dump(config))
    r = CliRunner().invoke(main, ["workflow", "validate", str(tmp / "check.yaml"), "--config",
                                  str(tmp / "gateway.yaml"), *extra])
    return r.exit_code, r.output


def test_validate_and_the_admin_api_name_unknown_prompts(gw: RunningGateway, tmp_path: Path,
                                                         fake_openai: FakeOpenAI) -> None:
    admin = Admin(gw.url)
    org, _ = _tenant(admin, None)
    prompt = admin.post("/admin/prompts", {"name": PROMPT, "org_id": org})
    admin.post(f"/admin/prompts/{prompt['id']}/versions", {"spec": SPEC, "labels": ["production"]})
    assert fake_openai.base_url is not None
    cfg = _config(tmp_path, f"sqlite:///{tmp_path}/gw.db", fake_openai.base_url, state={})  # the gateway's store

    code, out = _validate(tmp_path, _flow(), cfg, "--org", org)
    assert code == 0, out
    code, out = _validate(tmp_path, _flow(), cfg)  # without --org: a prompt of some org is found too
    assert code == 0, out
    bad = _flow(prompt={"name": "nope", "variables": {}})
    code, out = _validate(tmp_path, bad, cfg, "--org", org)
    assert code == 2 and "steps[1] (reply).prompt.name: unknown prompt 'nope'" in out, out
    bad = _flow(prompt={"name": PROMPT, "label": "staging", "variables": {}})
    code, out = _validate(tmp_path, bad, cfg, "--org", org)
    assert code == 2 and "steps[1] (reply).prompt.label: prompt 'support-reply' has no label 'staging'" in out, out
    bad = _flow(prompt={"name": PROMPT, "version": 9, "variables": {}})
    code, out = _validate(tmp_path, bad, cfg, "--org", org)
    assert code == 2 and "steps[1] (reply).prompt.version: prompt 'support-reply' has no version 9" in out, out
    bad = _flow(prompt={"name": PROMPT, "variables": {"customer": "input.customer"}})
    code, out = _validate(tmp_path, bad, cfg, "--org", org)
    assert code == 2 and ("steps[1] (reply).prompt.variables: prompt support-reply@1 requires the variable "
                          "'category'") in out, out
    # a gateway without a state: section keeps no conversations
    code, out = _validate(tmp_path, _flow(), {k: v for k, v in cfg.items() if k != "state"}, "--org", org)
    assert code == 2 and "steps[1] (reply).conversation: this gateway keeps no conversations" in out, out

    # the admin API checks an org's definition against the org's prompts the same way
    r = admin.request("PUT", f"/admin/orgs/{org}/workflows/support",
                      {"definition": yaml.safe_dump(_flow(prompt={"name": "nope", "variables": {}}))})
    assert r.status_code == 400 and "steps[1] (reply).prompt.name: unknown prompt 'nope'" in r.json()["error"][
        "message"], r.text
    admin.call("PUT", f"/admin/orgs/{org}/workflows/support", {"definition": yaml.safe_dump(_flow())})
