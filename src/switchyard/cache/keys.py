"""What makes two requests the same, for the cache.

A chat request splits in two:

* its **shape**: everything but the text of its last user turn — the model or route it names, the earlier messages
  (system prompt and conversation), the tools and tool choice, the response format, and every parameter that can
  change the answer (sampling, limits, stops, seeds, reasoning, unmodelled extras). Two requests may share an entry
  only if their shapes are identical.
* its **question**: the text of the trailing user message. An exact hit needs the same question; a similar hit a
  question whose embedding's cosine to the stored one reaches the route's threshold.

Keys are BLAKE2b digests (hex) of a canonical encoding, and every key is taken within a **scope** (an org or a
key), so two tenants' identical requests never share a key.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..messages import (
    AudioPart,
    ChatRequest,
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

# parameters that never change the answer: how it is delivered, and who asks
_DELIVERY = ("stream", "include_usage", "user", "metadata")


def uncacheable(req: ChatRequest, temperature_any: bool) -> str | None:
    """Why this request is not cached (None: it may be). By default only greedy requests (``temperature`` 0)
    are; a route with ``temperature_any`` caches sampled ones too."""
    if not req.messages or req.messages[-1].role is not Role.USER:
        return "the last message is not the user's"
    if not temperature_any and req.temperature != 0:
        return "temperature is not 0"
    if req.n is not None and req.n > 1:
        return "n > 1"
    if req.logprobs:
        return "logprobs"
    return None


def _part(p: Any) -> Any:
    if isinstance(p, TextPart):
        return ("t", p.text)
    if isinstance(p, ImagePart):
        return ("i", p.url, p.data, p.media_type, p.detail)
    if isinstance(p, FilePart):
        return ("f", p.data, p.url, p.file_id, p.media_type, p.filename)
    if isinstance(p, AudioPart):
        return ("a", p.data, p.format)
    if isinstance(p, ToolCallPart):
        return ("c", p.id, p.name, p.arguments)
    if isinstance(p, ToolResultPart):
        return ("r", p.tool_call_id, p.is_error, [_part(x) for x in p.content])
    if isinstance(p, ReasoningPart):
        return ("z", p.text, p.signature, p.redacted)
    return ("?", repr(p))


def _message(m: Message) -> Any:
    return (m.role.value, m.name, [_part(p) for p in m.parts])


def _digest(obj: Any) -> str:
    return hashlib.blake2b(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS),
                           digest_size=16).hexdigest()


def question(req: ChatRequest) -> str:
    """The text of the trailing user message (what similarity compares)."""
    return req.messages[-1].text()


def shape_key(req: ChatRequest) -> str:
    """The digest of everything that must match exactly (see the module's docstring)."""
    last = req.messages[-1]
    others = [p for p in last.parts if not isinstance(p, TextPart)]  # an image in the question must match exactly
    rf = req.response_format
    tc = req.tool_choice
    shape = (
        req.model,
        [_message(m) for m in req.messages[:-1]],
        last.name, [_part(p) for p in others],
        [(t.name, t.description, t.parameters, t.strict) for t in req.tools or ()],
        (tc.mode, tc.name) if tc is not None else None,
        (rf.type, rf.name, rf.schema, rf.strict) if rf is not None else None,
        (req.max_tokens, req.temperature, req.top_p, req.top_k, req.stop, req.n, req.seed, req.presence_penalty,
         req.frequency_penalty, req.logprobs, req.top_logprobs, req.parallel_tool_calls, req.reasoning_effort,
         req.reasoning_budget),
        {k: v for k, v in req.extra.items() if k not in _DELIVERY},
    )
    return _digest(shape)


def exact_key(scope: str, shape: str, text: str) -> str:
    """The digest of one request in one scope: its shape and its question."""
    return _digest((scope, shape, text))


def bucket_key(scope: str, shape: str) -> str:
    """The digest naming one scope's similarity candidates of one shape."""
    return _digest((scope, shape))
