"""Workflow definitions: ``switchyard workflow validate`` names the exact step and field of every problem; a
gateway whose config names an invalid workflow does not start; without ``workflows:`` DBOS is never imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from switchyard.cli.main import main
from switchyard.config import ConfigError, parse_config
from switchyard.server.factory import build_gateway
from switchyard.workflows.definition import WorkflowInvalid, parse_workflow


def _validate(tmp_path: Path, wf: Any, *extra: str) -> tuple[int, str]:
    path = tmp_path / "wf.yaml"
    path.write_text(wf if isinstance(wf, str) else yaml.safe_dump(wf))
    result = CliRunner().invoke(main, ["workflow", "validate", str(path), *extra])
    return result.exit_code, result.output


def _model(sid: str, text: str = "hi", **kw: Any) -> dict[str, Any]:
    return {"id": sid, "type": "model", "model": "m", "messages": [{"role": "user", "content": text}], **kw}


@pytest.mark.parametrize(("steps", "problem"), [
    ([_model("a", needs=["b"]), _model("b", needs=["a"])], "steps: a cycle: a -> b -> a"),
    ([_model("a", needs=["nope"])], "steps[0] (a).needs[0]: unknown step 'nope'"),
    ([_model("a"), _model("b", "{{ steps.a }}")],
     "steps[1] (b).messages[0].content: references step 'a', which is not among its needs"),
    ([_model("a", "{{ steps.ghost.x }}")], "steps[0] (a).messages[0].content: references unknown step 'ghost'"),
    ([_model("a", output_schema={"type": "strin"})], "steps[0] (a).output_schema: not a valid JSON schema"),
    ([_model("a", "{% if %}")], "steps[0] (a).messages[0].content: not a valid template"),
    ([{"id": "a", "type": "transform", "jmespath": "foo[", "template": "x"}],
     "steps[0] (a).jmespath: a transform step has exactly one of jmespath and template"),
    ([{"id": "a", "type": "transform", "jmespath": "foo["}], "steps[0] (a).jmespath: not a valid JMESPath"),
    ([_model("a", on_error="ghost")], "steps[0] (a).on_error: fail, continue or a step id, but 'ghost' is none"),
    ([{"id": "c", "type": "condition", "when": "`true`", "then": ["x"]}, _model("x")],
     "steps[0] (c).then[0]: step 'x' must list 'c' in its needs"),
    ([{"id": "m", "type": "map", "over": "input.xs", "step": {"type": "map", "over": "x", "step": {
        "type": "transform", "jmespath": "x"}}}], "steps[0] (m).step.type: a map's step is a model, tool or"),
    ([_model("a"), _model("a")], "steps[1] (a).id: 'a' is already the id of steps[0]"),
    ([{"id": "a", "type": "model"}], "steps[0] (a).model: a model step needs it"),
    ([{"id": "a", "type": "modle"}], "steps[0] (a).type: Input should be 'model'"),
    ([_model("a", retry={"attempts": 0})], "steps[0] (a).retry.attempts: Input should be greater than or equal to 1"),
    ([{"id": "a", "type": "model", "model": "m"}], "steps[0] (a).messages: a model step needs messages or a prompt"),
    ([{"id": "a", "type": "transform", "jmespath": "input", "prompt": {"name": "p"}}],
     "steps[0] (a).prompt: only a model step has one"),
    ([{"id": "a", "type": "model", "prompt": {"name": "p", "label": "x", "version": 2}}],
     "steps[0] (a).prompt.version: give a label or a version, not both"),
    ([_model("a"), {"id": "b", "type": "model", "prompt": {"name": "p", "variables": {"v": "steps.a"}}}],
     "steps[1] (b).prompt.variables.v: references step 'a', which is not among its needs"),
    ([{"id": "a", "type": "model", "prompt": {"name": "p", "variables": {"v": "input.["}}}],
     "steps[0] (a).prompt.variables.v: not a valid JMESPath"),
    ([{"id": "a", "type": "model", "prompt": {"name": "p", "colour": "red"}}],
     "steps[0] (a).prompt.colour: Extra inputs are not permitted"),
    ([_model("a", conversation="short")], "steps[0] (a).conversation: not a conversation id"),
    ([_model("a"), _model("b", conversation="c-{{ steps.a }}-xyz")],
     "steps[1] (b).conversation: references step 'a', which is not among its needs"),
])
def test_validate_names_the_step_and_field(tmp_path: Path, steps: list[dict[str, Any]], problem: str) -> None:
    code, out = _validate(tmp_path, {"name": "w", "steps": steps})
    assert code == 2, out
    assert problem in out, out


def test_validate_checks_tool_names_against_a_config_and_accepts_a_good_file(tmp_path: Path) -> None:
    wf = {"name": "w", "steps": [{"id": "t", "type": "tool", "tool": "lookup", "input": {"q": "input.q"}},
                                 _model("s", "{{ steps.t }}", needs=["t"])]}
    code, out = _validate(tmp_path, wf)
    assert code == 0 and "workflow 'w' version 1 is valid (2 steps: t -> s)" in out
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({"workflows": {"tools": {"search": {"url": "https://example.com/s"}}}}))
    code, out = _validate(tmp_path, wf, "--config", str(cfg))
    assert code == 2 and "steps[0] (t).tool: unknown tool 'lookup' (tools: search)" in out
    code, out = _validate(tmp_path, "name: [unclosed")
    assert code == 2 and "not valid YAML" in out


def test_the_example_is_valid_and_check_validates_workflow_files(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1] / "examples" / "workflows"
    result = CliRunner().invoke(main, ["workflow", "validate", str(root / "triage.yaml"), "--config",
                                       str(root / "gateway.yaml")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["check", str(root / "gateway.yaml")])
    assert result.exit_code == 0 and "1 workflows" in result.output, result.output
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"name": "w", "steps": [
        {"id": "t", "type": "tool", "tool": "missing"}]}))
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump({"workflows": {"files": ["w.yaml"]}}))
    result = CliRunner().invoke(main, ["check", str(tmp_path / "gw.yaml")])
    assert result.exit_code == 2 and "steps[0] (t).tool: unknown tool 'missing'" in result.output


def test_a_gateway_with_an_invalid_workflow_file_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "bad", "steps": [_model("a", needs=["a"])]}))
    cfg = parse_config({"workflows": {"files": [str(tmp_path / "bad.yaml")]}}, "<test>", {})
    with pytest.raises(ConfigError) as e:
        build_gateway(cfg, config_path=str(tmp_path / "gw.yaml"))
    assert any("steps[0] (a).needs[0]: a step cannot need itself" in p for p in e.value.problems)


def test_tool_config_schema_is_checked() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"workflows": {"tools": {"t": {"url": "https://x.example", "input_schema": {"type": 5}}}}},
                     "<test>", {})
    assert any("workflows.tools.t.input_schema" in p and "not a valid JSON schema" in p for p in e.value.problems)


def test_the_lease_outlasts_two_touches() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"workflows": {"recovery_interval_s": 5, "lease_s": 8}}, "<test>", {})
    assert any("lease_s must be at least twice recovery_interval_s" in p for p in e.value.problems), e.value.problems


def test_a_conversation_on_a_gateway_without_state_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"name": "c", "steps": [_model("a", conversation="conv-1234")]}))
    cfg = parse_config({"workflows": {"files": [str(tmp_path / "c.yaml")]}}, "<test>", {})
    with pytest.raises(ConfigError) as e:
        build_gateway(cfg, config_path=str(tmp_path / "gw.yaml"))
    assert any("steps[0] (a).conversation: this gateway keeps no conversations" in p for p in e.value.problems)


def test_parse_workflow_rejects_a_non_mapping() -> None:
    with pytest.raises(WorkflowInvalid) as e:
        parse_workflow(["a"])
    assert e.value.problems == ["<root>: a workflow is a mapping (name, steps, ...)"]


def test_a_gateway_without_workflows_never_imports_dbos() -> None:
    code = ("import sys\nfrom switchyard.config import parse_config\nfrom switchyard.server.factory import build\n"
            "app = build(parse_config({'providers': {'s': {'type': 'simulated'}}, 'deployments': "
            "[{'name': 'd', 'provider': 's'}]}, '<t>', {}))\n"
            "assert app.state.gateway.workflows is None\n"
            "bad = [m for m in ('dbos', 'switchyard.workflows', 'jmespath', 'jsonschema') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
