"""The conversation stage: chat completions and messages calls that name a conversation continue it.

In the chain only when the config has a ``state:`` section, and per call only when the call names a conversation
(``x-switchyard-conversation``, or the ``conversation`` field of the body: the server shell sets
``call.conversation``); any other call passes through its hooks at the cost of one attribute test.

* ``before``: refuse unless the key's (or its team's) ``retention`` names ``conversations`` (403); load the history
  (a new id is created on first use); cut it to the context window (:mod:`.context`: truncate, or summarise at the
  caller's cost); prepend it, after the system prompt (the request's, else the stored one) and before the request's
  own messages. The plan is made after this, so routing sees the real prompt size.
* ``routed``: once the deployments are known, another provider's reasoning signatures and meta are dropped from the
  history (:func:`codec.for_provider`).
* ``reply`` (a reply) and ``wrap`` (a stream, assembled as it passes): the turn (the request's messages, the reply
  with its reasoning and tool calls) is stored in one transaction before the client gets the end of the reply, so
  the next call sees it. A failure to store is an error (503), not a silently forgotten turn.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from ..config.state import StateConfig
from ..errors import InvalidRequest, NotFound, PermissionDenied
from ..messages import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Finish,
    Message,
    Part,
    ReasoningDelta,
    ReasoningPart,
    Role,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
)
from ..stages import Answer, CallContext, Stage
from .codec import for_provider
from .context import cut_for, history_budget, summarize, window_for, with_summary
from .conversations import ConversationStore, History, scope_of

log = logging.getLogger("switchyard.state")

RETENTION_KIND = "conversations"


def retention_ttl(principal: Any) -> float:
    """The principal's conversation retention in seconds; refuses (403) a key whose retention does not allow it."""
    ttl = (getattr(principal, "retention", None) or {}).get(RETENTION_KIND)
    if ttl is None:
        raise PermissionDenied("This key may not keep conversations: stored state is payload retention, and "
                               "neither the key's nor its team's retention allows it (retention: {conversations: "
                               "30d}).", param="conversation", code="retention_not_allowed")
    return float(ttl)


@dataclass(slots=True)
class Turn:
    """A call's conversation, between its before hook and the storing of its turn."""

    scope: str
    conv_id: str
    ttl: float
    system_new: Message | None  # the request's own system prompt (stored as the conversation's)
    head: Message | None  # the system prompt sent (with the summary)
    history: list[Message]
    origins: list[str | None]
    new: list[Message]  # the request's own messages, as the caller sent them


