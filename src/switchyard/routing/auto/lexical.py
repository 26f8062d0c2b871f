"""The learned router's word models: what the words of a prompt say about the strong model's gain, beside its
embedding. Numpy only, and cheap per request (a regular expression and a few hundred array look-ups).

* **term gain**: each term (a lower-cased word, or two adjacent words) has the mean gain of the training prompts
  that hold it, shrunk toward the overall mean by ``SHRINK`` pseudo-prompts; a prompt's score is the mean over its
  terms, weighted by their inverse document frequency (rare terms say more).
* **family posterior**: a multinomial naive Bayes classifier of the prompt's family (its outcome file) over its
  words; the score is each family's mean gain weighed by the family's posterior probability (tempered by the
  square root of the prompt's word count, so that a long prompt is not over-confident).

Terms seen in fewer than ``MIN_DF`` training prompts are dropped: they carry almost nothing after shrinkage, and
the vocabulary stays small (it is saved with the router, as text). Of a long text only its head and tail count,
as for the embedding.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .embedder import clip_text

Floats = npt.NDArray[np.float64]

SHRINK = 20.0  # pseudo-prompts at the overall mean gain, for each term and each family
MIN_DF = 2
NB_ALPHA = 0.1  # additive smoothing of the naive Bayes word counts
_WORD = re.compile(r"[a-z0-9]+")


def terms(text: str) -> list[str]:
    """The words of ``text`` (lower-cased letters and digits) and its pairs of adjacent words; of a long text, only
    its head and tail (what the embedder sees too), which bounds the cost per request."""
    w = _WORD.findall(clip_text(text).lower())
    return w + [f"{a}_{b}" for a, b in itertools.pairwise(w)]


@dataclass
class WordModels:
    vocab: dict[str, int]  # term -> column
    term_gain: Floats  # (terms,) shrunk mean gain
    idf: Floats  # (terms,)
    nb_logp: Floats | None  # (families, terms) log P(term | family); None with a single family
    nb_prior: Floats | None  # (families,) log P(family)
    family_gain: Floats | None  # (families,) shrunk mean gain

    @functools.cached_property
    def means(self) -> tuple[float, float]:
        """What a text without known terms scores: the mean term gain and the mean family gain."""
        return (float(self.term_gain.mean()) if len(self.term_gain) else 0.0,
                float(self.family_gain.mean()) if self.family_gain is not None else 0.0)

    def scores(self, texts: Sequence[str | None]) -> Floats:
        """(rows, 2): term gain and family posterior for each text; a missing text scores the means."""
        out = np.zeros((len(texts), 2))
        mean_gain, fam_mean = self.means
        for i, t in enumerate(texts):
            counts = Counter(self.vocab[w] for w in terms(t or "") if w in self.vocab)
            if not counts:
                out[i] = (mean_gain, fam_mean)
                continue
            cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            wgt = self.idf[cols]
            out[i, 0] = float((self.term_gain[cols] * wgt).sum() / max(float(wgt.sum()), 1e-9))
            if self.nb_logp is not None and self.nb_prior is not None and self.family_gain is not None:
                n = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
                ll = self.nb_prior + (self.nb_logp[:, cols] * n).sum(axis=1) / np.sqrt(n.sum())
                p = np.exp(ll - ll.max())
                out[i, 1] = float(p @ self.family_gain / p.sum())
            else:
                out[i, 1] = fam_mean
        return out

    # the saved form: the vocabulary as one newline-joined text, the rest as arrays
    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        out: dict[str, npt.NDArray[np.generic]] = {
            "lex_vocab": np.frombuffer("\n".join(words).encode(), dtype=np.uint8),
            "lex_term_gain": self.term_gain.astype(np.float32), "lex_idf": self.idf.astype(np.float32),
        }
        if self.nb_logp is not None and self.nb_prior is not None and self.family_gain is not None:
            out |= {"lex_nb_logp": self.nb_logp.astype(np.float16), "lex_nb_prior": self.nb_prior,
                    "lex_family_gain": self.family_gain}
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, npt.NDArray[np.generic]]) -> WordModels:
        text = bytes(a["lex_vocab"]).decode()
        words = text.split("\n") if text else []
        nb = a.get("lex_nb_logp")
        return cls({w: i for i, w in enumerate(words)}, np.asarray(a["lex_term_gain"], dtype=np.float64),
                   np.asarray(a["lex_idf"], dtype=np.float64),
                   None if nb is None else np.asarray(nb, dtype=np.float64),
                   None if nb is None else np.asarray(a["lex_nb_prior"], dtype=np.float64),
                   None if nb is None else np.asarray(a["lex_family_gain"], dtype=np.float64))


def fit_words(texts: Sequence[str | None], gain: Floats, family: npt.NDArray[np.int64],
              n_families: int) -> WordModels:
    """Fit both word models; rows without a text (feedback kept as an embedding only) count toward nothing."""
    docs = [terms(t) if t is not None else [] for t in texts]
    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(d))
    vocab = {w: i for i, w in enumerate(sorted(w for w, c in df.items() if c >= MIN_DF))}
    v = len(vocab)
    have = np.asarray([t is not None for t in texts])
    mu = float(gain[have].mean()) if have.any() else 0.0
    dfv = np.zeros(v)
    gsum = np.zeros(v)
    words = np.zeros((n_families, v))
    for d, g, f in zip(docs, gain, family, strict=True):
        counts = Counter(vocab[w] for w in d if w in vocab)
        if not counts:
            continue
        cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        dfv[cols] += 1
        gsum[cols] += g
        words[f, cols] += np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    n_docs = int(have.sum())
    term_gain = (gsum + SHRINK * mu) / (dfv + SHRINK)
    idf = np.log((n_docs + 1) / (dfv + 1)) + 1e-3
    if n_families < 2:
        return WordModels(vocab, term_gain, idf, None, None, None)
    smoothed = words + NB_ALPHA
    nb_logp = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
    fam_n = np.bincount(family[have], minlength=n_families).astype(np.float64)
    nb_prior = np.log(fam_n + 1.0) - np.log(fam_n.sum() + n_families)
    family_gain = (np.bincount(family[have], weights=gain[have], minlength=n_families) + SHRINK * mu) / (fam_n + SHRINK)
    return WordModels(vocab, term_gain, idf, nb_logp, nb_prior, family_gain)
