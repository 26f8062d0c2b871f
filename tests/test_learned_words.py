"""The learned router's reading of a prompt's words (:mod:`switchyard.routing.auto.lexical`): its words and its
character counts come from bytes (``str.translate``, ``bytes.split``) and must be what the regular expressions that
define them find, for any text."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from switchyard.routing.auto import lexical
from switchyard.routing.auto.embedder import clip_prompt, clip_text
from switchyard.routing.auto.lexical import TermMatrix, fit_words

ROOT = Path(__file__).resolve().parents[1]
# the characters where a bytes path could go wrong: capitals, digits, "_" (a word character that is no word's),
# "?" (the byte each non-ASCII character becomes), control characters and ASCII whitespace beyond " \t\n", the
# ellipsis clip_prompt inserts, letters whose lower case holds an ASCII letter (U+0130, U+212A), other letters,
# marks, symbols, Unicode spaces and a character beyond the basic plane
ALPHABET = ("aZq9 _?\n\t\r\x0b\x0c\x1c\x1f\x00\x7f.,;!'\"-…\u0130\u212aéßЖ中\u0301\u00a0\u2003\u2028€😀ǅ٣"
            "ABCxyz0")


def _texts() -> list[str]:
    rng = random.Random(11)
    texts = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 80))) for _ in range(5000)]
    texts += [p.read_text("utf-8") for p in sorted((ROOT / "src").rglob("*.py"))[:60]]
    texts += [p.read_text("utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    return texts + [clip_prompt(t) for t in texts] + ["", "İSTANBUL Kelvin", "x" * 5000]


def test_words_and_counts_are_the_regular_expressions() -> None:
    for text in _texts():
        lexical._words.cache_clear()
        t = clip_text(text)
        assert lexical._words(text) == tuple(re.findall(r"[a-z0-9]+", t.lower())), repr(text[:60])
        want = (len(re.findall("[0-9]", t)), len(re.findall("[A-Z]", t)), len(re.findall(r"[^\w\s]", t)))
        assert lexical._counts(t) == want, repr(text[:60])


@pytest.mark.parametrize("rows", [1, 7])
def test_one_texts_features_are_the_matrix_rows(rows: int) -> None:
    # a request's terms are looked up without joining its pairs of words, and its features computed without the
    # matrix: the same numbers as the matrix path gives (to the last digits: the sums run in another order), for a
    # text with no known term too
    rng = random.Random(rows)
    vocab_words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
    texts = [" ".join(rng.choice(vocab_words) for _ in range(rng.randint(1, 30))) for _ in range(200)]
    vocab: dict[str, int] = {}
    m = TermMatrix.build(texts, vocab, grow=True)
    r = np.random.default_rng(rows)
    strong, weak = r.integers(0, 2, len(texts)).astype(float), r.integers(0, 2, len(texts)).astype(float)
    fitted = fit_words(m, len(vocab), weak, strong, np.arange(len(texts)) % 3, 3, np.ones(len(texts), dtype=bool))
    saved = fitted.compact(list(vocab))
    loaded = type(saved).from_arrays(saved.arrays())  # a file's: float32 and float16 arrays, gathered as float64
    probes = [*texts[:rows], "nothing known here", "", "Alpha, BETA! gamma_delta? zeta…eta"]
    for model in (saved, loaded):
        for text in probes:
            term, nb = model.one(text)
            mat = model.matrix([text])
            assert np.allclose(term, model.features(mat)[0], rtol=1e-13, atol=1e-13), text
            assert np.allclose(nb, model.family_loglik(mat)[0], rtol=1e-13, atol=1e-13), text
    assert np.allclose(loaded.one(probes[0])[0], saved.one(probes[0])[0], rtol=1e-3)
    term, nb = saved.one(None)  # no text (feedback kept as an embedding): the biases and the priors
    assert np.array_equal(term, saved.bias) and np.array_equal(nb, saved.nb_prior)
