"""PromptOps: managed prompts (immutable versions, movable labels), experiments, and metric feedback.

Registered on :data:`switchyard.store.tables.metadata`; revision ``0011_prompts`` creates them and must match.

* ``prompts``: one per (org, name); ``team_id`` set when a team owns it (its team admins publish).
* ``prompt_versions``: immutable; ``spec`` is the version's JSON (messages template, model, parameters, tools,
  response format, variables schema); ``sha256`` of its canonical JSON lets ``prompts push`` skip what is unchanged.
* ``prompt_labels``: (prompt, label) -> version; moving a label is an UPDATE, audited.
* ``experiments``: the JSON definition (variants, weights or bandit, targeting, stop rule) and its state.
* ``feedback_metrics``: one value per (request, metric); ``pending`` when the call's record was not stored yet.
* ``request_log`` gains ``prompt`` (name@version), ``experiment_id`` and ``variant``, for the experiment report.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from .tables import ID, UTCDateTime, metadata

request_log_prompt_columns = (
    Column("prompt", String(255), nullable=True),
    Column("experiment_id", String(40), nullable=True),
    Column("variant", String(64), nullable=True),
)

request_log = Table("request_log", metadata, *request_log_prompt_columns, Index(None, "experiment_id"),
                    extend_existing=True)

prompts = Table(
    "prompts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), nullable=True),  # None: a gateway-wide prompt (super admins only)
    Column("team_id", String(40), nullable=True),
    Column("name", String(128), nullable=False),
    Column("description", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Text, nullable=False),
    UniqueConstraint("org_id", "name"),
)

prompt_versions = Table(
    "prompt_versions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("prompt_id", String(40), ForeignKey("prompts.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("comment", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", Text, nullable=False),
    UniqueConstraint("prompt_id", "version"),
)

prompt_labels = Table(
    "prompt_labels",
    metadata,
    Column("prompt_id", String(40), ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True),
    Column("label", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", Text, nullable=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), nullable=True),
    Column("team_id", String(40), nullable=True),
    Column("name", String(128), nullable=False),
    Column("prompt", String(128), nullable=True),  # the prompt name it splits (None: a model-only experiment)
    Column("spec", JSON, nullable=False),  # variants, allocation, metric, targeting, stop rule
    Column("status", String(16), nullable=False),  # running | stopped
    Column("started_at", UTCDateTime(), nullable=False),
    Column("stopped_at", UTCDateTime(), nullable=True),
    Column("stop_reason", Text, nullable=True),
    Column("created_by", Text, nullable=False),
    Index(None, "status"),
)

feedback_metrics = Table(
    "feedback_metrics",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("request_id", String(255), nullable=False),  # ours once matched; the caller's id while pending
    Column("metric", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("ts", UTCDateTime(), nullable=False),
    Column("principal_id", Text, nullable=False),
    Column("comment", Text, nullable=True),
    Column("pending", Boolean, nullable=False),
    UniqueConstraint("request_id", "metric", "principal_id"),
    Index(None, "pending"),
)
