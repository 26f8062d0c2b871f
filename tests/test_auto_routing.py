"""The auto strategy (issue 14): ``model: "auto"`` and ``strategy: auto`` pick by task type, difficulty, quality,
cost and latency; the objective header; capability and context-window filters; the route reason, the record and
``switchyard route explain``; the model catalog (``catalog:``, ``switchyard models``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from click.testing import CliRunner

from switchyard.catalog import Catalog
from switchyard.cli.main import main
from switchyard.config import ConfigError, parse_config
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

SIMPLE = "Hi! How are you today?"
CHATTY = "Tell me about your favourite book and why you like it."
HARD_CODE = ("Implement a lock-free concurrent hash map in Rust with resizing, prove that it is linearizable, and "
             "analyse the complexity of every operation.")
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()


def config(upstream: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {"up": {"type": "openai", "base_url": upstream + "/v1", "api_key": "sk-upstream"}},
        "deployments": [
            {"name": "mini", "provider": "up", "model": "gpt-4o-mini", "catalog": "gpt-4o-mini"},
            {"name": "strong", "provider": "up", "model": "o3"},  # matched by its model: the config uses auto
            {"name": "text-only", "provider": "up", "model": "gpt-4.1-nano", "catalog": "gpt-4.1-nano",
             "capabilities": ["chat"], "context_window": 600},
        ],
        "routes": {"smart": {"targets": ["mini", "strong"], "strategy": "auto"},
                   "narrow": {"targets": ["text-only", "strong"], "strategy": "auto", "objective": "cheapest"}},
        **overrides,
    }
    return base_config(**cfg)


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI) -> Iterator[tuple[RunningGateway, ListRecorder]]:
    assert fake_openai_server.base_url is not None
    rec = ListRecorder()
    with run_gateway(config(fake_openai_server.base_url), recorder=rec) as running:
        yield running, rec


def oai(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0)


def ask(gw: RunningGateway, model: str, text: str, **kw: Any) -> tuple[str, dict[str, str]]:
    with oai(gw) as c:
        raw = c.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], **kw)
        raw.parse()
        return raw.headers["x-switchyard-deployment"], dict(raw.headers)


def test_the_catalog_fills_in_a_deployment_and_its_own_fields_win(fake_openai_server: FakeOpenAI) -> None:
    assert fake_openai_server.base_url is not None
    cat = Catalog.from_config(parse_config(config(fake_openai_server.base_url), "<test>", {}))
    mini, strong, small = cat.deployments["mini"], cat.deployments["strong"], cat.deployments["text-only"]
    assert (mini.input_price * 1e6, mini.output_price * 1e6, mini.cached_input_price * 1e6) == (0.15, 0.60, 0.075)
    assert mini.context_window == 128000 and "vision" in mini.capabilities
    assert strong.card is not None and strong.card.id == "o3" and strong.output_price * 1e6 == 8.0
    assert small.capabilities == frozenset({"chat"}) and small.context_window == 600  # its own fields
    assert small.max_output_tokens == 32768  # the rest from the catalog
    own = config(fake_openai_server.base_url, deployments=[
        {"name": "mini", "provider": "up", "catalog": "gpt-4o-mini", "price": {"input": 1.0}}], routes={})
    d = Catalog.from_config(parse_config(own, "<test>", {})).deployments["mini"]
    assert (d.input_price * 1e6, d.output_price * 1e6) == (1.0, 0.60)


def test_a_config_without_the_catalog_does_not_use_it(fake_openai_server: FakeOpenAI) -> None:
    assert fake_openai_server.base_url is not None
    plain = config(fake_openai_server.base_url, deployments=[{"name": "strong", "provider": "up", "model": "o3"}],
                   routes={})
    d = Catalog.from_config(parse_config(plain, "<test>", {})).deployments["strong"]
    assert d.card is None and d.input_price == 0.0


def test_an_unknown_catalog_model_is_a_config_error(fake_openai_server: FakeOpenAI) -> None:
    assert fake_openai_server.base_url is not None
    bad = config(fake_openai_server.base_url, deployments=[{"name": "x", "provider": "up", "catalog": "gpt-99"}],
                 routes={})
    with pytest.raises(ConfigError, match="gpt-99"):
        parse_config(bad, "<test>", {})


def test_balanced_sends_simple_chat_to_the_cheap_model_and_hard_code_to_the_strong_one(
        gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    running, rec = gw
    dep, headers = ask(running, "smart", SIMPLE)
    assert dep == "mini" and fake_openai.chat_models[-1] == "gpt-4o-mini"
    reason = headers["x-switchyard-route-reason"]
    assert "task chat" in reason and "chose mini" in reason and "score" in reason
    dep, headers = ask(running, "smart", HARD_CODE)
    assert dep == "strong" and fake_openai.chat_models[-1] == "o3"
    assert "task code" in headers["x-switchyard-route-reason"]
    route = rec.records[-1].decisions["route"]  # type: ignore[index]
    assert route["task"] == "code" and route["chosen"] == "strong" and set(route["scores"]) == {"mini", "strong"}


def test_the_objective_header_changes_the_choice(gw: tuple[RunningGateway, ListRecorder],
                                                  fake_openai: FakeOpenAI) -> None:
    running, _ = gw
    dep, headers = ask(running, "smart", HARD_CODE, extra_headers={"x-switchyard-objective": "cheapest"})
    assert dep == "mini" and "objective cheapest" in headers["x-switchyard-route-reason"]
    # a chat turn of some difficulty: "best" prefers the stronger model by a margin that no latency measured on a
    # loaded machine outweighs (the simplest greeting is a near tie between the two under "best")
    assert ask(running, "smart", CHATTY)[0] == "mini"  # the route's own objective: balanced
    dep, _ = ask(running, "smart", CHATTY, extra_headers={"x-switchyard-objective": "best"})
    assert dep == "strong"
    assert fake_openai.chat_models == ["gpt-4o-mini", "gpt-4o-mini", "o3"]


def test_auto_streams(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    running, rec = gw
    with oai(running) as c:
        stream = c.chat.completions.create(model="smart", stream=True,
                                           messages=[{"role": "user", "content": HARD_CODE}])
        text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text.startswith("Echo: Implement") and fake_openai.chat_models == ["o3"]
    assert rec.records[-1].deployment == "strong" and rec.records[-1].decisions["route"]["task"] == "code"  # type: ignore[index]


def test_a_bad_objective_is_a_400_in_either_protocol(gw: tuple[RunningGateway, ListRecorder]) -> None:
    running, _ = gw
    with oai(running) as c, pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}],
                                  extra_headers={"x-switchyard-objective": "fastest"})
    assert info.value.body["param"] == "x-switchyard-objective"  # type: ignore[index]
    with anthropic.Anthropic(base_url=running.url, api_key=USER_KEY, max_retries=0) as a, pytest.raises(
            anthropic.BadRequestError) as ainfo:
        a.messages.create(model="smart", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                          extra_headers={"x-switchyard-objective": "fastest"})
    assert "x-switchyard-objective" in str(ainfo.value)


def test_model_auto_over_the_anthropic_sdk(gw: tuple[RunningGateway, ListRecorder], fake_openai: FakeOpenAI) -> None:
    running, _ = gw
    with anthropic.Anthropic(base_url=running.url, api_key=USER_KEY, max_retries=0) as a:
        raw = a.messages.with_raw_response.create(model="auto", max_tokens=50,
                                                  messages=[{"role": "user", "content": SIMPLE}])
        msg = raw.parse()
    assert msg.content[0].type == "text" and raw.headers["x-switchyard-deployment"] in ("mini", "text-only")
    assert fake_openai.chat_models[-1] in ("gpt-4o-mini", "gpt-4.1-nano")
    assert "route auto (auto)" in raw.headers["x-switchyard-route-reason"]


def test_a_vision_request_goes_only_to_a_vision_deployment(gw: tuple[RunningGateway, ListRecorder],
                                                           fake_openai: FakeOpenAI) -> None:
    running, _ = gw
    content = [{"type": "text", "text": "What is in this picture?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}]
    with oai(running) as c:
        raw = c.chat.completions.with_raw_response.create(model="narrow", messages=[{"role": "user",
                                                                                       "content": content}])
        raw.parse()
    assert raw.headers["x-switchyard-deployment"] == "strong" and fake_openai.chat_models == ["o3"]
    reason = raw.headers["x-switchyard-route-reason"]
    assert "task vision" in reason and "text-only (lacks vision)" in reason


def test_a_tool_request_goes_only_to_a_tool_deployment(gw: tuple[RunningGateway, ListRecorder],
                                                       fake_openai: FakeOpenAI) -> None:
    running, _ = gw
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    dep, headers = ask(running, "narrow", "What is the weather in Paris?", tools=tools)
    assert dep == "strong" and fake_openai.chat_models == ["o3"]
    assert "task tool_use" in headers["x-switchyard-route-reason"]
    dep, _ = ask(running, "narrow", "hello")  # without tools, the cheapest objective takes the small one
    assert dep == "text-only"


def test_a_long_prompt_skips_a_small_context_deployment(gw: tuple[RunningGateway, ListRecorder],
                                                        fake_openai: FakeOpenAI) -> None:
    running, _ = gw
    dep, headers = ask(running, "narrow", "please read this. " * 400)
    assert dep == "strong" and fake_openai.chat_models == ["o3"]
    assert "text-only (context window 600" in headers["x-switchyard-route-reason"]


def test_a_key_s_allow_list_bounds_model_auto(fake_openai_server: FakeOpenAI) -> None:
    assert fake_openai_server.base_url is not None
    cfg = config(fake_openai_server.base_url, keys=[{"key": "sk-test-only-mini-0", "models": ["mini"]}])
    with run_gateway(cfg) as running, openai.OpenAI(base_url=running.openai_base, api_key="sk-test-only-mini-0",
                                                    max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user",
                                                                                     "content": HARD_CODE}])
        raw.parse()
        assert raw.headers["x-switchyard-deployment"] == "mini"  # strong is better, but not the key's
        with pytest.raises(openai.PermissionDeniedError):
            c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}])


def write(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("""
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: x}
deployments:
  - {name: mini, provider: up, catalog: gpt-4o-mini}
  - {name: strong, provider: up, catalog: o3}
