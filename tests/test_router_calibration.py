"""A learned router's threshold calibrated on live traffic (issue 14): the calibrator's window, quantile, cold
start and fallback; a route with ``strong_share: 0.3`` or a ``cost_target`` keeping its share of strong calls over
HTTP with the official ``openai`` SDK, the decision in the call record and the route reason; the config checks."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from click.testing import CliRunner

from switchyard.catalog import Catalog
from switchyard.cli.main import main
from switchyard.config import ConfigError, parse_config
from switchyard.messages import ChatRequest, Message, Role, TextPart
from switchyard.routing.auto.calibration import (
    Calibrator,
    cost_share,
    file_quantiles,
    quantile_threshold,
    top_share_threshold,
)
from switchyard.routing.strategies import estimated_cost
from switchyard.tokens import estimate_prompt
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, ListRecorder, base_config, run_gateway

# --- the calibrator -------------------------------------------------------------------------------------------------


def test_it_starts_from_the_file_quantiles_then_follows_the_traffic() -> None:
    quantiles = list(np.linspace(0.0, 1.0, 101))  # training scores uniform on [0, 1]
    cal = Calibrator(fallback=0.5, strong_share=0.3, quantiles=quantiles, window=200, every=20, min_samples=40)
    assert cal.threshold == pytest.approx(0.7) and cal.source == "training"
    rng = np.random.default_rng(1)
    traffic = rng.uniform(0.0, 0.2, 1000)  # the route's prompts all score low: 0.7 would send none to strong
    picks = [cal.decide(float(s)) for s in traffic[:39]]
    assert not any(picks) and cal.source == "training"  # still the cold threshold
    picks = [cal.decide(float(s)) for s in traffic[39:]]
    assert cal.source == "traffic" and cal.threshold < 0.2
    assert np.mean(picks[200:]) == pytest.approx(0.3, abs=0.06)
    # the window is bounded: after a shift, the old scores leave it and the threshold follows the new ones
    for s in rng.uniform(0.8, 1.0, 400):
        cal.decide(float(s))
    assert cal.threshold > 0.8 and cal.decisions == 1400
    assert cal.realised_share() == pytest.approx(0.3, abs=0.05)  # the window's own decisions


def test_without_quantiles_the_file_threshold_is_the_cold_start() -> None:
    for correction, expected in ((0.0, 5 / 9), (1.0, 6 / 9)):
        cal = Calibrator(fallback=0.42, strong_share=0.5, quantiles=None, min_samples=10, every=10,
                         correction=correction)
        assert cal.threshold == 0.42 and cal.source == "file"
        picks = [cal.decide(float(s)) for s in np.linspace(0, 1, 10)]
        assert sum(picks) == 6 and cal.source == "traffic"  # 4/9 .. 1 at or above 0.42
        # without correction the 5th highest of 0, 1/9, .., 1; with it, 6 strong calls of 10 (one too many) make
        # the next threshold aim at 4 of 10
        assert cal.threshold == pytest.approx(expected)


def test_the_quantile_helpers() -> None:
    s = np.array([0.1, 0.9, 0.5, 0.3, 0.7])
    assert top_share_threshold(s, 0.4) == 0.7  # two of five: 0.9 and 0.7
    assert top_share_threshold(s, 1.0) == 0.1
    assert top_share_threshold(s, 0.0) > 0.9  # none
    assert quantile_threshold([0.0, 1.0, 3.0], 0.25) == pytest.approx(2.0)  # the 75 % point between 1 and 3
    assert file_quantiles({"score_quantiles": [0.1, 0.2, 0.4]}) == [0.1, 0.2, 0.4]
    for bad in ({}, {"score_quantiles": [0.5]}, {"score_quantiles": [0.3, 0.2]}, {"score_quantiles": ["x", 1]},
                {"score_quantiles": [0.1, float("nan")]}, None):
        assert file_quantiles(bad) is None


def test_a_cost_target_becomes_a_share_and_falls_back_without_a_price_gap() -> None:
    assert cost_share(0.002, 0.001, 0.005) == pytest.approx(0.25)
    assert cost_share(0.01, 0.001, 0.005) == 1.0 and cost_share(0.0005, 0.001, 0.005) == 0.0
    assert cost_share(0.002, 0.001, 0.001) is None
    cal = Calibrator(fallback=0.5, cost_target=0.002, quantiles=[0.0, 1.0], min_samples=20, every=20)
    assert cal.decide(0.9, 0.001, 0.005) and cal.share == pytest.approx(0.25)
    assert cal.threshold == pytest.approx(0.75)  # the first request's costs, over the file's quantiles
    for s in np.linspace(0, 1, 99):
        cal.decide(float(s), 0.001, 0.003)  # the strong model got cheaper: half the calls fit the target
    assert cal.share == pytest.approx(0.5, abs=0.03) and "cost target $0.002/call" in cal.describe()
    flat = Calibrator(fallback=0.6, cost_target=0.002, quantiles=[0.0, 1.0], min_samples=5, every=5)
    assert [flat.decide(s, 0.001, 0.001) for s in (0.5, 0.7, 0.9, 0.1, 0.65)] == [False, True, True, False, True]
    assert not flat.usable and flat.threshold == 0.6 and "no price gap" in flat.describe()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Calibrator(fallback=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        Calibrator(fallback=0.5, strong_share=0.3, cost_target=0.1)
    with pytest.raises(ValueError, match="min_samples"):
        Calibrator(fallback=0.5, strong_share=0.3, window=10, min_samples=20)


# --- over the gateway -----------------------------------------------------------------------------------------------

EASY = ["What is the capital of {}?", "Say hello to {}.", "Translate 'good morning' into {}.", "How do you spell {}?",
        "Give me a synonym for {}."]
HARD = ["Prove that the {} conjecture implies a bound on prime gaps, step by step.",
        "Implement a lock-free {} in Rust and prove it linearizable.",
        "Derive the asymptotic complexity of {} under adversarial input and justify each step.",
        "Write a formal proof in Lean that {} is decidable."]
WORDS = ["France", "Peru", "river", "apple", "graph", "queue", "matrix", "Goldbach", "hash map", "skip list",
         "Japanese", "Kenya", "bright", "ocean", "stack", "B-tree"]


def prompts(rng: random.Random, n: int, hard_share: float, tail: str) -> list[tuple[str, bool]]:
    out = []
    for i in range(n):
        hard = rng.random() < hard_share
        out.append((rng.choice(HARD if hard else EASY).format(rng.choice(WORDS)) + f" {tail} {i}", hard))
    return out


@pytest.fixture(scope="module")
def router_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    """A router trained on synthetic outcomes (40 % hard prompts, which the weak model mostly fails), with the
    training scores' quantiles in its file."""
    from switchyard.routing.auto.learned import LearnedRouter, train
    from switchyard.routing.auto.outcomes import read_outcomes

    tmp = tmp_path_factory.mktemp("router")
    rng = random.Random(7)
    data = tmp / "outcomes.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "weak", "strong"])
        for text, hard in prompts(rng, 240, 0.4, "#"):
            w.writerow([text, rng.random() < (0.2 if hard else 0.9), rng.random() < 0.9])
    o = read_outcomes([data], "strong", "weak")
    r = train(o)
    # the file's own threshold sends 60 % of the training prompts to the strong model: far from the route's target
    r.calibrate(r.score(o.prompts), strong_share=0.6)
    r.meta["score_quantiles"] = np.quantile(r.score(o.prompts), np.linspace(0, 1, 101)).tolist()
    path = tmp / "router.npz"
    r.save(path)
    return str(path), LearnedRouter.load(path)


