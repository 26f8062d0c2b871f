"""Cedar policies over the request path (docs/policy.md): the shipped schema, loading with file:line:column errors,
the decision engine with its cache, and the ``Policy`` stage.

The names below are imported on first use, so that importing a Cedar-free module of this package
(:mod:`.explain`, whose models the admin API declares at start-up) does not load Cedar."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import DEFAULT_DENY, Decision, Judgement, PolicyEngine, Verdict
    from .facts import Resource, Subject, base_context
    from .source import PolicyError, PolicyInfo, check_policy_text, parse_policies, schema_text

_WHERE = {"DEFAULT_DENY": "engine", "Decision": "engine", "Judgement": "engine", "PolicyEngine": "engine",
          "Verdict": "engine", "Resource": "facts", "Subject": "facts", "base_context": "facts",
          "PolicyError": "source", "PolicyInfo": "source", "check_policy_text": "source", "parse_policies": "source",
          "schema_text": "source"}

__all__ = ["DEFAULT_DENY", "Decision", "Judgement", "PolicyEngine", "PolicyError", "PolicyInfo", "Resource",
           "Subject", "Verdict", "base_context", "check_policy_text", "parse_policies", "schema_text"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
