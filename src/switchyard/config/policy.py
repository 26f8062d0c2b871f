"""The ``policies:`` section: Cedar policy files (docs/policy.md)."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from .base import Strict as _Strict


class PolicyConfig(_Strict):
    files: list[str] = Field(default_factory=list, description="Cedar policy files, relative to the config file")
    schema_file: str | None = Field(None, alias="schema", description="a Cedar schema that replaces the shipped one")
    default: Literal["allow", "deny"] = Field("allow", description="the decision when no policy permits or forbids")
    timezone: str = Field("UTC", description="the IANA zone of context.hour and context.weekday")

    @property
    def enabled(self) -> bool:
        return bool(self.files)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v
