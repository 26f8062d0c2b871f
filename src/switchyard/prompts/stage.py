"""The ``Prompt`` stage: a chat or messages request that names a managed prompt is rendered before routing.

A request carries the extension field ``"prompt": {"name": ..., "label": ... | "version": N, "variables": {...}}``
(the protocol parsers keep unknown top-level fields in ``ChatRequest.extra``). The stage:

1. resolves the version (a label is cached per replica for ``prompts.refresh_s``; a version is immutable and is
   compiled once: its templates and its variables' validator);
2. assigns the call to a running experiment's variant, if one targets it (:mod:`.assign`), which may serve
   another version or another model;
3. renders the version's messages in the sandbox and prepends them to the request's own messages;
4. applies the version's (or variant's) model when the request's model is ``"prompt"`` (a placeholder: the SDKs
   require a model), and its parameters, tools and response format where the request sets none;
5. names the version in ``x-switchyard-prompt`` and ``call.decisions["prompt"]``, the variant in
   ``x-switchyard-variant`` and ``call.decisions["experiment"]`` (the call record and the audit keep them).

A request without ``prompt`` costs one dict lookup. A missing or wrong variable is a 400 naming it, in the caller's
protocol. The stage sits before the key's model allow-list, which then checks the model the prompt chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..messages import ChatRequest, ResponseFormat, Tool
from ..stages import CallContext, Outcome, Stage
from .assign import Running, sticky_key
from .template import Compiled, compile_version

log = logging.getLogger("switchyard.prompts")

PLACEHOLDER = "prompt"  # the request's model when the prompt's version chooses it
MAX_COMPILED = 2048
MAX_RECENT = 20_000


def _ask(raw: Any) -> tuple[str, str | None, int | None, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise InvalidRequest("'prompt' must be an object: {name, label or version, variables}.", param="prompt")
    unknown = sorted(set(raw) - {"name", "label", "version", "variables"})
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r} in 'prompt'.", param=f"prompt.{unknown[0]}")
    name, label, version = raw.get("name"), raw.get("label"), raw.get("version")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("'prompt.name' must be the name of a managed prompt.", param="prompt.name")
    if label is not None and version is not None:
        raise InvalidRequest("Give 'prompt.label' or 'prompt.version', not both.", param="prompt.version")
    if label is not None and not isinstance(label, str):
        raise InvalidRequest("'prompt.label' must be a string.", param="prompt.label")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise InvalidRequest("'prompt.version' must be a positive integer.", param="prompt.version")
    variables = raw.get("variables", {})
    if not isinstance(variables, dict):
        raise InvalidRequest("'prompt.variables' must be an object.", param="prompt.variables")
    return name, label, version, variables


def _tool(t: Any) -> Tool:
    f = t.get("function", t) if isinstance(t, dict) else {}
    return Tool(name=str(f.get("name")), description=f.get("description"), parameters=f.get("parameters"),
                strict=f.get("strict"))


def _response_format(rf: Mapping[str, Any]) -> ResponseFormat:
    js = rf.get("json_schema") or {}
    return ResponseFormat(type=rf["type"], name=js.get("name"), schema=js.get("schema"), strict=js.get("strict"),
                          description=js.get("description"))


class PromptStage(Stage):
    """Renders managed prompts and assigns experiment variants (see the module's docstring)."""

    name = "prompts"

    def __init__(self, db: Any, refresh_s: float = 5.0, metrics: Mapping[str, Any] | None = None,
                 system_ops: Any = None) -> None:
        self.db = db
        self.refresh_s = refresh_s
        self.metrics = dict(metrics or {})
        self.system_ops = system_ops  # a callable returning Ops for the stop rules' changes (audited as system)
        self._compiled: OrderedDict[tuple[str, str, int], Compiled] = OrderedDict()
        self._labels: dict[tuple[str, str, str], tuple[float, int, dict[str, Any] | None]] = {}
        self._experiments: dict[str, list[Running]] | None = None
        self._experiments_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self.recent: OrderedDict[str, str] = OrderedDict()  # request ids (ours, the caller's) -> principal id

    # --- the hot path ---

    def before(self, call: CallContext) -> Awaitable[None] | None:
        req = call.request
        if not isinstance(req, ChatRequest):
            return None
        raw = req.extra.get("prompt")
        if raw is None:
            return None
        name, label, version, variables = _ask(raw)
        org = call.principal.org_id if call.principal is not None else None
        exps = self._experiments
        if exps is None or time.monotonic() - self._experiments_at > self.refresh_s:
            if exps is None:
                return self._slow(call, req, name, label, version, variables, org)
            self._refresh_soon()
        variant = self._variant(call, req, name, org, label, version)
        if variant is not None and variant.get("version") is not None:
            version = int(variant["version"])
        compiled = self._cached(org, name, label, version)
        if compiled is None:
            return self._slow(call, req, name, label, version, variables, org, variant, assigned=True)
        self._apply(call, req, compiled, variables, variant)
        return None

    def _variant(self, call: CallContext, req: ChatRequest, name: str, org: str | None, label: str | None,
                 version: int | None) -> dict[str, Any] | None:
        if version is not None or not self._experiments:  # a pinned version is never in an experiment
            return None
        p = call.principal
        for exp in self._experiments.get(name, ()):
            if label is not None and label != exp.spec.get("label", "production"):
                continue
            if exp.targets(org, p.team_id if p else None, p.tags if p else None):
                v = exp.assign(sticky_key(call.session, req.user, p))
                if v is not None:
                    return {**v, "experiment_id": exp.id}
        return None

    def _cached(self, org: str | None, name: str, label: str | None, version: int | None) -> Compiled | None:
        if version is None:
            hit = self._labels.get((org or "", name, label or "production"))
            if hit is None or time.monotonic() - hit[0] > self.refresh_s:
                return None
            version = hit[1]
        return self._compiled.get((org or "", name, version))

    def _apply(self, call: CallContext, req: ChatRequest, c: Compiled, variables: dict[str, Any],
               variant: dict[str, Any] | None) -> None:
        rendered = c.render(variables)
        req.messages = [*rendered, *req.messages]
        req.extra = {k: v for k, v in req.extra.items() if k != "prompt"}
        model = (variant or {}).get("model") or c.model
        if req.model == PLACEHOLDER:
            if model is None:
                raise InvalidRequest(f"Prompt {c.ref} names no model: send one in 'model'.", param="model")
            req.model = model
        for k, v in c.parameters.items():
            if k == "stop":
                if req.stop is None:
                    req.stop = [v] if isinstance(v, str) else list(v)
            elif getattr(req, k) is None:
                setattr(req, k, v)
        if req.tools is None and c.tools:
            req.tools = [_tool(t) for t in c.tools]
        if req.response_format is None and c.response_format is not None:
            req.response_format = _response_format(c.response_format)
        call.rewrite(req)
        headers = {"x-switchyard-prompt": c.ref}
        decisions: dict[str, Any] = {"prompt": c.ref}
        if variant is not None:
            headers["x-switchyard-variant"] = str(variant["name"])
            decisions["experiment"] = {"id": variant["experiment_id"], "variant": variant["name"]}
        call.headers = {**(call.headers or {}), **headers}
        call.decisions = {**(call.decisions or {}), **decisions}

    def after(self, call: CallContext, outcome: Outcome) -> None:
        if call.headers is None or "x-switchyard-prompt" not in call.headers or call.principal is None:
            return
        for rid in (call.request_id, call.client_request_id):
            if rid:
                self.recent[rid] = call.principal.id
                self.recent.move_to_end(rid)
        while len(self.recent) > MAX_RECENT:
            self.recent.popitem(last=False)

    # --- the store ---

    async def _slow(self, call: CallContext, req: ChatRequest, name: str, label: str | None, version: int | None,
                    variables: dict[str, Any], org: str | None, variant: dict[str, Any] | None = None,
                    assigned: bool = False) -> None:
        if self._experiments is None:
            await self.refresh()
        if not assigned:
            variant = self._variant(call, req, name, org, label, version)
            if variant is not None and variant.get("version") is not None:
                version = int(variant["version"])
        compiled = self._cached(org, name, label, version)
        if compiled is None:
            compiled = await self._load(org, name, label, version)
        self._apply(call, req, compiled, variables, variant)

    async def _load(self, org: str | None, name: str, label: str | None, version: int | None) -> Compiled:
        from . import registry

        def read() -> tuple[int, dict[str, Any]] | None:
            with self.db.read() as conn:
                return registry.resolve(conn, org, name, label, version)

        found = await self.db.run(read)
        if found is None:
            what = f"version {version}" if version is not None else f"label {label or 'production'!r}"
            raise NotFound(f"No managed prompt {name!r} with {what} is visible to this key.", param="prompt.name",
                           code="prompt_not_found")
        v, spec = found
        if version is None:
            self._labels[(org or "", name, label or "production")] = (time.monotonic(), v, None)
        key = (org or "", name, v)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = compile_version(name, v, spec)
            while len(self._compiled) > MAX_COMPILED:
                self._compiled.popitem(last=False)
        return compiled

    def invalidate(self) -> None:
        """A label moved or an experiment changed in this process: read them again on the next request."""
        self._labels.clear()
        self._experiments = None

    def _refresh_soon(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._experiments_at = time.monotonic()  # one refresh per period, whoever asks
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh())

    async def refresh(self) -> None:
        """Read the running experiments (and their bandits' allocations); apply the stop rules; match pending
        feedback. Labels expire on their own."""
        from . import experiments
        from .report import check_stop_rules, match_pending

        def work() -> dict[str, list[Running]]:
            if self.system_ops is not None:
                with self.db.write() as conn:
                    match_pending(conn)
                    check_stop_rules(conn, self.system_ops(), self.metrics)
            with self.db.read() as conn:
                return experiments.running(conn, self.metrics)

        try:
            fresh = await self.db.run(work)
        except Exception:
            log.exception("could not read the running experiments; keeping the last view")
            fresh = self._experiments or {}
        old = self._experiments or {}
        for name, runs in fresh.items():  # the bandit's remembered assignments survive a refresh
            for r in runs:
                prev = next((o for o in old.get(name, ()) if o.id == r.id), None)
                if prev is not None:
                    r.remembered = prev.remembered
        self._experiments = fresh
        self._experiments_at = time.monotonic()
        with contextlib.suppress(Exception):
            self._labels = {k: v for k, v in self._labels.items() if time.monotonic() - v[0] <= self.refresh_s}
