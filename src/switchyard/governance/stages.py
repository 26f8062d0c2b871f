"""Governance on the request path, as stages (:mod:`switchyard.stages`): who calls, which models the key may use,
what the call may spend, and its record. The app factory (``server/factory.py``) declares their order:

    Authenticate (admit) ─► AllowList ─► Record ─► [extra stages] ─► Reserve ─► Intend

``after`` hooks unwind in reverse, so a call is settled (Reserve) before it is recorded (Record), and the record
carries the charges; a refusal by the allow-list is recorded (and audited as a denial) like any other call.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from ..messages import ChatRequest, ChatResponse, EmbeddingRequest
from ..routing.router import AUTO
from ..stages import CallContext, Outcome, Stage, record_of
from .auth import Authenticator
from .payloads import add_response, embedding_payload, request_payload

if TYPE_CHECKING:
    from ..records import Recorder
    from .feedback import RecentEmbeddings
    from .intents import Intents
    from .ledger import Ledger


class Authenticate(Stage):
    """The caller's key (``call.credential``) to a principal, from memory; counts failures per address."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def _admit(self, call: CallContext) -> None:
        key, call.credential = call.credential, None
        call.principal = await self.auth.authenticate(key, call.peer)

    def admit(self, call: CallContext) -> Awaitable[None]:
        return self._admit(call)


class AllowList(Stage):
    """The key's model allow-list (``Principal.require_model``): a 403 naming the model."""

    def before(self, call: CallContext) -> None:
        p, req = call.principal, call.request
        if p is not None and req is not None and p.models is not None:
            if req.model == AUTO and AUTO not in p.models:  # auto: among the deployments the key may use
                call.narrow(p.may_use, "auto: the key's models")
                return
            p.require_model(req.model)


class Record(Stage):
    """Each call's record, handed to the recorder (which writes it off the hot path). ``before`` keeps the content
    the key's logging mode asks for; ``after`` builds the record, with the charges the settling stage left."""

    def __init__(self, recorder: Recorder, embeddings: RecentEmbeddings | None = None) -> None:
        self.recorder = recorder
        self.embeddings = embeddings  # a prompt embedding a stage computed, kept in memory for feedback

    def before(self, call: CallContext) -> None:
        p, req = call.principal, call.request
        if p is not None and p.logging != "none":
            if isinstance(req, ChatRequest):
                call.payload = request_payload(p.logging, req)
            elif isinstance(req, EmbeddingRequest):
                call.payload = embedding_payload(p.logging, req)

    def after(self, call: CallContext, outcome: Outcome) -> None:
        if call.payload is not None and isinstance(outcome.answer, ChatResponse):
            add_response(call.payload, outcome.answer)
        call.record = rec = record_of(call, outcome)
        self.recorder.record(rec)
        if call.embedding is not None and self.embeddings is not None:
            self.embeddings.put(call.request_id, call.embedding)


class Reserve(Stage):
    """Hold the worst case against every budget and rate limit in scope once the call is planned (nothing to do
    for most keys); settle the real cost after it. Its ``after`` runs before Record's, so the charges reach the
    record."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def routed(self, call: CallContext) -> Awaitable[None] | None:
        p, plan = call.principal, call.plan
        if p is not None and plan is not None and (p.budgets or p.rate_limits):
            return self.ledger.reserve(call.request_id, p, plan, call.request)
        return None

    def after(self, call: CallContext, outcome: Outcome) -> None:
        outcome.charges = self.ledger.settle(call.request_id, outcome)


class Intend(Stage):
    """With the durable spend spool: each admitted call's intent (after its reservation), so that a call a crash
    cuts still gets an ``interrupted`` record (see :mod:`.intents`)."""

    def __init__(self, intents: Intents) -> None:
        self.intents = intents

    def routed(self, call: CallContext) -> None:
        if call.plan is not None:
            self.intents(call, call.plan, call.request)


__all__ = ["AllowList", "Authenticate", "Intend", "Record", "Reserve"]
