"""A workflow's definition: its YAML schema, and the validation that names the exact step and field at fault.

A workflow is a DAG of steps. Each step declares the steps it reads (``needs``); the expressions and templates it
holds may name only those steps (or their ancestors), so the data flow is explicit and checked before any run::

    name: triage
    input_schema: {type: object, required: [ticket]}
    budget_usd: 0.05          # the whole run
    deadline_s: 120
    steps:
      - id: classify
        type: model            # model | tool | transform | condition | map
        model: cheap           # a deployment or a route (``auto`` included)
        messages: [{role: user, content: "Classify: {{ input.ticket }}"}]
        output_schema: {...}   # the reply must be JSON that validates; a failure is fed back, schema_retries times
      - id: answer
        needs: [classify]
        type: model            # a managed prompt (its model, unless the step names one), and a stored conversation
        prompt: {name: support, label: production, variables: {category: "steps.classify.category"}}
        conversation: "ticket-{{ input.id }}"
    output: {category: "steps.classify.category"}   # JMESPath over {input, steps}

Validation problems read ``steps[1] (answer).messages[0].content: references step 'x', which is not among its
needs``: the step's index and id, the field, and what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..state import CONVERSATION_ID
from .expressions import compile_jmespath, parse_template, referenced_steps

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
StepType = Literal["model", "tool", "transform", "condition", "map"]


class WorkflowInvalid(Exception):
    """A definition that cannot run; ``problems``: one ``where: what`` line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid workflow\n" + "\n".join(f"  {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retry(_Model):
    attempts: int = Field(1, ge=1, le=20, description="tries in all, the first included")
    backoff_s: float = Field(0.5, ge=0, le=300)
    max_backoff_s: float = Field(30.0, ge=0, le=3600)


class Message(_Model):
    role: Literal["system", "user", "assistant"]
    content: str  # a sandboxed Jinja2 template over {input, steps, item, index}


class PromptRef(_Model):
    """A managed prompt (:mod:`switchyard.prompts`), rendered by the gateway's prompt stage as for a client call."""

    name: str = Field(min_length=1)
    label: str | None = None  # neither label nor version: the label ``production``
    version: int | None = Field(None, ge=1)
    variables: dict[str, str] = Field(default_factory=dict)  # variable -> JMESPath over {input, steps, item, index}


class StepBody(_Model):
    """What a step does; a map step's ``step`` is one of these too (without an id)."""

    type: StepType
    # model
    model: str | None = None  # unset with a prompt: the prompt's version chooses it
    messages: list[Message] | None = None  # after the prompt's messages, when there is a prompt
    prompt: PromptRef | None = None
    conversation: str | None = None  # a template: the id of the stored conversation the call continues
    output_schema: dict[str, Any] | None = None
    schema_retries: int = Field(2, ge=0, le=10)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    # tool
    tool: str | None = None
    input: dict[str, str] | None = None  # field -> JMESPath expression
    # transform
    jmespath: str | None = None
    template: str | None = None
    # condition
    when: str | None = None  # JMESPath: truthy runs ``then``, otherwise ``else``
    then: list[str] | None = None
    else_: list[str] | None = Field(None, alias="else")
    # map
    over: str | None = None  # JMESPath to a list
    step: StepBody | None = None
    concurrency: int = Field(4, ge=1, le=64)
    partial: Literal["fail", "skip", "null"] = "fail"  # a failed item fails the map | is dropped | becomes null
    # every step
    retry: Retry = Field(default_factory=lambda: Retry())
    timeout_s: float | None = Field(None, gt=0)
    budget_usd: float | None = Field(None, ge=0)
    on_error: str = "fail"  # fail | continue | <the id of a fallback step>

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Step(StepBody):
    id: str = Field(pattern=STEP_ID)
    needs: list[str] = Field(default_factory=list)


class Workflow(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    version: int = Field(1, ge=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    steps: list[Step] = Field(min_length=1)
    output: dict[str, str] | str | None = None  # JMESPath (or a mapping of them) over {input, steps}
    budget_usd: float | None = Field(None, ge=0)
    deadline_s: float | None = Field(None, gt=0)

    def by_id(self) -> dict[str, Step]:
        return {s.id: s for s in self.steps}

    def fallbacks(self) -> set[str]:
        """Steps that run only as another step's ``on_error`` fallback."""
        return {s.on_error for s in self.steps if s.on_error not in ("fail", "continue")}

    def order(self) -> list[Step]:
        """The steps in a topological order (stable: the file's order among ready steps)."""
        ids = self.by_id()
        done: set[str] = set()
        out: list[Step] = []
        pending = list(self.steps)
        while pending:
            for s in pending:
                if all(n in done for n in s.needs):
                    out.append(s)
                    done.add(s.id)
                    pending.remove(s)
                    break
            else:  # pragma: no cover - validation refuses cycles
                raise WorkflowInvalid(self.name, ["steps: a cycle"])
        assert len(out) == len(ids)
        return out


class PromptInfo(NamedTuple):
    """A managed prompt's version, as validation sees it."""

    ref: str  # name@version
    model: str | None
    variables: dict[str, Any] | None  # its variables' JSON schema


class PromptMissing(NamedTuple):
    """Why a prompt reference names nothing: ``field`` is ``name``, ``label`` or ``version``."""

    field: str
    message: str


PromptLookup = Callable[[str, str | None, int | None], PromptInfo | PromptMissing]


@dataclass(frozen=True)
class Known:
    """What validation checks beyond the definition itself; None: not checked (the gateway's config and store are
    not at hand). ``tools``: the registered tools; ``prompts``: looks a prompt reference up in the store;
    ``conversations``: whether the gateway keeps conversations (a ``state:`` section)."""

    tools: set[str] | None = None
    prompts: PromptLookup | None = None
    conversations: bool | None = None


def _where(wf_steps: list[Any], loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    i = 0
    while i < len(loc):
        item = loc[i]
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
            if parts == [f"steps[{item}]"] and item < len(wf_steps) and isinstance(wf_steps[item], dict):
                sid = wf_steps[item].get("id")
                if isinstance(sid, str):
                    parts[-1] += f" ({sid})"
        else:
            parts.append(str(item))
        i += 1
    return ".".join(parts) or "<root>"


def parse_workflow(data: Any, source: str = "<workflow>", known: Known | None = None) -> Workflow:
    """The definition in ``data`` (parsed YAML), checked; :class:`WorkflowInvalid` lists every problem."""
    if not isinstance(data, dict):
        raise WorkflowInvalid(source, ["<root>: a workflow is a mapping (name, steps, ...)"])
    steps_in = data.get("steps")
    raw_steps: list[Any] = steps_in if isinstance(steps_in, list) else []
    try:
        wf = Workflow.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(x for x in err["loc"] if x not in ("function-after",))
            problems.append(f"{_where(raw_steps, loc)}: {err['msg']}")
        raise WorkflowInvalid(source, problems) from None
    problems = check_graph(wf, known)
    if problems:
        raise WorkflowInvalid(source, problems)
    return wf


def _label(i: int, s: Step) -> str:
    return f"steps[{i}] ({s.id})"


def _check_body(where: str, body: StepBody, known: Known, problems: list[str],
                refs: list[tuple[str, str]]) -> None:
    """The fields its type needs, and its expressions and templates; ``refs`` gets (field, step id) pairs."""
    need = {"model": (), "tool": ("tool",), "transform": (), "condition": ("when",),
            "map": ("over", "step")}[body.type]
    for f in need:
        if getattr(body, f) is None:
            problems.append(f"{where}.{f}: a {body.type} step needs it")
    if body.type == "model":
        _check_model(where, body, known, problems, refs)
    else:
        for f in ("prompt", "conversation"):
            if getattr(body, f) is not None:
                problems.append(f"{where}.{f}: only a model step has one")
    tools = known.tools
    if body.type == "transform" and (body.jmespath is None) == (body.template is None):
        problems.append(f"{where}.jmespath: a transform step has exactly one of jmespath and template")
    if body.type == "tool" and body.tool is not None and tools is not None and body.tool not in tools:
        problems.append(f"{where}.tool: unknown tool {body.tool!r} (tools: {', '.join(sorted(tools)) or 'none'})")
    if body.output_schema is not None:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(body.output_schema)
        except jsonschema.SchemaError as e:
            problems.append(f"{where}.output_schema: not a valid JSON schema: {e.message}")
    for i, m in enumerate(body.messages or []):
        _template(f"{where}.messages[{i}].content", m.content, problems, refs)
    if body.template is not None:
        _template(f"{where}.template", body.template, problems, refs)
    for f in ("jmespath", "when", "over"):
        expr = getattr(body, f)
        if expr is not None:
            _jmespath(f"{where}.{f}", expr, problems, refs)
    for k, expr in (body.input or {}).items():
        _jmespath(f"{where}.input.{k}", expr, problems, refs)
    if body.step is not None:
        if body.step.type in ("map", "condition"):
            problems.append(f"{where}.step.type: a map's step is a model, tool or transform step")
        _check_body(f"{where}.step", body.step, known, problems, refs)


def _check_model(where: str, body: StepBody, known: Known, problems: list[str], refs: list[tuple[str, str]]) -> None:
    """A model step: messages or a prompt, a model (its own or the prompt's), the prompt and conversation."""
    p = body.prompt
    if body.messages is None and p is None:
        problems.append(f"{where}.messages: a model step needs messages or a prompt")
    if body.model is None and p is None:
        problems.append(f"{where}.model: a model step needs it (or a prompt whose version names one)")
    if body.conversation is not None:
        _template(f"{where}.conversation", body.conversation, problems, refs)
        if "{" not in body.conversation and not CONVERSATION_ID.match(body.conversation):
            problems.append(f"{where}.conversation: not a conversation id (8 to 64 letters, digits, '_' or '-')")
        if known.conversations is False:
            problems.append(f"{where}.conversation: this gateway keeps no conversations (its config has no "
                            "state: section)")
    if p is None:
        return
    for k, expr in p.variables.items():
        _jmespath(f"{where}.prompt.variables.{k}", expr, problems, refs)
    if p.label is not None and p.version is not None:
        problems.append(f"{where}.prompt.version: give a label or a version, not both")
        return
    if known.prompts is None:
        return
    found = known.prompts(p.name, p.label, p.version)
    if isinstance(found, PromptMissing):
        problems.append(f"{where}.prompt.{found.field}: {found.message}")
        return
    if body.model is None and found.model is None:
        problems.append(f"{where}.model: neither the step nor prompt {found.ref} names a model")
    schema = found.variables or {}
    for name in schema.get("required") or []:
        if name not in p.variables:
            problems.append(f"{where}.prompt.variables: prompt {found.ref} requires the variable {name!r}")
    declared = schema.get("properties")
    if schema.get("additionalProperties") is False and isinstance(declared, dict):
        for name in p.variables:
            if name not in declared:
                problems.append(f"{where}.prompt.variables.{name}: prompt {found.ref} has no variable {name!r}")


def _template(where: str, text: str, problems: list[str], refs: list[tuple[str, str]]) -> None:
    try:
        parse_template(text)
    except Exception as e:
        problems.append(f"{where}: not a valid template: {e}")
        return
    refs.extend((where, r) for r in referenced_steps(text))


def _jmespath(where: str, expr: str, problems: list[str], refs: list[tuple[str, str]]) -> None:
    try:
        compile_jmespath(expr)
    except Exception as e:
        problems.append(f"{where}: not a valid JMESPath expression: {str(e).splitlines()[0]}")
        return
    refs.extend((where, r) for r in referenced_steps(expr))


def check_graph(wf: Workflow, known: Known | None = None) -> list[str]:
    """Duplicate ids, unknown references (needs, branches, fallbacks, tools, prompts, expressions), bad schemas,
    cycles."""
    known = known or Known()
    problems: list[str] = []
    index: dict[str, int] = {}
    for i, s in enumerate(wf.steps):
        if s.id in index:
            problems.append(f"{_label(i, s)}.id: {s.id!r} is already the id of steps[{index[s.id]}]")
        index.setdefault(s.id, i)
    if wf.input_schema is not None:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(wf.input_schema)
        except jsonschema.SchemaError as e:
            problems.append(f"input_schema: not a valid JSON schema: {e.message}")
    for i, s in enumerate(wf.steps):
        where = _label(i, s)
        for j, n in enumerate(s.needs):
            if n not in index:
                problems.append(f"{where}.needs[{j}]: unknown step {n!r}")
            elif n == s.id:
                problems.append(f"{where}.needs[{j}]: a step cannot need itself")
        for f, branch in (("then", s.then), ("else", s.else_)):
            for j, b in enumerate(branch or []):
                if b not in index:
                    problems.append(f"{where}.{f}[{j}]: unknown step {b!r}")
                elif s.id not in wf.steps[index[b]].needs:
                    problems.append(f"{where}.{f}[{j}]: step {b!r} must list {s.id!r} in its needs")
        if s.on_error not in ("fail", "continue"):
            if s.on_error not in index:
                problems.append(f"{where}.on_error: fail, continue or a step id, but {s.on_error!r} is none")
            elif s.on_error == s.id:
                problems.append(f"{where}.on_error: a step cannot be its own fallback")
        refs: list[tuple[str, str]] = []
        _check_body(where, s, known, problems, refs)
        ancestors = _ancestors(wf, s.id, index)
        for field, ref in refs:
            if ref not in index:
                problems.append(f"{field}: references unknown step {ref!r}")
            elif ref not in ancestors:
                problems.append(f"{field}: references step {ref!r}, which is not among its needs")
    cycle = _cycle(wf, index)
    if cycle:
        problems.append(f"steps: a cycle: {' -> '.join(cycle)}")
    fallbacks = wf.fallbacks()
    for i, s in enumerate(wf.steps):
        for j, n in enumerate(s.needs):
            if n in fallbacks:
                problems.append(f"{_label(i, s)}.needs[{j}]: {n!r} is a fallback step; need the step it backs")
    out_refs: list[tuple[str, str]] = []
    outputs = wf.output if isinstance(wf.output, dict) else ({"": wf.output} if wf.output else {})
    for k, expr in outputs.items():
        _jmespath(f"output.{k}" if k else "output", expr, problems, out_refs)
    for field, ref in out_refs:
        if ref not in index:
            problems.append(f"{field}: references unknown step {ref!r}")
    return problems


def _ancestors(wf: Workflow, sid: str, index: dict[str, int]) -> set[str]:
    seen: set[str] = set()
    stack = [n for n in wf.steps[index[sid]].needs if n in index]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(m for m in wf.steps[index[n]].needs if m in index)
    # a fallback sees what the step it backs sees
    for s in wf.steps:
        if s.on_error == sid and s.id in index:
            seen |= {n for n in s.needs}
    return seen


def _cycle(wf: Workflow, index: dict[str, int]) -> list[str] | None:
    color: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        path.append(n)
        for m in wf.steps[index[n]].needs:
            if m not in index:
                continue
            if color.get(m) == 1:
                return [*path[path.index(m):], m]
            if m not in color:
                found = visit(m)
                if found:
                    return found
        color[n] = 2
        path.pop()
        return None

    for s in wf.steps:
        if s.id not in color:
            found = visit(s.id)
            if found:
                return found
    return None


def load_workflow_file(path: str, known: Known | None = None) -> Workflow:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise WorkflowInvalid(path, [f"<file>: cannot read it ({e.strerror})"]) from None
    except yaml.YAMLError as e:
        raise WorkflowInvalid(path, [f"<file>: not valid YAML ({e})"]) from None
    return parse_workflow(data, path, known)
