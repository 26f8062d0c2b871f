"""The learned router: P(the strong model is needed | prompt), trained from recorded outcomes.

Two logistic regressions (the **heads**) over the same features predict P(the strong model succeeds) and P(the
weak model succeeds); their difference is an estimate of the expected **gain** of calling the strong model. A small
gradient-boosted regression forest (:mod:`.gbdt`) over the dense features, the heads' outputs (out of fold), the
prompt's shape and its options gives a second estimate; the score blends the two (``BLEND``), and ranking for the
routing metrics needs only it (:meth:`LearnedRouter.blend`). The features of a prompt:

* its **family posterior**: which family (outcome file) the prompt looks like, a softmax of ``a`` times a naive
  Bayes log-likelihood over its words (:mod:`.lexical`) plus ``c`` times a linear discriminant (shared-covariance
  Gaussian, shrunk) over its embedding; ``a`` and ``c`` minimise the log-loss of the family out of fold. Beside
  the posterior vector, its products with each family's shrunk mean gain, strong and weak outcome;
* the word models of :mod:`.lexical` (term means, naive Bayes log-odds, two bag-of-words logistic regressions);
* the mean gain, strong and weak outcome of the prompt's ``k`` = 100, 20 and 3 nearest training prompts in
  embedding (:mod:`.neighbours`: cosine on the embedding's first ``KNN_DIM`` dimensions; float16 rows);
* its shape (:func:`.lexical.shape`: lines, digits, words, their length and how many are distinct);
* its answer options, if it lists some (:mod:`.options`: how many, and how alike: their embeddings' cosines);
* the prompt's log length, and its embedding itself (what carries over to families never seen in training:
  without it, held-out families scored no better than prompt length).

The features of the training prompts are computed **out of fold** (``STACK_FOLDS`` inner folds: each prompt's
features come from models fitted without it), so that the regressions learn how far each feature can be trusted
on a prompt it never saw; the models kept for scoring are then fitted on all of the training set. The
regressions' L2 penalty is chosen among ``LAMBDAS`` by the APGR of an inner cross-validation, whose out-of-fold
outputs of the heads are what the forest is fitted on (the forest's own predictions on the training prompts are in
sample: they flatter it a little in the quantiles below). A logistic (Platt)
fit of the gain to the label (the weak model fails where the strong one succeeds) makes it a probability (the
score); ranking depends only on the gain. The score's 101 quantiles on the training prompts (out of fold) are kept
in ``meta["score_quantiles"]``: :meth:`LearnedRouter.threshold_for` maps a share of strong calls to a threshold.

The saved router is one ``.npz`` file of plain arrays and a JSON header (format name and version, the models'
names, the training set's size, the threshold); it is loaded with ``allow_pickle=False``: never pickle.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import gbdt, neighbours, options
from .calibration import cost_share, file_quantiles, quantile_threshold, top_share_threshold
from .embedder import Embedder, clip_prompt, default_embedder
from .lexical import SHAPE_FEATURES, SHRINK, TERM_FEATURES, TermMatrix, WordModels, fit_words, shapes
from .lexical import shape as text_shape
from .metrics import apgr, curve
from .neighbours import KNN_FEATURES
from .outcomes import Outcomes

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

FORMAT = "switchyard-learned-router"
VERSION = 5
STACK_FOLDS = 5
LAMBDAS = (0.1, 0.3, 1.0)  # the regressions' L2 penalty, times the number of training rows
COMBINER_FEATURES = ("post_gain", "post_strong", "post_weak", *TERM_FEATURES, *KNN_FEATURES, "log_length",
                     "head_strong", "head_weak", "head_gain", "post_max", "post_entropy", *SHAPE_FEATURES,
                     *options.OPTION_FEATURES)
PROMPT_FEATURES = (*SHAPE_FEATURES, *options.OPTION_FEATURES)  # the prompt's own: its shape and its options
BLEND = 0.5  # the score's share of the trees' gain (the rest: the heads')
LDA_SHRINK = 0.1  # of the discriminant's covariance toward its mean variance
MIX_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
MAX_REFERENCE = 20_000  # training rows kept for the nearest neighbours
NONE = -1e30  # the log prior of a family without training prompts


class RouterFormatError(ValueError):
    """A router file that is not one, or of a version this code does not read."""


def _sigmoid(x: Floats) -> Floats:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -40, 40))), dtype=np.float64)


def _softmax(logits: Floats) -> Floats:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(p / p.sum(axis=1, keepdims=True), dtype=np.float64)


def _logistic(x: Floats, y: Floats, lam: float, iters: int = 30) -> Floats:
    """Weights (bias last) of an L2 logistic regression (penalty ``lam`` on the weights) by Newton's method; ``y``
    may be a soft label in [0, 1]."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    reg = np.full(xb.shape[1], lam)
    reg[-1] = 1e-6
    beta = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = _sigmoid(xb @ beta)
        g = xb.T @ (p - y) + reg * beta
        h = (xb * (p * (1 - p) + 1e-9)[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(h, g)
        beta -= step
        if float(np.abs(step).max()) < 1e-7:
            break
    return beta


def _platt(x: Floats, y: Floats) -> tuple[float, float]:
    """a, b of P(y) = sigmoid(a·x + b), with a small Gaussian prior on the slope."""
    beta = _logistic(x[:, None], y, 1e-3 * len(x))
    return float(beta[0]), float(beta[1])


def _lda(emb: Floats, family: Ints, n_families: int) -> tuple[Floats, Floats]:
    """A linear discriminant of the family over the embedding: weights (dim, families) and biases (families,)."""
    counts = np.bincount(family, minlength=n_families).astype(np.float64)
    means = np.zeros((n_families, emb.shape[1]))
    np.add.at(means, family, emb)
    means /= np.maximum(counts, 1.0)[:, None]
    centred = emb - means[family]
    cov = centred.T @ centred / len(emb)
    cov = (1 - LDA_SHRINK) * cov + LDA_SHRINK * float(np.trace(cov)) / len(cov) * np.eye(len(cov))
    w = np.linalg.solve(cov, means.T)
    b = -0.5 * np.sum(means.T * w, axis=0) + np.log((counts + 1.0) / (counts.sum() + n_families))
    return np.asarray(w, dtype=np.float64), np.where(counts > 0, b, NONE).astype(np.float64)


@dataclass
class _Models:
    """What one fit of the feature models keeps: the word models, the discriminant, the neighbours and the family
    means."""

    words: WordModels
    lda_w: Floats
    lda_b: Floats
    reference: npt.NDArray[np.float16]  # (rows, KNN_DIM) the training embeddings (:func:`.neighbours.truncate`)
    reference_y: Floats  # (rows, 3) their gain, strong and weak outcome
    family_y: Floats  # (families, 3) shrunk means of gain, strong and weak outcome
    _reference_t: npt.NDArray[np.float32] | None = field(default=None, repr=False, compare=False)  # (KNN_DIM, rows)

    def reference_t(self) -> npt.NDArray[np.float32]:
        """The reference's rows as columns, float32 (converted once: per call it would cost more than the rest of
        a score)."""
        if self._reference_t is None:
            self._reference_t = np.ascontiguousarray(self.reference.T, dtype=np.float32)
        return self._reference_t

    def raw(self, m: TermMatrix, emb: Floats) -> tuple[Floats, Floats, Floats, Floats]:
        """Term features, family log-likelihoods (naive Bayes, discriminant), neighbour features."""
        lda = emb @ self.lda_w + self.lda_b
        return (self.words.features(m), self.words.family_loglik(m), lda - lda.max(axis=1, keepdims=True),
                neighbours.knn(emb, self.reference_t(), self.reference_y))


def _fit_models(m: TermMatrix, n_cols: int, emb: Floats, outcomes: Outcomes, family: Ints, n_families: int,
                has_text: npt.NDArray[np.bool_], max_reference: int, seed: int) -> _Models:
    words = fit_words(m, n_cols, outcomes.weak, outcomes.strong, family, n_families, has_text)
    lda_w, lda_b = _lda(emb, family, n_families)
    y = np.stack([outcomes.gain, outcomes.strong, outcomes.weak], axis=1)
    n = len(outcomes)
    keep = (np.sort(np.random.default_rng(seed).choice(n, max_reference, replace=False)) if n > max_reference
            else np.arange(n))
    counts = np.bincount(family, minlength=n_families).astype(np.float64)[:, None]
    sums = np.stack([np.bincount(family, weights=y[:, j], minlength=n_families) for j in range(3)], axis=1)
    family_y = (sums + SHRINK * y.mean(axis=0)) / (counts + SHRINK)
    return _Models(words, lda_w, lda_b, neighbours.truncate(emb[keep]).astype(np.float16), y[keep], family_y)


def _log_length(texts: Sequence[str | None]) -> Floats:
    """log(1 + characters) of each text; NaN for a missing one (it takes the training mean)."""
    return np.asarray([np.log1p(len(t)) if t is not None else np.nan for t in texts], dtype=np.float64)


def _prompt_features(texts: Sequence[str | None], embedder: Embedder) -> Floats:
    """The prompt's shape and its options' features (:data:`PROMPT_FEATURES`); NaN where not known."""
    return np.hstack([shapes(texts), options.features(texts, embedder)])


def _nanmean(col: Floats) -> Floats:
    """Each column's mean over its known values; 0 for a column without any."""
    known = ~np.isnan(col)
    counts = known.sum(axis=0)
    return np.where(counts > 0, np.where(known, col, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)


def _design(posterior: Floats, expected: Floats, term: Floats, knn: Floats, length: Floats, shape: Floats,
            emb: Floats) -> Floats:
    """The regressions' features (``expected``: the posterior's mean gain, strong and weak outcome)."""
    return np.hstack([posterior, expected, term, knn, length[:, None], shape, emb])


def _combiner_input(posterior: Floats, expected: Floats, term: Floats, knn: Floats, length: Floats,
                    heads: Floats, shape: Floats) -> Floats:
    """The trees' features (:data:`COMBINER_FEATURES`): the dense ones of the design, the heads' outputs (P strong,
    P weak succeeds) and how sure the family posterior is."""
    entropy = -np.sum(posterior * np.log(np.maximum(posterior, 1e-12)), axis=1)
    return np.hstack([expected, term, knn, length[:, None], heads, (heads[:, 0] - heads[:, 1])[:, None],
                      posterior.max(axis=1)[:, None], entropy[:, None], shape])


def _posterior(nb: Floats, lda: Floats, mix: tuple[float, float]) -> Floats:
    return _softmax(mix[0] * nb + mix[1] * lda)


def _fit_mix(nb: Floats, lda: Floats, family: Ints) -> tuple[float, float]:
    """The weights of the two family log-likelihoods that minimise the log-loss of the true family."""
    best, arg = np.inf, (1.0, 0.0)
    rows = np.arange(len(family))
    for a in MIX_GRID:
        for c in MIX_GRID:
            if a == 0 and c == 0:
                continue
            p = _posterior(nb, lda, (a, c))[rows, family]
            loss = -float(np.mean(np.log(np.maximum(p, 1e-12))))
            if loss < best:
                best, arg = loss, (a, c)
    return arg


@dataclass
class _OneRow:
    """What scoring one prompt at a time uses, derived once from a router: the heads' weights over the raw features
    (the standardisation folded in), the discriminant times its weight in the mixture, the reference as columns,
    the training means that stand for a missing text's length and shape."""

    coef: Floats  # (2, features)
    bias: Floats  # (2,)
    lda_w: Floats  # (dim, families)
    lda_b: Floats  # (families,)
    reference_t: npt.NDArray[np.float32]  # (KNN_DIM, rows)
    mean_length: float
    mean_shape: Floats

    @classmethod
    def of(cls, r: LearnedRouter) -> _OneRow:
        coef = r.coef[:, :-1] / r.x_scale
        d = len(r.x_mean) - r.models.lda_w.shape[0] - len(PROMPT_FEATURES)  # the shape's first column
        # the discriminant's log-likelihoods are shifted by their maximum in the batch path: the softmax does not
        # see a shift, so it is left out here
        return cls(coef, r.coef[:, -1] - coef @ r.x_mean, r.mix[1] * r.models.lda_w, r.mix[1] * r.models.lda_b,
                   r.models.reference_t(), float(r.x_mean[d - 1]), r.x_mean[d:d + len(PROMPT_FEATURES)].copy())


def _sigmoid1(v: float) -> float:
    """:func:`_sigmoid` of one number."""
    return 1.0 / (1.0 + math.exp(-min(max(v, -40.0), 40.0)))


@dataclass
class LearnedRouter:
    """A trained router. ``score`` gives P(strong model needed) per prompt; a prompt whose score is at least
    ``threshold`` goes to the strong model."""

    models: _Models
    mix: tuple[float, float]  # weights of the naive Bayes and the discriminant log-likelihoods
    x_mean: Floats  # standardisation of the regressions' features
    x_scale: Floats
    coef: Floats  # (2, features + 1): P(strong succeeds), P(weak succeeds); bias last
    forest: gbdt.Forest  # the trees' gain, from COMBINER_FEATURES
    platt: tuple[float, float]
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    embedder: Embedder | None = field(default=None, repr=False, compare=False)
    _one: _OneRow | None = field(default=None, repr=False, compare=False)

    @property
    def words(self) -> WordModels:
        return self.models.words

    # --- scoring ------------------------------------------------------------------------------------------------

    def score(self, texts: Sequence[str]) -> Floats:
        """P(the strong model is needed) for each text."""
        if not texts:
            return np.zeros(0)
        clipped = [clip_prompt(t) for t in texts]
        return self.score_vectors(self._embedder().embed(clipped), clipped)

    def score_vectors(self, embeddings: npt.ArrayLike, texts: Sequence[str | None] | None = None) -> Floats:
        """Scores from embeddings already computed (by the auto router or the cache) of the prompts as routing
        reads them (:func:`embed_prompts`); ``texts`` (or None in a place) gives the word features, which are
        otherwise those of a text without known words."""
        return _sigmoid(self.platt[0] * self.blend(embeddings, texts) + self.platt[1])

    def blend(self, embeddings: npt.ArrayLike, texts: Sequence[str | None] | None = None) -> Floats:
        """The expected gain of calling the strong model: ``BLEND`` times the trees' estimate plus the rest times
        the heads' P(strong succeeds) - P(weak succeeds); the score before calibration, what ranking uses."""
        return self._predict(embeddings, texts)[1]

    def probabilities(self, embeddings: npt.ArrayLike, texts: Sequence[str | None] | None = None
                      ) -> tuple[Floats, Floats]:
        """P(the strong model succeeds) and P(the weak model succeeds) for each prompt (the heads)."""
        heads = self._predict(embeddings, texts)[0]
        return heads[:, 0], heads[:, 1]

    def _predict(self, embeddings: npt.ArrayLike, texts: Sequence[str | None] | None) -> tuple[Floats, Floats]:
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim == 1:
            emb = emb[None, :]
        if len(emb) == 1:  # one prompt (a request)
            heads1, gain1 = self._predict_one(emb[0], texts[0] if texts is not None else None)
            return heads1[None, :], np.array([gain1])
        tx = [clip_prompt(t) if t is not None else None for t in texts] if texts is not None else [None] * len(emb)
        term, nb, lda, knn = self.models.raw(self.words.matrix(tx), emb)
        post = _posterior(nb, lda, self.mix)
        expected, length = post @ self.models.family_y, _log_length(tx)
        shape = _prompt_features(tx, self._embedder())
        x = _design(post, expected, term, knn, length, shape, emb)
        x = np.where(np.isnan(x), self.x_mean, x)
        heads = _sigmoid((x - self.x_mean) / self.x_scale @ self.coef[:, :-1].T + self.coef[:, -1])
        d = x.shape[1] - emb.shape[1]  # the columns before the embedding: length and shape, NaN-filled
        length, shape = x[:, d - 1 - len(PROMPT_FEATURES)], x[:, d - len(PROMPT_FEATURES):d]
        trees = self.forest.predict(_combiner_input(post, expected, term, knn, length, heads, shape))
        return heads, BLEND * trees + (1 - BLEND) * (heads[:, 0] - heads[:, 1])

    def _predict_one(self, emb: Floats, text: str | None) -> tuple[Floats, float]:
        """:meth:`_predict` of one prompt (a request) in few numpy calls (on a request's path each costs a few
        microseconds): the same features and models, the mixture's and the standardisation's constants folded into
        the weights (:class:`_OneRow`), the heads' two sigmoids in plain floats. The result is the batch path's to
        about 1e-15, except where a feature of the prompt falls within that of one of the trees' splits (a prompt
        seen in training can), which may then send it the other way."""
        one = self._one
        if one is None:
            one = self._one = _OneRow.of(self)
        tx = clip_prompt(text) if text is not None else None
        term, nb = self.words.one(tx)
        logits = self.mix[0] * nb + (emb @ one.lda_w + one.lda_b)  # the discriminant times its weight
        p = np.exp(logits - logits.max())
        post = p / p.sum()
        expected = post @ self.models.family_y
        knn = neighbours.knn_one(emb, one.reference_t, self.models.reference_y)
        shape1: Sequence[float] | Floats
        if tx is not None:
            opts = options.features_one(tx, self._embedder())
            length = math.log1p(len(tx))
            shape1 = [*text_shape(tx), *(opts if opts[0] else (0.0, *one.mean_shape[len(SHAPE_FEATURES) + 1:]))]
        else:
            length, shape1 = one.mean_length, one.mean_shape
        x = np.concatenate([post, expected, term, knn, (length,), shape1, emb])
        if not math.isfinite(float(emb.sum())):  # another embedder's 0/0: the training means
            x = np.where(np.isnan(x), self.x_mean, x)
        h0, h1 = (one.coef @ x + one.bias).tolist()
        strong, weak = _sigmoid1(h0), _sigmoid1(h1)
        entropy = -float(post @ np.log(np.maximum(post, 1e-12)))
        trees = self.forest.predict_one(np.concatenate(
            [expected, term, knn, (length, strong, weak, strong - weak, post.max(), entropy), shape1],
            dtype=np.float32))
        return np.array([strong, weak]), BLEND * trees + (1 - BLEND) * (strong - weak)

    def _embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = default_embedder()
        return self.embedder

    # --- the threshold ------------------------------------------------------------------------------------------

    def threshold_for(self, strong_share: float) -> float:
        """The score above which ``strong_share`` of the training prompts (out of fold) go to the strong model:
        the quantile at ``1 - strong_share`` of ``meta["score_quantiles"]`` (interpolated); without them, the
        threshold."""
        q = file_quantiles(self.meta)
        if q is None:
            return float(self.threshold)
        share = min(max(float(strong_share), 0.0), 1.0)
        if share <= 0.0:
            return float(np.nextafter(q[-1], np.inf))
        return quantile_threshold(q, share)

    def calibrate(self, scores: npt.ArrayLike, *, strong_share: float | None = None,
                  cost_target: float | None = None, weak_cost: float = 0.0, strong_cost: float = 1.0) -> float:
        """Set the threshold from a sample of scores (the traffic's, or the training prompts'):

        * ``strong_share``: that share of calls goes to the strong model;
        * ``cost_target``: the mean cost per call is at most this, where a call costs ``weak_cost`` on the weak
          model and ``strong_cost`` on the strong one (so ``strong_share = (target - weak) / (strong - weak)``).
        """
        if (strong_share is None) == (cost_target is None):
            raise ValueError("give exactly one of strong_share and cost_target")
        if cost_target is not None:
            strong_share = cost_share(cost_target, weak_cost, strong_cost)
            if strong_share is None:
                raise ValueError("the strong model must cost more than the weak one")
        assert strong_share is not None
        share = min(max(float(strong_share), 0.0), 1.0)
        s = np.asarray(scores, dtype=np.float64)
        if len(s) == 0:
            raise ValueError("calibration needs at least one score")
        self.threshold = top_share_threshold(s, share)
        self.meta["strong_share"] = share
        return self.threshold

    def needs_strong(self, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return np.asarray(scores) >= self.threshold

    # --- the file -------------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        mod = self.models
        header = {"format": FORMAT, "version": VERSION, "threshold": self.threshold, "platt": list(self.platt),
                  "mix": list(self.mix), "features": list(COMBINER_FEATURES), "forest_base": self.forest.base,
                  "dim": int(mod.lda_w.shape[0]), "knn_dim": int(mod.reference.shape[1]), **self.meta}
        arrays: dict[str, Any] = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "lda_w": mod.lda_w.astype(np.float32), "lda_b": mod.lda_b, "reference": mod.reference,
            "reference_y": mod.reference_y.astype(np.float32), "family_y": mod.family_y, "x_mean": self.x_mean,
            "x_scale": self.x_scale, "coef": self.coef, "forest_feature": self.forest.feature,
            "forest_threshold": self.forest.threshold, "forest_leaf": self.forest.leaf, **mod.words.arrays(),
        }
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> LearnedRouter:
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise RouterFormatError(f"{path}: not a router file ({type(e).__name__})") from None
        try:
            header = json.loads(bytes(arrays.pop("header")).decode())
        except (KeyError, ValueError):
            raise RouterFormatError(f"{path}: not a router file (no header)") from None
        if header.get("format") != FORMAT:
            raise RouterFormatError(f"{path}: not a router file (format {header.get('format')!r})")
        if header.get("version") != VERSION:
            raise RouterFormatError(f"{path}: router format version {header.get('version')!r}; this gateway reads "
                                    f"version {VERSION}: train the router again (switchyard router train)")
        if header.get("features") != list(COMBINER_FEATURES):
            raise RouterFormatError(f"{path}: trained with other features; train it again")
        known = ("format", "version", "threshold", "platt", "mix", "features", "dim", "knn_dim", "forest_base")
        meta = {k: v for k, v in header.items() if k not in known}
        try:
            a, b = header["platt"]
            mix_a, mix_c = header["mix"]
            models = _Models(WordModels.from_arrays(arrays), arrays["lda_w"].astype(np.float64),
                             arrays["lda_b"].astype(np.float64), arrays["reference"].astype(np.float16),
                             arrays["reference_y"].astype(np.float64), arrays["family_y"].astype(np.float64))
            forest = gbdt.Forest(arrays["forest_feature"].astype(np.int16),
                                 arrays["forest_threshold"].astype(np.float32),
                                 arrays["forest_leaf"].astype(np.float32), float(header["forest_base"]))
            return cls(models, (float(mix_a), float(mix_c)), arrays["x_mean"], arrays["x_scale"], arrays["coef"],
                       forest, (float(a), float(b)), float(header["threshold"]), meta)
        except (KeyError, TypeError, ValueError) as e:
            raise RouterFormatError(f"{path}: an incomplete router file ({e})") from None


def _fit_heads(x: Floats, strong: Floats, weak: Floats, lam: float) -> Floats:
    return np.stack([_logistic(x, np.clip(strong, 0, 1), lam * len(x)), _logistic(x, np.clip(weak, 0, 1),
                                                                                    lam * len(x))])


def _choose_lambda(x: Floats, outcomes: Outcomes, inner: Ints, folds: int) -> tuple[float, Floats | None]:
    """The regressions' penalty with the best APGR out of fold, and the heads' outputs out of fold with it; with
    fewer than 2 folds, the first of ``LAMBDAS`` and None."""
    if folds < 2:
        return LAMBDAS[0], None
    tie = outcomes.strong.mean() == outcomes.weak.mean()
    best, arg, heads = -np.inf, LAMBDAS[0], np.zeros((len(x), 2))
    for lam in LAMBDAS[:1] if tie else LAMBDAS:
        p = np.zeros((len(x), 2))
        for j in range(folds):
            tr, te = inner != j, inner == j
            coef = _fit_heads(x[tr], outcomes.strong[tr], outcomes.weak[tr], lam)
            p[te] = _sigmoid(x[te] @ coef[:, :-1].T + coef[:, -1])
        value = -np.inf if tie else apgr(curve(p[:, 0] - p[:, 1], outcomes.weak, outcomes.strong))
        if value > best or lam == LAMBDAS[0]:
            best, arg, heads = value, lam, p
    return arg, heads


def embed_prompts(prompts: Sequence[str], embedder: Embedder | None = None) -> npt.NDArray[np.float32]:
    """The embeddings the router reads: of each prompt as routing reads it (:func:`.embedder.clip_prompt`), the
    same in training, in evaluation and at run time (where the task profile's vector is reused)."""
    return (embedder or default_embedder()).embed([clip_prompt(p) for p in prompts])


def train(outcomes: Outcomes, embeddings: npt.ArrayLike | None = None, *, texts: Sequence[str | None] | None = None,
          embedder: Embedder | None = None, max_reference: int = MAX_REFERENCE, stack_folds: int = STACK_FOLDS,
          seed: int = 0, meta: dict[str, Any] | None = None) -> LearnedRouter:
    """Train a router on ``outcomes``. ``embeddings``: the prompts' rows, if already computed; ``texts``: the
    prompts for the word models (default: ``outcomes.prompts``; None in a place where only an embedding is known,
    as in feedback kept under zero retention). The features of the training prompts come from ``stack_folds``
    inner folds (fewer than 2: from the models fitted on all of them, which flatters them)."""
    n = len(outcomes)
    if n < 10:
        raise ValueError(f"too few outcomes to train on ({n}; at least 10)")
    if embeddings is None:
        embeddings = embed_prompts(outcomes.prompts, embedder)
    emb = np.asarray(embeddings, dtype=np.float64)
    texts = [clip_prompt(t) if t is not None else None for t in (outcomes.prompts if texts is None else texts)]
    has_text = np.asarray([t is not None for t in texts], dtype=np.bool_)
    names: dict[str, int] = {}
    tm = TermMatrix.build(texts, names, grow=True)
    fams, fam = np.unique(outcomes.family, return_inverse=True)
    fam = fam.astype(np.int64)
    nf = len(fams)

    def fit(rows: Ints) -> _Models:
        return _fit_models(tm.subset(rows), len(names), emb[rows], outcomes.subset(rows), fam[rows], nf,
                           has_text[rows], max_reference, seed)

    rng = np.random.default_rng(seed)
    folds = min(stack_folds, n // 5)
    inner = (rng.permutation(n) % folds).astype(np.int64) if folds >= 2 else np.zeros(n, dtype=np.int64)
    term = np.zeros((n, len(TERM_FEATURES)))
    knn = np.zeros((n, len(KNN_FEATURES)))
    nb, lda, family_y = np.zeros((n, nf)), np.zeros((n, nf)), np.zeros((n, nf, 3))
    full = fit(np.arange(n))
    for j in range(folds if folds >= 2 else 1):
        te = np.flatnonzero(inner == j)
        part = fit(np.flatnonzero(inner != j)) if folds >= 2 else full
        term[te], nb[te], lda[te], knn[te] = part.raw(tm.subset(te), emb[te])
        family_y[te] = part.family_y
    mix = _fit_mix(nb, lda, fam)
    post = _posterior(nb, lda, mix)
    expected = np.einsum("nf,nfk->nk", post, family_y)
    length, shape = _log_length(texts), _prompt_features(texts, embedder or default_embedder())
    for col in (length[:, None], shape):  # a missing value takes the mean (or 0 where every value is missing)
        col[:] = np.where(np.isnan(col), _nanmean(col), col)
    x = _design(post, expected, term, knn, length, shape, emb)
    x_mean, x_scale = x.mean(axis=0), x.std(axis=0)
    x_scale[x_scale < 1e-9] = 1.0
    z = (x - x_mean) / x_scale
    lam, heads = _choose_lambda(z, outcomes, inner, folds)
    coef = _fit_heads(z, outcomes.strong, outcomes.weak, lam)
    if heads is None:  # no inner folds: the heads' own fit, which flatters them
        heads = _sigmoid(z @ coef[:, :-1].T + coef[:, -1])
    combined = _combiner_input(post, expected, term, knn, length, heads, shape)
    forest = gbdt.fit(combined, outcomes.gain, seed=seed)
    gain = BLEND * forest.predict(combined) + (1 - BLEND) * (heads[:, 0] - heads[:, 1])
    platt = _platt(gain, outcomes.label)
    full.words = full.words.compact(list(names))
    router = LearnedRouter(full, mix, x_mean, x_scale, coef, forest, platt, embedder=embedder)
    scores = _sigmoid(platt[0] * gain + platt[1])
    router.meta = {"rows": n, "families": [outcomes.families[i] for i in fams] if outcomes.families else [],
                   "lambda": lam, "trained_at": int(time.time()),
                   "score_quantiles": [float(v) for v in np.quantile(scores, np.linspace(0.0, 1.0, 101))],
                   **(meta or {})}
    router.calibrate(scores, strong_share=0.5)
    return router
