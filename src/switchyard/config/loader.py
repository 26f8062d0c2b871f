"""Loading a config file: YAML, ``${VAR}`` interpolation, validation, and errors that name the exact key."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Config

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}|\$\$")


_PROVIDER_TYPES = ("openai", "anthropic", "gemini", "bedrock", "llamacpp", "simulated")


class ConfigError(Exception):
    """The config is wrong. ``problems`` lists one ``key.path: what is wrong`` line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid configuration\n" + "\n".join(f"  {p}" for p in problems))


def interpolate(text: str, env: Mapping[str, str], where: str, missing: list[str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:+word}`` and ``$$`` (a dollar)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        val = env.get(name)
        if op == ":-":
            return val if val else arg
        if op == "-":
            return val if val is not None else arg
        if op == ":+":
            return arg if val else ""
        if op == "+":
            return arg if val is not None else ""
        if val is None:
            missing.append(f"{where}: environment variable {name} is not set (use ${{{name}:-default}})")
            return ""
        return val

    return _VAR.sub(sub, text)


def _walk(node: Any, env: Mapping[str, str], path: str, missing: list[str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, path or "<root>", missing)
    if isinstance(node, dict):
        return {k: _walk(v, env, f"{path}.{k}" if path else str(k), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, env, f"{path}[{i}]", missing) for i, v in enumerate(node)]
    return node


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _PROVIDER_TYPES and out.startswith("providers.") and out.count(".") == 1:
            continue  # pydantic's discriminator tag, not a key of the file
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    typ, msg, ctx = err["type"], str(err["msg"]), err.get("ctx") or {}
    if typ == "extra_forbidden":
        return "unknown key"
    if typ == "missing":
        return "is required"
    if typ in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[typ]
        bound = next(iter(ctx.values()), "")
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"must be {sign} {bound}"
    if typ == "union_tag_invalid":
        return f"type: {ctx.get('tag')!r} is not a provider type; expected one of {ctx.get('expected_tags')}"
    if typ == "union_tag_not_found":
        return "type: is required"
    if typ == "value_error":
        return msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else msg


def parse_config(data: Any, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: must be a mapping of keys to values"])
    missing: list[str] = []
    data = _walk(data, env, "", missing)
    if missing:
        raise ConfigError(source, missing)
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        problems: list[str] = []
        for err in e.errors():
            where = _loc(tuple(err["loc"]))
            msg = _message(err)
            if err["type"] == "value_error" and "\n" in msg:  # cross-reference errors carry their own keys
                problems.extend(msg.splitlines())
            elif where and msg.split(":", 1)[0].startswith(("deployments[", "routes.", "keys[")):
                problems.append(msg)
            else:
                problems.append(f"{where}: {msg}" if where else msg)
        raise ConfigError(source, problems) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read the file: {e.strerror or e}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(str(p), [f"{where}not valid YAML ({getattr(e, 'problem', None) or e})"]) from None
    cfg = parse_config(data, str(p), env)
    store = sqlite_beside(cfg.store, p.parent)
    return cfg if store == cfg.store else cfg.model_copy(update={"store": store})


def sqlite_beside(url: str, base: Path) -> str:
    """A relative ``sqlite:///path`` made absolute against ``base`` (the config file's directory), so that
    ``serve`` and every CLI command open the same file wherever they run; other URLs are returned as they are."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return url
    path, sep, query = url[len(prefix):].partition("?")
    if not path or path == ":memory:" or path.startswith("/") or path.startswith("file:"):
        return url
    return prefix + str((base / path).resolve()) + sep + query


DEFAULT_CONFIG = "switchyard.yaml"


def default_config_path() -> str:
    """``$SWITCHYARD_CONFIG``, else ``./switchyard.yaml``: where a command finds its config without ``--config``."""
    return os.environ.get("SWITCHYARD_CONFIG") or DEFAULT_CONFIG
