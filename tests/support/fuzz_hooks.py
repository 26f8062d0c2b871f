"""Schemathesis hooks for tests/test_fuzz_contract.py, loaded by the ``schemathesis`` CLI through
``SCHEMATHESIS_HOOKS`` (a file path, so this module is imported by the CLI, never by pytest).

One extra check: a request that the OpenAPI document allows is never refused *for its shape*. Schemathesis's own
``positive_data_acceptance`` would demand a 2xx for every schema-valid request, but the gateway refuses some for
reasons no schema can say (a model that lacks a capability, a parameter the provider cannot honour, an object id
that does not exist, a role that may not act); those answers name other codes. A 400 that blames the request's
form (a wrong type, a missing field, a value out of range) on a schema-valid request means the document and the
parser disagree, which is what this check catches.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# The codes (OpenAI-shaped errors) and messages (Anthropic-shaped errors carry no code) of a request refused for
# its form, as protocols/validate.py and server/admin/api.py (validation_error) word them. A missing field counts
# only when the schema requires it ("Field required", "Missing required parameter"): a conditional requirement
# ("a team_admin needs a team_id") is a rule the document states in words. A null refused where the document
# says the field is nullable ("tags cannot be null") is a shape mismatch too.
SHAPE_CODES = frozenset({"invalid_type", "unknown_parameter", "invalid_json", "empty_body"})
SHAPE_WORDS = ("Invalid type for", "Missing required parameter", "Field required", "cannot be null")


def _shape_error(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    err = body["error"]
    code, message = err.get("code"), str(err.get("message", ""))
    if code in SHAPE_CODES or any(w in message for w in SHAPE_WORDS):
        return message
    return None


@schemathesis.check
def schema_valid_shape_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        body = response.json()
    except Exception:
        return None
    message = _shape_error(body)
    if message is not None:
        raise AssertionError(f"A request that the document allows was refused for its shape: {message}")
    return None
