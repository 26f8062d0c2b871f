"""The composition root: one place builds the gateway's parts and declares the order of its stages. ``switchyard
serve``, the tests (``tests/support/gateway.py``) and the benchmarks all build their app here.

The request path (see :mod:`switchyard.stages`)::

    request ─► Authenticate ─► Telemetry ─► AllowList ─► Record ─► [PII, extra stages] ─► Reserve ─► Intend ─► router
                 (admit)                       │ refuse     │ payload     │ refuse, rewrite,    │ hold      │ intent
                                               ▼            │             │ narrow, answer      │           │
    reply ◄── [extra wraps] ◄── Telemetry.after ◄── Record.after ◄────────── Reserve.after (settle) ◄── result

A stage is in the chain only when the configuration uses it: no ledger, no Reserve; no durable spool, no Intend;
no recorder, no Record; no ``pii:`` section, no PII (:mod:`switchyard.pii.stage`). Telemetry (the request log)
is always there, its metrics only when ``metrics.enabled``.
The PII stage and then the Policy stage (``policies.files``) sit after Record, so their refusals are
recorded, PII first (it sets ``call.pii_types`` and raises ``call.data_class``, which the policies read). With
both, ``PiiApply`` follows the Policy stage: the PII mode a call's policies ask for (``@pii``) is applied there.
The Prompt stage (managed prompts, :mod:`switchyard.prompts.stage`; under governance) sits before AllowList, which
then checks the model the prompt chose.
Extra stages (``extra_stages``) sit after them and before Reserve: what they refuse or answer is recorded, and a
call they answer holds no budget. The semantic cache (``cache:``, :mod:`switchyard.cache`) is the last of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..catalog import Catalog
from ..config import Config
from ..governance.auth import Authenticator
from ..governance.authlimit import failure_limiter
from ..governance.stages import AllowList, Authenticate, Intend, Record, Reserve
from ..pipeline import Gateway
from ..records import Recorder
from ..reload import Reloader
from ..routing import Router
from ..stages import CallContext, Chain, Stage
from ..telemetry.stage import Telemetry
from .app import create_app
from .asgi import Shell

if TYPE_CHECKING:
    from ..cache import Cache
    from ..policy.stage import Policy


def build_gateway(config: Config, *, catalog: Catalog | None = None, recorder: Recorder | None = None,
                  env: Mapping[str, str] | None = None, extra_stages: Sequence[Stage] = (),
                  config_path: str | None = None) -> Gateway:
    """The gateway of ``config``: its catalog, governance (key directory, audit), ledger, recorder and stages.
    ``config_path``: the file ``config`` was loaded from, which a reload reads again (:mod:`switchyard.reload`)."""
    catalog = catalog if catalog is not None else Catalog.from_config(config)
    auth = Authenticator(config.master_key, config.keys, limiter=failure_limiter(config.governance.auth_failures))
    governance = ledger = None
    spool = recorder if hasattr(recorder, "intend") else None  # the durable spend spool (SpendWriter)
    if config.governance.enabled:
        from ..governance.ledger import Ledger
        from ..governance.runtime import Governance, TeeRecorder

        governance = Governance(config, env, call_queue=spool is None)
        if governance.directory is not None:
            auth.add_resolver(governance.directory.resolve, governance.directory.cached)
        if spool is not None and governance.audit is not None and config.governance.audit.record_calls:
            # calls reach the audit log from the spend spool: durable, and no second queue in memory
            spool_any: Any = spool
            spool_any.audit_calls_into(governance.audit)
        elif governance.call_auditor is not None:
            recorder = TeeRecorder(recorder, governance.call_auditor) if recorder is not None else (
                governance.call_auditor)
        ledger = Ledger(config, governance.db)
    intend: Intend | None = None
    if spool is not None:
        from ..governance.intents import Intents

        durable: Any = spool
        intend = Intend(Intents(durable.intend, ledger, config.ledger.default_max_tokens))
        if ledger is not None:
            durable.on_interrupted = ledger.settle_interrupted

    router = Router(catalog, config)
    tracing = None
    if config.tracing.enabled:
        from ..telemetry.tracing import tracing_for  # OpenTelemetry is imported only then

        tracing = tracing_for(config)
    policy: list[Stage] = []
    with_policies = config.policies.enabled or governance is not None
    pii: list[Stage] = []
    if config.pii is not None:
        from ..pii.stage import pii_stages

        pii = pii_stages(config.pii, policies=with_policies)
    if with_policies:  # Cedar loads only with policy files or org sets
        from ..policy.stage import follow_org_sets, load_engine, policy_stage

        engine = None
        if config.policies.enabled:
            from ..config import ConfigError
            from ..policy.source import PolicyError

            try:
                engine = load_engine(config, config_path)
            except PolicyError as e:
                raise ConfigError(config_path or "<config>", [f"policies: {e}"]) from None
        stage = policy_stage(engine, config)
        policy.append(stage)
        if governance is not None:  # each org's policy set, stored through the admin API, on top of the files
            governance.org_policies.subscribe(follow_org_sets(stage, engine, config))
        if pii:  # the mode the policies ask for (@pii), applied once they decided
            from ..pii.stage import PiiApply, PiiStage

            scan = pii[0]
            assert isinstance(scan, PiiStage)
            scan.policy_modes = _policy_modes(stage)
            policy.append(PiiApply(scan))
    telemetry = Telemetry(config, router.health, recorder, tracing)
    cache: Cache | None = None
    if config.cache is not None and config.cache.enabled:
        from ..cache import build_cache  # the embedder and numpy load only then

        cache = build_cache(config, telemetry.metrics.registry if telemetry.metrics is not None else None)
    embeddings = None
    if recorder is not None:
        from ..governance.feedback import RecentEmbeddings

        embeddings = RecentEmbeddings()  # for POST /v1/feedback: the embeddings calls computed, in memory
    state: Any = None
    conversation: list[Stage] = []
    if config.state is not None:
        from ..state.service import StateService
        from ..state.stage import ConversationStage

        state = StateService(config.state, config.store)
        conversation = [ConversationStage(state.store, config.state)]
    prompts: list[Stage] = []
    if governance is not None and config.prompts.enabled:
        from ..governance.rbac import Actor
        from ..prompts.stage import PromptStage

        gov_ = governance
        prompts.append(PromptStage(governance.db, config.prompts.refresh_s,
                                   {k: m.model_dump() for k, m in config.prompts.metrics.items()},
                                   lambda: gov_.ops(Actor(id="system:experiments", super=True), "experiments")))
    stages: list[Stage] = [  # the order of the request path, declared once
        Authenticate(auth),
        telemetry,  # its after unwinds last: it sees the settled record
        *prompts,  # managed prompts (one dict lookup without "prompt"): before the allow-list checks the model
        AllowList(),
        *([Record(recorder, embeddings)] if recorder is not None else []),
        *conversation,  # history in before PII scans the request (so it sees what goes upstream)
        *pii,  # scan (and redact, mask or block) before any budget is held and before the policies read
        *policy,  # Cedar policies: narrow the deployments, refuse, check tool calls (switchyard.policy)
        *extra_stages,
        *([cache] if cache is not None else []),  # last of the extras: a hit holds no budget, and is recorded
        *([Reserve(ledger)] if ledger is not None else []),
        *([intend] if intend is not None else []),
    ]
    gateway = Gateway(config, catalog, Chain(stages), auth=auth, recorder=recorder, governance=governance,
                      ledger=ledger, router=router, tracing=tracing)
    gateway.recent_embeddings = embeddings
    gateway.prompts = prompts[0] if prompts else None
    if gateway.prompts is not None:
        gateway.services.append(gateway.prompts)  # reads the running experiments at start; closed with the gateway
    gateway.reloader = Reloader(gateway, config_path)
    if cache is not None:
        gateway.services.append(cache.store)  # started (warmed) and closed with the gateway
    if state is not None:
        gateway.state, gateway.conversations = state, state.store
    if config.workflows is not None and config.workflows.enabled:
        from ..config import ConfigError
        from ..workflows.definition import WorkflowInvalid
        from ..workflows.registry import Registry  # DBOS itself loads when the registry starts

        try:
            gateway.workflows = Registry(gateway, config.workflows, config_path)
        except WorkflowInvalid as e:
            problems = [f"workflows.files: {e.source}: {p}" for p in e.problems]
            raise ConfigError(config_path or "<config>", problems) from None
        gateway.services.append(gateway.workflows)
    return gateway


def _policy_modes(stage: Policy) -> Callable[[CallContext], bool]:
    """Whether the policies of a call's org may ask for a PII mode (read per call: org policy sets change)."""

    def modes(call: CallContext) -> bool:
        engine, p = stage.engine, call.principal
        return engine is not None and p is not None and engine.sets_pii(p.org_id or "")

    return modes


def build(config: Config, *, catalog: Catalog | None = None, recorder: Recorder | None = None,
          store: object | None = None, env: Mapping[str, str] | None = None, extra_stages: Sequence[Stage] = (),
          freeze_gc: bool = False, config_path: str | None = None) -> Shell:
    """The ASGI app of ``config`` (its gateway is ``app.state.gateway``). ``store`` and ``recorder`` are opened and
    closed with it; ``freeze_gc``: see :func:`~switchyard.server.app.create_app`."""
    gateway = build_gateway(config, catalog=catalog, recorder=recorder, env=env, extra_stages=extra_stages,
                            config_path=config_path)
    return create_app(gateway, store=store, recorder=recorder, freeze_gc=freeze_gc)
