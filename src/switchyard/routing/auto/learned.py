"""The learned router: P(the strong model is needed | prompt), trained from recorded outcomes.

The score blends four small models of the prompt, each predicting the **gain** of the strong model over the weak
one (``strong - weak``, whose expectation is what ranking for the routing metrics needs):

* a ridge regression over the standardised features (the embedding from the offline embedder, and the cheap
  features of :mod:`.features`);
* the mean gain of the ``k`` training prompts nearest in embedding (cosine), kept as float16 rows;
* the term gain of :mod:`.lexical`: the shrunk mean gain of the training prompts holding each of its words and
  word pairs;
* a family prior (:mod:`.lexical`): a naive Bayes classifier of the prompt's family (the outcome file it came
  from) weighing each family's mean gain by its posterior. With one family it is left out.

The blend is a **stack**: each component is standardised, and their weights are a ridge fit to the gain of the
components' out-of-fold predictions by an inner cross-validation on the training set only (``STACK_FOLDS``). A
logistic (Platt) fit of the blend to the label (the weak model fails where the strong one succeeds) makes it a
probability; ranking depends only on the blend.

The saved router is one ``.npz`` file of plain arrays and a JSON header (format name and version, the models'
names, the training set's size, the threshold); it is loaded with ``allow_pickle=False``: never pickle.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .embedder import Embedder, default_embedder
from .features import NAMES as FEATURE_NAMES
from .features import cheap_features
from .lexical import WordModels, fit_words
from .outcomes import Outcomes

Floats = npt.NDArray[np.float64]

FORMAT = "switchyard-learned-router"
VERSION = 2
COMPONENTS = ("ridge", "knn", "term_gain", "family")
STACK_FOLDS = 5
STACK_LAMBDA = 0.01  # times the number of training rows
RIDGE_LAMBDA = 1.0  # times the number of training rows
KNN_K = 100
MAX_REFERENCE = 20_000  # training rows kept for the nearest-neighbour component
CHUNK = 1024


class RouterFormatError(ValueError):
    """A router file that is not one, or of a version this code does not read."""


def _sigmoid(x: Floats) -> Floats:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -40, 40))), dtype=np.float64)


def _standardise(x: Floats) -> tuple[Floats, Floats]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    return mean, scale


def _ridge(z: Floats, target: Floats, lam: float) -> tuple[Floats, float]:
    bias = float(target.mean())
    a = z.T @ z + lam * np.eye(z.shape[1])
    return np.asarray(np.linalg.solve(a, z.T @ (target - bias)), dtype=np.float64), bias


def _platt(x: Floats, y: Floats) -> tuple[float, float]:
    """a, b of P(y) = sigmoid(a·x + b) by Newton's method (y may be a soft label in [0, 1]). The slope has a
    Gaussian prior (weight ``0.1·n``): the blend is fitted on the training prompts themselves, which it may
    separate, and an unbounded slope would turn the scores into 0s and 1s."""
    a, b = 0.0, 0.0
    c = 0.1 * len(x)
    for _ in range(50):
        p = _sigmoid(a * x + b)
        r = p - y
        wgt = p * (1 - p) + 1e-9
        g = np.array([np.sum(r * x) + c * a, np.sum(r)])
        h = np.array([[np.sum(wgt * x * x) + c, np.sum(wgt * x)], [np.sum(wgt * x), np.sum(wgt) + 1e-6]])
        step = np.linalg.solve(h, g)
        a, b = a - float(step[0]), b - float(step[1])
        if np.abs(step).max() < 1e-8:
            break
    return a, b


@dataclass
class LearnedRouter:
    """A trained router. ``score`` gives P(strong model needed) per prompt; a prompt whose score is at least
    ``threshold`` goes to the strong model."""

    mean: Floats  # feature standardisation
    scale: Floats
    ridge_w: Floats
    ridge_b: float
    reference: npt.NDArray[np.float16]  # (rows, dim) L2-normalised embeddings for the nearest neighbours
    reference_gain: Floats
    k: int
    words: WordModels
    component_mean: Floats  # (4,) standardisation of each component; scale 0 leaves it out
    component_scale: Floats
    component_weight: Floats  # (4,) the stack's weights
    platt: tuple[float, float]
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    embedder: Embedder | None = field(default=None, repr=False, compare=False)
    _reference32: npt.NDArray[np.float32] | None = field(default=None, repr=False, compare=False)

    # --- scoring ------------------------------------------------------------------------------------------------

    def score(self, texts: Sequence[str]) -> Floats:
        """P(the strong model is needed) for each text."""
        if not texts:
            return np.zeros(0)
        emb = self._embedder().embed(list(texts))
        return self.score_vectors(emb, texts)

    def score_vectors(self, embeddings: npt.ArrayLike, texts: Sequence[str | None] | None = None) -> Floats:
        """Scores from embeddings already computed (by the auto router or the cache); ``texts`` (or None in a
        place) gives the cheap features, which are otherwise taken at their training mean."""
        return _sigmoid(self.platt[0] * self.blend(embeddings, texts) + self.platt[1])

    def blend(self, embeddings: npt.ArrayLike, texts: Sequence[str | None] | None = None) -> Floats:
        """The sum of the standardised components (the score before calibration; what ranking uses)."""
        emb = np.asarray(embeddings, dtype=np.float64)
        z = (_features(emb, texts, self.mean) - self.mean) / self.scale
        comps = self._components(z, emb, texts)
        return _combine(comps, self.component_mean, self.component_scale, self.component_weight)

    def _components(self, z: Floats, emb: Floats, texts: Sequence[str | None] | None) -> Floats:
        out = np.zeros((len(z), len(COMPONENTS)))
        out[:, 0] = z @ self.ridge_w + self.ridge_b
        if len(self.reference):
            if self._reference32 is None:  # converted once: per call it would cost more than the rest of a score
                self._reference32 = self.reference.astype(np.float32)
            out[:, 1] = _knn_mean(emb, self._reference32, self.reference_gain, self.k)
        out[:, 2:] = self.words.scores(list(texts) if texts is not None else [None] * len(z))
        return out

    def _embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = default_embedder()
        return self.embedder

    # --- the threshold ------------------------------------------------------------------------------------------

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
            if strong_cost <= weak_cost:
                raise ValueError("the strong model must cost more than the weak one")
            strong_share = (cost_target - weak_cost) / (strong_cost - weak_cost)
        assert strong_share is not None
        share = min(max(float(strong_share), 0.0), 1.0)
        s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
        if len(s) == 0:
            raise ValueError("calibration needs at least one score")
        n_strong = round(share * len(s))
        if n_strong <= 0:
            self.threshold = float(np.nextafter(s[0], np.inf))
        elif n_strong >= len(s):
            self.threshold = float(s[-1])
        else:
            self.threshold = float(s[n_strong - 1])
        self.meta["strong_share"] = share
        return self.threshold

    def needs_strong(self, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        return np.asarray(scores) >= self.threshold

    # --- the file -------------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        header = {"format": FORMAT, "version": VERSION, "threshold": self.threshold, "k": self.k,
                  "ridge_b": self.ridge_b, "platt": list(self.platt), "features": list(FEATURE_NAMES),
                  "components": list(COMPONENTS),
                  "dim": int(self.reference.shape[1]) if self.reference.ndim == 2 else 0, **self.meta}
        arrays: dict[str, Any] = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "mean": self.mean, "scale": self.scale, "ridge_w": self.ridge_w, "reference": self.reference,
            "reference_gain": self.reference_gain.astype(np.float32), "component_mean": self.component_mean,
            "component_scale": self.component_scale, "component_weight": self.component_weight,
            **self.words.arrays(),
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
                                    f"version {VERSION}")
        if header.get("features") != list(FEATURE_NAMES) or header.get("components") != list(COMPONENTS):
            raise RouterFormatError(f"{path}: trained with other cheap features; train it again")
        known = ("format", "version", "threshold", "k", "ridge_b", "platt", "features", "components", "dim")
        meta = {k: v for k, v in header.items() if k not in known}
        try:
            a, b = header["platt"]
            return cls(arrays["mean"], arrays["scale"], arrays["ridge_w"], float(header["ridge_b"]),
                       arrays["reference"].astype(np.float16), arrays["reference_gain"].astype(np.float64),
                       int(header["k"]), WordModels.from_arrays(arrays), arrays["component_mean"],
                       arrays["component_scale"], arrays["component_weight"], (float(a), float(b)),
                       float(header["threshold"]), meta)
        except (KeyError, TypeError, ValueError) as e:
            raise RouterFormatError(f"{path}: an incomplete router file ({e})") from None


def _features(emb: Floats, texts: Sequence[str | None] | None, mean: Floats) -> Floats:
    """[embedding, cheap features]; a missing text takes the cheap features' training mean."""
    d = emb.shape[1]
    cheap = np.tile(mean[d:], (len(emb), 1))
    if texts is not None:
        have = [i for i, t in enumerate(texts) if t is not None]
        if have:
            cheap[have] = cheap_features([texts[i] or "" for i in have])
    return np.hstack([emb, cheap])


