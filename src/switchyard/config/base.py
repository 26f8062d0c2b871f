"""What every config section shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are errors (a typo must not be ignored); values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
