"""What a policy sees: the principal (:class:`Subject`), a deployment (:class:`Resource`) and the request's
context, as plain frozen values (hashable: the decision cache keys on them), and their Cedar JSON forms."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..catalog import Deployment
    from ..governance.auth import Principal

NS = "Switchyard"
ACTIONS = ("chat", "embed", "tool_call")
_CENT = Decimal("0.0001")  # Cedar's decimal has four digits after the point
MAX_DECIMAL = Decimal("922337203685477.5807")


@dataclass(frozen=True, slots=True)
class Subject:
    """The principal: ``Switchyard::Key::"<key>"``, in its team and org. ``metadata``: the key's metadata as
    (name, string value) pairs, which policies read as the entity's tags (``principal.getTag("name")``)."""

    key: str
    org: str = ""
    team: str = ""
    user: str = ""
    roles: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, p: Principal) -> Subject:
        return cls(key=p.key_id or p.id, org=p.org_id or "", team=p.team_id or "", user=p.user_id or "",
                   roles=frozenset(p.roles), tags=frozenset(p.tags), metadata=metadata_tags(p.metadata))

    def entities(self) -> list[dict[str, Any]]:
        parents: list[dict[str, str]] = []
        out: list[dict[str, Any]] = []
        if self.org:
            out.append({"uid": {"type": f"{NS}::Org", "id": self.org}, "attrs": {}, "parents": []})
            parents.append({"type": f"{NS}::Org", "id": self.org})
        if self.team:
            team_parents = [{"type": f"{NS}::Org", "id": self.org}] if self.org else []
            out.append({"uid": {"type": f"{NS}::Team", "id": self.team}, "attrs": {}, "parents": team_parents})
            parents.append({"type": f"{NS}::Team", "id": self.team})
        out.append({"uid": self.uid(), "parents": parents, "tags": dict(self.metadata),
                    "attrs": {"org": self.org, "team": self.team, "user": self.user, "roles": sorted(self.roles),
                              "tags": sorted(self.tags)}})
        return out

    def uid(self) -> dict[str, str]:
        return {"type": f"{NS}::Key", "id": self.key}


def metadata_tags(meta: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A key's metadata as Cedar tags: strings as they are, any other value as its JSON text."""
    return tuple(sorted((str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True))
                        for k, v in meta.items()))


@dataclass(frozen=True, slots=True)
class Resource:
    """A deployment: ``Switchyard::Deployment::"<name>"``."""

    name: str
    provider: str = ""
    region: str = ""
    zdr: bool = False
    capabilities: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    @classmethod
    def of(cls, d: Deployment) -> Resource:
        return cls(name=d.name, provider=d.provider_name, region=d.region or "", zdr=d.zdr,
                   capabilities=d.capabilities, tags=d.tags)

    def entity(self) -> dict[str, Any]:
        return {"uid": self.uid(), "parents": [],
                "attrs": {"provider": self.provider, "region": self.region, "zdr": self.zdr,
                          "capabilities": sorted(self.capabilities), "tags": sorted(self.tags)}}

    def uid(self) -> dict[str, str]:
        return {"type": f"{NS}::Deployment", "id": self.name}


def usd(value: float | Decimal) -> Decimal:
    """A cost as Cedar reads it: rounded up to four decimals, capped at Cedar's largest decimal."""
    d = Decimal(str(value)) if not isinstance(value, Decimal) else value
    return min(d.quantize(_CENT, rounding=ROUND_CEILING), MAX_DECIMAL)


def context_json(context: Mapping[str, Any], cost: Decimal) -> dict[str, Any]:
    """The request's context in Cedar's JSON form, with this deployment's estimated cost."""
    out: dict[str, Any] = {}
    for k, v in context.items():
        out[k] = sorted(v) if isinstance(v, frozenset | set) else v
    out["estimated_cost_usd"] = {"__extn": {"fn": "decimal", "arg": f"{cost:.4f}"}}
    return out


def base_context(*, data_class: str = "public", pii: frozenset[str] = frozenset(), prompt_tokens: int = 0,
                 max_tokens: int = 0, route: str = "", stream: bool = False, tools: frozenset[str] = frozenset(),
                 hour: int = 0, weekday: int = 0) -> dict[str, Any]:
    """A context of the contract, without ``estimated_cost_usd`` (per deployment) or ``tool`` (tool_call)."""
    return {"data_class": data_class, "pii": pii, "prompt_tokens": prompt_tokens, "max_tokens": max_tokens,
            "route": route, "stream": stream, "tools": tools, "hour": hour, "weekday": weekday}
