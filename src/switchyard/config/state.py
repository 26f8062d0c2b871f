"""The ``state:`` section: conversations kept by the gateway (docs/state.md)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MAX_RETENTION_S = 3650 * 86400.0  # ten years
RETENTION_KINDS = ("conversations",)


def parse_duration(value: object) -> float:
    """Seconds of ``"30d"``, ``"12h"``, ``"90m"``, ``"3600s"``, ``"3600"`` or a number; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '30d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ValueError(f"a duration is a number of seconds or a string such as '30d' (s, m, h, d, w), not "
                         f"{str(value)[:40]!r}")
    if not 0 < seconds <= MAX_RETENTION_S:
        raise ValueError("a duration must be above zero and at most ten years")
    return seconds


def parse_retention(value: object) -> dict[str, str] | None:
    """A ``retention`` mapping (``{conversations: "30d"}``), validated and kept as given; None stays None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("retention is a mapping such as {conversations: '30d'}")
    out: dict[str, str] = {}
    for kind, dur in value.items():
        if kind not in RETENTION_KINDS:
            raise ValueError(f"unknown retention kind {kind!r}; expected one of {', '.join(RETENTION_KINDS)}")
        parse_duration(dur)
        out[str(kind)] = str(dur)
    return out


class StateConfig(Strict):
    """Conversations kept for chat completions, messages and ``/v1/conversations``. Stored only for keys whose (or
    whose team's) ``retention`` names ``conversations``."""

    store: str | None = None  # a store URL; None: the config's ``store``
    encryption_key: str | None = Field(None, min_length=16)  # content is encrypted at rest (AES-GCM) when set
    context: Literal["truncate", "summarize"] = "truncate"  # when the history exceeds the context window
    summarize_deployment: str | None = None  # the (cheap) deployment that writes summaries; needed for summarize
    max_history_tokens: int | None = Field(None, ge=64)  # a cap on the history sent, besides the window
    summary_max_tokens: int = Field(512, ge=16, le=8192)
    scratchpad_max_bytes: int = Field(16 * 1024, ge=64, le=1024 * 1024)
    tool_outputs_max: int = Field(100, ge=0, le=10_000)  # stored tool outputs kept per conversation (newest)
    max_items: int = Field(10_000, ge=10)  # items per conversation; a turn past it is refused
    sweep_interval: float = Field(60.0, gt=0)  # seconds between TTL sweeps
    # PostgreSQL: wait for each turn's WAL flush (off: a server crash may lose the last moments of turns, no more)
    synchronous_commit: bool = False

    @field_validator("encryption_key", mode="before")
    @classmethod
    def _empty(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _summarizer(self) -> StateConfig:
        if self.context == "summarize" and not self.summarize_deployment:
            raise ValueError("context: summarize needs summarize_deployment (the deployment that writes summaries)")
        return self
