"""Expressions and templates of a workflow: JMESPath, and Jinja2 in its sandbox.

Both read one context: ``{"input": <the run's input>, "steps": {id: output}}``, plus ``item`` and ``index``
inside a map. A template cannot reach Python internals (``jinja2.sandbox.SandboxedEnvironment``), and its output
is capped in size.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_STEP_REF = re.compile(r"\bsteps\s*\.\s*([A-Za-z_][A-Za-z0-9_-]*)|\bsteps\s*\[\s*['\"]([^'\"]+)['\"]\s*\]")
MAX_TEMPLATE_CHARS = 1_000_000


def referenced_steps(text: str) -> set[str]:
    """The step ids an expression or template names (``steps.X`` or ``steps['X']``)."""
    return {m.group(1) or m.group(2) for m in _STEP_REF.finditer(text)}


@functools.lru_cache(maxsize=1024)
def compile_jmespath(expr: str) -> Any:
    import jmespath

    return jmespath.compile(expr)


def search(expr: str, data: Any) -> Any:
    return compile_jmespath(expr).search(data)


@functools.cache
def _env() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
    env.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)
    return env


def parse_template(text: str) -> Any:
    return _env().parse(text)


@functools.lru_cache(maxsize=512)
def _compiled(text: str) -> Any:
    return _env().from_string(text)


def render(text: str, data: dict[str, Any]) -> str:
    out = str(_compiled(text).render(**data))
    if len(out) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"the template rendered {len(out)} characters, above {MAX_TEMPLATE_CHARS}")
    return out
