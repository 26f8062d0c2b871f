"""PII type names and the entity a scan reports. A low module: it imports nothing of the package."""

from __future__ import annotations

from typing import NamedTuple

#: The types detected by Switchyard itself, highest priority first: when two findings overlap, the one of the
#: earlier type wins (a checksum beats a shape: a valid card number is not also a phone number).
BUILTIN_TYPES: tuple[str, ...] = (
    "SECRET", "CREDIT_CARD", "IBAN", "AU_MEDICARE", "AU_TFN", "US_SSN", "UK_NINO", "EMAIL", "IP_ADDRESS", "PHONE",
)
#: Named-entity types, only through the ``switchyard[presidio]`` extra.
NER_TYPES: tuple[str, ...] = ("PERSON", "LOCATION")
PII_TYPES: tuple[str, ...] = BUILTIN_TYPES + NER_TYPES
PRIORITY = {t: i for i, t in enumerate(PII_TYPES)}


#: The PII modes, least strict first: where several apply to a request (its key's, and the ``@pii`` annotations of
#: the policies that allowed it), the strictest wins. ``mask`` is below ``redact``: both keep every value from the
#: upstream, but ``redact`` keeps it from the reply too, and holds nothing for the call.
PII_MODES: tuple[str, ...] = ("off", "detect", "mask", "redact", "block")
_MODE_RANK = {m: i for i, m in enumerate(PII_MODES)}


def strictest(*modes: str | None) -> str | None:
    """The strictest of these modes (None counts for nothing); None if all are None."""
    best: str | None = None
    for m in modes:
        if m is not None and (best is None or _MODE_RANK[m] > _MODE_RANK[best]):
            best = m
    return best


class PiiConfigError(ValueError):
    """A PII configuration that cannot work: an unknown type, or an NER type without its extra."""


class Entity(NamedTuple):
    """One finding: its type and its character offsets in the scanned text (``text[start:end]``)."""

    type: str
    start: int
    end: int

    def as_json(self) -> dict[str, object]:
        return {"type": self.type, "start": self.start, "end": self.end}


def check_types(types: list[str] | tuple[str, ...] | frozenset[str]) -> list[str]:
    """The types, upper-cased; raises PiiConfigError naming an unknown one and the valid ones."""
    out: list[str] = []
    for t in types:
        u = t.strip().upper()
        if u not in PRIORITY:
            raise PiiConfigError(f"unknown PII type {t!r}: expected one of {', '.join(PII_TYPES)}")
        if u not in out:
            out.append(u)
    return out
