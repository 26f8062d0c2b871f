"""Model aliases: names and wildcard patterns that clients send, mapped onto the config's deployments and routes.

``aliases: {"claude-*": smart, "gpt-4o*": fast, "my-model": claude-main}``. Clients send model ids that no config
lists (Claude Code sends its own default, a ``claude-...`` id); an alias gives them a home. Resolution, first match
wins:

1. a deployment or route of that exact name (and ``auto``): an alias never shadows a real name;
2. an alias key of that exact name (no wildcard);
3. the longest matching wildcard pattern (``*`` any run of characters, ``?`` one character; case-sensitive); on a
   tie in length, the one written first.

The target of an alias is a deployment or route name, or ``auto`` (checked when the config loads). The gateway
resolves the name as a call enters, so every stage (key model lists, policies, routing) and the call's record see
the target; the response names the model that answered.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Container, Mapping

WILDCARDS = frozenset("*?")


def is_pattern(name: str) -> bool:
    return any(c in WILDCARDS for c in name)


class Aliases:
    __slots__ = ("_exact", "_patterns")

    def __init__(self, aliases: Mapping[str, str]) -> None:
        self._exact = {k: v for k, v in aliases.items() if not is_pattern(k)}
        pats = [(k, v, i) for i, (k, v) in enumerate(aliases.items()) if is_pattern(k)]
        pats.sort(key=lambda p: (-len(p[0]), p[2]))
        self._patterns = [(re.compile(fnmatch.translate(k)), k, v) for k, v, _ in pats]

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)

    def match(self, model: str) -> tuple[str, str] | None:
        """(the alias key that matched, its target), or None."""
        target = self._exact.get(model)
        if target is not None:
            return model, target
        for rx, key, target in self._patterns:
            if rx.fullmatch(model):
                return key, target
        return None

    def resolve(self, model: str, known: Container[str]) -> str:
        """The name to route: ``model`` itself when it is known or matches no alias, else the alias target."""
        if model in known:
            return model
        hit = self.match(model)
        return model if hit is None else hit[1]
