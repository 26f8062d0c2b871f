"""The policy engine: Cedar policies (``cedarpy``) over the candidate deployments of a request.

Semantics (docs/policy.md): each deployment is one authorization request. A matching ``forbid`` denies it (forbid
beats permit); otherwise a matching ``permit`` allows it; otherwise ``default`` decides (``allow``: a request no
policy speaks of passes, as it did before policies). An evaluation error denies (fails closed), naming the policy
that erred.

PII modes: a ``permit`` with ``@pii("<mode>")`` asks for that PII mode for the requests it allows; a decision's
:meth:`Decision.pii_mode` is the strictest over the deployments left (the mode applies to the whole request,
whichever of them serves it).

Speed: a decision is cached, keyed by exactly the attributes the policies read (:mod:`.reads`), so requests that
agree on those share it; only the deployments missing from the cache go to Cedar, in one batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import cedarpy

from ..pii.types import strictest
from .facts import NS, Resource, Subject, context_json
from .reads import META, WHOLE, reads_of
from .source import PolicyError, PolicyInfo, parse_policies, shipped_schema

DEFAULT_DENY = "switchyard:default-deny"  # the id that names a denial by ``default: deny``
INVALID = "switchyard:invalid-request"  # Cedar refused to build the request (a bug: fails closed)
_ERRORED = re.compile(r"policy `([^`]*)`")
CACHE_SIZE = 65536

Default = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One deployment's decision. ``ids``: the policies that determined it (the forbids that matched, the permits
    that matched, or the policies whose evaluation failed)."""

    allowed: bool
    ids: tuple[str, ...] = ()
    error: bool = False


@dataclass(slots=True)
class Decision:
    """A request's decision over its candidate deployments (in the order given)."""

    verdicts: dict[str, Verdict]
    reasons: Mapping[str, str | None] = field(default_factory=dict)  # policy id -> its @reason
    modes: Mapping[str, str] = field(default_factory=dict)  # policy id -> its @pii, for the policies with one

    @property
    def allowed(self) -> list[str]:
        return [n for n, v in self.verdicts.items() if v.allowed]

    @property
    def denied(self) -> dict[str, tuple[str, ...]]:
        return {n: v.ids for n, v in self.verdicts.items() if not v.allowed}

    @property
    def ids(self) -> tuple[str, ...]:
        """Every policy that determined some deployment's verdict, in first-seen order."""
        seen: dict[str, None] = {}
        for v in self.verdicts.values():
            for i in v.ids:
                seen[i] = None
        return tuple(seen)

    def reason_of(self, pid: str) -> str | None:
        return self.reasons.get(pid)

    def pii_mode_of(self, name: str) -> str | None:
        """The PII mode the permits that allowed deployment ``name`` ask for: their strictest ``@pii``."""
        v = self.verdicts[name]
        modes = self.modes
        return strictest(*(modes.get(i) for i in v.ids)) if modes and v.allowed else None

    def pii_mode(self, names: Iterable[str] | None = None) -> tuple[str | None, tuple[str, ...]]:
        """The strictest ``@pii`` of the permits that allowed any of ``names`` (default: every allowed deployment),
        and the ids of the policies that ask for it."""
        modes = self.modes
        if not modes:
            return None, ()
        found: dict[str, str] = {}
        for n in (names if names is not None else self.verdicts):
            v = self.verdicts[n]
            if v.allowed:
                found.update((i, modes[i]) for i in v.ids if i in modes)
        mode = strictest(*found.values())
        return mode, tuple(i for i, m in found.items() if m == mode)


@dataclass(slots=True)
class Judgement:
    """A request's decision with its tool definitions: ``denied`` maps each denied deployment to the policies that
    denied it (for the action or for some tool), ``ids`` every policy that determined something (first-seen
    order), ``tools`` each tool's ``tool_call`` decision (only when some policy concerns ``tool_call``)."""

    decision: Decision
    denied: dict[str, tuple[str, ...]]
    ids: list[str]
    tools: dict[str, Decision] = field(default_factory=dict)


