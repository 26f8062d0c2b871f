"""Cedar policy text to policies with stable ids, and errors that name the file, the line and the column.

``cedarpy`` reports parse and validation errors without a position, so the text is first split into its policy
statements here (a small scanner that knows Cedar's strings and ``//`` comments); each statement is parsed on its
own, so an error names the statement's line, and the offending token's column when it can be found. A policy's id
is its ``@id("...")`` annotation, else ``<source>:<line>`` (the line of its first character); its ``@reason`` is
what a denied caller is told (the policy text never is). A ``permit`` may carry ``@pii("<mode>")``: the PII mode of
the requests it allows (docs/policy.md), at least ``detect`` (a policy raises the mode, never lowers it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import cedarpy

from ..pii.types import PII_MODES

SCHEMA_FILE = "switchyard.cedarschema"
_EOF = "unexpected end of input"
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[A-Za-z_][A-Za-z0-9_]*|\d+|::|==|!=|<=|>=|&&|\|\||\S')
_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`|: ([A-Za-z_][A-Za-z0-9_]*)$")


class PolicyError(ValueError):
    """A policy that does not parse or does not validate: ``source:line:column: message``."""

    def __init__(self, message: str, source: str, line: int, column: int) -> None:
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.message = message
        self.source = source
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """One policy as loaded: its id, effect, reason, where it is, its Cedar JSON form (``est``) and the PII mode
    it asks for (``@pii``; a permit's only)."""

    id: str
    effect: str  # permit | forbid
    reason: str | None
    source: str
    line: int
    column: int
    est: dict[str, Any]
    pii: str | None = None


@dataclass(frozen=True, slots=True)
class _Statement:
    text: str
    offset: int  # in the source text
    line: int
    column: int


def schema_text() -> str:
    """The Cedar schema Switchyard ships (``switchyard/policy/switchyard.cedarschema``)."""
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@cache
def shipped_schema() -> cedarpy.Schema:
    return cedarpy.Schema.from_str(schema_text())


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def split_statements(text: str) -> list[_Statement]:
    """The policy statements of ``text``: each from its first character (annotations included) to its ``;``."""
    out: list[_Statement] = []
    i, n, start = 0, len(text), -1
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if start < 0:
            if c.isspace():
                i += 1
                continue
            start = i
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if c == ";":
            out.append(_statement(text, start, i + 1))
            start = -1
        i += 1
    if start >= 0:
        out.append(_statement(text, start, n))
    return out


def _statement(text: str, start: int, end: int) -> _Statement:
    line, col = _position(text, start)
    return _Statement(text[start:end], start, line, col)


def _parse_error_offset(stmt: str, message: str) -> int:
    """Where in ``stmt`` the parse error ``message`` points: a name it quotes, else the first token after which
    the parser reports something other than an unexpected end of input."""
    named = _NAMED.search(message)
    if named:
        word = named.group(1) or named.group(2)
        m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", stmt)
        if m:
            return m.start()
    if message == _EOF:
        return len(stmt.rstrip())
    for m in _TOKEN.finditer(stmt):
        try:
            cedarpy.PolicySet.from_str(stmt[:m.end()])
        except ValueError as e:
            if str(e) != _EOF:
                return m.start()
    return 0


def _error_at(text: str, st: _Statement, offset: int, message: str, source: str) -> PolicyError:
    line, col = _position(text, st.offset + offset)
    return PolicyError(message, source, line, col)


def parse_policies(text: str, source: str, schema: cedarpy.Schema | None = None, id_prefix: str = "",
                   allow_pii: bool = True) -> list[PolicyInfo]:
    """The policies of ``text`` (from ``source``, a file name or ``org:<id>``), validated against ``schema`` (the
    shipped one by default). Raises :class:`PolicyError` at the first problem. ``id_prefix`` goes before every ``@id``
    (org policy sets: ``org:<id>/``); a policy without one is ``<source>:<line>``. ``allow_pii``: whether ``@pii``
    may be used (the gateway has a ``pii:`` section)."""
    schema = schema if schema is not None else shipped_schema()
    out: list[PolicyInfo] = []
    for st in split_statements(text):
        try:
            est = json.loads(cedarpy.policies_to_json_str(st.text))
        except ValueError as e:
            msg = str(e)
            raise _error_at(text, st, _parse_error_offset(st.text, msg), msg, source) from None
        if est.get("templates"):
            raise PolicyError("templates (?principal, ?resource) are not supported", source, st.line, st.column)
        body = est["staticPolicies"]
        if not body:
            continue
        res = cedarpy.validate_policies(st.text, schema)
        if not res.validation_passed:
            msg = "; ".join(re.sub(r"^for policy `[^`]*`, ", "", e.error) for e in res.errors)
            off = 0
            for word in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", msg):
                m = re.search(rf"(?<![A-Za-z0-9_:\"]){re.escape(word)}(?![A-Za-z0-9_])", st.text)
                if m:
                    off = m.start()
                    break
            raise _error_at(text, st, off, msg, source)
        policy = body["policy0"]
        ann = policy.get("annotations") or {}
        pid = id_prefix + ann["id"] if ann.get("id") else f"{source}:{st.line}"
        reason = ann.get("reason")
        pii = _pii_mode(text, st, ann, policy["effect"], source, allow_pii)
        out.append(PolicyInfo(pid, policy["effect"], reason, source, st.line, st.column, policy, pii))
    return out


_MODES = PII_MODES[1:]  # what @pii may ask for: a policy raises the mode, so "off" would mean nothing


def _pii_mode(text: str, st: _Statement, ann: dict[str, Any], effect: str, source: str, allowed: bool,
              ) -> str | None:
    """The policy's ``@pii("<mode>")``, checked: a permit's, one of detect, mask, redact or block."""
    if "pii" not in ann:
        return None
    at = max(st.text.find("@pii"), 0)
    mode = str(ann["pii"]).strip().lower()
    if not allowed:
        raise _error_at(text, st, at, "@pii needs the gateway's `pii:` section (which says what to look for)",
                        source)
    if effect != "permit":
        raise _error_at(text, st, at, "@pii applies to permit policies (a forbid keeps the request from the "
                                      "deployment: there is nothing to send)", source)
    if mode not in _MODES:
        raise _error_at(text, st, at, f"unknown PII mode {ann['pii']!r} in @pii: expected one of "
                                      f"{', '.join(_MODES)} (a policy may raise the mode, never lower it)", source)
    return mode


def check_policy_text(text: str, source: str, schema: cedarpy.Schema | None = None, allow_pii: bool = True,
                      ) -> None:
    """Parse and validate a policy text (an org's policy set, through the admin API) against the shipped schema.
    Raises :class:`PolicyError` (``message``, ``line``, ``column``) at its first problem; returns None if it is
    valid. Duplicate ``@id`` annotations within the text are an error too."""
    seen: dict[str, PolicyInfo] = {}
    for p in parse_policies(text, source, schema, allow_pii=allow_pii):
        if p.id in seen:
            raise PolicyError(f"duplicate policy id {p.id!r} (also at line {seen[p.id].line})", source, p.line,
                              p.column)
        seen[p.id] = p
