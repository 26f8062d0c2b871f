"""Sentence embeddings offline: WordLlama (``wordllama``, numpy only), whose weights and tokenizer ship inside its
wheel, so nothing is fetched at run time. Used by the task profile, the learned router and the semantic cache.

One embedder per process, loaded on first use (about 0.2 s). A long text is cut to its head and tail before it is
embedded: the embedding of 4,000 tokens costs several milliseconds, and a request's task shows in its opening
and its closing words.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

DIM = 256  # the vector size
HEAD_CHARS = 1500  # of a long text, what is embedded: its first HEAD_CHARS and last TAIL_CHARS characters
TAIL_CHARS = 500
PROMPT_HEAD, PROMPT_TAIL = 500, 400  # of a long prompt, what routing reads: its opening and closing characters


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised row per text (cosine similarity is a dot product)."""
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

    def embed(self, texts: Sequence[str]) -> Vectors:
        vecs = np.asarray(self._model.embed([clip_text(t) for t in texts], norm=True), dtype=np.float32)
        return vecs.reshape(len(texts), DIM)


_lock = threading.Lock()


@functools.cache
def _load() -> WordLlamaEmbedder:
    with _lock:
        return WordLlamaEmbedder()


def default_embedder() -> Embedder:
    """The process's embedder (loaded once; thread-safe)."""
    return _load()
