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
from collections import Counter

from .detectors import Spans

_PEM = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,}?"
                  r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_KNOWN = re.compile(
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
)
# a candidate token: what a credential is made of (base64, URL-safe base64, dots for JWTs), 20 characters or more
_TOKEN = re.compile(r"[A-Za-z0-9+/_.-]{20,}={0,2}")
_HEX = re.compile(r"[0-9a-fA-F-]+")
_WORDY = re.compile(r"[A-Z]?[a-z]{3,}|[A-Z]{3,}(?=[_-]|$)")


def entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(k / n * math.log2(k / n) for k in Counter(s).values())


def looks_random(tok: str) -> bool:
    if len(tok) < 24 or _HEX.fullmatch(tok):
        return False  # short, or hex: hashes, SHAs, UUIDs are identifiers, not credentials
    upper = sum(map(str.isupper, tok))
    lower = sum(map(str.islower, tok))
    digit = sum(map(str.isdigit, tok))
    if upper < 2 or lower < 2 or digit < 2:
        return False
    # identifiers made of words (getUserAccountSettingsForTenant2024) spend most of their characters on words
    words = sum(len(m.group()) for m in _WORDY.finditer(tok))
    if words > len(tok) * 0.6:
        return False
    return entropy(tok) >= 4.0


def _token_spans(text: str, s: int, e: int, out: Spans) -> None:
    """The secrets in one candidate token text[s:e]: a known shape, else random-looking pieces (between dots)."""
    tok = text[s:e].rstrip(".")
    m = _KNOWN.match(tok)  # what matches whole matches at the start: most tokens are tried once
    if m is not None:
        m = _KNOWN.fullmatch(tok) or m
        out.append((s, s + m.end()))
        return
    i = s
    for piece in tok.split("."):
        core = piece.rstrip("=")
        if core.count("/") < 2 and looks_random(core):  # a path (a/b/c) is not a credential
            out.append((i, i + len(piece)))
        i += len(piece) + 1


def find_secret(text: str, pos: int = 0, end: int | None = None) -> Spans:
    """PEM blocks where ``-----BEGIN`` occurs; otherwise only words of 20 characters or more are looked at (found by
    ``str.split``, which costs far less than a regular expression over the whole text)."""
    end = len(text) if end is None else end
    out: Spans = []
    if "-----BEGIN" in text:
        out.extend(m.span() for m in _PEM.finditer(text, pos, end))
    cursor = pos
    for word in [w for w in text[pos:end].split() if len(w) >= 20]:
        if _HEX.fullmatch(word):
            continue
        at = text.find(word, cursor, end)
        cursor = at + len(word)
        for m in _TOKEN.finditer(text, at, cursor):
            s, e = m.span()
            if s > 0 and (text[s - 1].isalnum()):
                continue
            if out and any(a <= s < b for a, b in out):
                continue
            _token_spans(text, s, e, out)
    return out
