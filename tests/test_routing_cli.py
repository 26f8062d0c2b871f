"""``switchyard route explain``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from switchyard.cli.main import main

CONFIG = """
providers:
  sim: {type: simulated}
  sim2: {type: simulated}
deployments:
  - {name: a, provider: sim, weight: 3, context_window: 8000, price: {input: 1, output: 2}}
  - {name: b, provider: sim2, capabilities: [chat, tools, vision], context_window: 128000}
  - {name: big, provider: sim2, context_window: 1000000}
  - {name: emb, provider: sim, capabilities: [embeddings]}
routes:
  chat:
    strategy: weighted
    targets: [a, {deployment: b, weight: 1}]
    fallbacks: [big]
    context_window_fallbacks: [big]
    content_policy_fallbacks: [b]
    retries: {max: 2, backoff_base_ms: 100, backoff_max_ms: 2000, retry_after_cap_s: 10, budget_ratio: 0.2}
    timeouts: {ttft_s: 10, idle_s: 30, total_s: 120}
    hedge: {after_percentile: 95, max_extra: 1, min_delay_ms: 50}
    breaker: {consecutive_failures: 5, failure_rate: 0.5, window_s: 30, min_requests: 10, cooldown_s: 15}
  small:
    strategy: lowest-cost
    targets: [a]
"""


def explain(tmp_path: Path, *args: str) -> tuple[int, str]:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    result = CliRunner().invoke(main, ["route", "explain", "--config", str(path), *args], terminal_width=200)
    return result.exit_code, result.output


def test_explain_prints_the_plan_and_why(tmp_path: Path) -> None:
    code, out = explain(tmp_path, "--model", "chat")
    assert code == 0, out
    assert "strategy weighted" in out and "smooth weighted round robin" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert "│ 1 │ a" in lines[0] and "weight 3 (75%)" in lines[0]
    assert "│ 2 │ b" in lines[1] and "│ 3 │ big" in lines[2] and "fallback big" in lines[2]
    assert "on a context-window error: big" in out and "on a content-policy error: b" in out
    assert "retries: max 2" in out and "ttft 10s, idle 30s, total 120s" in out and "hedge: after p95" in out
    assert "breaker (a, b): opens after 5 failures in a row or 50% of >= 10 in 30s; cooldown 15s" in out


def test_explain_shows_what_is_skipped_and_why(tmp_path: Path) -> None:
    code, out = explain(tmp_path, "--model", "chat", "--prompt-tokens", "9000", "--needs", "tools")
    assert code == 0, out
    assert "context window 8000 < 9000 tokens" in out
    code, out = explain(tmp_path, "--model", "chat", "--prompt-tokens", "200000", "--needs", "vision")
    assert code == 1
    assert "no plan: No deployment of route 'chat' can serve this request" in out
    code, out = explain(tmp_path, "--model", "small", "--prompt-tokens", "9000")
    assert code == 1 and "context window 8000 < 9000" in out


def test_explain_deployments_embeddings_and_unknown_names(tmp_path: Path) -> None:
    code, out = explain(tmp_path, "--model", "a")
    assert code == 0 and "deployment a" in out and "the deployment itself" in out
    code, out = explain(tmp_path, "--model", "emb", "--embeddings")
    assert code == 0 and "emb" in out
    code, out = explain(tmp_path, "--model", "ghost")
    assert code == 1 and "no deployment or route is named 'ghost'" in out


def test_explain_reports_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes: {r: {targets: [nope]}}\n")
    result = CliRunner().invoke(main, ["route", "explain", "--config", str(path), "--model", "r"])
    assert result.exit_code == 2


def test_explain_shows_a_narrowing_as_a_stage_would_make_it(tmp_path: Path) -> None:
    code, out = explain(tmp_path, "--model", "chat", "--only", "b,big")
    assert code == 0, out
    assert "narrowed: --only b,big" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert "│ 1 │ b" in lines[0] and "│ 2 │ big" in lines[1]
    assert any("a" in ln.split("│")[1] and "narrowed out" in ln for ln in lines[2:])
    code, out = explain(tmp_path, "--model", "small", "--only", "b")
    assert code == 1 and "is allowed for this request" in out