class _Compiled:
    """One policy set (the config's, or the config's plus an org's) with its cache."""

    __slots__ = ("_ck", "_concerns", "_pk", "_rk", "cache", "policies", "reads", "set", "sets_pii")

    def __init__(self, policies: Sequence[PolicyInfo]) -> None:
        self.policies = tuple(policies)
        self.sets_pii = any(p.pii is not None for p in policies)
        est = {"staticPolicies": {p.id: p.est for p in policies}, "templates": {}, "templateLinks": []}
        self.set = cedarpy.PolicySet.from_json_str(json.dumps(est))
        self.reads = reads_of(p.est for p in policies)
        self.cache: dict[tuple[Any, ...], Verdict] = {}
        r = self.reads
        pk = sorted(a for a in r.principal if a not in (WHOLE, META))
        self._pk = (WHOLE in r.principal, META in r.principal, tuple(pk))
        self._rk = (WHOLE in r.resource, tuple(sorted(a for a in r.resource if a != WHOLE)))
        self._ck = None if WHOLE in r.context else tuple(sorted(a for a in r.context if a != "estimated_cost_usd"))
        self._concerns: dict[str, bool] = {}

    def concerns(self, action: str) -> bool:
        got = self._concerns.get(action)
        if got is None:
            acts = self.reads.actions
            got = self._concerns[action] = bool(self.policies) and (acts is None or action in acts)
        return got

    def principal_key(self, s: Subject) -> tuple[Any, ...]:
        whole, meta, attrs = self._pk
        return ((s.key, s.team, s.org) if whole else (), s.metadata if meta else (),
                tuple(getattr(s, a) for a in attrs))

    def resource_key(self, r: Resource) -> tuple[Any, ...]:
        whole, attrs = self._rk
        return (r.name if whole else None, *(getattr(r, a) for a in attrs))

    def context_key(self, ctx: Mapping[str, Any]) -> tuple[Any, ...]:
        attrs = self._ck
        if attrs is None:
            return tuple(sorted(ctx.items()))
        return tuple(ctx.get(a) for a in attrs)

    @property
    def reads_cost(self) -> bool:
        return "estimated_cost_usd" in self.reads.context or WHOLE in self.reads.context


