"""The governance objects as the admin API and the CLI see them: pydantic models for bodies and replies.

The admin API's OpenAPI schema is generated from these models, so they are the API's contract. Request models
refuse unknown fields (a typo must not be ignored); an update sends only the fields it changes, and ``null``
clears a field: to null where the object's field may be null (a name; ``models``: all; ``expires_at``: never), to
``[]`` or ``{}`` for ``tags``, ``thresholds`` and ``metadata``. A field with nothing to clear to (an org's or team's
name, a user's role, a key's logging mode, a budget's period) is declared with :func:`unchanged`: optional, and
not nullable in the schema, so ``null`` is a 400 naming it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator, model_validator

from ..config.state import parse_retention
from .auth import BudgetPeriod, BudgetScope, LoggingMode, RateLimitScope
from .query_time import AwareTime

RoleName = Literal["org_admin", "team_admin", "member", "auditor"]
DataClass = Literal["public", "internal", "confidential", "restricted"]  # as classification.DATA_CLASSES
PiiMode = Literal["off", "detect", "redact", "mask", "block"]
PII_MODES: tuple[PiiMode, ...] = ("off", "detect", "redact", "mask", "block")
ROLE_NAMES: tuple[RoleName, ...] = ("org_admin", "team_admin", "member", "auditor")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ObjId = Annotated[str, StringConstraints(min_length=1, max_length=40)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=320,
                                         pattern=r"^[^@\s]+@[^@\s]+$")]
Metadata = dict[str, Any]
# {"conversations": "30d"}: payload kept, and for how long (validated by config.state.parse_retention)
Retention = Annotated[dict[str, str], BeforeValidator(parse_retention)]
_RETENTION_DOC = "payload retention, e.g. {\"conversations\": \"30d\"}"


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def unchanged(**kw: Any) -> Any:
    """An update's field that may be left out (unchanged) but not set to null: the schema shows its type only."""
    return Field(None, json_schema_extra=_no_default, **kw)


MAX_KEY_SECONDS = 36525 * 86400  # a key's life at most: a hundred years ("never" is no expiry at all)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- organizations, teams, users -----------------------------------------------------------------------------


class OrgCreate(_In):
    name: Name
    metadata: Metadata = Field(default_factory=dict)


class OrgUpdate(_In):
    name: Name = unchanged()
    metadata: Metadata | None = Field(None, description="null: {}")


class Org(_Out):
    object: Literal["org"] = "org"
    id: str
    name: str
    metadata: Metadata
    created_at: dt.datetime
    updated_at: dt.datetime


class TeamCreate(_In):
    name: Name
    org_id: ObjId | None = Field(None, description="the team's organization; default: the caller's")
    models: list[ModelName] | None = Field(None, description="deployments and routes the team's keys may use; "
                                                             "null: all")
    metadata: Metadata = Field(default_factory=dict)
    data_class: DataClass | None = Field(None, description="the lowest data class of its keys' calls; null: none")
    pii_mode: PiiMode | None = Field(None, description="its keys' PII mode (a key's own wins); null: the config's")
    retention: Retention | None = Field(None, description=_RETENTION_DOC + "; null: none (its keys' own apply)")


class TeamUpdate(_In):
    name: Name = unchanged()
    models: list[ModelName] | None = Field(None, description="null: all")
    metadata: Metadata | None = Field(None, description="null: {}")
    data_class: DataClass | None = Field(None, description="null: none")
    pii_mode: PiiMode | None = Field(None, description="null: the config's")
    retention: Retention | None = Field(None, description="null: none")


class Team(_Out):
    object: Literal["team"] = "team"
    id: str
    org_id: str
    name: str
    models: list[str] | None
    metadata: Metadata
    data_class: DataClass | None
    pii_mode: PiiMode | None
    retention: Retention | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class UserCreate(_In):
    email: Email
    name: Name | None = None
    role: RoleName = "member"
    org_id: ObjId | None = Field(None, description="default: the team's organization, else the caller's")
    team_id: ObjId | None = None
    metadata: Metadata = Field(default_factory=dict)


