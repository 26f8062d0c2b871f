"""The ``Prompt`` stage: a chat, messages or responses request that names a managed prompt is rendered before
routing, and a request joins the running experiment that targets it.

A request carries the extension field ``"prompt": {"name": ..., "label": ... | "version": N, "variables": {...}}``
(the protocol parsers keep unknown top-level fields in ``ChatRequest.extra``). On the Responses API, ``prompt`` is
also OpenAI's own parameter, ``{"id", "version", "variables"}`` (a prompt stored at OpenAI): an object with ``id``
is left alone, for an ``api: responses`` deployment to receive as sent (any other provider refuses it with a 400
naming ``prompt``); on chat and messages it is a 400. An object with both ``name`` and ``id`` is a 400.

For a managed prompt the stage:

1. resolves the version (a label is cached per replica for ``prompts.refresh_s``; a version is immutable and is
   compiled once: its templates and its variables' validator);
2. assigns the call to a running experiment's variant, if one targets it (:mod:`.assign`), which may serve
   another version or another model;
3. renders the version's messages in the sandbox and prepends them to the request's own messages;
4. applies the variant's model (it wins: the experiment is the operator's), else the version's model when the
   request's model is ``"prompt"`` (a placeholder: the SDKs require a model), and the version's parameters, tools
   and response format where the request sets none;
5. names the version in ``x-switchyard-prompt`` and ``call.decisions["prompt"]``, the variant in
   ``x-switchyard-variant`` and ``call.decisions["experiment"]`` (the call record and the audit keep them).

A call that no prompt experiment took may join an experiment on its *model* (:mod:`.experiments`): a request for
that model name (after its managed prompt, if any, chose the model), from the experiment's audience, whose key may
use every model of the experiment. Its variant's model replaces the request's; a variant that serves a prompt
version renders it (without variables) into a request that names no managed prompt of its own.

A request without ``prompt`` costs a dict lookup and a clock read while no experiment on a model runs, and never
waits on the store (but for the first call after a change through this replica's admin API): the running
experiments are read in the background at start and every ``prompts.refresh_s`` (one indexed read when none
runs), so an experiment on a model takes calls from its first read on. A
missing or wrong variable is a 400 naming it, in the caller's protocol. The stage sits before the key's model
allow-list, which then checks the model the prompt chose.
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
from ..messages import WIRE_OPENAI_RESPONSES, ChatRequest, ResponseFormat, Tool
from ..stages import CallContext, Outcome, Stage
from .assign import PLACEHOLDER, Running, sticky_key
from .template import Compiled, compile_version

log = logging.getLogger("switchyard.prompts")

MAX_COMPILED = 2048
MAX_RECENT = 20_000
CLOSE_WAIT_S = 5.0  # at shutdown, for a read of the experiments under way


Variant = tuple[dict[str, Any], Running]  # the variant (with its experiment's id), and its experiment


def _ask(raw: Any, wire: str) -> tuple[str, str | None, int | None, dict[str, Any]] | None:
    """The managed prompt a request names, or None for OpenAI's own stored prompt on the Responses API."""
    if not isinstance(raw, dict):
        raise InvalidRequest("'prompt' must be an object: {name, label or version, variables}.", param="prompt")
    if "id" in raw:
        if "name" in raw:
            raise InvalidRequest("'prompt' names a managed prompt ('name') or OpenAI's stored prompt ('id'), not "
                                 "both.", param="prompt.id")
        if wire == WIRE_OPENAI_RESPONSES:
            return None  # OpenAI's: an api: responses deployment gets it as sent
        raise InvalidRequest("'prompt.id' names a prompt stored at OpenAI, which only the Responses API takes; "
                             "name a managed prompt with 'prompt.name'.", param="prompt.id")
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
        # the running experiments by what they split: ("prompt", name) or ("model", name)
        self._experiments: dict[tuple[str, str], list[Running]] | None = None
        self._on_models = False  # whether any of them splits a model
        self._generation = 0  # bumped by a change in this process: a read begun before it is not kept
        self._experiments_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._closed = False
        self.recent: OrderedDict[str, str] = OrderedDict()  # request ids (ours, the caller's) -> principal id

    # --- the hot path ---

    def before(self, call: CallContext) -> Awaitable[None] | None:
        req = call.request
        if not isinstance(req, ChatRequest):
            return None
        raw = req.extra.get("prompt")
        ask = _ask(raw, req.wire) if raw is not None else None
        exps = self._experiments
        if exps is None:  # not read yet (since start, or since a change through this replica)
            if ask is not None or self._generation:  # a prompt needs the store anyway; a change here just wrote
                return self._slow(call, req, ask)
            self._refresh_soon()  # at start a call without a prompt never waits on the store: in no experiment
            return None
        if time.monotonic() - self._experiments_at > self.refresh_s:
            self._refresh_soon()
        if ask is None:  # no managed prompt: an experiment on the request's model, if one runs
            if not self._on_models:
                return None
            picked = self._on_model(call, req, prompted=raw is not None)
            return self._serve(call, req, picked) if picked is not None else None
        name, label, version, variables = ask
        org = call.principal.org_id if call.principal is not None else None
        picked = self._variant(call, req, name, org, label, version)
        if picked is not None and picked[0].get("version") is not None:
            version = int(picked[0]["version"])
        compiled = self._cached(org, name, label, version)
        if compiled is None:
            return self._slow(call, req, ask, picked, assigned=True)
        self._apply(call, req, compiled, variables, picked)
        return None

    def _variant(self, call: CallContext, req: ChatRequest, name: str, org: str | None, label: str | None,
                 version: int | None) -> Variant | None:
        if version is not None or not self._experiments:  # a pinned version is never in an experiment
            return None
        p = call.principal
        for exp in self._experiments.get(("prompt", name), ()):
            if label is not None and label != exp.spec.get("label", "production"):
                continue
            if exp.targets(org, p.team_id if p else None, p.tags if p else None):
                v = exp.assign(sticky_key(call.session, req.user, p))
                if v is not None:
                    return {**v, "experiment_id": exp.id}, exp
        return None

    def _on_model(self, call: CallContext, req: ChatRequest, prompted: bool) -> Variant | None:
        """The variant of a running experiment on the request's model, if the call is in its audience (a call that
        names a prompt of its own joins only one whose variants serve no prompt version)."""
        if not self._experiments:
            return None
        p = call.principal
        for exp in self._experiments.get(("model", req.model), ()):
            if prompted and exp.renders:
                continue
            if not exp.targets(p.org_id if p else None, p.team_id if p else None, p.tags if p else None):
                continue
            if p is not None and not all(p.may_use(m) for m in exp.models()):
                continue  # a key that may not use every variant's model is not in the audience
            v = exp.assign(sticky_key(call.session, req.user, p))
            if v is not None:
                return {**v, "experiment_id": exp.id}, exp
        return None

    def _serve(self, call: CallContext, req: ChatRequest, picked: Variant) -> Awaitable[None] | None:
        """A call without a managed prompt, in an experiment on its model: the variant's version (rendered
        without variables), its model, or both."""
        variant, exp = picked
        if variant.get("version") is None or exp.prompt is None:
            if variant.get("model"):
                req.model = str(variant["model"])  # the body as sent stays (raw): only the model changes
            self._mark(call, None, picked)
            return None
        compiled = self._compiled.get((exp.org_id or "", exp.prompt, int(variant["version"])))
        if compiled is None:
            return self._render_variant(call, req, picked)
        self._apply(call, req, compiled, {}, picked)
        return None

    async def _render_variant(self, call: CallContext, req: ChatRequest, picked: Variant) -> None:
        variant, exp = picked
        assert exp.prompt is not None
        compiled = await self._load(exp.org_id, exp.prompt, None, int(variant["version"]))
        self._apply(call, req, compiled, {}, picked)

    def _cached(self, org: str | None, name: str, label: str | None, version: int | None) -> Compiled | None:
        if version is None:
            hit = self._labels.get((org or "", name, label or "production"))
            if hit is None or time.monotonic() - hit[0] > self.refresh_s:
                return None
            version = hit[1]
        return self._compiled.get((org or "", name, version))

    def _apply(self, call: CallContext, req: ChatRequest, c: Compiled, variables: dict[str, Any],
               picked: Variant | None) -> None:
        rendered = c.render(variables)
        req.messages = [*rendered, *req.messages]
        req.extra = {k: v for k, v in req.extra.items() if k != "prompt"}
        variant = picked[0] if picked is not None else None
        if variant is not None and variant.get("model"):
            req.model = str(variant["model"])  # the experiment's choice wins over the request's and the version's
        elif req.model == PLACEHOLDER:
            if c.model is None:
                raise InvalidRequest(f"Prompt {c.ref} names no model: send one in 'model'.", param="model")
            req.model = c.model
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
        if picked is None and self._on_models:  # no prompt experiment: one on the model the prompt chose
            picked = self._on_model(call, req, prompted=True)
            if picked is not None and picked[0].get("model"):
                req.model = str(picked[0]["model"])
        self._mark(call, c.ref, picked)

    def _mark(self, call: CallContext, ref: str | None, picked: Variant | None) -> None:
        """Name the version and the variant that served, in the response headers and the call's decisions."""
        headers: dict[str, str] = {}
        decisions: dict[str, Any] = {}
        if ref is not None:
            headers["x-switchyard-prompt"] = decisions["prompt"] = ref
        if picked is not None:
            variant = picked[0]
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

    async def _slow(self, call: CallContext, req: ChatRequest,
                    ask: tuple[str, str | None, int | None, dict[str, Any]] | None, picked: Variant | None = None,
                    assigned: bool = False) -> None:
        if self._experiments is None:
            await self._refreshed()
        if ask is None:
            if self._on_models:
                picked = self._on_model(call, req, prompted=req.extra.get("prompt") is not None)
                if picked is not None:
                    await (self._serve(call, req, picked) or _done())
            return
        name, label, version, variables = ask
        org = call.principal.org_id if call.principal is not None else None
        if not assigned:
            picked = self._variant(call, req, name, org, label, version)
        if picked is not None and picked[0].get("version") is not None:
            version = int(picked[0]["version"])
        compiled = self._cached(org, name, label, version)
        if compiled is None:
            compiled = await self._load(org, name, label, version)
        self._apply(call, req, compiled, variables, picked)

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
        self._generation += 1
        self._refreshing = None  # a read under way may predate the change: the next call starts another

    def _refresh_soon(self) -> asyncio.Task[None] | None:
        if self._closed:
            return None
        if self._refreshing is None or self._refreshing.done():
            self._experiments_at = time.monotonic()  # one refresh per period, whoever asks
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh())
        return self._refreshing

    async def _refreshed(self) -> None:
        """Wait for the experiments to be read (concurrent first calls share one read)."""
        for _ in range(3):  # a change in this process meanwhile discards the read: wait for the next one
            task = self._refresh_soon()
            if task is None:
                return
            await asyncio.shield(task)
            if self._experiments is not None:
                return

    # --- its life with the gateway (a service: started and closed with it) ---

    async def start(self) -> None:
        """Read the running experiments in the background, before the first call asks."""
        self._refresh_soon()

    async def aclose(self) -> None:
        """No read starts from now on; one under way is waited for (a while), so that it does not outlive the
        store it reads."""
        self._closed = True
        task = self._refreshing
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), CLOSE_WAIT_S)

    async def refresh(self) -> None:
        """Read the running experiments (and their bandits' allocations); apply the stop rules; match pending
        feedback. Labels expire on their own. With no experiment running, one indexed read."""
        from . import experiments
        from .report import check_stop_rules, match_pending

        def work() -> dict[tuple[str, str], list[Running]]:
            with self.db.read() as conn:
                if not experiments.any_running(conn):
                    return {}
            if self.system_ops is not None:
                with self.db.write() as conn:
                    match_pending(conn)
                    check_stop_rules(conn, self.system_ops(), self.metrics)
            with self.db.read() as conn:
                return experiments.running(conn, self.metrics)

        generation = self._generation
        try:
            fresh = await self.db.run(work)
        except Exception:
            log.exception("could not read the running experiments; keeping the last view")
            fresh = self._experiments or {}
        if generation != self._generation:
            return  # an experiment changed here while this read ran: the next call reads again
        old = self._experiments or {}
        for key, runs in fresh.items():  # the bandit's remembered assignments survive a refresh
            for r in runs:
                prev = next((o for o in old.get(key, ()) if o.id == r.id), None)
                if prev is not None:
                    r.remembered = prev.remembered
        self._experiments = fresh
        self._on_models = any(kind == "model" for kind, _ in fresh)
        self._experiments_at = time.monotonic()
        with contextlib.suppress(Exception):
            self._labels = {k: v for k, v in self._labels.items() if time.monotonic() - v[0] <= self.refresh_s}


async def _done() -> None:
    return None
