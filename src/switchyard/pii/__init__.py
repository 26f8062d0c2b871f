"""Personal data in requests: detectors (:mod:`.detectors`, :mod:`.secrets`), one compiled scanner per set of types
(:mod:`.scanner`), redaction and reversible masking (:mod:`.mask`), and the request-path stages (:mod:`.stage`).
See docs/pii.md.

``scan(text, types)`` is the short form: ``Scanner(types).scan(text)`` with the scanner cached per set of types.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from .scanner import Scanner
from .types import BUILTIN_TYPES, NER_TYPES, PII_TYPES, Entity, PiiConfigError

__all__ = ["BUILTIN_TYPES", "NER_TYPES", "PII_TYPES", "Entity", "PiiConfigError", "Scanner", "scan", "scanner_for"]


@lru_cache(maxsize=32)
def _cached(types: frozenset[str]) -> Scanner:
    return Scanner(types)


def scanner_for(types: Iterable[str] | None = None) -> Scanner:
    """The scanner of these types (all built-in types when None), compiled once per set."""
    return _cached(frozenset(types) if types is not None else frozenset(BUILTIN_TYPES))


def scan(text: str, types: Iterable[str] | None = None) -> list[Entity]:
    """The PII entities in ``text``: character offsets, sorted, never overlapping."""
    return scanner_for(types).scan(text)
