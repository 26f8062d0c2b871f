"""Authentication: an API key to a Principal.

The master key and the config's static keys are checked here first, as SHA-256 digests (no plaintext static key
is kept in memory past start-up). Virtual keys plug in as a ``KeyResolver``: each resolver gets the raw key (so
that it can compute its own keyed hash) and its SHA-256 digest (to remember that hash by), and returns a
Principal, or None if the key is not its own. A resolver raises ``AuthenticationFailed`` for a key it knows to be
revoked or expired, and ``GovernanceUnavailable`` when it cannot tell (its store is down): an outage must never
look like a bad key.

Failed authentications are counted per client address when a limiter is configured
(:mod:`switchyard.governance.authlimit`): past its limit, a key that is not already known to be valid (a static
key, or a virtual key in a resolver's cache, asked through its ``KeyPeek``) is refused with 429 before any lookup.

The Principal is what every later stage sees. It carries everything the ledger needs to reserve against every
budget and rate limit in scope without a database round trip: ``key_id``, ``user_id``, ``team_id``, ``org_id``,
``tags``, ``roles``, ``logging``, ``budgets`` and ``rate_limits``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from ..config import KeyConfig
from ..errors import AuthenticationFailed, PermissionDenied

if TYPE_CHECKING:
    from .authlimit import AuthFailureLimiter

LoggingMode = Literal["none", "metadata", "full"]
LOGGING_MODES: tuple[LoggingMode, ...] = ("none", "metadata", "full")
BudgetScope = Literal["key", "user", "team", "org", "tag", "members"]  # members: a team's member budget
BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
RateLimitScope = Literal["key", "user", "team"]


@dataclass(frozen=True, slots=True)
class BudgetDef:
    """A budget definition, as the ledger reads it. Enforcement is the ledger's; this is data."""

    id: str
    scope: BudgetScope
    scope_id: str  # the key, user, team or org id; or the tag
    period: BudgetPeriod  # daily | weekly | monthly are calendar periods in ``timezone``; total never resets
    max_usd: Decimal | None  # at least one of max_usd and max_tokens is set
    max_tokens: int | None
    timezone: str | None = None  # an IANA zone; None: the gateway's configured zone
    thresholds: tuple[float, ...] = ()  # fractions of the limit that call the webhook, e.g. (0.5, 0.8, 1.0)
    webhook_url: str | None = None
    name: str | None = None
    org_id: str | None = None  # the tenant that owns the definition (None: a global tag budget)
    template_id: str | None = None  # a member's copy of its team's member budget: the template (member_budget.py)


