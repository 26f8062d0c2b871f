"""A prompt version's spec: checked when it is published, compiled once, rendered per request.

A spec is a JSON object::

    {"messages": [{"role": "system" | "user" | "assistant", "content": "<Jinja2 template>"}, ...],
     "model": "a deployment, a route or auto" | null,
     "parameters": {"temperature": 0.2, "max_tokens": 300, ...},
     "tools": [<OpenAI tool objects>] | null,
     "response_format": <an OpenAI response_format> | null,
     "variables": <a JSON schema for the variables> | null}

Templates render in Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` with :class:`~jinja2.StrictUndefined`:
attribute access to dunders (``__class__``, ``__subclasses__``, ``__globals__``, ...) is refused, and a variable
that is not given is an error, never an empty string. A syntax error is named with its message and line when the
version is published; a variable the template uses but the schema does not declare is refused then too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import InvalidRequest
from ..messages import Message, Role, TextPart

ROLES = ("system", "user", "assistant")
PARAMETERS = frozenset({"temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty",
                        "frequency_penalty", "top_k"})
SPEC_KEYS = frozenset({"messages", "model", "parameters", "tools", "response_format", "variables"})
MAX_TEMPLATE = 100_000

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class PromptError(InvalidRequest):
    """A spec or a rendering that is not valid: a 400 naming the field (``param``)."""

    code = "invalid_prompt"


def sha256(spec: Mapping[str, Any]) -> str:
    """The digest of a spec's canonical JSON (sorted keys): equal specs, equal digests."""
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Compiled:
    """A version compiled once: its templates, its variables' validator, and what it applies to a request."""

    name: str
    version: int
    templates: tuple[tuple[str, Template], ...]  # (role, template)
    validator: Any  # a jsonschema validator, or None
    model: str | None
    parameters: Mapping[str, Any]
    tools: list[Any] | None
    response_format: Mapping[str, Any] | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, variables: Mapping[str, Any]) -> list[Message]:
        """The messages, or a :class:`PromptError` naming the variable that is missing or wrong."""
        if self.validator is not None:
            errors = sorted(self.validator.iter_errors(variables), key=lambda e: list(e.absolute_path))
            if errors:
                e = errors[0]
                path = ".".join(str(p) for p in e.absolute_path)
                if not path and e.validator == "required":
                    missing = next((r for r in e.validator_value if r not in variables), "")
                    path = str(missing)
                where = f"prompt.variables.{path}" if path else "prompt.variables"
                raise PromptError(f"Prompt {self.ref}: variable {path or '(all)'!r} is not valid: {e.message}",
                                  param=where, code="invalid_prompt_variables")
        out: list[Message] = []
        for role, t in self.templates:
            try:
                text = t.render(variables)
            except UndefinedError as e:
                raise PromptError(f"Prompt {self.ref}: a variable is missing: {e.message}",
                                  param="prompt.variables", code="invalid_prompt_variables") from None
            except SecurityError as e:
                raise PromptError(f"Prompt {self.ref}: the template did something the sandbox refuses: {e}",
                                  param="prompt", code="prompt_refused") from None
            except Exception as e:  # a filter on a wrong type and the like: the caller's variables are at fault
                raise PromptError(f"Prompt {self.ref}: the variables do not render: {type(e).__name__}: {e}",
                                  param="prompt.variables", code="invalid_prompt_variables") from None
            out.append(Message(role=Role(role), parts=[TextPart(text)]))
        return out


def check_spec(spec: Any) -> dict[str, Any]:
    """The spec, checked (a :class:`PromptError` naming the field otherwise), normalized (absent keys: null)."""
    if not isinstance(spec, dict):
        raise PromptError("A prompt version must be a JSON object.", param="spec")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise PromptError(f"Unknown field {unknown[0]!r} in the prompt version.", param=unknown[0])
    msgs = spec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise PromptError("'messages' must be a non-empty list of {role, content}.", param="messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or m.get("role") not in ROLES \
                or not isinstance(m.get("content"), str) or len(m["content"]) > MAX_TEMPLATE:
            raise PromptError(f"messages[{i}] must be {{role: system|user|assistant, content: a template of at most "
                              f"{MAX_TEMPLATE} characters}}.", param=f"messages[{i}]")
    model = spec.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise PromptError("'model' must be a deployment, a route or 'auto'.", param="model")
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise PromptError("'parameters' must be an object.", param="parameters")
    bad = sorted(set(params) - PARAMETERS)
    if bad:
        raise PromptError(f"Unknown parameter {bad[0]!r} (known: {', '.join(sorted(PARAMETERS))}).",
                          param=f"parameters.{bad[0]}")
    tools = spec.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise PromptError("'tools' must be a list of tool objects.", param="tools")
    rf = spec.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema")):
        raise PromptError("'response_format' must be an object with type text, json_object or json_schema.",
                          param="response_format")
    schema = spec.get("variables")
    if schema is not None:
        import jsonschema

        if not isinstance(schema, dict):
            raise PromptError("'variables' must be a JSON schema (an object).", param="variables")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise PromptError(f"'variables' is not a valid JSON schema: {e.message}", param="variables") from None
    declared = set((schema or {}).get("properties") or {}) if schema is not None else None
    for i, m in enumerate(msgs):
        try:
            ast = _ENV.parse(m["content"])
        except TemplateSyntaxError as e:
            raise PromptError(f"messages[{i}].content: template syntax error at line {e.lineno}: {e.message}",
                              param=f"messages[{i}].content", code="template_syntax_error") from None
        if declared is not None:
            undeclared = sorted(meta.find_undeclared_variables(ast) - declared)
            if undeclared:
                raise PromptError(f"messages[{i}].content uses the variable {undeclared[0]!r}, which 'variables' "
                                  f"does not declare.", param=f"messages[{i}].content", code="undeclared_variable")
    return {"messages": msgs, "model": model, "parameters": params, "tools": tools, "response_format": rf,
            "variables": schema}


def compile_version(name: str, version: int, spec: Mapping[str, Any]) -> Compiled:
    """Compile a stored (already checked) spec once."""
    validator = None
    if spec.get("variables") is not None:
        import jsonschema

        validator = jsonschema.Draft202012Validator(spec["variables"])
    templates = tuple((m["role"], _ENV.from_string(m["content"])) for m in spec["messages"])
    return Compiled(name, version, templates, validator, spec.get("model"), dict(spec.get("parameters") or {}),
                    spec.get("tools"), spec.get("response_format"))
