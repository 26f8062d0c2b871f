"""Inbound OpenAI Embeddings: https://platform.openai.com/docs/api-reference/embeddings/create."""

from __future__ import annotations

from typing import Any

import orjson

from ..bounds import INT_MAX, INT_MIN, MAX_DIMENSIONS, MAX_EMBEDDING_INPUTS, check_count
from ..messages import JSON, WIRE_OPENAI_EMBEDDINGS, EmbeddingRequest, EmbeddingResponse
from .validate import Reader, invalid_value, missing, wrong_type

_MODELLED = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


def _is_token(v: Any) -> bool:
    if isinstance(v, float) and v.is_integer() and abs(v) <= 2**53:  # past 2**53 a float is no longer exact
        v = int(v)
    return isinstance(v, int) and not isinstance(v, bool) and INT_MIN <= v <= INT_MAX


def _tokens(v: list[Any]) -> list[int]:
    """Token ids as ints (JSON has one number type: 7.0 is the token 7)."""
    return v if all(type(t) is int for t in v) else [int(t) for t in v]


def parse_request(data: dict[str, Any]) -> EmbeddingRequest:
    r = Reader(data)
    model = r.str("model", required=True) or ""
    value = data.get("input")
    if value is None:
        raise missing("input")
    single = False
    items: list[Any]
    if isinstance(value, str) or (isinstance(value, list) and value and all(_is_token(v) for v in value)):
        items, single = [value if isinstance(value, str) else _tokens(value)], True
    elif isinstance(value, list):
        if not value:
            raise invalid_value("input", "the array must not be empty.")
        check_count("input", value, MAX_EMBEDDING_INPUTS)
        items = list(value)
        for i, v in enumerate(items):
            ok = isinstance(v, str) or (isinstance(v, list) and all(_is_token(t) for t in v))
            if not ok:
                raise wrong_type(f"input[{i}]", "a string or an array of token ids", v)
            if isinstance(v, str | list) and len(v) == 0:
                raise invalid_value(f"input[{i}]", "must not be empty.")
            if isinstance(v, list):
                items[i] = _tokens(v)
    else:
        raise wrong_type("input", "a string, an array of strings, or an array of token ids", value)
    if single and len(items[0]) == 0:
        raise invalid_value("input", "must not be empty.")
    fmt = r.str("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise invalid_value("encoding_format", f"{fmt!r} is not one of 'float', 'base64'.")
    return EmbeddingRequest(
        model=model,
        input=items,
        wire=WIRE_OPENAI_EMBEDDINGS,
        single=single,
        dimensions=r.int("dimensions", minimum=1, maximum=MAX_DIMENSIONS),
        encoding_format=fmt,  # type: ignore[arg-type]
        user=r.str("user"),
        extra={k: v for k, v in data.items() if k not in _MODELLED},
    )


def render_response(resp: EmbeddingResponse) -> bytes:
    if resp.wire == WIRE_OPENAI_EMBEDDINGS and resp.raw is not None:
        return orjson.dumps(resp.raw)
    data: list[JSON] = [{"object": "embedding", "index": e.index, "embedding": e.vector} for e in resp.data]
    tokens = resp.usage.input_tokens
    return orjson.dumps({"object": "list", "data": data, "model": resp.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
