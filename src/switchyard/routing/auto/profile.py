"""The task profile of a chat request, for the ``auto`` strategy: its type, the capabilities it needs, its size and
an estimate of its difficulty.

Rules decide what is certain: an image makes it a vision task, tools a tool-use task, and a prompt beyond
``LONG_CONTEXT_TOKENS`` a long-context task (the router's context-window filter does the rest). The rest is an
embedding classifier: the request's text (its last user turns, cut to their first 500 and last 400 characters)
is embedded offline and compared with the centroids of labelled seed prompts (``data/seeds.yaml``), one per task
type and one per (type, easy | hard). Cheap features (code fences, math symbols, verbs like "translate" or
"summarize") nudge the type; the nearest level, the size and markers of hard work ("prove", "optimize", "step by
step") give the difficulty, from 0 (trivial) to 1 (frontier).

Everything heavy (the embedder, the centroids) is built on first use and shared by the process.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from ...messages import ChatRequest, ImagePart, TextPart
from .embedder import PROMPT_HEAD, PROMPT_TAIL, Embedder, clip_prompt, default_embedder

LONG_CONTEXT_TOKENS = 32_000  # a prompt this large is a long-context task whatever it asks
_LAST_TURNS = 3  # the user turns that are read (the latest ones)
_HEAD, _TAIL = PROMPT_HEAD, PROMPT_TAIL  # of a long request, what is profiled (:func:`.embedder.clip_prompt`)
_KEYWORD_BONUS = 0.12  # added to a type's cosine when its cue word is in the text

# Cue words per type, searched as plain substrings of the lower-cased text (a regex with alternations costs ten
# times more on a long prompt).
_CUES: dict[str, tuple[str, ...]] = {
    "code": ("```", "def ", "function", "class ", "#include", "import ", "=>", "select ", "python", "javascript",
             "typescript", "rust", "golang", "java", "c++", "sql", "regex", "compile", "debug", "refactor", "bug",
             "pandas", "numpy", "dataframe", "react", "django", "docker", "kubernetes", "unit test"),
    "math": ("∫", "∑", "√", "≤", "≥", "≠", "∞", "\\frac", "\\int", "prove", "theorem", "lemma", "integral",
             "derivative", "equation", "probability", "matrix", "eigen", "solve for", "^2", "^3"),
    "translation": ("translat", "in english:", "in french:", "in german:", "in spanish:", "in italian:",
                    "into english", "into french", "into spanish", "into german", "into japanese",
                    "into chinese", "to english", "to french", "to spanish", "to german", "to japanese"),
    "summarization": ("summar", "tl;dr", "tldr", "condense", "key points", "gist", "takeaways", "boil down",
                      "boil this down", "recap"),
    "extraction": ("extract", "pull out", "parse ", "json schema", "list every", "list all"),
    "creative": ("poem", "story", "haiku", "sonnet", "lyrics", "screenplay", "limerick", "fiction"),
}
_HARD = ("prove", "proof", "rigorous", "optimiz", "optimis", "complexity", "implement", "design", "architect",
         "concurren", "distributed", "step by step", "justify", "derive", "trade-off", "tradeoff", "edge case",
         "formal", "lock-free", "consensus", "asymptotic")
_CUE_CHARS = 900  # cue words are looked for in the text's opening and closing (where the ask is)


@dataclass(slots=True)
class TaskProfile:
    task: str  # one of models.TASK_TYPES
    needs: frozenset[str]  # the capabilities a deployment must have
    tokens: int  # the prompt's estimated size
    difficulty: float  # 0 (trivial) .. 1 (frontier)
    similarity: float = 0.0  # the cosine to the chosen type's centroid (0 for a rule)
    rule: str | None = None  # the rule that set the type, if one did
    signals: list[str] = field(default_factory=list)  # what moved the type or the difficulty
    # the embedding of the profiled text (None when a rule set the type): the learned router scores it too, so a
    # request is embedded once
    vector: Any = field(default=None, repr=False, compare=False)
    text: str | None = field(default=None, repr=False, compare=False)  # what was embedded (never logged)

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "needs": sorted(self.needs), "tokens": self.tokens,
                "difficulty": round(self.difficulty, 3), "similarity": round(self.similarity, 3),
                "rule": self.rule, "signals": list(self.signals)}


class _Centroids:
    """The seed prompts' centroids: one row per type, and one per (type, level)."""

    def __init__(self, embedder: Embedder) -> None:
        import yaml

        text = resources.files("switchyard.routing.auto").joinpath("data", "seeds.yaml").read_text("utf-8")
        seeds: dict[str, dict[str, list[str]]] = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self.types = list(seeds)
        type_rows: list[Any] = []
        level_rows: list[Any] = []
        for t in self.types:
            levels = seeds[t]
            vecs = {lv: embedder.embed(levels[lv]) for lv in ("easy", "hard")}
            type_rows.append(_unit(np.concatenate(list(vecs.values())).mean(axis=0)))
            level_rows.extend(_unit(vecs[lv].mean(axis=0)) for lv in ("easy", "hard"))
        self.type_matrix = np.stack(type_rows).astype(np.float32)  # (types, dim)
        self.level_matrix = np.stack(level_rows).astype(np.float32)  # (types * 2, dim): easy, hard per type
        # Per type, where its own seeds fall on the hard-minus-easy axis: the level score maps the easy seeds'
        # mean to 0.25 and the hard seeds' mean to 0.75.
        self.level_mid: list[float] = []
        self.level_span: list[float] = []
        for i, t in enumerate(self.types):
            gaps = {}
            for lv in ("easy", "hard"):
                sims = embedder.embed(seeds[t][lv]) @ self.level_matrix[2 * i: 2 * i + 2].T
                gaps[lv] = float((sims[:, 1] - sims[:, 0]).mean())
            self.level_mid.append((gaps["easy"] + gaps["hard"]) / 2)
            self.level_span.append(max(gaps["hard"] - gaps["easy"], 1e-3))


