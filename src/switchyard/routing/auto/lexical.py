"""The learned router's word models: what the words of a prompt say, beside its embedding. Numpy only, and cheap
per request (a few byte translations, a few hundred dictionary look-ups and one gather of a few hundred rows).

A prompt's **terms** are its lower-cased words and pairs of adjacent words (of a long text only its head and tail,
as for the embedding). Terms seen in fewer than ``MIN_DF`` training prompts are dropped. For each prompt the
models give (:data:`TERM_FEATURES`):

* ``term_gain``, ``term_strong``, ``term_weak``: each term has the mean gain (strong - weak), strong outcome and
  weak outcome of the training prompts holding it, shrunk toward the overall mean by ``SHRINK`` pseudo-prompts; a
  prompt scores their mean over its terms, weighted by inverse document frequency;
* ``lo_strong``, ``lo_weak``, ``lo_up``, ``lo_down``: naive Bayes log-odds of four events (the strong model
  succeeds, the weak one succeeds, the gain is positive, the gain is negative), summed over the prompt's terms and
  divided by the square root of their count;
* ``bow_strong``, ``bow_weak``: the logits of two L2-regularised logistic regressions on the prompt's terms (a
  bag of words, each row scaled to unit length), for the strong and the weak model's success.

Beside them, :meth:`WordModels.family_loglik` is a multinomial naive Bayes classifier of the prompt's **family**
(its outcome file): the log-likelihood of each family, tempered by the prompt's term count to the power
``NB_TEMPER`` so that a long prompt is not over-confident.

Training works on a :class:`TermMatrix` (the prompts' term counts as sparse rows) so that the inner folds of
:func:`.learned.train` fit in a few vectorised passes; a fitted model is then cut down to its vocabulary.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .embedder import clip_text

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

TERM_FEATURES = ("term_gain", "term_strong", "term_weak", "lo_strong", "lo_weak", "lo_up", "lo_down",
                 "bow_strong", "bow_weak")
SHRINK = 5.0  # pseudo-prompts at the overall mean, for each term and each family
MIN_DF = 2
NB_ALPHA = 0.01  # additive smoothing of the family classifier's word counts
NB_TEMPER = 0.5
LO_ALPHA = 0.1  # additive smoothing of the log-odds' word counts
BOW_LAMBDA = 3e-5  # L2 penalty of the bag-of-words regressions (per prompt)
BOW_ITERS = 100
_WORD = re.compile(r"[a-z0-9]+")
_OTHER = re.compile(r"[^\w\s]")
# The same words and counts over bytes (str.translate and bytes.split run in C, the regular expressions' scans
# cost 3-4 times more): an ASCII character's word byte (A-Z lower-cased, a-z and 0-9 kept, any other a space), and
# the ASCII digits, capitals and symbols (what _OTHER matches). Another character is encoded as "?" (a space for
# the words, a symbol counted apart); the two whose lower case holds an ASCII letter (U+0130 "İ" lowers to "i̇",
# U+212A, the kelvin sign, to "k") send the text to _WORD.
_WORD_BYTES = bytes(ord(chr(b).lower()) if _WORD.fullmatch(chr(b).lower()) else 32 for b in range(128)) + b" " * 128
_DIGIT_BYTES = string.digits.encode()
_UPPER_BYTES = string.ascii_uppercase.encode()
_OTHER_BYTES = bytes(b for b in range(128) if _OTHER.fullmatch(chr(b)))
_LOWERS_TO_ASCII = re.compile("[\u0130\u212a]")
_NOT_ASCII = re.compile(r"[^\x00-\x7f]")
SHAPE_FEATURES = ("lines", "longest_line", "mean_line", "first_line", "tail_lines", "line_spread", "digits", "upper",
                  "symbols", "words", "word_length", "long_words", "distinct_words")


@functools.lru_cache(maxsize=16)
def _words(text: str) -> tuple[str, ...]:
    """The lower-cased words of ``text`` (of a long one, its head and tail): found once per request for both
    :func:`terms` and :func:`shape` (hence the small cache of the latest texts)."""
    t = clip_text(text)
    if t.isascii():
        b = t.encode()
    elif _LOWERS_TO_ASCII.search(t) is None:
        b = t.encode("ascii", "replace")
    else:
        return tuple(_WORD.findall(t.lower()))
    return tuple(b.translate(_WORD_BYTES).decode().split())


def _counts(t: str) -> tuple[int, int, int]:
    """The ASCII digits, ASCII capitals and other symbols (``[^\\w\\s]``) of ``t``."""
    if t.isascii():
        b, other = t.encode(), 0
    else:  # each other character becomes one "?": counted apart, by _OTHER
        b = t.encode("ascii", "replace")
        odd = _NOT_ASCII.findall(t)
        other = _OTHER.subn("", "".join(odd))[1] - len(odd)
    n = len(b)
    return (n - len(b.translate(None, _DIGIT_BYTES)), n - len(b.translate(None, _UPPER_BYTES)),
            n - len(b.translate(None, _OTHER_BYTES)) + other)


def terms(text: str) -> list[str]:
    """The words of ``text`` (lower-cased letters and digits) and its pairs of adjacent words; of a long text, only
    its head and tail (what the embedder sees too), which bounds the cost per request."""
    w = _words(text)
    return [*w, *map("_".join, itertools.pairwise(w))]


def shape(text: str) -> list[float]:
    """The :data:`SHAPE_FEATURES` of ``text`` (of its head and tail, as for the embedding): the log count of its
    non-blank lines; the log length of its longest, mean, first and last five lines and their spread; its shares of
    digits, capitals and other symbols; the log count of its words, their mean length, the share of long words (8
    characters or more) and of distinct words (a repetitive text has few)."""
    t = clip_text(text)
    n = max(len(t), 1)
    lines = [len(x) for x in t.split("\n") if x.strip()] or [0]
    mean = sum(lines) / len(lines)
    spread = math.sqrt(max(sum(v * v for v in lines) / len(lines) - mean * mean, 0.0))
    tail = lines[-5:]
    words = _words(text)
    nw = max(len(words), 1)
    lengths = list(map(len, words))
    digits, upper, other = _counts(t)
    return [math.log1p(len(lines)), math.log1p(max(lines)), math.log1p(mean), math.log1p(lines[0]),
            math.log1p(sum(tail) / len(tail)), math.log1p(spread), digits / n, upper / n, other / n,
            math.log1p(len(words)),
            sum(lengths) / nw, sum(map((8).__le__, lengths)) / nw, len(set(words)) / nw]


def shapes(texts: Sequence[str | None]) -> Floats:
    """(rows, len(SHAPE_FEATURES)): :func:`shape` of each text; NaN for a missing one."""
    out = np.full((len(texts), len(SHAPE_FEATURES)), np.nan)
    for i, t in enumerate(texts):
        if t is not None:
            out[i] = shape(t)
    return out


@dataclass
class TermMatrix:
    """Term counts of prompts as sparse rows: row ``i`` holds columns ``cols[ptr[i]:ptr[i+1]]``."""

    ptr: Ints
    cols: Ints
    counts: Floats

    @property
    def rows(self) -> int:
        return len(self.ptr) - 1

    @property
    def row_of(self) -> Ints:
        return np.repeat(np.arange(self.rows), np.diff(self.ptr))

    @classmethod
    def build(cls, texts: Sequence[str | None], vocab: dict[str, int], grow: bool = False) -> TermMatrix:
        """The rows of ``texts`` over ``vocab`` (a missing text is an empty row); ``grow`` adds unseen terms."""
        cols: list[int] = []
        counts: list[int] = []
        ptr = [0]
        for t in texts:
            if t is not None and grow:
                c = Counter(vocab.setdefault(w, len(vocab)) for w in terms(t))
                cols.extend(c.keys())
                counts.extend(c.values())
            elif t is not None:
                ids = [i for i in map(vocab.get, terms(t)) if i is not None]
                u, n = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
                cols.extend(u.tolist())
                counts.extend(n.tolist())
            ptr.append(len(cols))
        return cls(np.asarray(ptr, dtype=np.int64), np.asarray(cols, dtype=np.int64),
                   np.asarray(counts, dtype=np.float64))

    def subset(self, rows: Ints) -> TermMatrix:
        lens = np.diff(self.ptr)[rows]
        ptr = np.r_[0, np.cumsum(lens)].astype(np.int64)
        take = np.repeat(self.ptr[rows] - ptr[:-1], lens) + np.arange(int(ptr[-1]))
        return TermMatrix(ptr, self.cols[take], self.counts[take])

    def keep(self, known: npt.NDArray[np.bool_], remap: Ints | None = None) -> TermMatrix:
        """Only the columns where ``known``; ``remap`` renumbers them."""
        k = known[self.cols]
        ptr = np.r_[0, np.cumsum(np.bincount(self.row_of[k], minlength=self.rows))].astype(np.int64)
        cols = self.cols[k]
        return TermMatrix(ptr, cols if remap is None else remap[cols], self.counts[k])


def lbfgs(f: Callable[[Floats], tuple[float, Floats]], x0: Floats, iters: int, memory: int = 10,
          tol: float = 1e-6) -> Floats:
    """Minimise a smooth convex ``f`` (returning its value and gradient) by L-BFGS with a backtracking search."""
    x = x0.copy()
    fx, g = f(x)
    hist: list[tuple[Floats, Floats, float]] = []
    for _ in range(iters):
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(hist):
            a = rho * float(s @ q)
            alphas.append(a)
            q -= a * y
        if hist:
            s, y, _ = hist[-1]
            q *= float(s @ y) / float(y @ y)
        for (s, y, rho), a in zip(hist, reversed(alphas), strict=True):
            q += s * (a - rho * float(y @ q))
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: restart from the gradient
            hist.clear()
            d, slope = -g, -float(g @ g)
        t = 1.0
        while True:
            xn = x + t * d
            fn, gn = f(xn)
            if fn <= fx + 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        s, y = xn - x, gn - g
        if float(s @ y) > 1e-12:
            hist.append((s, y, 1.0 / float(s @ y)))
            if len(hist) > memory:
                hist.pop(0)
        x, fx, g = xn, fn, gn
        if float(np.abs(g).max()) < tol:
            break
    return x


def _sigmoid(x: Floats) -> Floats:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -40, 40))), dtype=np.float64)


def _bow_fit(m: TermMatrix, y: Floats, n_cols: int) -> Floats:
    """Weights (and the bias, last) of an L2 logistic regression of ``y`` on the unit-length binary term rows."""
    row = m.row_of
    val = (1.0 / np.sqrt(np.maximum(np.diff(m.ptr), 1)))[row]
    n = m.rows

    def f(wb: Floats) -> tuple[float, Floats]:
        w, b = wb[:-1], wb[-1]
        p = _sigmoid(np.bincount(row, weights=val * w[m.cols], minlength=n) + b)
        eps = 1e-12
        loss = -float(np.sum(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))) / n + 0.5 * BOW_LAMBDA * float(w @ w)
        d = (p - y) / n
        grad = np.bincount(m.cols, weights=val * d[row], minlength=n_cols) + BOW_LAMBDA * w
        return loss, np.r_[grad, d.sum()]

    return lbfgs(f, np.zeros(n_cols + 1), BOW_ITERS)


@dataclass
class WordModels:
    vocab: dict[str, int] | None  # term -> column (None while fitted on a training matrix's columns)
    known: npt.NDArray[np.bool_]  # (terms,) the columns kept (seen in MIN_DF prompts)
    # float32 as saved and loaded (a request reads a few hundred scattered rows: half the cache lines), float64
    # once gathered, so that the sums are those of the fitted model's float64 arrays
    idf: npt.NDArray[np.floating[Any]]  # (terms,)
    weights: npt.NDArray[np.floating[Any]]  # (terms, 9): term means (3), log-odds (4), bag-of-words weights (2)
    bias: Floats  # (9,): a text without known terms scores the means (3), zero log-odds, the regressions' biases
    nb_logp: npt.NDArray[np.floating[Any]]  # (terms, families) log P(term | family); float16 as saved and loaded
    nb_prior: Floats  # (families,) log P(family); -1e30 for a family without training prompts
    # for one text, built once: the pairs of words by their two words, and the weights and the idf side by side
    # (one gather per request)
    _one: tuple[dict[tuple[str, str], int], npt.NDArray[np.floating[Any]]] | None = field(
        default=None, init=False, repr=False, compare=False)

    @property
    def compacted(self) -> bool:
        """Cut down to its vocabulary (a saved model): every column is known, so its matrices need no filtering."""
        return self.vocab is not None

    def _known(self, m: TermMatrix) -> TermMatrix:
        return m if self.compacted else m.keep(self.known)

    def features(self, m: TermMatrix) -> Floats:
        """(rows, 9): the :data:`TERM_FEATURES` of each row of ``m``."""
        m = self._known(m)
        n, row, cols = m.rows, m.row_of, m.cols
        out = np.tile(self.bias, (n, 1))
        if not len(cols):
            return out
        distinct = np.diff(m.ptr).astype(np.float64)
        total = np.bincount(row, weights=m.counts, minlength=n)
        has = distinct > 0
        w = self.weights[cols].astype(np.float64)
        idf = self.idf[cols].astype(np.float64)
        den = np.bincount(row, weights=idf, minlength=n)
        for j in range(3):
            out[has, j] = np.bincount(row, weights=idf * w[:, j], minlength=n)[has] / den[has]
        for j in range(3, 7):
            out[:, j] = np.bincount(row, weights=m.counts * w[:, j], minlength=n) / np.sqrt(np.maximum(total, 1))
        for j in range(7, 9):
            out[:, j] += np.bincount(row, weights=w[:, j], minlength=n) / np.sqrt(np.maximum(distinct, 1))
        return out

    def one(self, text: str | None) -> tuple[Floats, Floats]:
        """One text's (a request's) :data:`TERM_FEATURES` and family log-likelihoods: what :meth:`features` and
        :meth:`family_loglik` give for its row of :meth:`matrix` (to about 1e-15: the sums run in another order),
        without building the matrix, in a score of numpy calls (on a request's path each costs microseconds). The
        arrays returned may be the model's own: do not modify them."""
        assert self.vocab is not None, "a compacted model"
        if text is None:
            return self.bias, self.nb_prior
        if self._one is None:
            self._one = (self.pair_index(self.vocab), np.hstack([self.weights, self.idf[:, None]]))
        pairs, table = self._one
        words = _words(text)  # its terms' columns, as terms() would find them, without joining each pair
        ids = [i for i in itertools.chain(map(self.vocab.get, words), map(pairs.get, itertools.pairwise(words)))
               if i is not None]
        if not ids:
            return self.bias, self.nb_prior
        found = Counter(ids)
        m, total = len(found), len(ids)
        cols = np.fromiter(found.keys(), dtype=np.intp, count=m)
        counts = np.fromiter(found.values(), dtype=np.float64, count=m)
        rows = table[cols].astype(np.float64)
        idf = rows[:, 9]
        term = np.concatenate([idf @ rows[:, :3] / idf.sum(), counts @ rows[:, 3:7] / math.sqrt(total),
                               rows[:, 7:9].sum(axis=0) / math.sqrt(m) + self.bias[7:]])
        return term, self.nb_prior + counts @ self.nb_logp[cols].astype(np.float64) / total ** NB_TEMPER

    @staticmethod
    def pair_index(vocab: dict[str, int]) -> dict[tuple[str, str], int]:
        """The vocabulary's pairs of words by their two words (sharing the words' strings with the vocabulary: a
        pair kept was seen in 2 prompts, and so were its words)."""
        words = {t: t for t in vocab if "_" not in t}
        out: dict[tuple[str, str], int] = {}
        for term, col in vocab.items():
            pair = term.split("_")
            if len(pair) == 2:  # (terms() never makes a term of more than two words)
                out[words.get(pair[0], pair[0]), words.get(pair[1], pair[1])] = col
        return out

    def family_loglik(self, m: TermMatrix, chunk: int = 512) -> Floats:
        """(rows, families): the tempered naive Bayes log-likelihood of each family plus its log prior."""
        m = self._known(m)
        out = np.tile(self.nb_prior, (m.rows, 1))
        for start in range(0, m.rows, chunk):
            part = m.subset(np.arange(start, min(start + chunk, m.rows)))
            if not len(part.cols):
                continue
            contrib = self.nb_logp[part.cols].astype(np.float64) * part.counts[:, None]  # (entries, families)
            nonempty = np.flatnonzero(np.diff(part.ptr) > 0)
            sums = np.add.reduceat(contrib, part.ptr[nonempty], axis=0)
            total = np.add.reduceat(part.counts, part.ptr[nonempty])
            out[start + nonempty] += sums / (total ** NB_TEMPER)[:, None]
        return out

    def compact(self, names: Sequence[str]) -> WordModels:
        """The model cut down to its known columns, with its vocabulary (``names``: the training matrix's terms)."""
        cols = np.flatnonzero(self.known)
        vocab = {names[c]: i for i, c in enumerate(cols.tolist())}
        return WordModels(vocab, np.ones(len(cols), dtype=np.bool_), self.idf[cols], self.weights[cols], self.bias,
                          self.nb_logp[cols], self.nb_prior)

    def matrix(self, texts: Sequence[str | None]) -> TermMatrix:
        assert self.vocab is not None, "a compacted model"
        return TermMatrix.build(texts, self.vocab)

    # the saved form: the vocabulary as one newline-joined text, the rest as arrays
    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        assert self.vocab is not None, "a compacted model"
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        return {"lex_vocab": np.frombuffer("\n".join(words).encode(), dtype=np.uint8),
                "lex_idf": self.idf.astype(np.float32), "lex_weights": self.weights.astype(np.float32),
                "lex_bias": self.bias, "lex_nb_logp": self.nb_logp.astype(np.float16), "lex_nb_prior": self.nb_prior}

    @classmethod
    def from_arrays(cls, a: dict[str, npt.NDArray[np.generic]]) -> WordModels:
        text = bytes(a["lex_vocab"]).decode()
        words = text.split("\n") if text else []
        return cls({w: i for i, w in enumerate(words)}, np.ones(len(words), dtype=np.bool_),
                   np.asarray(a["lex_idf"], dtype=np.float32), np.asarray(a["lex_weights"], dtype=np.float32),
                   np.asarray(a["lex_bias"], dtype=np.float64), np.asarray(a["lex_nb_logp"], dtype=np.float16),
                   np.asarray(a["lex_nb_prior"], dtype=np.float64))


def fit_words(m: TermMatrix, n_cols: int, weak: Floats, strong: Floats, family: Ints, n_families: int,
              has_text: npt.NDArray[np.bool_]) -> WordModels:
    """Fit the word models on the rows of ``m`` (over ``n_cols`` columns); rows without a text (feedback kept as
    an embedding only) count toward nothing."""
    row, cols, cnt = m.row_of, m.cols, m.counts
    df = np.bincount(cols, minlength=n_cols).astype(np.float64)
    known = df >= MIN_DF
    k = known[cols]
    row, cols, cnt = row[k], cols[k], cnt[k]
    ys = np.stack([strong - weak, strong, weak], axis=1)
    mu = ys[has_text].mean(axis=0) if has_text.any() else np.zeros(3)
    weights = np.zeros((n_cols, len(TERM_FEATURES)))
    for j in range(3):
        weights[:, j] = (np.bincount(cols, weights=ys[row, j], minlength=n_cols) + SHRINK * mu[j]) / (df + SHRINK)
    gain = strong - weak
    events = (strong > 0.5, weak > 0.5, gain > 0.5, gain < -0.5)
    for j, ev in enumerate(events, start=3):
        e = ev.astype(np.float64)[row]
        pos = np.bincount(cols, weights=cnt * e, minlength=n_cols)[known] + LO_ALPHA
        neg = np.bincount(cols, weights=cnt * (1 - e), minlength=n_cols)[known] + LO_ALPHA
        weights[known, j] = np.log(pos / pos.sum()) - np.log(neg / neg.sum())
    mk = m.keep(known)
    texts = np.flatnonzero(has_text)
    bias = np.r_[mu, np.zeros(6)]
    if len(texts):
        sub = mk.subset(texts)
        for j, y in ((7, strong), (8, weak)):
            wb = _bow_fit(sub, np.clip(y[texts], 0.0, 1.0), n_cols)
            weights[:, j], bias[j] = wb[:-1], wb[-1]
    idf = np.log((len(texts) + 1) / (df + 1)) + 1e-3
    words = np.bincount(family[row] * n_cols + cols, weights=cnt, minlength=n_families * n_cols).reshape(
        n_families, n_cols)
    nb_logp = np.zeros((n_cols, n_families))
    if known.any():
        smoothed = words[:, known] + NB_ALPHA
        nb_logp[known] = (np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))).T
    fam_n = np.bincount(family, minlength=n_families).astype(np.float64)
    nb_prior = np.where(fam_n > 0, np.log(fam_n + 1.0) - np.log(fam_n.sum() + n_families), -1e30)
    return WordModels(None, known, idf, weights, bias, nb_logp, nb_prior)
