"""Bounds on every size that a caller controls, in one place.

A request over any of them gets a 400 in its own protocol whose ``param`` names the field, before any work that
grows with the value (an allocation, a recursion, an upstream call). docs/api.md ("Limits") lists them; keep the two
in step. The numbers are OpenAI's own documented maxima where the OpenAI API documents one (``n``,
``top_logprobs``, ``stop``, ``tools``, ``metadata``, embedding ``input``); elsewhere they are generous ceilings that
no real request comes near, chosen so that no single request can take the process's memory or stack.

This module imports nothing but the error types and the neutral model: the protocol parsers, the providers (the
simulated one checks every neutral request against the same bounds) and the admin API all use it.
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidRequest
from .messages import ChatRequest, EmbeddingRequest

MAX_JSON_DEPTH = 64
"""Nesting of any JSON body (data plane and admin API): ``{"a": 1}`` is depth 1, ``{"a": [1]}`` depth 2. Checked
iteratively right after decoding, before anything recurses into the body (orjson itself stops at 1024)."""

MAX_N = 128  # choices per chat completion (OpenAI: 1..128)
MAX_TOP_LOGPROBS = 20  # OpenAI: 0..20
MAX_OUTPUT_TOKENS = 1_000_000
"""``max_tokens``, ``max_completion_tokens`` and Anthropic ``thinking.budget_tokens``, whatever the model. A
deployment's own ``max_output_tokens``, when configured, is the tighter bound (the router refuses, or skips, a
deployment whose limit the request exceeds)."""
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
"""The widest integer any field takes (a seed, a token id, top_k): 64 bits, signed or not."""
MAX_MESSAGES = 10_000  # messages in one chat request
MAX_TOOLS = 512  # tool definitions in one request (Anthropic and the neutral model)
MAX_TOOLS_OPENAI = 128  # OpenAI: "A max of 128 functions are supported."
MAX_STOP = 16  # stop sequences (Anthropic ``stop_sequences`` and the neutral model)
MAX_STOP_OPENAI = 4  # OpenAI ``stop``: "Up to 4 sequences"

MAX_DIMENSIONS = 8192
"""Embedding ``dimensions``: twice the widest embedding model we know of (4096; OpenAI's largest is 3072)."""
MAX_EMBEDDING_INPUTS = 2048  # items in one embeddings ``input`` array (OpenAI: maxItems 2048)
MAX_SIMULATED_VALUES = 1 << 21
"""The simulated provider's own ceiling on ``len(input) * dimensions`` per reply (about 40 MB of JSON)."""

MAX_METADATA_PAIRS = 16  # request ``metadata`` (OpenAI: 16 pairs, keys <= 64 chars, string values <= 512 chars)
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_ADMIN_METADATA_KEYS = 64  # ``metadata`` of orgs, teams, users and keys (free-form JSON)
MAX_ADMIN_METADATA_BYTES = 16 * 1024  # ... its size, encoded as JSON


_CONTAINERS = frozenset((dict, list))


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` (decoded JSON) nests deeper than ``limit``. Level by level, without recursion: each pass
    keeps only the containers one level down, so the cost is one look at each value (tens of microseconds for a
    request with a score of tools)."""
    if value.__class__ not in _CONTAINERS:
        return False
    level: list[Any] = [value]
    for _ in range(limit):
        level = [c for v in level for c in (v.values() if v.__class__ is dict else v) if c.__class__ in _CONTAINERS]
        if not level:
            return False
    return True


def depth_error(param: str = "body") -> InvalidRequest:
    return InvalidRequest(f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels (the limit).",
                          param=param, code="json_too_deep")


def check_depth(value: Any, param: str = "body") -> None:
    if too_deep(value):
        raise depth_error(param)


def over(param: str, value: int, limit: int, what: str = "") -> InvalidRequest:
    """A 400 for ``param`` being over ``limit``: ``what`` names the unit counted (``"items"``, ``"keys"``)."""
    unit = f" {what}" if what else ""
    return InvalidRequest(f"Invalid value for '{param}': must be at most {limit}{unit}, but it is {value}{unit}.",
                          param=param, code="invalid_value")


def check_count(param: str, items: list[Any] | dict[str, Any] | None, limit: int) -> None:
    if items is not None and len(items) > limit:
        raise over(param, len(items), limit, "items")


def check_max(param: str, value: int | None, limit: int) -> None:
    if value is not None and value > limit:
        raise over(param, value, limit)


def check_metadata(value: dict[str, Any], param: str = "metadata") -> None:
    """Request metadata as OpenAI documents it: at most 16 pairs, keys of at most 64 characters, values strings
    (or null) of at most 512 characters."""
    if len(value) > MAX_METADATA_PAIRS:
        raise over(param, len(value), MAX_METADATA_PAIRS, "pairs")
    for k, v in value.items():
        if len(k) > MAX_METADATA_KEY:
            raise InvalidRequest(f"Invalid value for '{param}': keys must be at most {MAX_METADATA_KEY} characters, "
                                 f"but one is {len(k)}.", param=param, code="invalid_value")
        where = f"{param}.{k}"
        if v is not None and not isinstance(v, str):
            raise InvalidRequest(f"Invalid type for '{where}': expected a string.", param=where, code="invalid_type")
        if v is not None and len(v) > MAX_METADATA_VALUE:
            raise over(where, len(v), MAX_METADATA_VALUE, "characters")


def check_admin_metadata(value: dict[str, Any], size: int, param: str = "metadata") -> None:
    """An admin object's free-form metadata: at most 64 keys of at most 64 characters, ``size`` bytes as JSON."""
    if len(value) > MAX_ADMIN_METADATA_KEYS:
        raise over(param, len(value), MAX_ADMIN_METADATA_KEYS, "keys")
    for k in value:
        if len(k) > MAX_METADATA_KEY:
            raise InvalidRequest(f"Invalid value for '{param}': keys must be at most {MAX_METADATA_KEY} characters, "
                                 f"but one is {len(k)}.", param=param, code="invalid_value")
    if size > MAX_ADMIN_METADATA_BYTES:
        raise over(param, size, MAX_ADMIN_METADATA_BYTES, "bytes")


def check_chat(req: ChatRequest) -> None:
    """A neutral chat request within the bounds (for providers that build replies in memory: the simulated one)."""
    check_count("messages", req.messages, MAX_MESSAGES)
    check_count("tools", req.tools, MAX_TOOLS)
    check_count("stop", req.stop, MAX_STOP)
    check_max("n", req.n, MAX_N)
    check_max("top_logprobs", req.top_logprobs, MAX_TOP_LOGPROBS)
    check_max("max_tokens", req.max_tokens, MAX_OUTPUT_TOKENS)
    check_max("reasoning_budget", req.reasoning_budget, MAX_OUTPUT_TOKENS)


def check_embedding(req: EmbeddingRequest, max_values: int | None = None) -> None:
    """A neutral embeddings request within the bounds; ``max_values`` also caps ``len(input) * dimensions``."""
    check_count("input", req.input, MAX_EMBEDDING_INPUTS)
    check_max("dimensions", req.dimensions, MAX_DIMENSIONS)
    if max_values is not None and req.dimensions is not None and len(req.input) * req.dimensions > max_values:
        raise InvalidRequest(f"Invalid value for 'dimensions': {len(req.input)} inputs of {req.dimensions} "
                             f"dimensions exceed this provider's {max_values} values per reply.",
                             param="dimensions", code="invalid_value")