@dataclass(frozen=True, slots=True)
class RateLimitDef:
    """A rate-limit definition: requests and tokens per minute, and requests in flight."""

    id: str
    scope: RateLimitScope
    scope_id: str
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as every later stage sees it."""

    id: str  # a stable, non-secret id: "master", "key:<name>", or a virtual key's id ("vk_...")
    name: str | None
    is_admin: bool = False  # the master key: a super admin over every org
    models: frozenset[str] | None = None  # the deployments and routes it may use; None for all
    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    key_id: str | None = None  # the virtual key's id (None for the master key and static keys)
    roles: frozenset[str] = frozenset()  # the owning user's roles: org_admin | team_admin | member | auditor
    tags: frozenset[str] = frozenset()
    logging: LoggingMode = "none"  # payload logging: none (zero retention) | metadata | full
    expires_at: float | None = None  # epoch seconds; checked on every call
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    budgets: tuple[BudgetDef, ...] = ()  # every budget in scope: key, user, team, org and tag budgets
    rate_limits: tuple[RateLimitDef, ...] = ()  # every rate limit in scope: key, user and team limits
    data_class: str | None = None  # the lowest data class of its requests: the higher of its key's and team's
    pii_mode: str | None = None  # its PII mode (off | detect | redact | mask | block); None: the config's
    # payload retention in seconds per kind ({"conversations": 2592000.0}): its key's, else its team's; empty: none
    retention: Mapping[str, float] = field(default_factory=dict, compare=False, hash=False)

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def require_model(self, model: str) -> None:
        if not self.may_use(model):
            raise PermissionDenied(f"This key may not use model {model!r}.", param="model",
                                   code="model_not_allowed")


KeyResolver = Callable[[str, str], Awaitable[Principal | None]]
"""Given the raw key and its SHA-256 digest (hex: what the static keys are looked up by, and a safe name for the
key in a resolver's memory), return its Principal, or None if this resolver does not know it. It may raise
``AuthenticationFailed`` (a revoked or expired key) or ``GovernanceUnavailable`` (it cannot tell)."""


KeyPeek = Callable[[str, str], Principal | None]
"""Given the raw key and its SHA-256 digest, the Principal if a resolver already holds the key as valid in memory;
never a store read (the failed-authentication limiter lets such a key through)."""


def retention_seconds(team: Mapping[str, str] | None, key: Mapping[str, str] | None) -> Mapping[str, float]:
    """A principal's retention in seconds per kind: its team's, with its key's own kinds winning."""
    if not team and not key:
        return {}
    from ..config.state import parse_duration

    return {kind: parse_duration(v) for kind, v in {**(team or {}), **(key or {})}.items()}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Authenticator:
    def __init__(self, master_key: str | None, keys: Iterable[KeyConfig] = (),
                 resolvers: Iterable[KeyResolver] = (), limiter: AuthFailureLimiter | None = None) -> None:
        self._static: dict[str, Principal] = {}
        if master_key:
            self._static[digest(master_key)] = Principal(id="master", name="master", is_admin=True)
        for i, k in enumerate(keys):
            name = k.name or f"key{i}"
            models = frozenset(k.models) if k.models is not None else None
            self._static[digest(k.key)] = Principal(id=f"key:{name}", name=name, models=models,
                                                    data_class=k.data_class, pii_mode=k.pii_mode,
                                                    logging=k.logging,
                                                    retention=retention_seconds(None, k.retention))
        self._resolvers = list(resolvers)
        self._peeks: list[KeyPeek] = []
        self.limiter = limiter

    def add_resolver(self, resolver: KeyResolver, peek: KeyPeek | None = None) -> None:
        self._resolvers.append(resolver)
        if peek is not None:
            self._peeks.append(peek)

    async def authenticate(self, key: str | None, client: str | None = None) -> Principal:
        """The key's Principal. ``client`` is the caller's address, for the failed-authentication limit (None: not
        limited). A missing key costs nothing to refuse, so it is not counted."""
        if not key:
            raise AuthenticationFailed("Missing API key. Send it as 'Authorization: Bearer <key>'.")
        d = digest(key)
        p = self._static.get(d)
        if p is not None:
            return p
        limiter = self.limiter
        if limiter is None or not client or not limiter.tracking(client):
            try:
                return await self._resolve(key, d)
            except AuthenticationFailed:
                if limiter is not None and client:
                    limiter.failed(client)
                raise
        # The address has failed lately: a key already known to be valid goes ahead; any other holds a token for
        # its lookup (refused, before the lookup, when there is none), handed back unless the key is refused.
        if any(peek(key, d) is not None for peek in self._peeks):
            return await self._resolve(key, d)
        wait = limiter.take(client)
        if wait is not None:
            raise limiter.refusal(wait)
        try:
            p = await self._resolve(key, d)
        except AuthenticationFailed:
            raise  # a failure: the token stays spent
        except BaseException:  # the store could not tell (or the caller went away): not a failure
            limiter.refund(client)
            raise
        limiter.refund(client)
        return p

    async def _resolve(self, key: str, d: str) -> Principal:
        for resolve in self._resolvers:
            p = await resolve(key, d)
            if p is not None:
                return p
        raise AuthenticationFailed("Incorrect API key provided.")


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
