"""PERSON and LOCATION through Microsoft Presidio's analyzer (``pip install 'switchyard[presidio]'``), loaded only
when the configuration asks for one of them. Without the extra, asking for them is a configuration error."""

from __future__ import annotations

import importlib.util
from typing import Any

from .types import Entity, PiiConfigError

_PRESIDIO_NAMES = {"PERSON": "PERSON", "LOCATION": "LOCATION"}


def ner_available() -> bool:
    return importlib.util.find_spec("presidio_analyzer") is not None


def require_ner(types: list[str]) -> None:
    """Raise PiiConfigError if these NER types are asked for without the extra installed."""
    if types and not ner_available():
        raise PiiConfigError(f"PII types {', '.join(types)} need the presidio extra, which is not installed: "
                             "pip install 'switchyard[presidio]' (and a spaCy model, e.g. en_core_web_lg)")


class NerDetector:
    """Named entities by Presidio's analyzer (its spaCy model loads once, here)."""

    def __init__(self, types: list[str]) -> None:
        require_ner(types)
        from presidio_analyzer import AnalyzerEngine  # type: ignore[import-not-found,unused-ignore]

        self.types = types
        self._entities = [_PRESIDIO_NAMES[t] for t in types]
        self._engine: Any = AnalyzerEngine()

    def find(self, text: str) -> list[Entity]:
        results = self._engine.analyze(text=text, entities=self._entities, language="en")
        back = {v: k for k, v in _PRESIDIO_NAMES.items()}
        return [Entity(back[r.entity_type], int(r.start), int(r.end)) for r in results if r.entity_type in back]
