"""The proof of experiments, over HTTP: two variants of a managed prompt on two simulated deployments; variant B
gets better feedback through POST /v1/feedback. The report finds B better (p < 0.05), the bandit shifts traffic
to B, assignment is sticky per x-switchyard-session, promotion moves the label, and every step is audited. Bad
input (weights summing to zero, an overlapping experiment, promoting a stopped one) is a clear 4xx that writes
nothing."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
import sqlalchemy as sa

from switchyard.config.ledger import SpoolSettings
from switchyard.governance.spend import SpendWriter
from switchyard.store import Store
from switchyard.store.audit_tables import audit_log
from switchyard.store.prompt_tables import experiments
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.governance import BACKENDS, Admin, gov_config, sdk_http_client, store_url, unique

METRICS = {"helpful": {"type": "boolean"}, "stars": {"type": "numeric", "min": 1, "max": 5}}
RATE = {"A": 0.3, "B": 0.85}  # the simulated users' chance of finding an answer helpful


def spec(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "variables": {"type": "object", "properties": {"q": {"type": "string"}}},
            "messages": [{"role": "system", "content": text}, {"role": "user", "content": "{{ q }}"}]}


@pytest.fixture(scope="module", params=BACKENDS)
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway,
                                                                                                   Store]]:
    tmp = tmp_path_factory.mktemp("experiments")
    with store_url(request.param, tmp) as url:
        store = Store.open(url)
        writer = SpendWriter(store.engine, SpoolSettings(dir=str(tmp / "spool"), flush_interval=0.05))
        try:
            with run_gateway(gov_config(url, prompts={"metrics": METRICS, "refresh_s": 0.2}), recorder=writer) as r:
                yield r, store
        finally:
            store.close()


def _prompt(running: RunningGateway) -> tuple[Admin, str, str, dict[str, Any]]:
    root = Admin(running.url)
    org = root.org()
    team = root.team(org["id"])
    _, secret = root.user_with_key("team_admin", org_id=org["id"], team_id=team["id"])
    me = root.as_key(secret)
    p = me.post("/admin/prompts", {"name": unique("reply"), "team_id": team["id"]})
    me.post(f"/admin/prompts/{p['id']}/versions", {"spec": spec("sim-a", "Be brief."), "labels": ["production"]})
    me.post(f"/admin/prompts/{p['id']}/versions", {"spec": spec("sim-b", "Be thorough.")})
    return me, secret, p["name"], p


def _ask(client: openai.OpenAI, name: str, session: str) -> tuple[str, str, str]:
    r = client.chat.completions.with_raw_response.create(
        model="prompt", messages=[], extra_headers={"x-switchyard-session": session},
        extra_body={"prompt": {"name": name, "variables": {"q": "where is my parcel?"}}})
    r.parse()
    return r.headers["x-request-id"], r.headers["x-switchyard-variant"], r.headers["x-switchyard-deployment"]


def test_two_variant_experiment_end_to_end(gw: tuple[RunningGateway, Store]) -> None:
    running, store = gw
    admin, secret, name, prompt = _prompt(running)
    exp = admin.post("/admin/experiments", {
        "name": "brief-vs-thorough", "prompt": name, "metric": "helpful", "allocation": "bandit",
        "min_samples": 15, "variants": [{"name": "A", "version": 1}, {"name": "B", "version": 2}]})
    rng = random.Random(7)
    seen: dict[str, str] = {}

    def rate(rid: str, variant: str) -> None:
        r = httpx.post(running.url + "/v1/feedback", headers={"authorization": f"Bearer {secret}"},
                       json={"request_id": rid, "metric": "helpful", "value": rng.random() < RATE[variant]})
        assert r.status_code == 200, r.text

    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as client:
        for i in range(80):  # phase 1: fixed weights until each variant has 15 ratings
            rid, variant, deployment = _ask(client, name, f"user-{i}")
            assert deployment == {"A": "sim-a", "B": "sim-b"}[variant]  # the variant's version chose the model
            seen[f"user-{i}"] = variant
            rate(rid, variant)
        first = Counter(seen.values())
        assert first["A"] >= 15 and first["B"] >= 15  # min_samples: the bandit may take over at exactly 15
        # sticky: the same session gets the same variant
        for s in list(seen)[:10]:
            assert _ask(client, name, s)[1] == seen[s]
        report = admin.get(f"/admin/experiments/{exp['id']}/report")
        c = report["comparison"]
        assert c["metric"] == "helpful" and c["test"] == "two-proportion z-test"
        assert c["better"] == "B" and c["p_value"] < 0.05 and c["difference"] > 0 and c["ci95"][0] > 0
        assert report["allocation"]["B"] > 0.9
        variants = {v["name"]: v for v in report["variants"]}
        assert variants["A"]["requests"] >= first["A"] and variants["B"]["metrics"]["helpful"]["n"] == first["B"]
        assert variants["B"]["latency_ms"]["p95"] >= variants["B"]["latency_ms"]["p50"] > 0
        lo, hi = variants["B"]["metrics"]["helpful"]["ci95"]
        assert lo < variants["B"]["metrics"]["helpful"]["mean"] < hi
        # phase 2: the bandit shifts new users to B (its view refreshes within prompts.refresh_s)
        time.sleep(0.3)
        _ask(client, name, "warm-up")
        time.sleep(0.3)
        later = Counter(_ask(client, name, f"new-{i}")[1] for i in range(40))
        assert later["B"] >= 32, later
        for s in list(seen)[:10]:  # earlier users stay where they were
            assert _ask(client, name, s)[1] == seen[s]

    # promotion moves the label, and stops the experiment; a second promotion is a 409
    out = admin.post(f"/admin/experiments/{exp['id']}/promote", {"variant": "B"}, expect=200)
    assert (out["label"], out["version"], out["previous"]) == ("production", 2, 1)
    assert admin.get(f"/admin/prompts/{prompt['id']}")["labels"]["production"] == 2
    again = admin.request("POST", f"/admin/experiments/{exp['id']}/promote", {"variant": "A"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "experiment_stopped"
    assert admin.get(f"/admin/prompts/{prompt['id']}")["labels"]["production"] == 2  # nothing half-written
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log.c.action, audit_log.c.target, audit_log.c.details)
                            .where(audit_log.c.target.in_([exp["id"], prompt["id"]]))).all()
    actions = [r.action for r in rows]
    assert {"experiment.create", "experiment.promote", "prompt.label.update", "prompt.version.create"} <= set(actions)
    label_moves = [orjson.loads(r.details) if isinstance(r.details, str) else r.details
                   for r in rows if r.action == "prompt.label.update"]
    assert any((d or {}).get("experiment_id") == exp["id"] and d["version"] == 2 for d in label_moves)


def test_bad_experiments_are_4xx_and_write_nothing(gw: tuple[RunningGateway, Store]) -> None:
    running, store = gw
    admin, _, name, _ = _prompt(running)

    def count() -> int:
        with store.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(experiments)).scalar() or 0)

    before = count()
    zero = admin.request("POST", "/admin/experiments", {
        "name": "zero", "prompt": name, "variants": [{"name": "A", "version": 1, "weight": 0},
                                                      {"name": "B", "version": 2, "weight": 0}]})
    assert zero.status_code == 400 and zero.json()["error"]["code"] == "invalid_weights"
    metric = admin.request("POST", "/admin/experiments", {
        "name": "m", "prompt": name, "metric": "vibes", "variants": [{"name": "A", "version": 1},
                                                                      {"name": "B", "version": 2}]})
    assert metric.status_code == 400 and metric.json()["error"]["param"] == "metric"
    missing = admin.request("POST", "/admin/experiments", {
        "name": "v", "prompt": name, "variants": [{"name": "A", "version": 1}, {"name": "B", "version": 9}]})
    assert missing.status_code == 404
    assert count() == before
    ok = admin.post("/admin/experiments", {"name": "one", "prompt": name, "variants": [
        {"name": "A", "version": 1, "weight": 3}, {"name": "B", "model": "sim-b", "weight": 1}]})
    overlap = admin.request("POST", "/admin/experiments", {"name": "two", "prompt": name, "variants": [
        {"name": "A", "version": 1}, {"name": "B", "version": 2}]})
    assert overlap.status_code == 409 and overlap.json()["error"]["code"] == "experiment_overlap"
    assert count() == before + 1
    admin.post(f"/admin/experiments/{ok['id']}/stop", expect=200)
    stopped = admin.request("POST", f"/admin/experiments/{ok['id']}/promote", {"variant": "A"})
    assert stopped.status_code == 409 and stopped.json()["error"]["code"] == "experiment_stopped"
    # a stopped experiment no longer overlaps
    admin.post("/admin/experiments", {"name": "three", "prompt": name, "variants": [
        {"name": "A", "version": 1}, {"name": "B", "version": 2}]})


class HeldWriter(SpendWriter):
    """A spend writer whose shipping can be held back: the call's record is not in the store yet."""

    held = False

    async def flush(self) -> bool:
        return False if self.held else await super().flush()


