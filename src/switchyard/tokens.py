"""Cheap token estimates, for budgets, context-window checks and providers that report no usage.

An estimate, not a tokenizer: about four characters of English per token, as OpenAI's own guidance says. Good
enough to reserve a worst case and to skip deployments whose context window is clearly too small.
"""

from __future__ import annotations

from .messages import ChatRequest, ImagePart, Message, TextPart, ToolCallPart, ToolResultPart

_PER_MESSAGE = 4
_PER_IMAGE = 765  # OpenAI's cost of one high-detail 512px tile set; a fair worst case


def estimate_text(text: str) -> int:
    return (len(text) + 3) // 4


def estimate_message(m: Message) -> int:
    n = _PER_MESSAGE
    for p in m.parts:
        if isinstance(p, TextPart):
            n += estimate_text(p.text)
        elif isinstance(p, ImagePart):
            n += _PER_IMAGE
        elif isinstance(p, ToolCallPart):
            n += estimate_text(p.name) + estimate_text(p.arguments)
        elif isinstance(p, ToolResultPart):
            n += sum(estimate_text(c.text) for c in p.content if isinstance(c, TextPart))
    return n


def estimate_prompt(req: ChatRequest) -> int:
    n = 3 + sum(estimate_message(m) for m in req.messages)
    for t in req.tools or ():
        n += estimate_text(t.name) + estimate_text(t.description or "") + estimate_text(str(t.parameters or ""))
    return n
