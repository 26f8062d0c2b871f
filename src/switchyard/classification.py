"""Data classes of a request, lowest to highest: what the policy engine sees as ``context.data_class``.

A request's class is the highest of what its caller says (``x-switchyard-data-class``), its key's or team's
default, and what the PII found in it raises it to. A caller may raise its class, never lower it. A low module:
it imports nothing of the package.
"""

from __future__ import annotations

DATA_CLASSES: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
_RANK = {c: i for i, c in enumerate(DATA_CLASSES)}


def parse_data_class(value: str) -> str:
    """A data class by name (case and surrounding spaces ignored). Raises ValueError naming the valid ones."""
    c = value.strip().lower()
    if c not in _RANK:
        raise ValueError(f"unknown data class {value!r}: expected one of {', '.join(DATA_CLASSES)}")
    return c


def highest(*classes: str | None) -> str | None:
    """The highest of these classes (None counts for nothing); None if all are None."""
    best: str | None = None
    for c in classes:
        if c is not None and (best is None or _RANK[c] > _RANK[best]):
            best = c
    return best
