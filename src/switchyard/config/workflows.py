"""The ``workflows:`` section: durable multi-model workflows on DBOS (docs/workflows.md).

Without the section (or with ``enabled: false``) nothing of :mod:`switchyard.workflows` is imported, DBOS is not
started and the ``/v1/workflows`` paths answer 404.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict


class ToolConfig(Strict):
    """A registered HTTP tool: a workflow's ``tool`` step POSTs its JSON input to ``url``."""

    url: str = Field(min_length=1)
    method: Literal["POST", "GET"] = "POST"
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    allow_hosts: list[str] = Field(default_factory=list, description="hosts the tool (and its redirects) may reach")
    allow_private: bool = False  # true: loopback and private addresses are allowed (an operator's internal tool)
    max_redirects: int = Field(3, ge=0, le=10)
    timeout_s: float = Field(30.0, gt=0)
    max_response_bytes: int = Field(1024 * 1024, ge=1024)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("input_schema")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(v)
        except jsonschema.SchemaError as e:
            raise ValueError(f"not a valid JSON schema: {e.message}") from None
        return v


class WorkflowsConfig(Strict):
    enabled: bool = True  # false: as if the section were absent
    files: list[str] = Field(default_factory=list, description="workflow YAML files, relative to the config file")
    # DBOS's system database: sqlite:///path (one host) or postgresql://... (replicas and --workers share it).
    # Unset: the config's store when that is PostgreSQL, else sqlite:///.switchyard/workflows.sqlite
    database: str | None = None
    # this process's DBOS executor id; unset: $SWITCHYARD_EXECUTOR_ID, else the host name (PostgreSQL) or "local"
    executor_id: str | None = Field(None, min_length=1, max_length=128)
    # PostgreSQL: how often a replica touches its lease and looks for dead replicas' runs to take over, and how
    # long a replica's session may stay silent before it is presumed dead (docs/workflows.md#durability-and-scale)
    recovery_interval_s: float = Field(5.0, gt=0, le=300)
    lease_s: float = Field(30.0, ge=2, le=3600)
    # SQLite only: normal (WAL, no fsync per commit: a run survives a crash of the process, not of the machine)
    # | full (SQLite's default: an fsync per step)
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    pool_size: int = Field(20, ge=2, le=500, description="connections to DBOS's system database")
    tools: dict[str, ToolConfig] = Field(default_factory=dict)
    max_steps: int = Field(200, ge=1, le=10_000, description="steps (and map items) a run may execute")
    default_deadline_s: float = Field(3600.0, gt=0, description="a run's deadline when its workflow sets none")
    event_poll_s: float = Field(0.2, gt=0, description="how often the events stream looks for progress")

    @model_validator(mode="after")
    def _lease(self) -> WorkflowsConfig:
        if self.lease_s < 2 * self.recovery_interval_s:
            raise ValueError("lease_s must be at least twice recovery_interval_s (the lease is touched that often)")
        return self

    @field_validator("database")
    @classmethod
    def _database(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return v

    def system_database(self, store: str) -> str:
        if self.database is not None:
            url = self.database
        elif store.startswith("postgresql"):
            url = store
        else:
            url = "sqlite:///.switchyard/workflows.sqlite"
        return url.replace("postgresql+psycopg://", "postgresql://")
