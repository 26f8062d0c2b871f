"""Context management: a conversation's history cut to fit the context window of where the call may go.

The window is the largest of the deployments the requested name may be served by (its route's targets, its
fallbacks and its context-window fallbacks): a history that fits some deployment is sent whole, and the router
(which sees the real prompt, history included) skips those whose window is too small, so a route with a short and a
long deployment moves to the long one. A history too long for all of them is cut at a turn boundary (a turn begins
at a user message that is not only tool results, so a tool result never loses its call):

* ``truncate`` keeps the system prompt and the newest turns that fit;
* ``summarize`` has the configured deployment summarise the oldest turns (and any earlier summary) into one text,
  which is stored (:meth:`ConversationStore.summarize_through`) and sent with the system prompt from then on. Its
  cost is charged to the caller (``call.surcharge``) and shows in the call's decisions. If the summariser fails the
  call falls back to truncation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..messages import WIRE_OPENAI_CHAT, ChatRequest, Message, Role, TextPart, ToolResultPart, Usage
from ..tokens import estimate_message, estimate_prompt

SUMMARY_PREFIX = "Summary of the earlier conversation:\n"
_INSTRUCTIONS = ("Summarise the conversation below for the assistant that continues it: keep facts, names, "
                 "decisions, open questions and the user's preferences; drop pleasantries. Write at most a few "
                 "short paragraphs.")


def window_for(generation: Any, model: str) -> int | None:
    """The largest context window among the deployments that may serve ``model``; None: one has no limit (or the
    name is unknown: the router says so)."""
    if generation is None:
        return None
    spec = generation.router.specs.get(model)
    if spec is None:
        return None
    groups = [spec.group, *spec.fallbacks, *spec.context_fallbacks]
    windows: list[int | None] = [e.deployment.context_window for g in groups for e in g.entries]
    known = [w for w in windows if w is not None]
    if not windows or len(known) < len(windows):
        return None
    return max(known)


def turn_starts(messages: Sequence[Message]) -> list[int]:
    """Where each turn begins: a user message that is not only tool results."""
    return [i for i, m in enumerate(messages)
            if m.role == Role.USER and not (m.parts and all(isinstance(p, ToolResultPart) for p in m.parts))]


def cut_for(history: Sequence[Message], budget: int) -> int:
    """The index of the oldest turn start from which the history fits ``budget`` tokens (len: none fits)."""
    sizes = [estimate_message(m) for m in history]
    total = sum(sizes)
    if total <= budget:
        return 0
    tail = total
    done = 0
    for start in turn_starts(history):
        tail -= sum(sizes[done:start])
        done = start
        if start > 0 and tail <= budget:
            return start
    return len(history)


def history_budget(req: ChatRequest, window: int | None, cap: int | None) -> int | None:
    """Tokens left for the history: the window less the request itself (system, new messages, tools) and its
    output allowance; ``cap`` (``state.max_history_tokens``) bounds it too. None: no limit."""
    limits = []
    if window is not None:
        limits.append(window - estimate_prompt(req) - (req.max_tokens or 0))
    if cap is not None:
        limits.append(cap)
    return max(min(limits), 0) if limits else None


def with_summary(system: Message | None, summary: str | None) -> Message | None:
    """The system prompt with the stored summary after it (a system message of its own when there is none)."""
    if not summary:
        return system
    part = TextPart(SUMMARY_PREFIX + summary)
    if system is None:
        return Message(Role.SYSTEM, [part])
    return Message(Role.SYSTEM, [*system.parts, part], system.name, system.meta)


def transcript(messages: Sequence[Message], earlier: str | None) -> str:
    lines = [f"(earlier summary) {earlier}"] if earlier else []
    for m in messages:
        text = m.text()
        for p in m.parts:
            if isinstance(p, ToolResultPart):
                text += " [tool result] " + "".join(c.text for c in p.content if isinstance(c, TextPart))
            elif getattr(p, "kind", "") == "tool_call":
                text += f" [called {getattr(p, 'name', '')}({getattr(p, 'arguments', '')})]"
        if text.strip():
            lines.append(f"{m.role.value}: {text.strip()}")
    return "\n".join(lines)


def summary_request(model: str, messages: Sequence[Message], earlier: str | None, max_tokens: int) -> ChatRequest:
    return ChatRequest(model=model, wire=WIRE_OPENAI_CHAT, max_tokens=max_tokens, temperature=0.0, messages=[
        Message(Role.SYSTEM, [TextPart(_INSTRUCTIONS)]),
        Message(Role.USER, [TextPart(transcript(messages, earlier))]),
    ])


async def summarize(deployment: Any, messages: Sequence[Message], earlier: str | None,
                    max_tokens: int) -> tuple[str, Usage, float, float]:
    """Ask ``deployment`` (a catalog Deployment) for a summary: (text, usage, cost in USD, milliseconds)."""
    started = time.monotonic()
    req = summary_request(deployment.target.model, messages, earlier, max_tokens)
    resp = await deployment.provider.chat(req, deployment.target)
    text = resp.choices[0].message.text().strip() if resp.choices else ""
    if not text:
        raise ValueError("the summariser returned no text")
    usage = resp.usage or Usage()
    return text, usage, deployment.cost(usage), (time.monotonic() - started) * 1000
