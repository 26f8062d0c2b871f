"""Recorded outcomes, the learned router's training data: which model answered each prompt well.

The format is RouteLLM's evaluation CSV: a ``prompt`` column and one column per model holding a boolean
(``True``/``False``, ``1``/``0``) or a score in [0, 1] for that model's answer to that prompt. Other columns (such
as ``*_response``) are ignored. Each file is one **family** of tasks (an MMLU subject, say): the router learns a
prior per family, and ``router eval`` holds whole families out to check that it generalises.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class OutcomesError(ValueError):
    """A file of outcomes that cannot be read: the message names the file, the line and the column."""


@dataclass
class Outcomes:
    """Prompts with the weak and the strong model's outcome for each, in [0, 1], and the family of each."""

    prompts: list[str]
    weak: Floats
    strong: Floats
    family: Ints  # index into ``families``
    families: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def gain(self) -> Floats:
        """What calling the strong model instead of the weak one gains on each prompt, in [-1, 1]."""
        return self.strong - self.weak

    @property
    def label(self) -> Floats:
        """The training label: the strong model is needed (the weak one fails where the strong one succeeds)."""
        return np.clip(self.strong - self.weak, 0.0, 1.0)

    def subset(self, rows: npt.NDArray[np.bool_] | Ints) -> Outcomes:
        idx = np.flatnonzero(rows) if rows.dtype == np.bool_ else rows
        return Outcomes([self.prompts[i] for i in idx], self.weak[idx], self.strong[idx], self.family[idx],
                        self.families)


    def without(self, prompts: frozenset[str] | set[str]) -> Outcomes:
        """These outcomes less the rows whose prompt is one of ``prompts`` (compared exactly)."""
        return self.subset(np.asarray([p not in prompts for p in self.prompts], dtype=np.bool_))


def read_excluded(path: str | Path) -> frozenset[str]:
    """Prompts to leave out of training and evaluation, from JSON lines: each an object with ``eval_prompt`` (the
    format of RouteLLM's ``contaminated_prompts.jsonl``: benchmark prompts found in its training data) or
    ``prompt``. Raises :class:`OutcomesError`."""
    p = Path(path)
    out: set[str] = set()
    try:
        with p.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise OutcomesError(f"{p}:{n}: not JSON") from None
                text = obj.get("eval_prompt", obj.get("prompt")) if isinstance(obj, dict) else None
                if not isinstance(text, str):
                    raise OutcomesError(f'{p}:{n}: expected an object with a string "eval_prompt" or "prompt"')
                out.add(text)
    except OSError as e:
        raise OutcomesError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
    except UnicodeDecodeError:
        raise OutcomesError(f"{p}: not UTF-8 text") from None
    return frozenset(out)


def parse_outcome(value: str) -> float:
    """A cell: a boolean or a score in [0, 1]. Raises ValueError with what was found."""
    v = value.strip().lower()
    if v in _TRUE:
        return 1.0
    if v in _FALSE:
        return 0.0
    try:
        x = float(v)
    except ValueError:
        raise ValueError(f"{value[:40]!r} is neither a boolean nor a score in [0, 1]") from None
    if not (0.0 <= x <= 1.0) or math.isnan(x):
        raise ValueError(f"the score {value[:40]!r} is outside [0, 1]")
    return x


def read_outcomes(paths: Sequence[str | Path], strong: str, weak: str) -> Outcomes:
    """Read outcome CSVs (one family per file, named by its stem). Raises :class:`OutcomesError`."""
    if not paths:
        raise OutcomesError("no outcome files given")
    csv.field_size_limit(sys.maxsize)
    prompts: list[str] = []
    w: list[float] = []
    s: list[float] = []
    fam: list[int] = []
    families: list[str] = []
    for path in paths:
        p = Path(path)
        try:
            fh = p.open(newline="", encoding="utf-8")
        except OSError as e:
            raise OutcomesError(f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
        index = len(families)
        families.append(p.stem)
        with fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            for col in ("prompt", strong, weak):
                if col not in cols:
                    raise OutcomesError(f"{p}: no column {col!r} (it has: {', '.join(cols) or 'none'})")
            try:
                for row in reader:
                    line = reader.line_num
                    text = row.get("prompt")
                    if text is None or not text.strip():
                        raise OutcomesError(f"{p}:{line}: the prompt is empty")
                    for col, out in ((weak, w), (strong, s)):
                        try:
                            out.append(parse_outcome(row.get(col) or ""))
                        except ValueError as e:
                            raise OutcomesError(f"{p}:{line}: column {col!r}: {e}") from None
                    prompts.append(text)
                    fam.append(index)
            except (csv.Error, UnicodeDecodeError) as e:
                raise OutcomesError(f"{p}: not a readable CSV ({e})") from None
    if not prompts:
        raise OutcomesError("the outcome files hold no rows")
    return Outcomes(prompts, np.asarray(w), np.asarray(s), np.asarray(fam, dtype=np.int64), families)
