"""The policy engine without HTTP: load errors with file, line and column; the semantics (forbid beats permit,
default allow and deny, failing closed); and the decision cache against uncached decisions on random inputs."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from switchyard.config import ConfigError, parse_config
from switchyard.policy import (
    DEFAULT_DENY,
    PolicyEngine,
    PolicyError,
    Resource,
    Subject,
    base_context,
    check_policy_text,
    parse_policies,
)
from switchyard.server.factory import build_gateway

D = [Resource("a", region="au", zdr=True, tags=frozenset({"small"})), Resource("b", region="us")]


def engine(text: str, default: str = "allow") -> PolicyEngine:
    return PolicyEngine(parse_policies(text, "p.cedar"), default)  # type: ignore[arg-type]


def test_a_parse_error_names_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "ok.cedar").write_text('permit(principal, action, resource);\n')
    (tmp_path / "bad.cedar").write_text('// residency\n\npermit(principal, action, resource)\n  when { x == };\n')
    with pytest.raises(PolicyError) as e:
        PolicyEngine.from_files(["ok.cedar", "bad.cedar"], base_dir=tmp_path)
    assert (e.value.source, e.value.line, e.value.column) == ("bad.cedar", 4, 16)
    assert str(e.value) == "bad.cedar:4:16: unexpected token `}`"


def test_a_schema_error_names_the_attribute_position() -> None:
    text = ('permit(principal, action, resource);\n\nforbid(principal, action, resource)\n'
            '  when { resource.regoin == "au" };')
    with pytest.raises(PolicyError) as e:
        check_policy_text(text, "org:acme")
    assert (e.value.line, e.value.column) == (4, 19)
    assert "regoin" in e.value.message


def test_duplicate_ids_and_unknown_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="duplicate policy id 'x'"):
        check_policy_text('@id("x") permit(principal, action, resource);\n'
                          '@id("x") permit(principal, action, resource);', "t")
    with pytest.raises(PolicyError, match="cannot read"):
        PolicyEngine.from_files(["nope.cedar"], base_dir=tmp_path)


def test_switchyard_check_and_the_factory_report_a_bad_policy(tmp_path: Path) -> None:
    (tmp_path / "bad.cedar").write_text('forbid(principal, action, resource) when { context.nope };')
    cfg = parse_config({"policies": {"files": [str(tmp_path / "bad.cedar")]}}, "<t>", {})
    with pytest.raises(ConfigError) as e:
        build_gateway(cfg)
    assert "bad.cedar:1:" in str(e.value) and "nope" in str(e.value)
    from click.testing import CliRunner

    from switchyard.cli.main import main

    (tmp_path / "c.yaml").write_text(f"policies:\n  files: [{tmp_path / 'bad.cedar'}]\n")
    r = CliRunner().invoke(main, ["check", str(tmp_path / "c.yaml")])
    assert r.exit_code == 2 and "bad.cedar:1:" in r.output


def test_forbid_beats_permit() -> None:
    e = engine('permit(principal, action, resource);\n@id("no-us") forbid(principal, action, resource) '
               'when { resource.region == "us" };')
    d = e.decide(Subject("k"), "chat", D, base_context())
    assert d.allowed == ["a"] and d.denied == {"b": ("no-us",)}


def test_default_allow_and_default_deny() -> None:
    text = '@id("p") permit(principal, action, resource) when { resource.zdr };'
    assert engine(text).decide(Subject("k"), "chat", D, base_context()).allowed == ["a", "b"]
    d = engine(text, "deny").decide(Subject("k"), "chat", D, base_context())
    assert d.allowed == ["a"] and d.denied == {"b": (DEFAULT_DENY,)} and d.verdicts["a"].ids == ("p",)
    assert PolicyEngine([], "deny").decide(Subject("k"), "chat", D, base_context()).allowed == []


def test_an_evaluation_error_fails_closed() -> None:
    e = engine('permit(principal, action, resource);\n'
               '@id("boom") forbid(principal, action, resource)\n'
               'when { context.prompt_tokens * 9223372036854775807 > 1 };')
    d = e.decide(Subject("k"), "chat", D, base_context(prompt_tokens=2))
    assert d.allowed == [] and d.denied == {"a": ("boom",), "b": ("boom",)} and d.verdicts["a"].error


def test_org_sets_apply_only_to_their_org() -> None:
    e = engine("").with_org_sets({"acme": '@id("no-us") forbid(principal, action, resource) '
                                           'when { resource.region == "us" };'})
    assert e.decide(Subject("k", org="acme"), "chat", D, base_context()).denied == {"b": ("org:acme/no-us",)}
    assert e.decide(Subject("k", org="other"), "chat", D, base_context()).allowed == ["a", "b"]


POLICIES = '''
forbid(principal, action, resource) when { context.data_class == "confidential" && resource.region != "au" };
forbid(principal in Switchyard::Team::"interns", action, resource) unless { resource.tags.contains("small") };
forbid(principal, action, resource) when { context.estimated_cost_usd.greaterThan(decimal("2.0")) };
forbid(principal, action == Switchyard::Action::"tool_call", resource) when { context.hour < 9 || context.hour >= 17 };
permit(principal, action, resource) when { principal.roles.contains("admin") || principal.hasTag("vip") };
forbid(principal, action, resource) when { principal.hasTag("tier") && principal.getTag("tier") == "free" &&
  !resource.zdr && context.tools.contains("web") };
permit(principal, action, resource) when { context.pii.isEmpty() && resource.provider == "p1" };
'''


@pytest.mark.parametrize("default", ["allow", "deny"])
def test_cached_decisions_equal_uncached_ones(default: str) -> None:
    rng = random.Random(13)
    e = engine(POLICIES, default)
    regions, teams = ["au", "us", "eu"], ["", "interns", "eng"]
    res = [Resource(f"d{i}", provider=rng.choice(["p1", "p2"]), region=rng.choice(regions), zdr=rng.random() < 0.5,
                    tags=frozenset(rng.sample(["small", "big", "fast"], rng.randint(0, 2)))) for i in range(6)]
    for _ in range(400):
        s = Subject(rng.choice(["k1", "k2", "k3"]), org=rng.choice(["", "o1"]), team=rng.choice(teams),
                    roles=frozenset(rng.sample(["admin", "member"], rng.randint(0, 1))),
                    metadata=tuple(sorted(rng.sample([("tier", "free"), ("vip", "1"), ("tier", "paid")][:2], 1))))
        ctx = base_context(data_class=rng.choice(["public", "confidential"]), hour=rng.randint(0, 23),
                           pii=frozenset(rng.sample(["EMAIL"], rng.randint(0, 1))),
                           tools=frozenset(rng.sample(["web", "calc"], rng.randint(0, 2))))
        action = rng.choice(["chat", "embed", "tool_call"])
        if action == "tool_call":
            ctx["tool"] = rng.choice(["web", "calc"])
        costs = {r.name: Decimal(rng.choice(["0.5000", "2.0000", "3.5000"])) for r in res}
        cands = rng.sample(res, rng.randint(1, len(res)))
        got = e.decide(s, action, cands, ctx, costs)
        want = e.decide(s, action, cands, ctx, costs, cached=False)
        assert got.verdicts == want.verdicts
    assert len(e._base.cache) < 400 * 6  # the cache was used: keys are shared


# --- @pii: the PII mode a permit asks for ------------------------------------------------------------------------

MODES = '''
@id("mask-all") @pii("mask") permit(principal, action, resource);
@id("redact-us") @pii("redact") permit(principal, action, resource) when { resource.region == "us" };
@id("no-us-for-interns") forbid(principal in Switchyard::Team::"interns", action, resource)
  when { resource.region == "us" };
@id("detect-au") @pii("detect") permit(principal, action, resource) when { resource.region == "au" };
'''


def test_the_strictest_pii_mode_of_the_deployments_left_wins() -> None:
    e = engine(MODES)
    d = e.decide(Subject("k"), "chat", D, base_context())
    assert d.pii_mode() == ("redact", ("redact-us",))  # b (us) is still a candidate: redact beats mask
    assert d.pii_mode(["a"]) == ("mask", ("mask-all",)) and d.pii_mode_of("a") == "mask"
    assert d.pii_mode_of("b") == "redact"
    interns = e.decide(Subject("k", team="interns"), "chat", D, base_context())
    assert interns.allowed == ["a"] and interns.pii_mode() == ("mask", ("mask-all",))  # a forbidden one asks nothing
    assert engine('permit(principal, action, resource);').decide(Subject("k"), "chat", D, base_context(),
                                                                ).pii_mode() == (None, ())
    assert e.sets_pii("") and not engine("").sets_pii("")
    org = engine("").with_org_sets({"acme": '@id("m") @pii("block") permit(principal, action, resource);'})
    assert org.sets_pii("acme") and not org.sets_pii("other")
    assert org.decide(Subject("k", org="acme"), "chat", D, base_context()).pii_mode() == ("block", ("org:acme/m",))


@pytest.mark.parametrize(("text", "message"), [
    ('@pii("scramble") permit(principal, action, resource);', "unknown PII mode 'scramble' in @pii: expected one "
                                                              "of detect, mask, redact, block"),
    ('@pii("off") permit(principal, action, resource);', "a policy may raise the mode, never lower it"),
    ('@pii("mask") forbid(principal, action, resource);', "@pii applies to permit policies"),
])
def test_a_bad_pii_annotation_names_its_position(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as e:
        check_policy_text('permit(principal, action, resource);\n\n' + text, "org:acme")
    assert (e.value.line, e.value.column) == (3, 1) and message in e.value.message


def test_pii_annotations_need_the_configs_pii_section(tmp_path: Path) -> None:
    (tmp_path / "p.cedar").write_text('permit(principal, action, resource);\n@pii("mask")\n'
                                      'permit(principal, action, resource);')
    cfg = parse_config({"policies": {"files": [str(tmp_path / "p.cedar")]}}, "<t>", {})
    with pytest.raises(ConfigError) as e:
        build_gateway(cfg)
    assert "p.cedar:2:1: @pii needs the gateway's `pii:` section" in str(e.value)
    with pytest.raises(PolicyError, match="needs the gateway's `pii:` section"):
        check_policy_text('@pii("mask") permit(principal, action, resource);', "org:acme", allow_pii=False)
    with_pii = parse_config({"policies": {"files": [str(tmp_path / "p.cedar")]}, "pii": {"mode": "off"}}, "<t>", {})
    names = build_gateway(with_pii).chain.describe()
    assert names.index("PII") < names.index("Policy") < names.index("PII mode")  # scan, decide, apply
