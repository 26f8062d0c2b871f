"""The learned router's neighbour features: the mean gain, strong and weak outcome of a prompt's ``k`` = 100, 20
and 3 nearest training prompts (the reference), by cosine on the embedding's first ``KNN_DIM`` dimensions
(WordLlama's dimensions are nested, and the search over every reference row is the costliest part of a score: it
scales with the dimension). :func:`knn` scores a batch (training, evaluation); :func:`knn_one` one prompt (a
request), with the same rows found.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

KNN_KS = (100, 20, 3)  # the neighbourhoods' sizes (the first is the largest)
KNN_FEATURES = tuple(f"knn{k}_{y}" for k in KNN_KS for y in ("gain", "strong", "weak"))
KNN_DIM = 16  # the neighbours are searched on the embedding's first KNN_DIM dimensions (WordLlama's are nested)
CHUNK = 1024  # queries per product in a batch


def truncate(emb: Floats, dim: int = KNN_DIM) -> npt.NDArray[np.float32]:
    """The first ``dim`` dimensions of each row, L2-normalised again."""
    t = np.asarray(emb[:, :dim], dtype=np.float32)
    return np.asarray(t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12), dtype=np.float32)


def knn(emb: Floats, ref_t: npt.NDArray[np.float32], ref_y: Floats) -> Floats:
    """(rows, 9): the mean gain, strong and weak outcome of each row's nearest reference rows (cosine, on the
    embedding's first ``KNN_DIM`` dimensions: the search over every reference row is the costliest part of a
    score, and it scales with the dimension). ``ref_t``: the reference's rows as columns, (dim, rows), contiguous
    (for one prompt, :func:`knn_one`, the product is twice as fast as over rows)."""
    out = np.zeros((len(emb), len(KNN_FEATURES)))
    n = ref_t.shape[1]
    if not n:
        return out
    k = min(KNN_KS[0], n)
    for start in range(0, len(emb), CHUNK):
        q = truncate(emb[start:start + CHUNK], len(ref_t))  # the width the file was trained with
        sims = q @ ref_t
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, idx, axis=1), axis=1)
        near = np.cumsum(ref_y[np.take_along_axis(idx, order, axis=1)], axis=1)  # running sums, nearest first
        for j, kk in enumerate(KNN_KS):
            out[start:start + CHUNK, 3 * j:3 * j + 3] = near[:, min(kk, k) - 1] / min(kk, k)
    lost = ~(np.abs(emb[:, :len(ref_t)]).sum(axis=1) > 0)  # zero or not a number: no direction
    if lost.any():
        out[lost] = nowhere(ref_y)
    return out


def nowhere(ref_y: Floats) -> Floats:
    """The neighbour features of a query without a direction (the zero vector of a text without tokens, or NaN):
    every reference row is as near as any other, so each neighbourhood's means are those of all rows."""
    return np.tile(ref_y.mean(axis=0), len(KNN_KS))


def knn_one(emb: Floats, ref_t: npt.NDArray[np.float32], ref_y: Floats) -> Floats:
    """:func:`knn` of one prompt (a request): the query is not normalised (it scales every similarity alike), and
    a sample of the similarities bounds the largest ones, so that only the rows above the bound are partitioned
    (all of them when the bound holds too few)."""
    n = ref_t.shape[1]
    if not n:
        return np.zeros(len(KNN_FEATURES))
    if not float(np.abs(emb[:len(ref_t)]).sum()) > 0:  # zero or not a number: no direction (as in knn)
        return nowhere(ref_y)
    k = min(KNN_KS[0], n)
    sims = emb[:len(ref_t)].astype(np.float32) @ ref_t
    top = None
    if n >= 32 * k:
        sample = np.partition(sims[::16], -(k // 16 + 8))  # about 16 times that many rows lie above the bound
        above = np.flatnonzero(sims >= sample[-(k // 16 + 8)])
        if len(above) >= k:
            top = above[np.argpartition(sims[above], len(above) - k)[len(above) - k:]]
    if top is None:
        top = np.argpartition(sims, n - k)[n - k:]
    near = np.cumsum(ref_y[top[np.argsort(-sims[top])]], axis=0)  # the outcomes' running sums, nearest first
    ks = _KS if k == KNN_KS[0] else np.minimum(KNN_KS, k)
    return np.asarray((near[ks - 1] / ks[:, None]).ravel(), dtype=np.float64)


_KS = np.asarray(KNN_KS)
