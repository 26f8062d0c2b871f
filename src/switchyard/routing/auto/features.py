"""Cheap features of a prompt, beside its embedding: its size and its shape. Nothing here is specific to one data
set: lengths, lines, digits, symbols, code markers, and the words that make a question a trick (not, except)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .embedder import clip_text

NAMES = ("log_chars", "log_words", "log_lines", "digits", "symbols", "upper", "questions", "code", "negation",
         "options")

_NEGATION = re.compile(r"\b(?:not|except|false|incorrect|least|never)\b", re.IGNORECASE)
_CODE = re.compile(r"```|\bdef |\breturn\b|[{};]\s*$|#include|\bfunction\b|=>", re.MULTILINE)
_OPTION = re.compile(r"^\s*(?:[A-Ha-h]|[ivx]+|\d)[.)]\s", re.MULTILINE)
_SYMBOLS = frozenset("=+-*/^<>|%$\\_()[]")


def cheap_features(texts: Sequence[str]) -> npt.NDArray[np.float64]:
    """One row of :data:`NAMES` per text. The sizes are the whole text's; the shares and the counts of markers are
    taken on its head and tail (:func:`.embedder.clip_text`), which bounds the cost of a long text."""
    out = np.empty((len(texts), len(NAMES)), dtype=np.float64)
    for i, full in enumerate(texts):
        t = clip_text(full)
        n = max(len(t), 1)
        digits = sum(c.isdigit() for c in t)
        symbols = sum(c in _SYMBOLS for c in t)
        upper = sum(c.isupper() for c in t)
        out[i] = (
            math.log1p(len(full)),
            math.log1p(len(full.split())),
            math.log1p(full.count("\n")),
            digits / n,
            symbols / n,
            upper / n,
            math.log1p(t.count("?")),
            math.log1p(len(_CODE.findall(t))),
            math.log1p(len(_NEGATION.findall(t))),
            math.log1p(len(_OPTION.findall(t))),
        )
    return out
