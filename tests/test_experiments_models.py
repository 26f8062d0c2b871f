"""Experiments on a model, over HTTP with the openai SDK: requests for a route name (``fast``), with no managed
prompt, are split between deployments; a variant may also render a prompt version (without variables) into requests
that name no prompt of their own; a prompt experiment's variant that names a model wins over the request's model.
Assignment is sticky; the call record, the report and the headers name the variant; the audience is the
experiment's org and keys that may use every variant's model; promotion is refused (nothing to move), stopping
ends it; bad definitions are 4xx that write nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import sqlalchemy as sa

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from switchyard.store.prompt_tables import experiments, request_log
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import Admin, gov_config, sdk_http_client, unique
from tests.test_prompts import Seen

NO_VARIABLES = {"model": "sim-b", "messages": [{"role": "system", "content": "Answer in one line."}]}
WITH_VARIABLES = {"model": "sim-b", "variables": {"type": "object", "properties": {"q": {"type": "string"}},
                                                  "required": ["q"]},
                  "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{ q }}"}]}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, Store, Seen]]:
    tmp = tmp_path_factory.mktemp("expmodels")
    url = f"sqlite:///{tmp}/s.db"
    store = Store.open(url)
    writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
    seen = Seen()
    try:
        with run_gateway(gov_config(url, prompts={"metrics": {"helpful": {"type": "boolean"}}, "refresh_s": 0.2}),
                         recorder=writer, extra_stages=[seen]) as running:
            yield running, store, seen
    finally:
        store.close()


def _team(running: RunningGateway) -> tuple[Admin, Admin, dict[str, Any], str]:
    """An org and team with a team admin; (root, the team admin's client, the team, the team admin's key)."""
    root = Admin(running.url)
    org = root.org()
    team = root.team(org["id"])
    _, secret = root.user_with_key("team_admin", org_id=org["id"], team_id=team["id"])
    return root, root.as_key(secret), team, secret


def _client(running: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.openai_base, api_key=key, max_retries=0, http_client=sdk_http_client())


def _chat(c: openai.OpenAI, model: str, session: str, **body: Any) -> Any:
    r = c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "where is my parcel?"}],
        extra_headers={"x-switchyard-session": session}, extra_body=body or None)
    r.parse()
    return r.headers


def test_an_experiment_on_a_route_splits_requests_without_a_prompt(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, store, _ = gw
    root, me, team, secret = _team(running)
    exp = me.post("/admin/experiments", {"name": "route-a-vs-b", "model": "fast", "metric": "helpful", "variants": [
        {"name": "A", "model": "sim-a"}, {"name": "B", "model": "sim-b"}]})
    assert exp["model"] == "fast" and exp["prompt"] is None and exp["team_id"] == team["id"]
    served: dict[str, str] = {}
    with _client(running, secret) as c:
        for i in range(30):
            h = _chat(c, "fast", f"user-{i}")
            assert "x-switchyard-prompt" not in h  # no managed prompt served
            served[f"user-{i}"] = h["x-switchyard-variant"]
            assert h["x-switchyard-deployment"] == {"A": "sim-a", "B": "sim-b"}[h["x-switchyard-variant"]]
        assert set(served.values()) == {"A", "B"}
        for s in list(served)[:8]:  # sticky
            assert _chat(c, "fast", s)["x-switchyard-variant"] == served[s]
        assert "x-switchyard-variant" not in _chat(c, "sim-a", "user-0")  # another model: not in it
    # another org's key, and a key of this org that may not use sim-b, are outside its audience
    other_root, _, _, other_secret = _team(running)
    narrow = root.new_key(team_id=team["id"], models=["fast", "sim-a"])["secret"]
    for key in (other_secret, narrow):
        with _client(running, key) as c:
            h = _chat(c, "fast", "user-0")
            assert "x-switchyard-variant" not in h and h["x-switchyard-deployment"] == "sim-a"
    # the call records and the report name the variants
    deadline = time.monotonic() + 10
    while True:
        report = me.get(f"/admin/experiments/{exp['id']}/report")
        if sum(v["requests"] for v in report["variants"]) >= 38 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["A"]["requests"] + by_name["B"]["requests"] == 38
    assert by_name["A"]["model"] == "sim-a" and by_name["A"]["requests"] > 0 and by_name["B"]["requests"] > 0
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(request_log.c.deployment, request_log.c.variant, request_log.c.prompt)
                            .where(request_log.c.experiment_id == exp["id"])).all()
    assert {(r.deployment, r.variant) for r in rows} == {("sim-a", "A"), ("sim-b", "B")}
    assert all(r.prompt is None for r in rows)
    # there is no label to promote; stopping ends it at once on this replica
    refused = me.request("POST", f"/admin/experiments/{exp['id']}/promote", {"variant": "B"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "nothing_to_promote"
    me.post(f"/admin/experiments/{exp['id']}/stop", expect=200)
    with _client(running, secret) as c:
        h = _chat(c, "fast", "user-0")
    assert "x-switchyard-variant" not in h and h["x-switchyard-deployment"] == "sim-a"
    other_root.close()
    root.close()


def test_variants_with_a_version_and_a_model(gw: tuple[RunningGateway, Store, Seen]) -> None:
    """On a model: variant B renders the prompt's version 1 (no variables) and calls sim-b, variant A only calls
    sim-a; a request that names a managed prompt of its own is not in it. On a prompt: the variant's model wins over
    the model the request sent."""
    running, _, seen = gw
    root, me, team, secret = _team(running)
    p = me.post("/admin/prompts", {"name": unique("oneline"), "team_id": team["id"]})
    me.post(f"/admin/prompts/{p['id']}/versions", {"spec": NO_VARIABLES, "labels": ["production"]})
    q = me.post("/admin/prompts", {"name": unique("ask"), "team_id": team["id"]})
    me.post(f"/admin/prompts/{q['id']}/versions", {"spec": WITH_VARIABLES, "labels": ["production"]})
    me.post(f"/admin/prompts/{q['id']}/versions", {"spec": {**WITH_VARIABLES, "model": "sim-a"}})
    exp = me.post("/admin/experiments", {"name": "prompted", "model": "fast", "prompt": p["name"], "variants": [
        {"name": "A", "model": "sim-a"}, {"name": "B", "version": 1, "model": "sim-b"}]})
    assert (exp["model"], exp["prompt"]) == ("fast", p["name"])
    got: dict[str, list[str]] = {"A": [], "B": []}
    with _client(running, secret) as c:
        for i in range(16):
            h = _chat(c, "fast", f"s-{i}")
            v = h["x-switchyard-variant"]
            texts = [m.text() for m in seen.requests[-1].messages]
            got[v].append(h["x-switchyard-deployment"])
            if v == "B":
                assert h["x-switchyard-prompt"] == f"{p['name']}@1"
                assert texts == ["Answer in one line.", "where is my parcel?"]
            else:
                assert "x-switchyard-prompt" not in h and texts == ["where is my parcel?"]
        assert got["A"] and got["B"] and set(got["A"]) == {"sim-a"} and set(got["B"]) == {"sim-b"}
        # a request naming its own managed prompt (whose version picks the model "fast") stays out of it
        me.post(f"/admin/prompts/{q['id']}/versions", {"spec": {**WITH_VARIABLES, "model": "fast"}})
        h = _chat(c, "prompt", "s-0", prompt={"name": q["name"], "version": 3, "variables": {"q": "hi"}})
        assert h["x-switchyard-prompt"] == f"{q['name']}@3" and "x-switchyard-variant" not in h
        # a prompt experiment whose variants name versions and models: the variant's model wins
        pe = me.post("/admin/experiments", {"name": "both", "prompt": q["name"], "variants": [
            {"name": "A", "version": 1, "model": "sim-a"}, {"name": "B", "version": 2, "model": "sim-b"}]})
        for i in range(12):
            h = _chat(c, "sim-c", f"t-{i}", prompt={"name": q["name"], "variables": {"q": "hi"}})
            v = h["x-switchyard-variant"]
            assert h["x-switchyard-prompt"] == f"{q['name']}@{1 if v == 'A' else 2}"
            assert h["x-switchyard-deployment"] == {"A": "sim-a", "B": "sim-b"}[v]
    me.post(f"/admin/experiments/{pe['id']}/stop", expect=200)
    me.post(f"/admin/experiments/{exp['id']}/stop", expect=200)
    root.close()


def test_bad_experiments_on_models_are_4xx_and_write_nothing(gw: tuple[RunningGateway, Store, Seen]) -> None:
    running, store, _ = gw
    root, me, team, _ = _team(running)
    p = me.post("/admin/prompts", {"name": unique("needs"), "team_id": team["id"]})
    me.post(f"/admin/prompts/{p['id']}/versions", {"spec": WITH_VARIABLES, "labels": ["production"]})

    def count() -> int:
        with store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(experiments)).scalar() or 0)

    before = count()
    cases = [
        ({"name": "x", "variants": [{"name": "A", "model": "sim-a"}, {"name": "B", "model": "sim-b"}]}, 400,
         "prompt"),
        ({"name": "x", "model": "fast", "variants": [{"name": "A", "model": "sim-a"}, {"name": "B", "version": 1}]},
         400, "variants[1]"),
        ({"name": "x", "model": "fast", "prompt": p["name"], "variants": [
            {"name": "A", "model": "sim-a"}, {"name": "B", "version": 1}]}, 400, "variants[1]"),
        ({"name": "x", "model": "prompt", "variants": [{"name": "A", "model": "sim-a"},
                                                       {"name": "B", "model": "sim-b"}]}, 400, "model"),
    ]
    for body, status, param in cases:
        r = me.request("POST", "/admin/experiments", body)
        assert r.status_code == status and r.json()["error"]["param"] == param, r.text
    assert "without variables" in me.request("POST", "/admin/experiments", cases[2][0]).json()["error"]["message"]
    ok = me.post("/admin/experiments", {"name": "one", "model": "fast", "variants": [
        {"name": "A", "model": "sim-a"}, {"name": "B", "model": "sim-b"}]})
    overlap = me.request("POST", "/admin/experiments", {"name": "two", "model": "fast", "variants": [
        {"name": "A", "model": "sim-a"}, {"name": "C", "model": "sim-c"}]})
    assert overlap.status_code == 409 and overlap.json()["error"]["code"] == "experiment_overlap"
    assert "model 'fast'" in overlap.json()["error"]["message"]
    # a prompt experiment on the same org does not overlap an experiment on a model
    both = me.post("/admin/experiments", {"name": "three", "prompt": p["name"], "variants": [
        {"name": "A", "version": 1}, {"name": "B", "model": "sim-a"}]})
    assert count() == before + 2
    me.post(f"/admin/experiments/{ok['id']}/stop", expect=200)
    me.post(f"/admin/experiments/{both['id']}/stop", expect=200)
    root.close()