routes:
  smart: {targets: [mini, strong], strategy: auto, objective: balanced}
  checked: {strategy: cascade, steps: [mini, strong], check: {type: verifier, verifier: mini}}
""")
    return path


def test_route_explain_shows_the_profile_and_the_scores(tmp_path: Path) -> None:
    path = write(tmp_path)
    r = CliRunner().invoke(main, ["route", "explain", "--config", str(path), "--model", "smart", "--prompt", HARD_CODE])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "profile: task code" in out and "difficulty" in out
    assert "objective: balanced" in out and "candidates (auto)" in out
    assert "chosen: strong" in out and "quality 5" in out
    r = CliRunner().invoke(main, ["route", "explain", "--config", str(path), "--model", "smart", "--prompt", SIMPLE,
                                  "--objective", "cheapest"])
    assert r.exit_code == 0 and "chosen: mini" in r.output
    r = CliRunner().invoke(main, ["route", "explain", "--config", str(path), "--model", "checked"])
    assert r.exit_code == 0 and "steps: mini: check verifier by mini -> strong: final" in r.output


def test_switchyard_models_lists_the_catalog() -> None:
    r = CliRunner().invoke(main, ["models", "--json"])
    assert r.exit_code == 0, r.output
    doc = orjson.loads(r.output)
    by_id = {m["id"]: m for m in doc["models"]}
    vendors = {m["vendor"] for m in doc["models"]}
    assert {"openai", "anthropic", "google", "mistral", "deepseek", "groq", "together", "bedrock"} <= vendors
    for m in doc["models"]:
        assert m["sources"]["price"].startswith("https://") and m["context_window"] and m["price"]["output"] > 0
    assert by_id["claude-sonnet-4"]["quality"]["code"] == 5
    r = CliRunner().invoke(main, ["models", "--vendor", "anthropic"])
    assert r.exit_code == 0 and "claude-opus-4" in r.output and "gpt-4o" not in r.output


class FakeLearned:
    """Stands in for ``routing.auto.learned.LearnedRouter``: P(strong needed) is high for prompts that say so."""

    threshold = 0.5
    loaded: list[str] = []
    embedder = object()  # its own: the strategy scores the text, not the profile's vector

    @classmethod
    def load(cls, path: str) -> FakeLearned:
        cls.loaded.append(path)
        return cls()

    def score(self, texts: list[str]) -> Any:
        import numpy as np

        return np.array([0.9 if "strong please" in t else 0.1 for t in texts])


def test_a_learned_router_picks_strong_or_weak(fake_openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    import sys
    import types

    fake = types.ModuleType("switchyard.routing.auto.learned")
    fake.LearnedRouter = FakeLearned  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "switchyard.routing.auto.learned", fake)
    import switchyard.routing.auto as auto_pkg

    monkeypatch.setattr(auto_pkg, "learned", fake, raising=False)
    assert fake_openai_server.base_url is not None
    router_file = str(tmp_path / "r.router")
    routes = {"learned": {"targets": ["mini", "strong"], "strategy": "auto", "router": router_file,
                          "strong": "strong", "weak": "mini"},
              "gated": {"strategy": "cascade", "targets": ["mini", "strong"],
                        "check": {"type": "router", "router": router_file}}}
    rec = ListRecorder()
    with run_gateway(config(fake_openai_server.base_url, routes=routes), recorder=rec) as running:
        dep, headers = ask(running, "learned", "Implement a red-black tree in C. strong please")
        assert dep == "strong" and "learned router score 0.900 >= threshold 0.500" in headers[
            "x-switchyard-route-reason"]
        assert rec.records[-1].decisions["route"]["router_score"] == 0.9  # type: ignore[index]
        dep, _ = ask(running, "learned", HARD_CODE)  # the catalog alone would pick strong; the router says weak
        assert dep == "mini"
        dep, headers = ask(running, "gated", "hello, strong please")  # the router skips the cheap step: no call
        assert dep == "strong" and "cascade: mini skipped (router score 0.900 >= 0.500)" in headers[
            "x-switchyard-route-reason"]
        dep, _ = ask(running, "gated", "hello")
        assert dep == "mini"
    assert FakeLearned.loaded and set(FakeLearned.loaded) == {router_file}


def plan_for(cfg: dict[str, Any], model: str, text: str, objective: str | None = None) -> Any:
    from switchyard.messages import ChatRequest, Message, Role, TextPart
    from switchyard.routing import Router
    from switchyard.tokens import estimate_prompt

    parsed = parse_config(cfg, "<test>", {})
    router = Router(Catalog.from_config(parsed), parsed)
    req = ChatRequest(model, [Message(Role.USER, [TextPart(text)])], "openai")
    return router.plan(model, req.needs(), estimate_prompt(req), None, request=req, objective=objective)


def test_a_deployment_s_quality_and_a_route_s_floor_and_weights_change_the_choice(
        fake_openai_server: FakeOpenAI) -> None:
    assert fake_openai_server.base_url is not None
    base = config(fake_openai_server.base_url)
    assert plan_for(base, "smart", HARD_CODE).targets[0].name == "strong"
    as_good = config(fake_openai_server.base_url, deployments=[
        {**base["deployments"][0], "quality": {"code": 5}}, *base["deployments"][1:]])
    assert plan_for(as_good, "smart", HARD_CODE).targets[0].name == "mini"  # as good for code, and cheaper
    assert plan_for(base, "smart", SIMPLE, "cheapest").targets[0].name == "mini"
    floored = config(fake_openai_server.base_url, routes={
        "smart": {"targets": ["mini", "strong"], "strategy": "auto", "objective": "cheapest", "quality_floor": 4}})
    plan = plan_for(floored, "smart", SIMPLE)
    assert [d.name for d in plan.targets] == ["strong", "mini"]  # mini's chat tier 3 is below the floor: last
    assert [s.below_floor for s in plan.decision.scored] == [True, False]
    costly = config(fake_openai_server.base_url, routes={
        "smart": {"targets": ["mini", "strong"], "strategy": "auto", "weights": {"cost": 5.0}}})
    assert plan_for(costly, "smart", HARD_CODE).targets[0].name == "mini"  # cost weighs more than quality
    assert plan_for(costly, "smart", HARD_CODE, "best").targets[0].name == "strong"  # the caller's objective wins


def test_every_catalog_model_cites_its_sources_and_no_alias_names_another_model() -> None:
    from switchyard.routing.auto.models import lookup, model_catalog

    cat = model_catalog()
    for card in cat.models.values():
        assert set(card.sources) >= {"price", "limits"}, card.id
        assert all(u.startswith("https://") for u in card.sources.values()), card.id
    assert lookup("gpt-4o-2024-08-06") is cat.models["gpt-4o"]
    assert lookup("chatgpt-4o-latest") is None  # the ChatGPT model: another model, with its own price
