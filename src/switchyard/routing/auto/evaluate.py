"""``switchyard router eval``: the learned router against random, prompt length and the oracle, by
cross-validation split by prompt, and on whole families held out (generalisation to tasks it never saw).

Every prompt is scored by a router trained without it (out of fold); the metrics (:mod:`.metrics`) are computed on
all the out-of-fold scores at once, with percentile bootstrap intervals over prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .embedder import Embedder
from .learned import embed_prompts, train
from .metrics import Curve, bootstrap, curve
from .outcomes import Outcomes

Floats = npt.NDArray[np.float64]
BASELINES = ("random", "prompt_length", "oracle")


@dataclass
class Evaluation:
    """Out-of-fold scores of each router (the learned one and the baselines) on one split."""

    split: str  # "prompts" (k folds of prompts) or "families" (k folds of whole families)
    folds: int
    weak: Floats
    strong: Floats
    scores: dict[str, Floats]

    def report(self, rounds: int = 200, seed: int = 0) -> dict[str, Any]:
        return {
            "split": self.split, "folds": self.folds, "prompts": len(self.weak),
            "weak_quality": float(self.weak.mean()), "strong_quality": float(self.strong.mean()),
            "routers": {name: {k: {"value": v[0], "low": v[1], "high": v[2]}
                               for k, v in bootstrap(s, self.weak, self.strong, rounds=rounds, seed=seed).items()}
                        for name, s in self.scores.items()},
        }

    def curves(self) -> dict[str, Curve]:
        return {name: curve(s, self.weak, self.strong) for name, s in self.scores.items()}


def baseline_scores(outcomes: Outcomes) -> dict[str, Floats]:
    return {
        "random": np.zeros(len(outcomes)),  # every prompt tied: the expected result of a random split
        "prompt_length": np.asarray([len(p) for p in outcomes.prompts], dtype=np.float64),
        "oracle": outcomes.gain,
    }


def fold_ids(outcomes: Outcomes, folds: int, split: str, seed: int = 0) -> npt.NDArray[np.int64]:
    """Each prompt's fold: by prompt (shuffled), or by family (whole families, shuffled)."""
    rng = np.random.default_rng(seed)
    if split == "families":
        fams = np.unique(outcomes.family)
        if len(fams) < folds:
            raise ValueError(f"holding out families needs at least {folds} families (outcome files); "
                             f"there are {len(fams)}")
        of_family = dict(zip(rng.permutation(fams).tolist(), np.arange(len(fams)) % folds, strict=True))
        return np.asarray([of_family[int(f)] for f in outcomes.family], dtype=np.int64)
    if len(outcomes) < 2 * folds:
        raise ValueError(f"too few prompts ({len(outcomes)}) for {folds} folds")
    return np.asarray(rng.permutation(len(outcomes)) % folds, dtype=np.int64)


def cross_validate(outcomes: Outcomes, *, folds: int = 5, split: str = "prompts", seed: int = 0,
                   embeddings: npt.ArrayLike | None = None, embedder: Embedder | None = None) -> Evaluation:
    if folds < 2:
        raise ValueError("at least 2 folds")
    emb = np.asarray(embeddings if embeddings is not None else embed_prompts(outcomes.prompts, embedder),
                     dtype=np.float32)
    fold = fold_ids(outcomes, folds, split, seed)
    learned = np.zeros(len(outcomes))
    for k in range(folds):
        held = fold == k
        router = train(outcomes.subset(~held), emb[~held], seed=seed)
        idx = np.flatnonzero(held)
        learned[held] = router.blend(emb[held], [outcomes.prompts[i] for i in idx])
    return Evaluation(split, folds, outcomes.weak, outcomes.strong, {"learned": learned, **baseline_scores(outcomes)})


def plot(evaluations: list[Evaluation], path: str) -> None:
    """The cost-quality curves (quality against the strong-call share) as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'switchyard[bench]'") from None
    fig, axes = plt.subplots(1, len(evaluations), figsize=(6 * len(evaluations), 4.5), squeeze=False)
    for ax, ev in zip(axes[0], evaluations, strict=True):
        for name, c in ev.curves().items():
            ax.plot(c.share, c.quality, label=name, linestyle="--" if name in BASELINES else "-")
        ax.axhline(float(ev.weak.mean()), color="grey", linewidth=0.5)
        ax.axhline(float(ev.strong.mean()), color="grey", linewidth=0.5)
        ax.set_xlabel("share of calls to the strong model (cost)")
        ax.set_ylabel("quality (mean outcome)")
        ax.set_title(f"held out: {ev.split} ({ev.folds} folds)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