class UserUpdate(_In):
    name: Name | None = Field(None, description="null: no name")
    role: RoleName = unchanged()
    team_id: ObjId | None = Field(None, description="another team of its org (its keys move with it); null: none")
    metadata: Metadata | None = Field(None, description="null: {}")


class User(_Out):
    object: Literal["user"] = "user"
    id: str
    org_id: str
    team_id: str | None
    email: str
    name: str | None
    role: RoleName
    metadata: Metadata
    created_at: dt.datetime
    updated_at: dt.datetime


# --- virtual keys --------------------------------------------------------------------------------------------


class KeyCreate(_In):
    name: Name | None = None
    user_id: ObjId | None = Field(None, description="the owning user; default: the caller (if no team_id)")
    team_id: ObjId | None = Field(None, description="the owning team, for a team (service) key")
    models: list[ModelName] | None = Field(None, description="deployments and routes it may use; null: all "
                                                             "that its team may use")
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: Metadata = Field(default_factory=dict)
    logging: LoggingMode = Field("none", description="payload logging: none (zero retention), metadata, full")
    data_class: DataClass | None = Field(None, description="the lowest data class of its calls (the higher of "
                                                           "this and its team's applies); null: none")
    pii_mode: PiiMode | None = Field(None, description="its PII mode; null: its team's, else the config's")
    retention: Retention | None = Field(None, description=_RETENTION_DOC + " (per kind, its own wins over its "
                                                                           "team's); null: its team's")
    expires_at: dt.datetime | None = None
    expires_in: float | None = Field(None, gt=0, le=MAX_KEY_SECONDS,
                                     description="seconds from now (at most 100 years); instead of expires_at")

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_at is not None and self.expires_in is not None:
            raise ValueError("give expires_at or expires_in, not both")
        return self


class KeyUpdate(_In):
    """Its owner may only narrow a key (fewer models, an earlier expiry, a higher data class); an admin over it may
    widen it, and only an admin over it may change its tags, logging mode or PII mode."""

    name: Name | None = Field(None, description="null: no name")
    models: list[ModelName] | None = Field(None, description="null: all that its team may use")
    tags: list[Tag] | None = Field(None, max_length=32, description="null: []")
    metadata: Metadata | None = Field(None, description="null: {}")
    logging: LoggingMode = unchanged()
    data_class: DataClass | None = Field(None, description="null: none (its team's applies)")
    pii_mode: PiiMode | None = Field(None, description="null: its team's, else the config's")
    retention: Retention | None = Field(None, description="null: its team's")
    expires_at: dt.datetime | None = Field(None, description="within 100 years; null: never")


class Key(_Out):
    object: Literal["key"] = "key"
    id: str
    prefix: str = Field(description="the key's first characters, for recognising it: 'sk-sy-AbCd…'")
    name: str | None
    status: Literal["active", "revoked", "expired"]
    org_id: str
    team_id: str | None
    user_id: str | None
    models: list[str] | None
    tags: list[str]
    metadata: Metadata
    logging: LoggingMode
    data_class: DataClass | None
    pii_mode: PiiMode | None
    retention: Retention | None = None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class KeyCreated(Key):
    secret: str = Field(description="the key itself; shown only in this reply, never again")


# --- org policy sets (Cedar text, versioned) ------------------------------------------------------------------

MAX_POLICY_CHARS = 512 * 1024


class OrgPoliciesPut(_In):
    policies: str = Field(max_length=MAX_POLICY_CHARS, description="the org's Cedar policies (\"\": none)")
    comment: str | None = Field(None, max_length=1000, description="why this version (kept with it)")


class OrgPolicySet(_Out):
    object: Literal["org_policies"] = "org_policies"
    org_id: str
    version: int = Field(description="1, 2, ... (0: the org has never had a policy set)")
    policies: str
    comment: str | None
    sha256: str | None = Field(description="of the text, as the audit record keeps it")
    created_at: dt.datetime | None
    created_by: str | None


class PolicyVersionQuery(_In):
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="an earlier version; default: the latest")


# --- budget and rate-limit definitions (enforced by the ledger) ----------------------------------------------


def _check_zone(v: str | None) -> str | None:
    if v is not None:
        try:
            ZoneInfo(v)
        except Exception:
            raise ValueError(f"unknown time zone {v!r}") from None
    return v


