"""The ``pii:`` config section: what personal data the gateway looks for, and what it does with it (docs/pii.md).

Without the section the PII stage is not in the request path at all.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..classification import parse_data_class
from ..pii.types import BUILTIN_TYPES, NER_TYPES, check_types
from .base import Strict as _Strict

PII_MODES = ("off", "detect", "redact", "mask", "block")
PiiMode = Literal["off", "detect", "redact", "mask", "block"]


class PiiConfig(_Strict):
    mode: PiiMode = "detect"  # what to do with the PII found, unless a key or team says otherwise
    types: list[str] = Field(default_factory=lambda: list(BUILTIN_TYPES))  # which types to look for
    data_class: str | None = "confidential"  # the data class any PII raises a request to (None: leave it)
    type_classes: dict[str, str] = Field(default_factory=dict)  # per type, e.g. {SECRET: restricted}
    phone_regions: list[str] = Field(default_factory=lambda: ["US", "GB", "AU", "DE", "FR"])
    key_modes: bool = True  # keys and teams may choose their own mode (so the reply-restoring stage is in the chain)

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        out = check_types(v)
        ner = [t for t in out if t in NER_TYPES]
        if ner:
            from ..pii.presidio import require_ner

            require_ner(ner)
        return out

    @field_validator("data_class")
    @classmethod
    def _class(cls, v: str | None) -> str | None:
        return parse_data_class(v) if v is not None else None

    @field_validator("type_classes")
    @classmethod
    def _type_classes(cls, v: dict[str, str]) -> dict[str, str]:
        return {check_types([t])[0]: parse_data_class(c) for t, c in v.items()}

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, v: list[str]) -> list[str]:
        import phonenumbers

        out = [r.strip().upper() for r in v]
        for r in out:
            if r not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"unknown phone region {r!r}: expected an ISO 3166 country code such as US or AU")
        return out

    @model_validator(mode="after")
    def _classes_of_known_types(self) -> PiiConfig:
        for t in self.type_classes:
            if t not in self.types:
                raise ValueError(f"type_classes: {t} is not among pii.types")
        return self