def gw_config(upstream: str, router: str, **route: Any) -> dict[str, Any]:
    return base_config(
        providers={"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream"}},
        deployments=[{"name": "mini", "provider": "up", "model": "gpt-4o-mini", "catalog": "gpt-4o-mini"},
                     {"name": "big", "provider": "up", "model": "o3", "catalog": "o3"}],
        routes={"calibrated": {"targets": ["mini", "big"], "strategy": "auto", "router": router, "strong": "big",
                               "weak": "mini", **route}})


def traffic() -> list[str]:
    """The route's traffic: fewer hard prompts than in training (15 %), worded a little differently."""
    return [t for t, _ in prompts(random.Random(11), 300, 0.15, "please, request")]


def send_all(base: str, texts: list[str]) -> list[str]:
    with openai.OpenAI(base_url=base, api_key=USER_KEY, max_retries=0) as c:
        out = []
        for t in texts:
            raw = c.chat.completions.with_raw_response.create(model="calibrated",
                                                              messages=[{"role": "user", "content": t}])
            raw.parse()
            out.append(raw.headers["x-switchyard-deployment"])
        return out


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    from tests.support.fake_openai import make_fake_openai

    fake: FakeOpenAI = make_fake_openai()
    with fake.serve():
        assert fake.base_url is not None
        yield fake.base_url


def test_strong_share_holds_on_live_traffic(router_file: tuple[str, Any], upstream: str) -> None:
    path, router = router_file
    texts = traffic()
    scores = router.score(texts)
    # the file's threshold (calibrated to 60 % of the training prompts) and the training quantile both miss 0.3
    # on this traffic: the share below comes from following it
    assert abs(float(np.mean(scores >= router.threshold)) - 0.3) > 0.08
    cold = quantile_threshold(router.meta["score_quantiles"], 0.3)
    assert abs(float(np.mean(scores >= cold)) - 0.3) > 0.08
    rec = ListRecorder()
    with run_gateway(gw_config(upstream, path, strong_share=0.3), recorder=rec) as gw:
        deps = send_all(gw.openai_base, texts)
        with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="calibrated", messages=[{"role": "user", "content": texts[0]}])
            raw.parse()
    share = deps.count("big") / len(deps)
    assert share == pytest.approx(0.3, abs=0.08), share
    assert deps[100:].count("big") / 200 == pytest.approx(0.3, abs=0.08)  # the share holds, once warm
    reason = raw.headers["x-switchyard-route-reason"]
    assert "learned router score" in reason and "threshold" in reason
    assert "target share 0.30, threshold from traffic" in reason
    route = rec.records[-1].decisions["route"]  # type: ignore[index]
    assert set(route) >= {"router_score", "router_threshold", "strong_share", "chosen"}
    assert route["strong_share"] == 0.3 and route["chosen"] == ("big" if route["router_score"] >= route[
        "router_threshold"] else "mini")
    # every decision is in its record: the recorded choices give the same share
    chosen = [r.decisions["route"]["chosen"] for r in rec.records[:300]]  # type: ignore[index]
    assert chosen == deps


