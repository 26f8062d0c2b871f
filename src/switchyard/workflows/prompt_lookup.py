"""Validation's view of the prompt registry: does a model step's ``prompt`` name a version that exists, and what
does that version need (its model, its variables)?

The lookup follows the request path's resolution (:func:`switchyard.prompts.registry.resolve`): the org's prompt
of that name, else the gateway-wide one. Without an org (``switchyard workflow validate`` of a file, which keys of
any org may run) a gateway-wide prompt is looked for first, then any org's.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..store.prompt_tables import prompt_labels, prompt_versions, prompts
from .definition import PromptInfo, PromptLookup, PromptMissing


def prompt_lookup(conn: sa.Connection, org_id: str | None) -> PromptLookup:
    """A lookup that reads on ``conn`` (one open connection or transaction, for as long as validation runs)."""

    def look(name: str, label: str | None, version: int | None) -> PromptInfo | PromptMissing:
        t = prompts.c
        row: Any = None
        for org in ([org_id] if org_id else []) + [None]:
            q = sa.select(t.id).where(t.name == name, t.org_id.is_(None) if org is None else t.org_id == org)
            row = conn.execute(q).first()
            if row is not None:
                break
        if row is None and org_id is None:
            row = conn.execute(sa.select(t.id).where(t.name == name).order_by(t.org_id).limit(1)).first()
        if row is None:
            where = f"in org {org_id!r} or gateway-wide" if org_id else "in the store"
            return PromptMissing("name", f"unknown prompt {name!r} (none {where})")
        if version is None:
            lbl = label or "production"
            version = conn.execute(sa.select(prompt_labels.c.version).where(
                prompt_labels.c.prompt_id == row.id, prompt_labels.c.label == lbl)).scalar()
            if version is None:
                return PromptMissing("label", f"prompt {name!r} has no label {lbl!r}")
            field = "label"
        else:
            field = "version"
        spec = conn.execute(sa.select(prompt_versions.c.spec).where(
            prompt_versions.c.prompt_id == row.id, prompt_versions.c.version == version)).scalar()
        if spec is None:
            return PromptMissing(field, f"prompt {name!r} has no version {version}")
        return PromptInfo(f"{name}@{version}", spec.get("model"), spec.get("variables"))

    return look