def test_feedback_before_the_record_is_stored_is_pending_then_matched(tmp_path: Any) -> None:
    from switchyard.prompts.report import match_pending
    from switchyard.store.prompt_tables import feedback_metrics

    url = f"sqlite:///{tmp_path}/s.db"
    store = Store.open(url)
    writer = HeldWriter(store.engine, SpoolSettings(dir=str(tmp_path / "spool"), flush_interval=3600))
    try:
        with run_gateway(gov_config(url, prompts={"metrics": METRICS}), recorder=writer) as running:
            _, secret, name, _ = _prompt(running)
            writer.held = True
            with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                               http_client=sdk_http_client()) as client:
                r = client.chat.completions.with_raw_response.create(
                    model="prompt", messages=[], extra_headers={"x-request-id": "my-call-1"},
                    extra_body={"prompt": {"name": name, "variables": {"q": "hi"}}})
                r.parse()
            body = {"request_id": "my-call-1", "metric": "stars", "value": 5}
            posted = httpx.post(running.url + "/v1/feedback", json=body,
                                headers={"authorization": f"Bearer {secret}"})
            assert posted.status_code == 202 and posted.json()["pending"] is True, posted.text
            other = httpx.post(running.url + "/v1/feedback", json={**body, "request_id": "never-made"},
                               headers={"authorization": f"Bearer {secret}"})
            assert other.status_code == 404  # a request this gateway never served is still unknown
            writer.held = False
        with store.engine.begin() as conn:  # the gateway stopped: its spool is shipped
            assert match_pending(conn) == 1
            row = conn.execute(sa.select(feedback_metrics)).one()
        assert row.pending is False and row.request_id.startswith("req_")  # our id, matched by the caller's
        assert row.value == 5.0
    finally:
        store.close()


