"""The answer options a prompt lists (:mod:`switchyard.routing.auto.options`), a feature of the learned router:
which lines are options, and their similarities, the same for a batch of prompts as for one request."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from switchyard.routing.auto.embedder import default_embedder
from switchyard.routing.auto.options import OPTION_FEATURES, features, features_one, parse, similarities

MMLU = "Find the degree of Q(sqrt(2)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"


def test_options_are_the_last_run_of_consecutive_letters() -> None:
    assert parse(MMLU) == ["0", "4", "2", "6"]
    assert parse("Which?\n(A) red\n(B) blue\n  (C)   green  \n") == ["red", "blue", "green"]
    assert parse("Which?\nA) red\nB) blue") == ["red", "blue"]
    assert parse("A. an empty one follows\nB.\nC. x") == ["an empty one follows", "", "x"]
    # a run of other letters (a prompt clipped inside its options keeps the ones it shows)
    assert parse("… the tail\nC. third\nD. fourth") == ["third", "fourth"]
    # the last run wins; one labelled line, skipped or repeated letters, lower case and numbers are no options
    assert parse("A. x\nB. y\ntext\nA. p\nB. q\nC. r") == ["p", "q", "r"]
    assert parse("A. alone in the prompt") == []
    assert parse("A. x\nC. y") == []
    assert parse("A. x\nA. y") == []
    assert parse("a. x\nb. y\n1. p\n2. q") == []
    assert parse("no options at all") == [] and parse("") == []


def test_similarities_of_vectors_of_any_length() -> None:
    v = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
    k, mean, high, low = similarities((v @ v.T).tolist())
    assert k == 3 and high == pytest.approx(np.sqrt(0.5)) and low == pytest.approx(0.0)
    assert mean == pytest.approx(2 * np.sqrt(0.5) / 3)
    assert similarities([[1.0, 0.0], [0.0, 0.0]]) == (2.0, 0.0, 0.0, 0.0)  # a zero vector: like nothing


def test_the_options_cosines_are_those_of_their_embeddings() -> None:
    emb = default_embedder()
    texts: list[str | None] = [MMLU, "Pick:\n(A) the same answer\n(B) the same answer", "no options", None,
                               "Q?\nA) \nB) 4\nC) 5", "Which is a fruit?\nA. apple\nB. carburettor\nC. theorem"]
    batch = features(texts, emb)
    assert batch.shape == (len(texts), len(OPTION_FEATURES))
    assert np.isnan(batch[3]).all()  # no text: nothing known
    assert batch[2, 0] == 0 and np.isnan(batch[2, 1:]).all()  # a text without options: none, the rest unknown
    assert batch[1, 1:] == pytest.approx(1.0)  # two identical options
    for i, t in enumerate(texts):
        if t is not None and parse(t):
            assert np.array_equal(features_one(t, emb), batch[i]), t  # a request computes what training did
            # the products of the options' token rows give the cosines of the options' own embeddings (the
            # library's batch path: the mean of each one's token rows, normalised; an empty option the zero row)
            v = np.asarray(emb.embed(parse(t)), dtype=np.float64)
            assert np.allclose(batch[i], similarities((v @ v.T).tolist()), rtol=0, atol=1e-5), t
    # numbers alike are closer than a fruit, a car part and a theorem
    assert batch[0, 1] > batch[5, 1]
    # an embedder whose tokenizer the word cache cannot mirror takes its ids from the library: the same features
    library = copy.copy(emb)
    library._words = None  # type: ignore[attr-defined]
    assert np.allclose(features(texts, library), batch, rtol=0, atol=1e-6, equal_nan=True)
