"""Cedar policies over the request path (docs/policy.md): the shipped schema, loading with file:line:column errors,
the decision engine with its cache, and the ``Policy`` stage."""

from .engine import DEFAULT_DENY, Decision, PolicyEngine, Verdict
from .facts import Resource, Subject, base_context
from .source import PolicyError, PolicyInfo, check_policy_text, parse_policies, schema_text

__all__ = ["DEFAULT_DENY", "Decision", "PolicyEngine", "PolicyError", "PolicyInfo", "Resource", "Subject",
           "Verdict", "base_context", "check_policy_text", "parse_policies", "schema_text"]
