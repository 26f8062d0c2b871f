"""Org policy sets: each organization's Cedar policies, versioned, audited and scoped to the org.

The admin API (``GET/PUT /admin/orgs/{id}/policies``) reads and adds versions through :func:`get_policies` and
:func:`put_policies`; a PUT never changes a version, it adds the next one, and its audit record keeps the
version and the text's SHA-256 (never the text). The text is checked by a validator before it is stored: by
default ``switchyard.policy.check_policy_text`` (the Cedar engine), or none when that package is absent.

The runtime reads the newest version of every org's set with :func:`latest_org_policies`, and hears of changes
through :class:`OrgPolicyWatcher`, which polls the table's signature (its row count and newest row id: one
indexed read) like the key directory polls the identity version, and calls its listeners with the full map when
it moved. It polls only once something listens.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..errors import InvalidRequest, NotFound
from ..store.identity_tables import orgs
from ..store.policy_tables import org_policies
from ..worker import Worker
from .audit import utcnow
from .db import Db
from .identity import Ops
from .models import OrgPoliciesPut, OrgPolicySet
from .rbac import Owner, forbid, manages_org, not_found, sees_audit, sees_org

log = logging.getLogger("switchyard.governance")

PolicyValidator = Callable[[str], None]
"""Checks a policy set's text; raises an exception with ``.message``, ``.line`` and ``.column`` (1-based; either
may be None) when it is not valid."""

OrgPolicies = dict[str, tuple[int, str]]  # org id -> (its newest version, that version's text)
Listener = Callable[[OrgPolicies], None]


def default_validator(allow_pii: bool = True) -> PolicyValidator:
    """The Cedar engine's check (``switchyard.policy.check_policy_text``), loaded when a set is first stored.
    ``allow_pii``: whether policies may ask for a PII mode (``@pii``: the gateway has a ``pii:`` section)."""

    def check(text: str) -> None:
        from ..policy import check_policy_text  # Cedar loads here, not when the gateway starts

        check_policy_text(text, "policies", allow_pii=allow_pii)

    return check


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _out(org_id: str, r: Any) -> OrgPolicySet:
    if r is None:
        return OrgPolicySet(org_id=org_id, version=0, policies="", comment=None, sha256=None, created_at=None,
                            created_by=None)
    return OrgPolicySet(org_id=org_id, version=r.version, policies=r.text, comment=r.comment, sha256=r.sha256,
                        created_at=r.created_at, created_by=r.created_by)


def _org(conn: sa.Connection, ops: Ops, org_id: str, lock: bool = False) -> None:
    q = sa.select(orgs.c.id).where(orgs.c.id == org_id)
    if conn.execute(q.with_for_update() if lock else q).first() is None or not sees_org(ops.actor, org_id):
        raise not_found("org", org_id)


def get_policies(conn: sa.Connection, ops: Ops, org_id: str, version: int | None = None) -> OrgPolicySet:
    """The newest version of the org's set (version 0 and no text if it has none), or version ``version``. Its
    org's admins and auditors, and super admins, may read it."""
    _org(conn, ops, org_id)
    if not sees_audit(ops.actor, org_id):
        raise forbid("read this organization's policies")
    q = sa.select(org_policies).where(org_policies.c.org_id == org_id)
    if version is not None:
        r = conn.execute(q.where(org_policies.c.version == version)).one_or_none()
        if r is None:
            raise NotFound(f"The organization has no policy set version {version}.", param="version",
                           code="policy_version_not_found")
        return _out(org_id, r)
    return _out(org_id, conn.execute(q.order_by(org_policies.c.version.desc()).limit(1)).one_or_none())


