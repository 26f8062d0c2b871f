"""Governance in a running gateway: the key directory, the audit log and the admin API's store access.

The app factory (``server/factory.py``) builds one from the config (``governance.enabled``, the default) and
composes it: the key directory becomes one of the authenticator's resolvers, and calls reach the audit log either
from the durable spend spool or through the call auditor (its own queue), so the pipeline knows nothing of either
and nothing here rewires it. ``start()`` (from ``Gateway.start``)
brings the store's schema to head, refuses to run when the store holds virtual keys but no key secret is
configured, and starts the change poller and the audit writer; ``aclose()`` drains and signs a last checkpoint.

The store is the config's ``store`` URL, opened on a separate engine. A store that is down at start-up does not
stop the gateway: static keys work, virtual keys answer 503 until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ..config import Config
from ..records import CallRecord, Recorder
from ..store.db import create_engine_for, migrate
from .audit import AuditEntry, AuditLog, Signer
from .audit_calls import CallAuditor
from .cache import KeyDirectory
from .db import Db, is_store_failure
from .identity import Ops
from .keys import KeyHasher, audit_key, key_secret
from .org_policies import OrgPolicies, OrgPolicyWatcher, PolicyValidator, default_validator, latest_org_policies
from .principals import count_keys
from .rbac import Actor

log = logging.getLogger("switchyard.governance")

T = TypeVar("T")


class TeeRecorder:
    """A Recorder that hands each record to several recorders, in order."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = recorders

    def record(self, rec: CallRecord) -> None:
        for r in self.recorders:
            r.record(rec)


class Governance:
    def __init__(self, config: Config, env: Mapping[str, str] | None = None, *, call_queue: bool = True,
                 policy_validator: PolicyValidator | None = None) -> None:
        """``call_queue``: audit calls through the call auditor's own queue (False: the recorder is the durable
        spend spool, which appends them to the audit log itself). ``policy_validator``: what checks an org policy
        set before it is stored (default: the Cedar engine's, when installed)."""
        g = config.governance
        self.config = config
        self.settings = g
        self.db = Db(create_engine_for(config.store))
        secret = key_secret(config, env)
        self.hasher = KeyHasher(secret) if secret is not None else None
        akey = audit_key(config, env)
        self.signer = Signer(akey) if akey is not None else None
        self.audit = AuditLog(self.signer, g.audit) if g.audit.enabled else None
        self.call_auditor = (CallAuditor(self.db, self.audit, g.audit)
                             if self.audit is not None and g.audit.record_calls and call_queue else None)
        self.directory = (KeyDirectory(self.db, self.hasher, poll_interval=g.poll_interval, ttl=g.cache_ttl,
                                       max_entries=g.cache_size, negative_ttl=g.negative_ttl,
                                       negative_size=g.negative_size) if self.hasher is not None else None)
        self.known_models = frozenset(d.name for d in config.deployments) | frozenset(config.routes)
        self.policy_validator = (policy_validator if policy_validator is not None
                                 else default_validator(allow_pii=config.pii is not None))
        # org policy sets for the runtime: subscribe a listener before start() (it polls only if one listens)
        self.org_policies = OrgPolicyWatcher(self.db, poll_interval=g.poll_interval)
        self._schema_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if not await self._migrate():
            log.warning("governance: the store is unreachable at start-up; virtual keys answer 503 until it is back")
            self._schema_task = asyncio.create_task(self._migrate_until_done(), name="switchyard-governance-schema")
        elif self.hasher is None and (await self.db.run(self._count_keys)) > 0:
            raise RuntimeError("the store holds virtual keys but no key secret is configured: set "
                               "governance.key_secret or SWITCHYARD_KEY_SECRET (or the master_key they were "
                               "created under)")
        if self.directory is not None:
            await self.directory.start()
        if self.call_auditor is not None:
            await self.call_auditor.start()
        await self.org_policies.start()

    async def aclose(self) -> None:
        if self._schema_task is not None:
            self._schema_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._schema_task
        if self.directory is not None:
            await self.directory.stop()
        await self.org_policies.stop()
        if self.call_auditor is not None:
            await self.call_auditor.stop()
        if self.audit is not None:
            with contextlib.suppress(Exception):
                await self.db.run(self._final_checkpoint)
        await asyncio.to_thread(self.db.engine.dispose)

    async def _migrate(self) -> bool:
        try:
            await asyncio.to_thread(migrate, self.db.engine)
        except Exception as e:
            if not is_store_failure(e):
                raise
            return False
        return True

    async def _migrate_until_done(self) -> None:
        while True:
            if await self._migrate():
                break
            await asyncio.sleep(2.0)
        log.info("governance: the store is reachable; schema at head")

    def _count_keys(self) -> int:
        with self.db.read() as conn:
            return count_keys(conn)

    def _final_checkpoint(self) -> None:
        assert self.audit is not None
        with self.db.write() as conn:
            self.audit.checkpoint_now(conn)

    async def latest_org_policies(self) -> OrgPolicies:
        """Every org's newest policy set: org id -> (version, Cedar text). A store failure raises (503)."""

        def work() -> OrgPolicies:
            with self.db.read() as conn:
                return latest_org_policies(conn)

        return await self.db.run(work)

    # --- admin operations --------------------------------------------------------------------------------------

    def ops(self, actor: Actor, request_id: str | None = None) -> Ops:
        return Ops(actor=actor, audit=self.audit, hasher=self.hasher, known_models=self.known_models,
                   request_id=request_id)

    async def transact(self, ops: Ops, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, ops, *args)`` in one write transaction on a worker thread; then apply its changes to this
        process's key cache at once (other replicas hear of them at their next poll)."""

        def work() -> T:
            with self.db.write() as conn:
                return fn(conn, ops, *args)

        try:
            return await self.db.run(work)
        finally:
            if ops.changes and self.directory is not None:
                self.directory.invalidate([(ops.version, kind, entity) for kind, entity in ops.changes])
                ops.changes.clear()

    async def record_denial(self, actor: Actor, action: str, target: str | None, reason: str, status: int,
                            request_id: str | None) -> None:
        """Audit a refused admin request (best effort: a store outage must not turn a 403 into a 503)."""
        if self.audit is None:
            return
        entry = AuditEntry(kind="admin", actor=actor.id, actor_user_id=actor.user_id, org_id=actor.org_id,
                           team_id=actor.team_id, action=action, target=target, decision="deny", reason=reason,
                           status=status, request_id=request_id)
        audit = self.audit

        def work() -> None:
            with self.db.write() as conn:
                audit.append(conn, [entry])

        try:
            await self.db.run(work)
        except Exception as e:
            log.warning("audit: a denied admin request could not be recorded (%s)", type(e).__name__)