def _check_thresholds(v: list[float] | None) -> list[float] | None:
    if v is not None and any(not 0 < t <= 10 for t in v):
        raise ValueError("each threshold is a fraction of the limit, > 0 and <= 10")
    return sorted(set(v)) if v is not None else None


def _check_url(v: str | None) -> str | None:
    if v is not None and not v.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return v


Usd = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=8)]


class BudgetCreate(_In):
    scope: BudgetScope
    scope_id: str = Field(min_length=1, max_length=255, description="the key, user, team or org id, or the tag; "
                                                                    "for members: the team whose users each get "
                                                                    "a copy")
    name: Name | None = None
    period: BudgetPeriod = "monthly"
    max_usd: Usd | None = None
    max_tokens: int | None = Field(None, ge=0)
    timezone: str | None = Field(None, description="IANA zone of the calendar periods; default: the gateway's")
    thresholds: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0], max_length=16)
    webhook_url: str | None = Field(None, max_length=2000)
    org_id: ObjId | None = Field(None, description="only for a tag budget: its org (super admins may omit it "
                                                   "for a tag budget over every org)")

    _zone = field_validator("timezone")(_check_zone)
    _thr = field_validator("thresholds")(_check_thresholds)
    _url = field_validator("webhook_url")(_check_url)

    @model_validator(mode="after")
    def _a_limit(self) -> BudgetCreate:
        if self.max_usd is None and self.max_tokens is None:
            raise ValueError("set max_usd, max_tokens, or both")
        return self


class BudgetUpdate(_In):
    name: Name | None = Field(None, description="null: no name")
    period: BudgetPeriod = unchanged()
    max_usd: Usd | None = Field(None, description="null: no USD limit (max_tokens must remain)")
    max_tokens: int | None = Field(None, ge=0, description="null: no token limit (max_usd must remain)")
    timezone: str | None = Field(None, description="null: the gateway's")
    thresholds: list[float] | None = Field(None, max_length=16, description="null: [] (no webhook calls)")
    webhook_url: str | None = Field(None, max_length=2000, description="null: the ledger's default target")

    _zone = field_validator("timezone")(_check_zone)
    _thr = field_validator("thresholds")(_check_thresholds)
    _url = field_validator("webhook_url")(_check_url)


class Budget(_Out):
    object: Literal["budget"] = "budget"
    id: str
    org_id: str | None
    scope: BudgetScope
    scope_id: str
    name: str | None
    period: BudgetPeriod
    max_usd: float | None
    max_tokens: int | None
    timezone: str | None
    thresholds: list[float]
    webhook_url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    template_id: str | None = Field(None, description="a member's copy of its team's member budget (scope "
                                                      "members): the template it follows")


class RateLimitCreate(_In):
    scope: RateLimitScope
    scope_id: str = Field(min_length=1, max_length=255)
    name: Name | None = None
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens per minute")
    max_concurrent: int | None = Field(None, ge=1, description="requests in flight")

    @model_validator(mode="after")
    def _a_limit(self) -> RateLimitCreate:
        if self.rpm is None and self.tpm is None and self.max_concurrent is None:
            raise ValueError("set rpm, tpm or max_concurrent")
        return self


class RateLimitUpdate(_In):
    name: Name | None = Field(None, description="null: no name")
    rpm: int | None = Field(None, ge=1, description="null: no limit (another must remain)")
    tpm: int | None = Field(None, ge=1, description="null: no limit (another must remain)")
    max_concurrent: int | None = Field(None, ge=1, description="null: no limit (another must remain)")


class RateLimit(_Out):
    object: Literal["rate_limit"] = "rate_limit"
    id: str
    org_id: str
    scope: RateLimitScope
    scope_id: str
    name: str | None
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    created_at: dt.datetime
    updated_at: dt.datetime


# --- audit ---------------------------------------------------------------------------------------------------


class AuditRecord(_Out):
    object: Literal["audit_record"] = "audit_record"
    seq: int
    ts: dt.datetime
    kind: Literal["admin", "call", "system"]
    actor: str
    actor_user_id: str | None
    org_id: str | None
    team_id: str | None
    action: str
    target: str | None
    decision: Literal["allow", "deny"]
    reason: str | None
    status: int | None
    deployment: str | None
    cost: float | None
    request_id: str | None
    details: dict[str, Any] | None
    payload: dict[str, Any] | None
    prev_hash: str
    hash: str