def put_policies(conn: sa.Connection, ops: Ops, org_id: str, body: OrgPoliciesPut,
                 validator: PolicyValidator | None) -> OrgPolicySet:
    """Add the next version of the org's set, once ``validator`` accepts it (a 400 with its message and position
    when it does not). Its org's admins and super admins may."""
    _org(conn, ops, org_id, lock=True)  # the org's row lock serializes its versions (PostgreSQL)
    if not manages_org(ops.actor, org_id):
        raise forbid("change this organization's policies")
    if validator is not None:
        check(validator, body.policies)
    last = conn.execute(sa.select(sa.func.max(org_policies.c.version))
                        .where(org_policies.c.org_id == org_id)).scalar_one_or_none()
    version = int(last or 0) + 1
    digest = sha256(body.policies)
    conn.execute(sa.insert(org_policies).values(org_id=org_id, version=version, text=body.policies,
                                                comment=body.comment, sha256=digest, created_at=utcnow(),
                                                created_by=ops.actor.id))
    ops.record(conn, "org.policies.update", org_id, Owner(org_id),
               {"version": version, "sha256": digest, "chars": len(body.policies)})
    return get_policies(conn, ops, org_id, version)


def check(validator: PolicyValidator, text: str) -> None:
    """Run ``validator``; its complaint becomes a 400 naming ``policies``, the position and the message."""
    try:
        validator(text)
    except Exception as e:
        message = str(getattr(e, "message", None) or e or type(e).__name__)
        line, column = getattr(e, "line", None), getattr(e, "column", None)
        where = (f" at line {line}" if line is not None else "") + (f", column {column}" if column is not None
                                                                     and line is not None else "")
        raise InvalidRequest(f"The policy set is not valid{where}: {message}", param="policies",
                             code="invalid_policy") from None


# --- for the runtime -----------------------------------------------------------------------------------------


def latest_org_policies(conn: sa.Connection) -> OrgPolicies:
    """Every org's newest version and its text."""
    newest = (sa.select(org_policies.c.org_id, sa.func.max(org_policies.c.version).label("version"))
              .group_by(org_policies.c.org_id).subquery())
    q = (sa.select(org_policies.c.org_id, org_policies.c.version, org_policies.c.text)
         .join(newest, sa.and_(newest.c.org_id == org_policies.c.org_id, newest.c.version == org_policies.c.version)))
    return {r.org_id: (int(r.version), r.text) for r in conn.execute(q)}


def signature(conn: sa.Connection) -> tuple[int, int]:
    """What changes whenever a version is added or an org's sets are deleted: (row count, newest row id)."""
    n, top = conn.execute(sa.select(sa.func.count(), sa.func.max(org_policies.c.id))).one()
    return int(n), int(top or 0)


class OrgPolicyWatcher:
    """Keeps the newest org policy sets in memory and tells its listeners when they change (see the module)."""

    def __init__(self, db: Db, poll_interval: float = 0.5) -> None:
        self._db = db
        self._listeners: list[Listener] = []
        self._signature: tuple[int, int] | None = None
        self.current: OrgPolicies = {}
        self.polls = 0  # reads of the table's signature (one transaction each)
        self.poller = Worker("org-policies", self._step, interval=poll_interval, backoff_initial=poll_interval,
                             backoff_max=max(30.0, poll_interval), jitter=0.2)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(current)`` on every change (and once the first read is done). Subscribe before start."""
        self._listeners.append(listener)

    async def start(self) -> None:
        if not self._listeners:
            return  # nobody listens: no poll
        with contextlib.suppress(Exception):
            await self.poll_once()
        self.poller.start()

    async def stop(self) -> None:
        await self.poller.stop()

    def wake(self) -> None:
        """Poll now (after a change made through this process)."""
        if self.poller.running:
            self.poller.wake()

    async def _step(self) -> bool:
        try:
            await self.poll_once()
        except Exception as e:
            if self.poller.failures in (0, 19):
                log.warning("org policies: poll failed (%s); the sets in memory stay", self._db.describe(e))
            return False
        return True

    def _read(self, known: tuple[int, int] | None) -> tuple[tuple[int, int], OrgPolicies | None]:
        with self._db.read() as conn:
            sig = signature(conn)
            return sig, (latest_org_policies(conn) if sig != known else None)

    async def poll_once(self) -> bool:
        """Read the sets if they changed; True if they did (the listeners were called)."""
        self.polls += 1
        sig, sets = await self._db.run(self._read, self._signature)
        if sets is None:
            return False
        self._signature, self.current = sig, sets
        for listener in self._listeners:
            try:
                listener(sets)
            except Exception:
                log.exception("org policies: a listener failed")
        return True
