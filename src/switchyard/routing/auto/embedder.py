"""Sentence embeddings offline: WordLlama (``wordllama``, numpy only), whose weights and tokenizer ship inside its
wheel, so nothing is fetched at run time. Used by the task profile, the learned router and the semantic cache.

One embedder per process, loaded on first use (about 0.2 s). A long text is cut to its head and tail before it is
embedded: the embedding of 4,000 tokens costs several milliseconds, and a request's task shows in its opening
and its closing words. One text (a request) is embedded on a path of its own, with its token ids from a cache of
words (:mod:`.wordcache`); many (training, evaluation) on the library's batch path; both give the same vectors.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .wordcache import WordCache

Vectors = npt.NDArray[np.float32]

DIM = 256  # the vector size
HEAD_CHARS = 1500  # of a long text, what is embedded: its first HEAD_CHARS and last TAIL_CHARS characters
TAIL_CHARS = 500
PROMPT_HEAD, PROMPT_TAIL = 500, 400  # of a long prompt, what routing reads: its opening and closing characters


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised row per text (cosine similarity is a dot product); a zero row for a text without
        tokens."""
        ...


def clip_text(text: str) -> str:
    """What of ``text`` is embedded: all of it, or its head and its tail."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + " … " + text[-TAIL_CHARS:]


def clip_prompt(text: str) -> str:
    """What of a prompt routing reads (the task profile, and the learned router in training and at run time alike):
    all of it, or its first ``PROMPT_HEAD`` and last ``PROMPT_TAIL`` characters, where the ask is. Idempotent."""
    if len(text) <= PROMPT_HEAD + PROMPT_TAIL + 3:
        return text
    return text[:PROMPT_HEAD] + " … " + text[-PROMPT_TAIL:]


class WordLlamaEmbedder:
    """The default embedder (WordLlama ``l2_supercat``, 256 dimensions)."""

    dim = DIM

    def __init__(self) -> None:
        import wordllama
        from wordllama import WordLlama

        # The wheel carries the files: looked up as the cache of its own package folder, never downloaded.
        self._model: Any = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, dim=DIM, disable_download=True)
        self._words = WordCache.of(self._model.tokenizer)  # None: a tokenizer it cannot mirror (the library's path)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 1:  # a request: a fraction of the library's batch path, and the same vector
            return self._embed_one(clip_text(texts[0]))
        with np.errstate(invalid="ignore"):  # a text without tokens: 0/0 in the library; a zero row here
            vecs = np.asarray(self._model.embed([clip_text(t) for t in texts], norm=True), dtype=np.float32)
        vecs = vecs.reshape(len(texts), DIM)
        vecs[~np.isfinite(vecs).all(axis=1)] = 0.0
        return vecs

    def _embed_one(self, text: str) -> Vectors:
        """WordLlama's embedding of one text (the mean of its tokens' rows, L2-normalised), bit for bit, without
        its batch machinery: the token ids word by word from a cache (:mod:`.wordcache`), no padding mask to
        multiply. A text without tokens (an empty one) has the zero vector: it is like nothing."""
        table = self._model.embedding
        ids = np.asarray(self._ids(text), dtype=np.intp)
        if not len(ids):
            return np.zeros((1, DIM), dtype=np.float32)
        np.minimum(ids, len(table) - 1, out=ids)  # as the library clamps them
        vec = table[ids].sum(axis=0, dtype=np.float32, keepdims=True) / np.float32(len(ids))
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)  # as the library does it (not a dot product)
        return np.asarray(vec, dtype=np.float32)

    def _ids(self, text: str) -> list[int]:
        """The text's token ids: word by word from the cache, or the library's (a tokenizer it cannot mirror)."""
        if self._words is not None:
            return self._words.ids(text)
        return list(self._model.tokenizer.encode(text, add_special_tokens=False).ids)

    def token_gram(self, texts: Sequence[str]) -> list[list[float]]:
        """The dot products of a few short texts' (a prompt's answer options') sums of token rows, unnormalised
        (their cosines are those of the texts' embeddings); a text without tokens has 0 with every other. From one
        gather for all of them and the tokens' own products summed by blocks: a tenth of an :meth:`embed` call per
        text, and the same numbers on every path."""
        table = self._model.embedding
        flat: list[int] = []
        starts: list[int] = []
        full: list[int] = []
        for i, t in enumerate(texts):
            ids = self._ids(t)
            if ids:
                full.append(i)
                starts.append(len(flat))
                flat.extend(ids)
        k = len(texts)
        out = [[0.0] * k for _ in range(k)]
        if flat:
            rows = table[np.minimum(flat, len(table) - 1)]
            blocks = np.add.reduceat(np.add.reduceat(rows @ rows.T, starts, axis=0), starts, axis=1).tolist()
            for a, i in enumerate(full):
                for b, j in enumerate(full):
                    out[i][j] = blocks[a][b]
        return out


_lock = threading.Lock()


@functools.cache
def _load() -> WordLlamaEmbedder:
    with _lock:
        return WordLlamaEmbedder()


def default_embedder() -> Embedder:
    """The process's embedder (loaded once; thread-safe)."""
    return _load()