class PolicyEngine:
    """The configured policies (and, per org, the org's policy set on top of them).

    ``decide(subject, action, resources, context, costs)`` returns a :class:`Decision`. ``with_org_sets`` returns
    an engine whose keys of each org also answer to that org's set."""

    def __init__(self, policies: Sequence[PolicyInfo] = (), default: Default = "allow",
                 schema: cedarpy.Schema | None = None) -> None:
        self.default = default
        self.schema = schema if schema is not None else shipped_schema()
        self._base = _Compiled(policies)
        self._orgs: dict[str, _Compiled] = {}
        self.reasons: dict[str, str | None] = {p.id: p.reason for p in policies}
        self.modes: dict[str, str] = {p.id: p.pii for p in policies if p.pii is not None}

    # --- loading ------------------------------------------------------------------------------------------

    @classmethod
    def from_files(cls, files: Iterable[str], default: Default = "allow", schema_file: str | None = None,
                   base_dir: str | Path | None = None, allow_pii: bool = True) -> PolicyEngine:
        """Load and validate the policy files (relative paths are read from ``base_dir``). Raises PolicyError.
        ``allow_pii``: whether policies may ask for a PII mode (``@pii``: the gateway has a ``pii:`` section)."""
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        schema = None
        if schema_file is not None:
            spath = base / schema_file
            try:
                schema = cedarpy.Schema.from_str(spath.read_text(encoding="utf-8"))
            except OSError as e:
                raise PolicyError(f"cannot read the schema: {e.strerror}", schema_file, 1, 1) from None
            except ValueError as e:
                raise PolicyError(f"invalid Cedar schema: {e}", schema_file, 1, 1) from None
        out: list[PolicyInfo] = []
        for name in files:
            try:
                text = (base / name).read_text(encoding="utf-8")
            except OSError as e:
                raise PolicyError(f"cannot read the policy file: {e.strerror}", name, 1, 1) from None
            out.extend(parse_policies(text, name, schema, allow_pii=allow_pii))
        _unique(out)
        return cls(out, default, schema)

    def with_org_sets(self, sets: Mapping[str, str]) -> PolicyEngine:
        """A new engine: these policies plus, for keys of each org, that org's policy set (its Cedar text). The
        org's policy ids are ``org:<org>/<@id>`` or ``org:<org>:<line>``. Raises PolicyError on an invalid set."""
        eng = PolicyEngine.__new__(PolicyEngine)
        eng.default, eng.schema, eng._base = self.default, self.schema, self._base
        eng._orgs, eng.reasons = {}, {p.id: p.reason for p in self._base.policies}
        eng.modes = {p.id: p.pii for p in self._base.policies if p.pii is not None}
        for org, text in sets.items():
            own = parse_policies(text, f"org:{org}", self.schema, id_prefix=f"org:{org}/")
            both = [*self._base.policies, *own]
            _unique(both)
            eng._orgs[org] = _Compiled(both)
            eng.reasons.update((p.id, p.reason) for p in own)
            eng.modes.update((p.id, p.pii) for p in own if p.pii is not None)
        return eng

    # --- facts --------------------------------------------------------------------------------------------

    @property
    def policies(self) -> tuple[PolicyInfo, ...]:
        return self._base.policies

    def applies(self, org: str) -> bool:
        """Whether any policy may apply to a key of ``org`` (the config's policies, or that org's set)."""
        return bool(self._base.policies) or org in self._orgs

    def concerns(self, action: str, org: str | None = None) -> bool:
        """Whether some policy may apply to ``action``: for a key of ``org`` (its org's set, or the config's), or,
        with ``org`` None, for any key (the config's policies or any org's set)."""
        if org is not None:
            return (self._orgs.get(org, self._base) if self._orgs else self._base).concerns(action)
        return any(c.concerns(action) for c in (self._base, *self._orgs.values()))

    @property
    def reads_cost(self) -> bool:
        return any(c.reads_cost for c in (self._base, *self._orgs.values()))

    def sets_pii(self, org: str) -> bool:
        """Whether some policy that applies to keys of ``org`` asks for a PII mode (``@pii``)."""
        return (self._orgs.get(org, self._base) if self._orgs else self._base).sets_pii

    # --- deciding -----------------------------------------------------------------------------------------

    def decide(self, subject: Subject, action: str, resources: Sequence[Resource], context: Mapping[str, Any],
               costs: Mapping[str, Decimal] | None = None, *, cached: bool = True) -> Decision:
        """The verdict for each resource. ``context``: the request's context without ``estimated_cost_usd``,
        which ``costs`` gives per resource name (0 if absent)."""
        comp = self._orgs.get(subject.org, self._base) if self._orgs else self._base
        zero = Decimal(0)
        verdicts: dict[str, Verdict] = {}
        if not comp.policies:
            ok = Verdict(self.default == "allow", () if self.default == "allow" else (DEFAULT_DENY,))
            return Decision({r.name: ok for r in resources}, self.reasons, self.modes)
        cache = comp.cache
        head = (action, comp.principal_key(subject), comp.context_key(context))
        with_cost = comp.reads_cost
        missing: list[tuple[Resource, tuple[Any, ...], Decimal]] = []
        for r in resources:
            cost = costs.get(r.name, zero) if costs is not None else zero
            key = (head, comp.resource_key(r), cost if with_cost else None)
            v = cache.get(key) if cached else None
            if v is None:
                missing.append((r, key, cost))
                verdicts[r.name] = Verdict(False)  # placeholder: keeps the order of ``resources``
            else:
                verdicts[r.name] = v
        if missing:
            for (r, key, _), v in zip(missing, self._evaluate(comp, subject, action, missing, context), strict=True):
                verdicts[r.name] = v
                if len(cache) >= CACHE_SIZE:
                    cache.clear()
                cache[key] = v
        return Decision(verdicts, self.reasons, self.modes)

    def judge(self, subject: Subject, action: str, resources: Sequence[Resource], context: Mapping[str, Any],
              costs: Mapping[str, Decimal] | None = None, tools: Iterable[str] = ()) -> Judgement:
        """``decide`` for ``action``, then each tool definition with ``tool_call`` (when some policy of the
        subject's org concerns it): a deployment that forbids the action or any tool is denied."""
        decision = self.decide(subject, action, resources, context, costs)
        denied = dict(decision.denied)
        ids = list(decision.ids)
        per_tool: dict[str, Decision] = {}
        if tools and self.concerns("tool_call", subject.org):
            for name in sorted(tools):
                td = per_tool[name] = self.decide(subject, "tool_call", resources, {**context, "tool": name}, costs)
                for dep, by in td.denied.items():
                    denied[dep] = (*denied.get(dep, ()), *by)
                ids.extend(i for i in td.ids if i not in ids)
        return Judgement(decision, denied, ids, per_tool)

    def _evaluate(self, comp: _Compiled, subject: Subject, action: str,
                  missing: Sequence[tuple[Resource, tuple[Any, ...], Decimal]],
                  context: Mapping[str, Any]) -> list[Verdict]:
        entities = [*subject.entities(), *(r.entity() for r, _, _ in missing)]
        act = {"type": f"{NS}::Action", "id": action}
        reqs = [{"principal": subject.uid(), "action": act, "resource": r.uid(), "context": context_json(context, c)}
                for r, _, c in missing]
        try:
            results = cedarpy.is_authorized_batch(reqs, comp.set, json.dumps(entities), self.schema)
        except Exception:
            return [Verdict(False, (INVALID,), True) for _ in missing]
        return [self._verdict(res) for res in results]

    def _verdict(self, res: cedarpy.AuthzResult) -> Verdict:
        diag = res.diagnostics
        if diag.errors:
            ids: dict[str, None] = {}
            for e in diag.errors:
                m = _ERRORED.search(e)
                ids[m.group(1) if m else INVALID] = None
            if res.decision == cedarpy.Decision.Deny:
                ids.update((i, None) for i in diag.reasons)
            return Verdict(False, tuple(sorted(ids)), True)
        if res.decision == cedarpy.Decision.Allow:
            return Verdict(True, tuple(sorted(diag.reasons)))
        if res.decision == cedarpy.Decision.Deny and diag.reasons:
            return Verdict(False, tuple(sorted(diag.reasons)))
        if res.decision == cedarpy.Decision.Deny:
            return Verdict(True) if self.default == "allow" else Verdict(False, (DEFAULT_DENY,))
        return Verdict(False, (INVALID,), True)


def _unique(policies: Sequence[PolicyInfo]) -> None:
    seen: dict[str, PolicyInfo] = {}
    for p in policies:
        if p.id in seen:
            o = seen[p.id]
            raise PolicyError(f"duplicate policy id {p.id!r} (also at {o.source}:{o.line})", p.source, p.line,
                              p.column)
        seen[p.id] = p
