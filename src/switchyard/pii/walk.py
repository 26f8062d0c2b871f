"""Every text of a neutral request, rewritten by one function: system prompts and message text, tool call arguments
(JSON text), tool results, every string in the fields the neutral model does not carry (``extra``, which a
same-wire upstream receives), and embeddings input. Reasoning parts are left alone (their signatures must
round-trip)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..messages import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    Part,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

Rewrite = Callable[[str, bool], str]  # (text, is_json) -> text


def _parts(parts: list[Part], f: Rewrite) -> bool:
    changed = False
    for p in parts:
        if isinstance(p, TextPart):
            new = f(p.text, False)
            if new is not p.text and new != p.text:
                p.text, changed = new, True
        elif isinstance(p, ToolCallPart):
            new = f(p.arguments, True)
            if new != p.arguments:
                p.arguments, changed = new, True
        elif isinstance(p, ToolResultPart):
            changed = _parts(p.content, f) or changed
    return changed


def rewrite_request(req: ChatRequest | EmbeddingRequest, f: Rewrite) -> bool:
    """Apply ``f`` to every text of ``req`` in place; True if any text changed."""
    changed = False
    if isinstance(req, ChatRequest):
        for m in req.messages:
            changed = _parts(m.parts, f) or changed
        if req.extra:  # the fields we do not model reach a same-wire upstream too (a prediction's text, say)
            extra = rewrite_json(req.extra, f)
            if extra != req.extra:
                req.extra, changed = extra, True
    else:
        inp: list[Any] = req.input
        for i, item in enumerate(inp):
            if isinstance(item, str):
                new = f(item, False)
                if new != item:
                    inp[i], changed = new, True
    return changed


def rewrite_response(resp: ChatResponse, f: Rewrite) -> bool:
    """Apply ``f`` to the texts and tool call arguments of a reply's choices, in place."""
    changed = False
    for c in resp.choices:
        changed = _parts(c.message.parts, f) or changed
        if c.refusal:
            new = f(c.refusal, False)
            if new != c.refusal:
                c.refusal, changed = new, True
    return changed


def rewrite_json(value: Any, f: Rewrite) -> Any:
    """A copy of a JSON value with ``f`` applied to every string in it (keys left alone)."""
    if isinstance(value, str):
        return f(value, False)
    if isinstance(value, dict):
        return {k: rewrite_json(v, f) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_json(v, f) for v in value]
    return value
