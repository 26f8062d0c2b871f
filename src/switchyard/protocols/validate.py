"""Small typed readers for decoded JSON bodies. Each failure names the parameter, as OpenAI's own errors do."""

from __future__ import annotations

import builtins
from typing import Any

import orjson

from ..bounds import INT_MAX, INT_MIN, MAX_JSON_DEPTH, check_depth, depth_error
from ..errors import InvalidRequest, PayloadTooLarge

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object",
               list: "an array"}


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{param}': expected {expected}, but got {_got(value)} instead.",
                          param=param, code="invalid_type")


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def invalid_value(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid value for '{param}': {why}", param=param, code="invalid_value")


def parse_body(body: bytes, max_bytes: int) -> dict[str, Any]:
    """Decode a JSON object body, or raise a 400 that says what is wrong with it."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"The request body is {len(body)} bytes; the limit is {max_bytes} bytes.",
                              param="body")
    if not body.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.", param="body",
                             code="empty_body")
    data = decode_json(body)
    if not isinstance(data, dict):
        raise InvalidRequest(f"The request body must be a JSON object, but it is {_got(data)}.", param="body",
                             code="invalid_json")
    return data


def decode_json(body: bytes) -> Any:
    """Decoded JSON no deeper than ``MAX_JSON_DEPTH``, or a 400 naming the body. Every JSON body the server reads
    (data plane and admin API) comes through here, so nothing after it can recurse too deep."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if "depth" in e.msg:  # orjson's own limit (1024), far above ours
            raise depth_error() from None
        raise InvalidRequest(f"The request body is not valid JSON: {e.msg} (at character {e.pos}).",
                             param="body", code="invalid_json") from None
    if len(body) > 2 * MAX_JSON_DEPTH:  # a shorter body cannot hold more than MAX_JSON_DEPTH bracket pairs
        check_depth(data)
    return data


class Reader:
    """Typed access to one JSON object, with ``prefix`` naming where it sits in the body."""

    __slots__ = ("data", "prefix")

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def name(self, key: builtins.str) -> builtins.str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _get(self, key: builtins.str, required: builtins.bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise missing(self.name(key))
        return value

    def str(self, key: builtins.str, required: builtins.bool = False) -> builtins.str | None:
        v = self._get(key, required)
        if v is not None and not isinstance(v, str):
            raise wrong_type(self.name(key), "a string", v)
        return v

    def bool(self, key: builtins.str) -> builtins.bool | None:
        v = self.data.get(key)
        if v is not None and not isinstance(v, bool):
            raise wrong_type(self.name(key), "a boolean", v)
        return v

    def int(
        self, key: builtins.str, minimum: builtins.int | None = None, maximum: builtins.int | None = None
    ) -> builtins.int | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, float) and v.is_integer() and abs(v) <= 2**53:  # JSON has one number type: 7.0 is 7
            v = builtins.int(v)  # (past 2**53 a float is no longer exact: orjson reads integers past 64 bits so)
        if isinstance(v, bool) or not isinstance(v, builtins.int):
            raise wrong_type(self.name(key), "an integer", v)
        minimum = INT_MIN if minimum is None else minimum
        maximum = INT_MAX if maximum is None else maximum
        if v < minimum:
            raise invalid_value(self.name(key), f"must be at least {minimum}, but it is {v}.")
        if v > maximum:
            raise invalid_value(self.name(key), f"must be at most {maximum}, but it is {v}.")
        return v

    def num(self, key: builtins.str, minimum: float | None = None, maximum: float | None = None) -> float | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise wrong_type(self.name(key), "a number", v)
        if minimum is not None and v < minimum:
            raise invalid_value(self.name(key), f"must be at least {minimum}, but it is {v}.")
        if maximum is not None and v > maximum:
            raise invalid_value(self.name(key), f"must be at most {maximum}, but it is {v}.")
        return v

    def obj(self, key: builtins.str, required: builtins.bool = False) -> dict[builtins.str, Any] | None:
        v = self._get(key, required)
        if v is not None and not isinstance(v, dict):
            raise wrong_type(self.name(key), "an object", v)
        return v

    def list(self, key: builtins.str, required: builtins.bool = False) -> builtins.list[Any] | None:
        v = self._get(key, required)
        if v is not None and not isinstance(v, list):
            raise wrong_type(self.name(key), "an array", v)
        return v

    def objects(self, key: builtins.str, required: builtins.bool = False) -> builtins.list[Reader] | None:
        """An array of objects, each as a Reader named ``key[i]``."""
        raw = self.list(key, required)
        if raw is None:
            return None
        out: builtins.list[Reader] = []
        for i, value in enumerate(raw):
            where = f"{self.name(key)}[{i}]"
            if not isinstance(value, dict):
                raise wrong_type(where, "an object", value)
            out.append(Reader(value, where))
        return out

    def child(self, key: builtins.str, value: dict[builtins.str, Any]) -> Reader:
        return Reader(value, self.name(key))