def test_a_cost_target_sets_the_share_from_the_prices(router_file: tuple[str, Any], upstream: str) -> None:
    path, _ = router_file
    texts = traffic()[:200]
    cfg = gw_config(upstream, path)
    cat = Catalog.from_config(parse_config(cfg, "<test>", {}))
    mini, big = cat.deployments["mini"], cat.deployments["big"]
    toks = [estimate_prompt(ChatRequest("calibrated", [Message(Role.USER, [TextPart(t)])], "openai")) for t in texts]
    weak = float(np.mean([estimated_cost(mini, n, None) for n in toks]))
    strong = float(np.mean([estimated_cost(big, n, None) for n in toks]))
    target = weak + 0.2 * (strong - weak)  # USD per call: a fifth of the calls can go to the strong model
    rec = ListRecorder()
    with run_gateway(gw_config(upstream, path, cost_target=round(target, 6)), recorder=rec) as gw:
        deps = send_all(gw.openai_base, texts)
    assert deps.count("big") / len(deps) == pytest.approx(0.2, abs=0.08)
    route = rec.records[-1].decisions["route"]  # type: ignore[index]
    assert route["strong_share"] == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize("kind", ["short", "long", "empty"])
def test_a_routed_request_is_embedded_once_and_scored_as_the_router_scores_it(
        router_file: tuple[str, Any], upstream: str, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The profile's embedding feeds the learned router: one embedding per request, not one each. A long prompt
    scores on the route as ``router.score`` (training, ``router eval``) scores it: both read its head and tail. An
    empty one (no token: the zero vector) is scored too, not taken for a broken router."""
    from switchyard.routing import Router
    from switchyard.routing.auto import embedder as emb_mod

    path, router = router_file
    text = traffic()[3]
    if kind == "long":
        text = "Background for the question below. " * 60 + text
        assert len(text) > 2000
    elif kind == "empty":
        text = ""
    expected = float(router.score([text])[0])
    assert 0.0 <= expected <= 1.0
    calls: list[int] = []
    real = emb_mod.WordLlamaEmbedder.embed

    def counting(self: Any, texts: Any) -> Any:
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(emb_mod.WordLlamaEmbedder, "embed", counting)
    parsed = parse_config(gw_config(upstream, path), "<test>", {})
    r = Router(Catalog.from_config(parsed), parsed)
    req = ChatRequest("calibrated", [Message(Role.USER, [TextPart(text)])], "openai")
    r.plan("calibrated", req.needs(), estimate_prompt(req), None, request=req)  # loads the router and the centroids
    calls.clear()
    plan = r.plan("calibrated", req.needs(), estimate_prompt(req), None, request=req)
    assert calls == [1]
    assert plan.decision.router_score == pytest.approx(expected, abs=1e-6)
    assert "unavailable" not in plan.decision.why


# --- the config -----------------------------------------------------------------------------------------------------


def test_the_config_refuses_conflicting_or_orphan_targets(tmp_path: Path) -> None:
    base = gw_config("http://127.0.0.1:9", "r.npz")
    route = base["routes"]["calibrated"]
    bad = {
        "both": ({**route, "strong_share": 0.3, "cost_target": 0.001}, "strong_share and cost_target: set one"),
        "orphan": ({"targets": ["mini", "big"], "strategy": "auto", "cost_target": 0.001},
                   "cost_target: only a route with a learned router"),
        "negative": ({**route, "cost_target": -1}, "routes.negative.cost_target: must be > 0"),
        "share": ({**route, "strong_share": 1.5}, "routes.share.strong_share: must be < 1"),
        "cascade": ({**route, "strategy": "cascade", "check": {"type": "router"}, "strong_share": 0.3},
                    "strong_share: a cascade's router check uses its own threshold"),
    }
    for name, (rc, message) in bad.items():
        with pytest.raises(ConfigError) as info:
            parse_config({**base, "routes": {name: rc}}, "<test>", {})
        assert any(message in p and p.startswith(f"routes.{name}") for p in info.value.problems), (
            name, info.value.problems)
    ok = parse_config({**base, "routes": {"c": {**route, "cost_target": 0.001}}}, "<test>", {})
    assert ok.routes["c"].cost_target == 0.001 and ok.routes["c"].strong_share is None
    # switchyard check names the key
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base, "routes": {"smart": {**route, "strong_share": 0.3,
                                                                 "cost_target": 0.001}}}))
    r = CliRunner().invoke(main, ["check", str(path)])
    assert r.exit_code == 2 and "routes.smart: strong_share and cost_target: set one" in r.output
