"""SECRET: credentials by their known shapes (provider key prefixes, PEM private keys, JWTs), and a high-entropy
rule for the rest.

The entropy rule is where false positives come from, so it asks much of a token: 24 characters or more of the
base64/URL-safe alphabet, upper and lower case letters and digits all present, and a Shannon entropy of at least
4 bits per character. Hex strings (git SHAs, content hashes), UUIDs, version strings, paths and ordinary
identifiers (camelCase, snake_case words) are not secrets by this rule.
"""

from __future__ import annotations

import math
import re

from .detectors import Spans

_KNOWN = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,}?"
    r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"|(?<![\w-])(?:"
    r"sk-ant-[A-Za-z0-9_-]{20,}"  # Anthropic
    r"|sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"  # OpenAI (and the many gateways that copied the prefix)
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}"  # Stripe
    r"|hf_[A-Za-z]{30,}"  # Hugging Face
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")(?![\w-])"
)
_TOKEN = re.compile(r"(?<![\w+/.-])[A-Za-z0-9+/_-]{24,}={0,2}(?![\w+/=-]|\.\w)")
_HEX = re.compile(r"[0-9a-fA-F-]+")
_WORDY = re.compile(r"(?:[A-Z]?[a-z]{3,}|[A-Z]{3,}|\d+)(?:[_-]|$)|[a-z]{4,}")


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    counts: dict[str, int] = {}
    for c in s:
        counts[c] = counts.get(c, 0) + 1
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def looks_random(tok: str) -> bool:
    if _HEX.fullmatch(tok):
        return False  # hashes, SHAs, UUIDs: identifiers, not credentials
    upper = sum(c.isupper() for c in tok)
    lower = sum(c.islower() for c in tok)
    digit = sum(c.isdigit() for c in tok)
    if upper < 2 or lower < 2 or digit < 2:
        return False
    # identifiers made of words (getUserAccountSettingsForTenant2024) spend many characters on letters of words
    words = sum(len(m.group()) for m in _WORDY.finditer(tok))
    if words > len(tok) * 0.6:
        return False
    return entropy(tok) >= 4.0


def find_secret(text: str) -> Spans:
    out: Spans = [m.span() for m in _KNOWN.finditer(text)]
    for m in _TOKEN.finditer(text):
        if looks_random(m.group()) and not any(s <= m.start() < e for s, e in out):
            out.append(m.span())
    return out