class AuditProblem(_Out):
    seq: int | None = Field(description="the record where the problem is (None: not one record)")
    kind: Literal["edited", "deleted", "reordered", "broken_link", "bad_checkpoint", "bad_head", "truncated"]
    message: str


class VerifyReport(_Out):
    object: Literal["audit_verification"] = "audit_verification"
    ok: bool
    records: int
    checkpoints: int
    last_seq: int
    problems: list[AuditProblem]


# --- lists, identity, errors ---------------------------------------------------------------------------------


class OrgList(_Out):
    object: Literal["list"] = "list"
    data: list[Org]


class TeamList(_Out):
    object: Literal["list"] = "list"
    data: list[Team]


class UserList(_Out):
    object: Literal["list"] = "list"
    data: list[User]


class KeyList(_Out):
    object: Literal["list"] = "list"
    data: list[Key]


class BudgetList(_Out):
    object: Literal["list"] = "list"
    data: list[Budget]


class RateLimitList(_Out):
    object: Literal["list"] = "list"
    data: list[RateLimit]


class AuditList(_Out):
    object: Literal["list"] = "list"
    data: list[AuditRecord]
    next_after: int | None = Field(description="pass as after_seq for the next page; null at the end")


class Deleted(_Out):
    id: str
    object: str
    deleted: bool


class Whoami(_Out):
    object: Literal["principal"] = "principal"
    id: str
    name: str | None
    super_admin: bool
    role: RoleName | None
    org_id: str | None
    team_id: str | None
    user_id: str | None
    key_id: str | None


class ErrorBody(_Out):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(_Out):
    error: ErrorBody


# --- query parameters ----------------------------------------------------------------------------------------


MAX_INT64 = 2**63 - 1  # what the store's INTEGER columns and OFFSET hold; a larger value is a 400, not a crash


class Page(_In):
    limit: int = Field(100, ge=1, le=1000)
    offset: int = Field(0, ge=0, le=MAX_INT64)


class OrgScopedPage(Page):
    org_id: ObjId | None = None


class TeamQuery(OrgScopedPage):
    pass


class UserQuery(OrgScopedPage):
    team_id: ObjId | None = None


class KeyQuery(UserQuery):
    user_id: ObjId | None = None
    include_revoked: bool = False


class LimitQuery(OrgScopedPage):
    scope: Literal["key", "user", "team", "org", "tag", "members"] | None = None
    scope_id: str | None = None


class AuditQuery(_In):
    after_seq: int = Field(0, ge=0, le=MAX_INT64, description="records after this sequence number")
    limit: int = Field(100, ge=1, le=1000)
    org_id: ObjId | None = None
    kind: Literal["admin", "call", "system"] | None = None
    action: str | None = None
    actor: str | None = None
    since: AwareTime | None = Field(None, description="records at or after this date-time (with its time zone)")
    until: AwareTime | None = Field(None, description="records before this date-time (with its time zone)")


class NoQuery(_In):
    pass


# --- org workflow definitions (switchyard.workflows) ----------------------------------------------------------

MAX_WORKFLOW_CHARS = 256 * 1024


class OrgWorkflowPut(_In):
    definition: str = Field(min_length=1, max_length=MAX_WORKFLOW_CHARS,
                            description="the workflow, as YAML (or JSON); its name must match the path's")
    comment: str | None = Field(None, max_length=1000, description="why this version (kept with it)")


class OrgWorkflow(_Out):
    object: Literal["workflow_definition"] = "workflow_definition"
    org_id: str
    name: str
    version: int = Field(description="1, 2, ... per org and name")
    definition: str
    comment: str | None
    sha256: str
    created_at: dt.datetime
    created_by: str | None


class OrgWorkflowList(_Out):
    object: Literal["list"] = "list"
    data: list[OrgWorkflow] = Field(description="the newest version of each of the org's workflows")


class WorkflowVersionQuery(_In):
    version: int | None = Field(None, ge=1, le=2**31 - 1, description="an earlier version; default: the latest")
