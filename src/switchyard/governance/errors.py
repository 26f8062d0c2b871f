"""Governance errors that the shared error tree (``switchyard.errors``) does not have yet."""

from __future__ import annotations

from ..errors import InvalidRequest, ServiceUnavailable


class GovernanceUnavailable(ServiceUnavailable):
    """Our own infrastructure (the store, or Redis) cannot answer: never a reason to call a key invalid."""

    code = "governance_unavailable"


class Conflict(InvalidRequest):
    """The change clashes with what exists (a duplicate name, an object still in use)."""

    status = 409
    code = "conflict"