def _knn_mean(emb: Floats, ref: npt.NDArray[np.float32], gain: Floats, k: int) -> Floats:
    """The mean gain of each row's ``k`` nearest reference rows (cosine)."""
    k = max(1, min(k, len(ref)))
    out = np.empty(len(emb))
    for start in range(0, len(emb), CHUNK):
        sims = emb[start:start + CHUNK].astype(np.float32) @ ref.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out[start:start + CHUNK] = gain[idx].mean(axis=1)
    return out


def _combine(comps: Floats, mean: Floats, scale: Floats, weight: Floats) -> Floats:
    used = scale > 0
    return np.asarray(((comps[:, used] - mean[used]) / scale[used]) @ weight[used], dtype=np.float64)


def _fit(outcomes: Outcomes, emb: Floats, texts: Sequence[str | None], k: int, ridge_lambda: float,
         max_reference: int, seed: int) -> LearnedRouter:
    """The components fitted on these rows, blended with equal weights (the stack sets the weights)."""
    n = len(outcomes)
    gain = outcomes.gain
    x = np.hstack([emb, np.zeros((n, len(FEATURE_NAMES)))])
    have = [i for i, t in enumerate(texts) if t is not None]
    if have:
        x[have, emb.shape[1]:] = cheap_features([texts[i] or "" for i in have])
        x[[i for i in range(n) if texts[i] is None], emb.shape[1]:] = x[have, emb.shape[1]:].mean(axis=0)
    mean, scale = _standardise(x)
    z = (x - mean) / scale
    ridge_w, ridge_b = _ridge(z, gain, ridge_lambda * n)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, max_reference, replace=False)) if n > max_reference else np.arange(n)
    fams, remap = np.unique(outcomes.family, return_inverse=True)
    words = fit_words(texts, gain, remap.astype(np.int64), len(fams))
    return LearnedRouter(mean, scale, ridge_w, ridge_b, emb[keep].astype(np.float16), gain[keep], k, words,
                         np.zeros(len(COMPONENTS)), np.ones(len(COMPONENTS)), np.ones(len(COMPONENTS)), (1.0, 0.0))


