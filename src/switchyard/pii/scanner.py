"""One compiled scanner per set of types: its detectors run over a text, and overlapping findings are resolved by
type priority (:data:`~.types.BUILTIN_TYPES`), then by length."""

from __future__ import annotations

from collections.abc import Iterable

from .detectors import (
    Finder,
    find_card,
    find_email,
    find_iban,
    find_ip,
    find_medicare,
    find_nino,
    find_ssn,
    find_tfn,
    phone_finder,
)
from .secrets import find_secret
from .types import NER_TYPES, PRIORITY, Entity, check_types

DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "AU", "DE", "FR")

_FINDERS: dict[str, Finder] = {
    "SECRET": find_secret, "CREDIT_CARD": find_card, "IBAN": find_iban, "AU_MEDICARE": find_medicare,
    "AU_TFN": find_tfn, "US_SSN": find_ssn, "UK_NINO": find_nino, "EMAIL": find_email, "IP_ADDRESS": find_ip,
}


class Scanner:
    """Finds the PII of ``types`` in texts. Build it once (it compiles and, for NER types, loads a model); ``scan``
    is thread-safe and allocation-light. ``phone_regions``: where a number without a country code may be from."""

    def __init__(self, types: Iterable[str], *, phone_regions: Iterable[str] = DEFAULT_PHONE_REGIONS) -> None:
        self.types = tuple(sorted(check_types(tuple(types)), key=PRIORITY.__getitem__))
        regions = tuple(r.upper() for r in phone_regions)
        finders: list[tuple[str, Finder]] = []
        for t in self.types:
            if t == "PHONE":
                finders.append((t, phone_finder(regions)))
            elif t in _FINDERS:
                finders.append((t, _FINDERS[t]))
        self._finders = tuple(finders)
        ner = [t for t in self.types if t in NER_TYPES]
        self._ner = None
        if ner:
            from .presidio import NerDetector  # raises PiiConfigError when the extra is missing

            self._ner = NerDetector(ner)

    def scan(self, text: str) -> list[Entity]:
        """The entities in ``text``, by offset; they never overlap."""
        if not text:
            return []
        found: list[Entity] = []
        for t, find in self._finders:
            for s, e in find(text):
                found.append(Entity(t, s, e))
        if self._ner is not None:
            found.extend(self._ner.find(text))
        if len(found) < 2:
            return found
        found.sort(key=lambda x: (PRIORITY[x.type], x.start - x.end, x.start))
        kept: list[Entity] = []
        for ent in found:  # the higher priority (then the longer) finding wins an overlap
            if all(ent.end <= k.start or ent.start >= k.end for k in kept):
                kept.append(ent)
        kept.sort(key=lambda x: x.start)
        return kept
