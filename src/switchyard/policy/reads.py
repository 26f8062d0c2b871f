"""What a policy set reads, from its Cedar JSON form: the key of the decision cache.

Two requests that agree on every attribute the policies read get the same decision, so the decision cache keys on
exactly those: ``principal.<attr>``, ``resource.<attr>`` and ``context.<attr>``. A policy that uses a variable
whole (``principal in Switchyard::Team::"x"``, ``resource == ...``, ``context == ...``) reads its identity: the
key id and its team and org, the deployment's name, or the whole context. ``principal.getTag`` / ``hasTag`` read
the key's metadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

WHOLE = "*"  # the variable itself: identity (principal, resource) or every attribute (context)
META = "#"  # the key's metadata (its Cedar tags)


@dataclass(frozen=True, slots=True)
class Reads:
    principal: frozenset[str]
    resource: frozenset[str]
    context: frozenset[str]
    actions: frozenset[str] | None  # the actions some policy applies to; None: any action


def reads_of(policies: Iterable[dict[str, Any]]) -> Reads:
    found: dict[str, set[str]] = {"principal": set(), "resource": set(), "context": set(), "action": set()}
    actions: set[str] | None = set()
    for p in policies:
        for var in ("principal", "resource"):
            if p[var].get("op", "All") != "All":
                found[var].add(WHOLE)
        act = p["action"]
        if act.get("op") == "==":
            if actions is not None:
                actions.add(act["entity"]["id"])
        elif act.get("op") == "in" and actions is not None:
            ents = act.get("entities") or ([act["entity"]] if "entity" in act else [])
            actions.update(e["id"] for e in ents)
        else:
            actions = None
        for cond in p.get("conditions", ()):
            _walk(cond["body"], found)
    return Reads(frozenset(found["principal"]), frozenset(found["resource"]), frozenset(found["context"]),
                 frozenset(actions) if actions is not None else None)


def _walk(node: Any, found: dict[str, set[str]]) -> None:
    if isinstance(node, list):
        for x in node:
            _walk(x, found)
        return
    if not isinstance(node, dict):
        return
    for op, arg in node.items():
        if op == "Var":
            if arg in found:
                found[arg].add(WHOLE)
        elif op in (".", "has") and isinstance(arg, dict) and (v := _var(arg.get("left"))) is not None and v in found:
            found[v].add(arg["attr"])
        elif op in ("getTag", "hasTag") and isinstance(arg, dict) and _var(arg.get("left")) == "principal":
            found["principal"].add(META)
            _walk(arg.get("right"), found)
        else:
            _walk(arg, found)


def _var(node: Any) -> str | None:
    if isinstance(node, dict) and len(node) == 1 and "Var" in node:
        v = node["Var"]
        return v if isinstance(v, str) else None
    return None
