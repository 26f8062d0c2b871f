"""``switchyard prompts`` and ``switchyard experiments`` on a store: push publishes only what changed, diff,
list, label and pull; an experiment's report (table, JSON, PNG charts) and its promotion, audited."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from switchyard.cli.keys import governance, operate
from switchyard.cli.main import main
from switchyard.prompts import experiments
from switchyard.prompts.models import ExperimentCreate
from switchyard.store import Store
from switchyard.store.audit_tables import audit_log
from switchyard.store.prompt_tables import feedback_metrics, request_log
from tests.support.gateway import MASTER_KEY

PROMPT = {"name": "support-reply", "labels": ["production"], "model": "sim-a",
          "parameters": {"temperature": 0.2},
          "variables": {"type": "object", "properties": {"customer": {"type": "string"}}},
          "messages": [{"role": "system", "content": "You help {{ customer }}.\nBe brief."}]}


def _config(tmp: Path) -> str:
    cfg = {"master_key": MASTER_KEY, "store": f"sqlite:///{tmp}/s.db",
           "providers": {"sim": {"type": "simulated"}}, "deployments": [{"name": "sim-a", "provider": "sim"}],
           "prompts": {"metrics": {"stars": {"type": "numeric", "min": 1, "max": 5}}}}
    path = tmp / "switchyard.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(main, list(args))
    assert r.exit_code == code, r.output
    return r.output if code else r.stdout


def test_push_diff_label_pull(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    f = tmp_path / "support-reply.yaml"
    f.write_text(yaml.safe_dump(PROMPT))
    assert "support-reply@1 published" in run("prompts", "push", "--config", cfg, str(f))
    assert "support-reply@1 unchanged" in run("prompts", "push", "--config", cfg, str(f))
    f.write_text(yaml.safe_dump({**PROMPT, "messages": [{"role": "system", "content": "You help {{ customer }}.\n"
                                                                                      "Be thorough."}]}))
    assert "support-reply@2 published" in run("prompts", "push", "--config", cfg, str(f))
    listed = orjson.loads(run("prompts", "list", "--config", cfg, "--json"))
    assert listed[0]["latest_version"] == 2 and listed[0]["labels"] == {"production": 2}
    d = run("prompts", "diff", "--config", cfg, "support-reply", "1", "2")
    assert "--- support-reply@1" in d and "-    Be brief." in d and "+    Be thorough." in d
    assert "(was 2)" in run("prompts", "label", "--config", cfg, "support-reply", "production", "1")
    pulled = yaml.safe_load(run("prompts", "pull", "--config", cfg, "support-reply"))
    assert pulled["name"] == "support-reply" and "Be brief." in pulled["messages"][0]["content"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**PROMPT, "messages": [{"role": "system", "content": "{% if %}"}]}))
    out = run("prompts", "push", "--config", cfg, str(bad), code=1)
    assert "line 1" in out


def test_report_charts_and_promote(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(PROMPT))
    run("prompts", "push", "--config", cfg, str(f))
    f.write_text(yaml.safe_dump({**PROMPT, "labels": [], "model": "sim-b"}))
    run("prompts", "push", "--config", cfg, str(f))
    with governance(cfg) as gov:
        exp = operate(gov, experiments.create, ExperimentCreate.model_validate({
            "name": "e", "prompt": "support-reply", "metric": "stars",
            "variants": [{"name": "A", "version": 1}, {"name": "B", "version": 2}]}),
            {"stars": {"type": "numeric", "min": 1, "max": 5}})
    rng = random.Random(3)
    store = Store.open(f"sqlite:///{tmp_path}/s.db")
    try:
        with store.engine.begin() as conn:
            for i in range(60):
                variant = "AB"[i % 2]
                rid = f"req_{i}"
                conn.execute(sa.insert(request_log).values(**_row(rid, exp.id, variant, rng)))
                stars = min(5.0, max(1.0, rng.gauss(2.5 if variant == "A" else 4.0, 0.8)))
                conn.execute(sa.insert(feedback_metrics).values(
                    request_id=rid, metric="stars", value=stars, ts=datetime.now(UTC), principal_id="p",
                    pending=False))
    finally:
        store.close()
    rep = orjson.loads(run("experiments", "report", "--config", cfg, exp.id, "--json",
                           "--charts", str(tmp_path / "charts")))
    c = rep["comparison"]
    assert c["test"] == "Welch's t-test" and c["better"] == "B" and c["p_value"] < 0.05
    assert {v["name"]: v["requests"] for v in rep["variants"]} == {"A": 30, "B": 30}
    for png in ("metric-stars.png", "cost-quality.png"):
        assert (tmp_path / "charts" / png).read_bytes()[:4] == b"\x89PNG"
    assert "B is better" in " ".join(run("experiments", "report", "--config", cfg, exp.id).split())
    assert "-> 2 (was 1)" in run("experiments", "promote", "--config", cfg, exp.id, "B")
    assert "stopped" in run("experiments", "promote", "--config", cfg, exp.id, "B", code=1)
    store = Store.open(f"sqlite:///{tmp_path}/s.db")
    try:
        with store.engine.connect() as conn:
            actions = {r.action for r in conn.execute(sa.select(audit_log.c.action, audit_log.c.actor))
                       if r.actor.startswith("cli:")}
    finally:
        store.close()
    assert {"prompt.create", "prompt.version.create", "prompt.label.update", "experiment.create",
            "experiment.promote"} <= actions


def _row(rid: str, exp_id: str, variant: str, rng: random.Random) -> dict[str, Any]:
    return {"request_id": rid, "ts": datetime.now(UTC), "endpoint": "chat", "model": "prompt", "status": "ok",
            "http_status": 200, "input_tokens": 10, "output_tokens": 5, "cached_tokens": 0, "cache_write_tokens": 0,
            "reasoning_tokens": 0, "cost": 0.001 if variant == "A" else 0.002, "latency_ms": rng.uniform(5, 50),
            "attempts": 1, "experiment_id": exp_id, "variant": variant, "principal_id": "p"}
