"""Model aliases and wildcards: ``aliases: {"claude-*": smart, ...}`` (routing/aliases.py, docs/routing.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from click.testing import CliRunner

from switchyard.cli.main import main
from switchyard.config import ConfigError, parse_config
from switchyard.routing.aliases import Aliases
from tests.support.gateway import USER_KEY, ListRecorder, RunningGateway, base_config, run_gateway

ALIASES = {"claude-*": "smart", "gpt-4o*": "fast", "claude-3-5-haiku*": "fast", "gpt-4o-mini": "small",
           "c??": "fast"}


def test_precedence_exact_then_longest_pattern() -> None:
    a = Aliases(ALIASES)
    known = {"smart", "fast", "small", "claude-real"}
    assert a.resolve("claude-real", known) == "claude-real"  # a real name is never shadowed
    assert a.resolve("gpt-4o-mini", known) == "small"  # exact alias over the pattern gpt-4o*
    assert a.resolve("gpt-4o-2024-08-06", known) == "fast"
    assert a.resolve("claude-3-5-haiku-20241022", known) == "fast"  # the longer pattern wins
    assert a.resolve("claude-sonnet-4-5", known) == "smart"
    assert a.resolve("cat", known) == "fast" and a.resolve("cats", known) == "cats"  # ? is one character
    assert a.resolve("llama", known) == "llama"  # no match: unchanged, and routing says it does not exist
    assert a.match("Claude-x") is None  # case-sensitive


def test_same_length_patterns_first_written_wins() -> None:
    a = Aliases({"x-*": "one", "*-y": "two"})
    assert a.resolve("x-y", set()) == "one"
    assert Aliases({"*-y": "two", "x-*": "one"}).resolve("x-y", set()) == "two"


def _config(**extra: Any) -> dict[str, Any]:
    return base_config(
        providers={"sim": {"type": "simulated"}},
        deployments=[{"name": "d-smart", "provider": "sim", "capabilities": ["chat", "tools"]},
                     {"name": "d-fast", "provider": "sim"}],
        routes={"smart": {"targets": ["d-smart"]}, "fast": {"targets": ["d-fast"]}},
        aliases={"claude-*": "smart", "gpt-4o*": "fast", "gpt-4o-mini": "d-smart"}, **extra)


def test_config_rejects_bad_aliases() -> None:
    cfg = _config()
    cfg["aliases"] = {"claude-*": "nowhere", "d-fast": "smart"}
    with pytest.raises(ConfigError) as info:
        parse_config(cfg, "<test>", {})
    text = str(info.value)
    assert "aliases.claude-*: unknown deployment or route 'nowhere'" in text
    assert "aliases.d-fast: a deployment or route has this name" in text


@pytest.fixture
def gw() -> Iterator[RunningGateway]:
    rec = ListRecorder()
    with run_gateway(_config(), recorder=rec) as running:
        running.recorder = rec  # type: ignore[attr-defined]
        yield running


def test_calls_through_aliases(gw: RunningGateway) -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as client:
        r = client.chat.completions.create(model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="llama-3", messages=[{"role": "user", "content": "hi"}])
    with anthropic.Anthropic(base_url=gw.url, api_key=USER_KEY, max_retries=0) as ac:
        m = ac.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=20,
                               messages=[{"role": "user", "content": "hi"}])
        assert m.content
    records = gw.recorder.records  # type: ignore[attr-defined]
    ok = [r for r in records if r.status == "ok"]
    assert [(r.model, r.deployment) for r in ok] == [("fast", "d-fast"), ("smart", "d-smart")]


def test_models_list_and_lookup(gw: RunningGateway) -> None:
    with openai.OpenAI(base_url=gw.openai_base, api_key=USER_KEY, max_retries=0) as client:
        ids = [m.id for m in client.models.list()]
        assert "gpt-4o-mini" in ids and "claude-*" not in ids and "smart" in ids
        assert client.models.retrieve("claude-opus-4").id == "claude-opus-4"  # a name a pattern maps
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("llama-3")


def test_route_explain_shows_the_alias(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "c.yaml"
    cfg = _config()
    for k in ("master_key", "keys", "store"):
        cfg.pop(k)
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(main, ["route", "explain", "--config", str(path), "--model", "claude-opus-4"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "'claude-opus-4' matches the alias claude-* -> smart" in result.output
    assert "route smart" in result.output and "d-smart" in result.output