def test_a_fixed_horizon_stops_the_experiment(gw: tuple[RunningGateway, Store]) -> None:
    running, store = gw
    admin, secret, name, _ = _prompt(running)
    exp = admin.post("/admin/experiments", {"name": "horizon", "prompt": name, "stop": {"max_requests": 4},
                                            "variants": [{"name": "A", "version": 1}, {"name": "B", "version": 2}]})
    headers: list[str | None] = []
    with openai.OpenAI(base_url=running.openai_base, api_key=secret, max_retries=0,
                       http_client=sdk_http_client()) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = client.chat.completions.with_raw_response.create(
                model="prompt", messages=[], extra_body={"prompt": {"name": name, "variables": {"q": "x"}}})
            r.parse()
            headers.append(r.headers.get("x-switchyard-variant"))
            if headers[-1] is None:
                break
            time.sleep(0.05)
    assert headers[0] is not None and headers[-1] is None  # served by variants, then by the label again
    got = admin.get(f"/admin/experiments/{exp['id']}")
    assert got["status"] == "stopped" and got["stop_reason"].startswith("horizon")
    with store.engine.connect() as conn:
        actor = conn.execute(sa.select(audit_log.c.actor).where(audit_log.c.target == exp["id"],
                                                                audit_log.c.action == "experiment.stop")).scalar()
    assert actor == "system:experiments"