class ConversationStage(Stage):
    name = "conversation"

    def __init__(self, store: ConversationStore, config: StateConfig) -> None:
        self.store = store
        self.config = config

    # --- before: load, fit, prepend -----------------------------------------------------------------------

    def before(self, call: CallContext) -> Answer | Awaitable[Answer | None] | None:
        if call.conversation is None:
            return None
        return self._before(call)

    async def _before(self, call: CallContext) -> None:
        req = call.request
        conv_id = call.conversation
        assert conv_id is not None
        if not isinstance(req, ChatRequest):
            raise InvalidRequest("Only chat calls may name a conversation.", param="conversation")
        ttl = retention_ttl(call.principal)
        scope = scope_of(call.principal)
        try:
            history = await self.store.load(scope, conv_id)
        except NotFound:
            try:  # first use of a caller-chosen id: the conversation begins here
                await self.store.create(scope, ttl=ttl, conv_id=conv_id)
            except Exception:  # taken (by another tenant, or a concurrent first call): not this caller's
                try:
                    history = await self.store.load(scope, conv_id)
                except NotFound:
                    raise NotFound(f"No conversation found with id {conv_id!r}.", param="conversation",
                                   code="conversation_not_found") from None
            else:
                history = History(conv_id)
        lead = 0
        while lead < len(req.messages) and req.messages[lead].role == Role.SYSTEM:
            lead += 1
        system_new = _merged(req.messages[:lead])
        new = list(req.messages[lead:])
        if not new:
            raise InvalidRequest("A call that continues a conversation must send at least one new message.",
                                 param="messages")
        system = system_new or history.system
        messages, origins = history.messages, history.origins
        base = dataclasses.replace(req, messages=[m for m in (with_summary(system, history.summary),) if m] + new)
        budget = history_budget(base, window_for(call.generation, req.model), self.config.max_history_tokens)
        summary = history.summary
        if budget is not None:
            cut = cut_for(messages, budget)
            if cut:
                summary = await self._fit(call, scope, history, cut)
                messages, origins = messages[cut:], origins[cut:]
        head = with_summary(system, summary)
        extra = {k: v for k, v in req.extra.items() if k != "conversation"}
        call.rewrite(dataclasses.replace(req, messages=[*([head] if head else []), *messages, *new], extra=extra))
        call.turn = Turn(scope, conv_id, ttl, system_new, head, messages, origins, new)
        _decide(call, {"id": conv_id, "history_messages": len(messages)})

    async def _fit(self, call: CallContext, scope: str, history: History, cut: int) -> str | None:
        """Drop the ``cut`` oldest messages: summarised (stored, charged) or truncated. Returns the summary."""
        if self.config.context == "summarize" and self.config.summarize_deployment:
            gen = call.generation
            dep = gen.catalog.deployments.get(self.config.summarize_deployment) if gen is not None else None
            if dep is not None:
                try:
                    text, usage, cost, ms = await summarize(dep, history.messages[:cut], history.summary,
                                                            self.config.summary_max_tokens)
                except Exception as e:
                    log.warning("conversation summary failed (%s); truncating instead", type(e).__name__)
                    _decide(call, {"context": "truncate", "dropped": cut, "summary_failed": type(e).__name__})
                    return history.summary
                await self.store.summarize_through(scope, history.id, history.seqs[cut - 1], text)
                call.surcharge += cost
                _decide(call, {"context": "summarize", "summarized": cut, "summary_deployment": dep.name,
                               "summary_cost": cost, "summary_input_tokens": usage.input_tokens,
                               "summary_output_tokens": usage.output_tokens, "summary_ms": round(ms, 1)})
                return text
        _decide(call, {"context": "truncate", "dropped": cut})
        return history.summary

    # --- routed: another provider's signatures out --------------------------------------------------------

    def routed(self, call: CallContext) -> Awaitable[None] | None:
        turn: Turn | None = call.turn
        if turn is None or call.plan is None or not isinstance(call.request, ChatRequest):
            return None
        kinds = {e.deployment.provider.type for e in call.plan.entries}
        kinds.update(e.deployment.provider.type for g in call.plan.queue for e in g.entries)
        kind = next(iter(kinds)) if len(kinds) == 1 else None
        kept = for_provider(turn.history, turn.origins, kind)
        if kept != turn.history:
            msgs = [*([turn.head] if turn.head else []), *kept, *turn.new]
            call.rewrite(dataclasses.replace(call.request, messages=msgs))
        return None

    # --- storing the turn ---------------------------------------------------------------------------------

    def reply(self, call: CallContext, answer: ChatResponse) -> ChatResponse | Awaitable[ChatResponse]:
        if call.turn is None:
            return answer
        return self._store_reply(call, answer)

    async def _store_reply(self, call: CallContext, answer: ChatResponse) -> ChatResponse:
        reply = answer.choices[0].message if answer.choices else Message(Role.ASSISTANT, [])
        await self._store(call, reply)
        return answer

    async def _store(self, call: CallContext, reply: Message) -> None:
        turn: Turn = call.turn
        call.turn = None
        origin = call.deployment.provider.type if call.deployment is not None else None
        msgs = [*turn.new, reply] if reply.parts else list(turn.new)
        origins = [None] * len(turn.new) + ([origin] if reply.parts else [])
        await self.store.append(turn.scope, turn.conv_id, msgs, origins, ttl=turn.ttl, system=turn.system_new)

    def wrap(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        if call.turn is None:
            return chunks
        return self._tee(call, chunks)

    async def _tee(self, call: CallContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """Relay the stream and assemble choice 0's reply; once the upstream finished, store the turn before the
        stream ends for the client."""
        asm = _Assembler()
        try:
            async for chunk in chunks:
                asm.feed(chunk)
                yield chunk
            if asm.finished:
                await self._store(call, asm.message())
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()


class _Assembler:
    """Choice 0's reply, from the neutral stream events."""

    __slots__ = ("calls", "finished", "reasoning", "redacted", "signature", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.signature: str | None = None
        self.redacted: str | None = None
        self.calls: dict[int, list[str]] = {}  # index -> [id, name, arguments...]
        self.finished = False

    def feed(self, chunk: Chunk) -> None:
        for e in chunk.events:
            if getattr(e, "choice", 0) != 0:
                continue
            if isinstance(e, TextDelta):
                self.text.append(e.text)
            elif isinstance(e, ReasoningDelta):
                self.reasoning.append(e.text)
                self.signature = e.signature or self.signature
                self.redacted = e.redacted or self.redacted
            elif isinstance(e, ToolCallStart):
                self.calls[e.index] = [e.id, e.name]
            elif isinstance(e, ToolCallDelta):
                self.calls.setdefault(e.index, ["", ""]).append(e.arguments)
            elif isinstance(e, Finish):
                self.finished = True

    def message(self) -> Message:
        parts: list[Part] = []
        if self.reasoning and (any(self.reasoning) or self.signature):
            parts.append(ReasoningPart("".join(self.reasoning), self.signature))
        if self.redacted:
            parts.append(ReasoningPart(redacted=self.redacted))
        if self.text:
            parts.append(TextPart("".join(self.text)))
        for i in sorted(self.calls):
            c = self.calls[i]
            parts.append(ToolCallPart(c[0], c[1], "".join(c[2:])))
        return Message(Role.ASSISTANT, parts)


def _merged(system: list[Message]) -> Message | None:
    if not system:
        return None
    if len(system) == 1:
        return system[0]
    return Message(Role.SYSTEM, [p for m in system for p in m.parts])


def _decide(call: CallContext, what: dict[str, Any]) -> None:
    if call.decisions is None:
        call.decisions = {}
    call.decisions.setdefault("conversation", {}).update(what)
