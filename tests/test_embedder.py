"""The offline embedder (:mod:`switchyard.routing.auto.embedder`): one text (a request) takes a lean path of its
own, which must give WordLlama's own vector bit for bit, since routers are trained on the library's batches."""

from __future__ import annotations

import numpy as np

from switchyard.routing.auto.embedder import DIM, clip_text, default_embedder

TEXTS = [
    "What is 2 + 2?",
    "Summarize the meeting notes above in five bullet points.\n\n- budget\n- hiring",
    "Übersetze bitte: « le chat est sur la table » — 日本語も ☃",
    "def f(x):\n    return x ** 2  # square\n" * 40,  # longer than the head and tail the embedder reads
    " ",
]


def test_one_text_is_embedded_as_the_library_embeds_it() -> None:
    emb = default_embedder()
    library = emb._model  # type: ignore[attr-defined]
    for text in TEXTS:
        want = np.asarray(library.embed([clip_text(text)], norm=True), dtype=np.float32)
        got = emb.embed([text])
        assert got.shape == (1, DIM) and got.dtype == np.float32
        assert np.array_equal(got, want), text[:30]
    # and as a batch of several texts (padded to the longest) embeds it
    batch = emb.embed(TEXTS)
    assert np.array_equal(batch, np.vstack([emb.embed([t]) for t in TEXTS]))
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_a_text_without_tokens_is_the_zero_vector_alone_and_in_a_batch() -> None:
    emb = default_embedder()
    assert np.array_equal(emb.embed([""]), np.zeros((1, DIM), dtype=np.float32))
    both = emb.embed(["", "hello"])
    assert np.array_equal(both[0], np.zeros(DIM, dtype=np.float32)) and np.all(np.isfinite(both))
    assert np.array_equal(both[1], emb.embed(["hello"])[0])
