"""The answer options a prompt lists, and how alike they are: a feature of the learned router.

A multiple-choice question whose options say nearly the same thing asks for a finer distinction than one whose
options are far apart, and a small model fails it more often (on RouteLLM's MMLU outcomes, the options' mean
similarity alone ranks the prompts at an APGR of 0.61, prompt length at 0.59). The options are the last run of
lines labelled with consecutive capital letters (``A. ...``, ``B) ...``, ``(C) ...``; at least two); their
similarities are the cosines of their embeddings (the router's own embedder; with WordLlama, of the sums of the
options' token rows, from one gather for all of a prompt's options). A prompt without options has none
of these features (NaN: the router gives it the training prompts' means) and ``options`` 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .embedder import Embedder

Floats = npt.NDArray[np.float64]

OPTION_FEATURES = ("options", "option_sim_mean", "option_sim_max", "option_sim_min")
_LINE = re.compile(r"^[ \t]*\(?([A-J])[.)][ \t]*(.*)$", re.MULTILINE)
_NONE = (0.0, float("nan"), float("nan"), float("nan"))


def parse(text: str) -> list[str]:
    """The texts of the last run of at least two lines labelled with consecutive letters (A, B, ...); [] if the
    prompt lists no such run."""
    if ")" not in text and "." not in text:
        return []
    best: list[str] = []
    run: list[str] = []
    last = ""
    for m in _LINE.finditer(text):
        label, body = m.group(1), m.group(2).strip()
        if run and ord(label) == ord(last) + 1:
            run.append(body)
        else:
            if len(run) >= 2:
                best = run
            run = [body]
        last = label
    if len(run) >= 2:
        best = run
    return best


def similarities(gram: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """The features of options whose vectors have these dot products (any lengths; a zero vector is like
    nothing): their count, and the mean, the largest and the smallest cosine of two of them."""
    k = len(gram)
    norm = [math.sqrt(gram[i][i]) for i in range(k)]
    cos = [gram[i][j] / (norm[i] * norm[j]) if norm[i] > 0 and norm[j] > 0 else 0.0
           for i in range(k) for j in range(i + 1, k)]
    return float(k), sum(cos) / len(cos), max(cos), min(cos)


def features(texts: Sequence[str | None], embedder: Embedder) -> Floats:
    """(texts, len(OPTION_FEATURES)) for many prompts, each as :func:`features_one` computes it; a missing text
    (None) has NaN everywhere."""
    out = np.full((len(texts), len(OPTION_FEATURES)), np.nan)
    for i, t in enumerate(texts):
        if t is not None:
            out[i] = features_one(t, embedder)
    return out


def features_one(text: str, embedder: Embedder) -> tuple[float, float, float, float]:
    """The features of one prompt's options: (0, NaN, NaN, NaN) without options."""
    p = parse(text)
    if not p:
        return _NONE
    gram = getattr(embedder, "token_gram", None)  # WordLlama's: the options' products from one gather
    if gram is not None:
        return similarities(gram(p))
    v = np.asarray(embedder.embed(p), dtype=np.float64)
    return similarities((v @ v.T).tolist())
