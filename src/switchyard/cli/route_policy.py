"""The policies in ``switchyard route explain``: the deployments the config's Cedar policies drop for a described
caller, named with the policies that dropped them, as the gateway's ``x-switchyard-route-reason`` names them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click
from pydantic import ValidationError

from ..policy.explain import Described, DescribedPrincipal, DescribedRequest, DescribeError, explain

if TYPE_CHECKING:
    from ..config import Config
    from ..routing import Router


@dataclass(frozen=True, slots=True)
class PolicyNarrowing:
    allowed: frozenset[str] | None  # None: the policies drop nothing
    reason: str | None  # "policy: us-small (au-residency, zdr-confidential)", as the gateway's route reason says
    denial: str | None  # every candidate is forbidden: the caller's 403 message (policy ids and their @reason)
    pii_mode: str | None  # the PII mode the permits ask for (@pii)


def narrowing(cfg: Config, config_path: str, router: Router, model: str, *, embeddings: bool, prompt_tokens: int,
              max_tokens: int | None, stream: bool, principal: str | None, data_class: str | None, pii: str,
              tools: str, hour: int | None, weekday: int | None) -> PolicyNarrowing:
    """What the config's policies decide for this caller and request (raises click.UsageError on a bad option, and
    click.ClickException on an invalid policy)."""
    from ..policy import PolicyError
    from ..policy.stage import load_engine

    try:
        raw: Any = json.loads(principal) if principal is not None else {"key": "cli"}
        who = DescribedPrincipal.model_validate(raw)
        req = DescribedRequest(action="embed" if embeddings else "chat", route=model, data_class=data_class,
                               pii=[t.strip().upper() for t in pii.split(",") if t.strip()],
                               tools=[t.strip() for t in tools.split(",") if t.strip()], prompt_tokens=prompt_tokens,
                               max_tokens=max_tokens, stream=stream, hour=hour, weekday=weekday)
    except (ValueError, ValidationError) as e:
        raise click.UsageError(f"--principal or a request option: {e}") from None
    try:
        engine = load_engine(cfg, config_path)
    except PolicyError as e:
        raise click.ClickException(f"invalid policy: {e}") from None
    try:
        ex = explain(engine, Described(principal=who, request=req), router, zone=ZoneInfo(cfg.policies.timezone),
                     default_max_tokens=cfg.ledger.default_max_tokens)
    except DescribeError:
        return PolicyNarrowing(None, None, None, None)  # an unknown model: the router explains that
    denied = [d for d in ex.decisions if not d.allowed]
    if not denied:
        return PolicyNarrowing(None, None, None, ex.pii_mode)
    reason = "policy: " + ", ".join(f"{d.deployment} ({', '.join(d.ids)})" for d in denied)
    allowed = frozenset(d.deployment for d in ex.decisions if d.allowed)
    denial = None
    if not allowed:
        ids = sorted({i for d in denied for i in d.ids})
        denial = "forbidden by policy: " + "; ".join(
            f"{i} ({ex.reasons[i]})" if ex.reasons.get(i) else i for i in ids)
    return PolicyNarrowing(allowed, reason, denial, ex.pii_mode)
