"""The config file: interpolation, validation errors that name the exact key, and `switchyard check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from switchyard.catalog import Catalog
from switchyard.config import ConfigError, interpolate, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def problems(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "<test>", env or {})
    return info.value.problems


def sim_config(**extra: object) -> dict[str, object]:
    cfg: dict[str, object] = {
        "providers": {"sim": {"type": "simulated"}},
        "deployments": [{"name": "a", "provider": "sim"}],
    }
    cfg.update(extra)
    return cfg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "alpha"),
        ("x-${A}-y", "x-alpha-y"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${MISSING-fallback}", "fallback"),
        ("${A:+on}", "on"),
        ("${EMPTY:+on}", ""),
        ("${MISSING:+on}", ""),
        ("$$A", "$A"),
        ("no vars", "no vars"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    missing: list[str] = []
    assert interpolate(text, {"A": "alpha", "EMPTY": ""}, "k", missing) == expected
    assert missing == []


def test_missing_variable_names_the_key() -> None:
    cfg = sim_config(master_key="${NOT_SET_ANYWHERE}")
    assert problems(cfg) == [
        "master_key: environment variable NOT_SET_ANYWHERE is not set (use ${NOT_SET_ANYWHERE:-default})"
    ]


def test_interpolation_reaches_nested_keys() -> None:
    cfg = parse_config(
        {"providers": {"o": {"type": "openai", "api_key": "${KEY}", "base_url": "${URL:-http://127.0.0.1:9/v1}"}}},
        env={"KEY": "secret"},
    )
    prov = cfg.providers["o"]
    assert prov.api_key == "secret"  # type: ignore[union-attr]
    assert prov.base_url == "http://127.0.0.1:9/v1"  # type: ignore[union-attr]


def test_errors_name_the_exact_key() -> None:
    cfg = {
        "providers": {"sim": {"type": "simulated", "ttft_ms": -5}},
        "deployments": [
            {"name": "a", "provider": "sim"},
            {"name": "b", "provider": "sim"},
            {"name": "c", "provider": "sim", "price": {"input": -1}, "colour": "red"},
        ],
    }
    assert problems(cfg) == [
        "providers.sim.ttft_ms: must be >= 0",
        "deployments[2].price.input: must be >= 0",
        "deployments[2].colour: unknown key",
    ]


def test_wrong_types_and_required_keys() -> None:
    got = problems({"providers": {"o": {"type": "openai", "timeout": "soon"}}, "deployments": [{"provider": "o"}]})
    assert "providers.o.timeout: input should be a valid number, unable to parse string as a number" in got
    assert "deployments[0].name: is required" in got


def test_unknown_provider_type() -> None:
    got = problems({"providers": {"x": {"type": "telepathy"}}})
    assert len(got) == 1 and got[0].startswith("providers.x: type: 'telepathy' is not a provider type")


def test_cross_references_are_checked() -> None:
    cfg = {
        "providers": {"sim": {"type": "simulated"}},
        "deployments": [{"name": "a", "provider": "sim"}, {"name": "a", "provider": "nope"}],
        "routes": {"r": {"targets": ["a", "ghost"]}, "a": {"targets": ["a"]}},
        "keys": [{"key": "sk-0123456789", "models": ["phantom"]}],
    }
    assert problems(cfg) == [
        "deployments[1].provider: unknown provider 'nope'",
        "deployments[1].name: 'a' is already used by deployments[0]",
        "routes.r.targets[1]: unknown deployment 'ghost'",
        "routes.a: the name is already a deployment's",
        "keys[0].models[0]: unknown deployment or route 'phantom'",
    ]


def test_unknown_capability_and_bad_url() -> None:
    cfg = {
        "providers": {"o": {"type": "openai", "base_url": "ftp://example"}},
        "deployments": [{"name": "a", "provider": "o", "capabilities": ["tools", "telekinesis"]}],
    }
    got = problems(cfg)
    assert "providers.o.base_url: must be an http:// or https:// URL" in got
    assert any(p.startswith("deployments[0].capabilities: unknown capability 'telekinesis'") for p in got)


def test_disabled_provider_drops_its_deployments_and_route_targets() -> None:
    cfg = parse_config(
        {
            "providers": {"sim": {"type": "simulated"}, "o": {"type": "openai", "enabled": "${OPENAI_API_KEY:+true}"}},
            "deployments": [{"name": "real", "provider": "o"}, {"name": "fake", "provider": "sim"}],
            "routes": {"r": {"targets": ["real", "fake"]}, "only-real": {"targets": ["real"]}},
        },
        env={},
    )
    cat = Catalog.from_config(cfg)
    assert list(cat.deployments) == ["fake"]
    assert [t.name for t in cat.routes["r"].targets] == ["fake"]
    assert "only-real" not in cat.routes


def test_yaml_errors_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "not valid YAML" in info.value.problems[0] and "line" in info.value.problems[0]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read the file" in info.value.problems[0]


def test_quickstart_serves_simulated_deployments_without_keys() -> None:
    cfg = load_config(ROOT / "examples" / "quickstart.yaml", env={})
    cat = Catalog.from_config(cfg)
    assert set(cat.deployments) == {"sim-small", "sim-large", "sim-embed"}
    assert [t.name for t in cat.routes["fast"].targets] == ["sim-small"]


def test_quickstart_adds_real_providers_whose_key_is_set() -> None:
    cfg = load_config(ROOT / "examples" / "quickstart.yaml", env={"OPENAI_API_KEY": "sk-x", "GROQ_API_KEY": "g"})
    cat = Catalog.from_config(cfg)
    assert {"gpt-4.1-mini", "gpt-4.1", "text-embedding-3-small", "groq-llama-3.3-70b"} <= set(cat.deployments)
    # the simulators are standby: a route with a real deployment never mixes simulated answers in
    assert [t.name for t in cat.routes["fast"].targets] == ["gpt-4.1-mini", "groq-llama-3.3-70b"]
    assert [t.name for t in cat.routes["smart"].targets] == ["gpt-4.1"]
    assert [t.name for t in cat.routes["embed"].targets] == ["text-embedding-3-small"]
    assert "deepseek-chat" not in cat.deployments and "sim-small" in cat.deployments  # by name, still there
    cfg = load_config(ROOT / "examples" / "quickstart.yaml", env={"GROQ_API_KEY": "g"})
    cat = Catalog.from_config(cfg)
    assert [t.name for t in cat.routes["fast"].targets] == ["groq-llama-3.3-70b"]
    assert [t.name for t in cat.routes["smart"].targets] == ["sim-large"]  # no real deployment in smart: simulated


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard.cli.main", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_check_command_accepts_a_good_file() -> None:
    out = run_cli("check", "examples/quickstart.yaml")
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout


def test_check_command_names_each_bad_key(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(
        "providers:\n  sim: {type: simulated}\n"
        "deployments:\n"
        "  - {name: a, provider: sim}\n  - {name: b, provider: sim}\n"
        "  - {name: c, provider: sim, price: {input: -0.5}}\n"
    )
    out = run_cli("check", str(f))
    assert out.returncode == 2
    assert "deployments[2].price.input: must be >= 0" in out.stderr
    assert "Traceback" not in out.stderr