def _stack_weights(comps: Floats, gain: Floats) -> tuple[Floats, Floats, Floats]:
    """Standardisation and ridge weights of the components' out-of-fold predictions against the gain."""
    mean = comps.mean(axis=0)
    sd = comps.std(axis=0)
    scale = np.where(sd > 1e-12, sd, 0.0)
    used = scale > 0
    weight = np.zeros(comps.shape[1])
    if used.any():
        zc = (comps[:, used] - mean[used]) / scale[used]
        a = zc.T @ zc + STACK_LAMBDA * len(zc) * np.eye(int(used.sum()))
        weight[used] = np.linalg.solve(a, zc.T @ (gain - gain.mean()))
    if not np.any(weight > 0):  # a degenerate stack: fall back to equal weights
        weight = used.astype(np.float64)
    return mean, scale, weight


def train(outcomes: Outcomes, embeddings: npt.ArrayLike | None = None, *, texts: Sequence[str | None] | None = None,
          embedder: Embedder | None = None, k: int = KNN_K, ridge_lambda: float = RIDGE_LAMBDA,
          max_reference: int = MAX_REFERENCE, stack_folds: int = STACK_FOLDS, seed: int = 0,
          meta: dict[str, Any] | None = None) -> LearnedRouter:
    """Train a router on ``outcomes``. ``embeddings``: the prompts' rows, if already computed; ``texts``: the
    prompts for the cheap features and the word models (default: ``outcomes.prompts``; None in a place where only
    an embedding is known, as in feedback kept under zero retention). The stack's weights come from
    ``stack_folds`` inner folds of these rows (fewer than 2: equal weights)."""
    n = len(outcomes)
    if n < 10:
        raise ValueError(f"too few outcomes to train on ({n}; at least 10)")
    if embeddings is None:
        embeddings = (embedder or default_embedder()).embed(outcomes.prompts)
    emb = np.asarray(embeddings, dtype=np.float64)
    texts = list(outcomes.prompts if texts is None else texts)
    rng = np.random.default_rng(seed)
    folds = min(stack_folds, n // 5)
    oof = np.zeros((n, len(COMPONENTS)))
    if folds >= 2:
        inner = rng.permutation(n) % folds
        for j in range(folds):
            tr, te = np.flatnonzero(inner != j), np.flatnonzero(inner == j)
            part = _fit(outcomes.subset(tr), emb[tr], [texts[i] for i in tr], k, ridge_lambda, max_reference, seed)
            te_texts = [texts[i] for i in te]
            zt = (_features(emb[te], te_texts, part.mean) - part.mean) / part.scale
            oof[te] = part._components(zt, emb[te], te_texts)
    router = _fit(outcomes, emb, texts, k, ridge_lambda, max_reference, seed)
    if folds < 2:
        z = (_features(emb, texts, router.mean) - router.mean) / router.scale
        oof = router._components(z, emb, texts)
    router.component_mean, router.component_scale, router.component_weight = _stack_weights(oof, outcomes.gain)
    if folds < 2:
        router.component_weight = (router.component_scale > 0).astype(np.float64)
    blended = _combine(oof, router.component_mean, router.component_scale, router.component_weight)
    router.platt = _platt(blended, outcomes.label)
    fams = np.unique(outcomes.family)
    router.meta = {"rows": n, "families": [outcomes.families[i] for i in fams] if outcomes.families else [],
                   "weights": dict(zip(COMPONENTS, np.round(router.component_weight, 6).tolist(), strict=True)),
                   "trained_at": int(time.time()), **(meta or {})}
    router.embedder = embedder
    router.calibrate(router.score_vectors(emb, texts), strong_share=0.5)
    return router