def _unit(v: Any) -> Any:
    n = float(np.linalg.norm(v))
    return v / n if n else v


class Profiler:
    """Profiles requests. ``embedder``: the default (WordLlama) unless one is given (tests, benchmarks)."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder
        self._centroids: _Centroids | None = None
        self._lock = threading.Lock()

    def _ready(self) -> tuple[Embedder, _Centroids]:
        c = self._centroids
        if c is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = default_embedder()
                if self._centroids is None:
                    self._centroids = _Centroids(self._embedder)
                c = self._centroids
        assert self._embedder is not None
        return self._embedder, c

    @property
    def embedder(self) -> Embedder:
        """The embedder the profiles' vectors come from."""
        return self._ready()[0]

    def warm(self) -> None:
        """Load the embedder and the centroids now (about 0.2 s) rather than on the first request."""
        self._ready()

    def profile(self, req: ChatRequest, prompt_tokens: int) -> TaskProfile:
        needs = frozenset(req.needs())
        text = request_text(req)
        if "vision" in needs or _has_image(req):
            return self._finish(TaskProfile("vision", needs | {"vision"}, prompt_tokens, 0.0, rule="image"), text)
        if req.tools:
            return self._finish(TaskProfile("tool_use", needs | {"tools"}, prompt_tokens, 0.0, rule="tools"), text)
        if prompt_tokens >= LONG_CONTEXT_TOKENS:
            return self._finish(TaskProfile("long_context", needs, prompt_tokens, 0.0, rule="size"), text)
        return self.classify(text, needs, prompt_tokens)

    def classify(self, text: str, needs: frozenset[str] = frozenset(), prompt_tokens: int = 0) -> TaskProfile:
        """The type (nearest centroid, nudged by cue words) and difficulty of a text."""
        embedder, c = self._ready()
        vec = embedder.embed([text])[0]
        sims = c.type_matrix @ vec
        signals: list[str] = []
        low = _cue_text(text)
        for i, t in enumerate(c.types):
            cue = _CUES.get(t)
            if cue is not None and any(map(low.__contains__, cue)):
                sims[i] += _KEYWORD_BONUS
                signals.append(f"cue:{t}")
        best = int(np.argmax(sims))
        task = c.types[best]
        if task == "tool_use":  # without tools in the request, a tool-like ask is chat
            task = "chat"
        prof = TaskProfile(task, needs, prompt_tokens, 0.0, float(sims[best]), signals=signals, vector=vec,
                           text=text)
        levels = c.level_matrix[2 * best: 2 * best + 2] @ vec
        level = 0.5 + 0.5 * (float(levels[1] - levels[0]) - c.level_mid[best]) / c.level_span[best]
        return self._finish(prof, text, level)

    @staticmethod
    def _finish(prof: TaskProfile, text: str, level: float = 0.5) -> TaskProfile:
        """The difficulty: the level (0.25 where the type's easy seeds fall, 0.75 where its hard ones do), the
        size, and markers of hard work."""
        score = min(max(level, 0.0), 1.0)
        low = _cue_text(text)
        hard = sum(map(low.__contains__, _HARD))
        if hard:
            score += min(0.15 * hard, 0.45)
            prof.signals.append(f"hard-markers:{hard}")
        fences = text.count("```") // 2
        if fences:
            score += min(0.1 * fences, 0.2)
        if prof.tokens > 2000:
            score += min(0.1 * math.log2(prof.tokens / 2000), 0.3)
        if prof.task in ("code", "math"):
            score += 0.1
        elif prof.task == "chat" and len(text) < 200 and not hard:
            score -= 0.2
        prof.difficulty = min(max(score, 0.0), 1.0) if prof.rule is None else min(max(score - 0.2, 0.0), 1.0)
        return prof


def _cue_text(text: str) -> str:
    if len(text) > _CUE_CHARS:
        text = text[:_CUE_CHARS // 2] + " " + text[-_CUE_CHARS // 2:]
    return text.lower()


def request_text(req: ChatRequest) -> str:
    """What is profiled: the latest user turns' text (or the last message's), cut to what the embedder reads."""
    parts: list[str] = []
    turns = 0
    for m in reversed(req.messages):
        if m.role != "user":
            continue
        parts.append("".join(p.text for p in m.parts if isinstance(p, TextPart)))
        turns += 1
        if turns >= _LAST_TURNS or sum(map(len, parts)) > _HEAD + _TAIL:
            break
    if not parts and req.messages:
        parts.append(req.messages[-1].text())
    parts.reverse()
    text = "\n".join(parts)
    text = clip_prompt(text)
    return text


def _has_image(req: ChatRequest) -> bool:
    return any(isinstance(p, ImagePart) for m in req.messages for p in m.parts)


@functools.cache
def default_profiler() -> Profiler:
    return Profiler()
