"""One compiled scanner per set of types: its detectors run over a text, and overlapping findings are resolved by
length (the longer wins), then by type priority (:data:`~.types.BUILTIN_TYPES`)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .detectors import (
    Finder,
    find_card,
    find_email,
    find_iban,
    find_ipv4,
    find_ipv6,
    find_medicare,
    find_nino,
    find_ssn,
    find_tfn,
    phone_finder,
)
from .secrets import find_secret
from .types import NER_TYPES, PRIORITY, Entity, check_types

DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "AU", "DE", "FR")

#: the types found in runs of digits: each is looked for only in a window around such a run
_NUMERIC = ("CREDIT_CARD", "AU_MEDICARE", "AU_TFN", "US_SSN", "UK_NINO", "IP_ADDRESS", "PHONE")
_NUMERIC_FINDERS: dict[str, Finder] = {
    "CREDIT_CARD": find_card, "AU_MEDICARE": find_medicare, "AU_TFN": find_tfn, "US_SSN": find_ssn,
    "UK_NINO": find_nino, "IP_ADDRESS": find_ipv4,
}
# a run of digits with the separators numbers are written with; its length decides which types may be in it
_UPPER2 = re.compile(r"[A-Z]{2}")
_NOT_DIGIT = re.compile(r"\D+")
#: the fewest digits a value of each type has (a window with fewer is not searched for it)
_MIN_DIGITS = {"CREDIT_CARD": 13, "AU_MEDICARE": 10, "AU_TFN": 8, "US_SSN": 9, "UK_NINO": 6, "IP_ADDRESS": 4,
               "PHONE": 8}
_RUN = re.compile(r"\d[\d .()/-]{5,}")  # six characters at least: a NINO's digits; an IPv4 address has seven


class Scanner:
    """Finds the PII of ``types`` in texts. Build it once (it compiles and, for NER types, loads a model); ``scan``
    is thread-safe. ``phone_regions``: where a number without a country code may be from.

    A scan makes two passes over the text whatever the types: one regular expression for runs of digits (the
    numeric types are then looked for in a small window around each run long enough to hold one) and one
    ``str.split`` for long words (secrets); emails and IPv6 addresses are looked for around their ``@`` and
    ``:x:`` only.
    """

    def __init__(self, types: Iterable[str], *, phone_regions: Iterable[str] = DEFAULT_PHONE_REGIONS) -> None:
        self.types = tuple(sorted(check_types(tuple(types)), key=PRIORITY.__getitem__))
        regions = tuple(r.upper() for r in phone_regions)
        numeric: list[tuple[str, Finder, int]] = []
        for t in self.types:
            if t == "PHONE":
                numeric.append((t, phone_finder(regions), _MIN_DIGITS[t]))
            elif t in _NUMERIC_FINDERS:
                numeric.append((t, _NUMERIC_FINDERS[t], _MIN_DIGITS[t]))
        self._numeric = tuple(numeric)
        self._iban = "IBAN" in self.types
        self._nino = find_nino if "UK_NINO" in self.types else None
        self._email = "EMAIL" in self.types
        self._secret = "SECRET" in self.types
        self._ipv6 = "IP_ADDRESS" in self.types
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
        n = len(text)
        if self._numeric or self._iban:
            numeric, iban, nino = self._numeric, self._iban, self._nino
            for m in _RUN.finditer(text):
                s, e = m.span()
                if iban and _UPPER2.search(text, max(0, s - 12), s):
                    # an IBAN has six digits in a row: its country code is at most 12 characters before them
                    for a, b in find_iban(text, max(0, s - 12), min(n, e + 2)):
                        found.append(Entity("IBAN", a, b))
                if not numeric:
                    continue
                w0, w1 = max(0, s - 4), min(n, e + 3)
                prev = text[s - 1] if s else " "
                if prev.isalnum() or prev == "_":  # the run starts inside a word (a hash, an id)
                    if nino is not None and prev.isupper():
                        found.extend(Entity("UK_NINO", a, b) for a, b in nino(text, w0, w1))
                    k = s
                    while k < e and text[k].isdigit():
                        k += 1
                    if e - k < 6:
                        continue  # nothing after the word is long enough for a value
                    w0 = k
                digits = len(_NOT_DIGIT.sub("", text[w0:e]))
                for t, find, least in numeric:
                    if digits >= least:
                        for a, b in find(text, w0, w1):
                            found.append(Entity(t, a, b))
        if self._email and "@" in text:
            found.extend(Entity("EMAIL", a, b) for a, b in find_email(text))
        if self._ipv6 and ":" in text:
            found.extend(Entity("IP_ADDRESS", a, b) for a, b in find_ipv6(text))
        if self._secret:
            found.extend(Entity("SECRET", a, b) for a, b in find_secret(text))
        if self._ner is not None:
            found.extend(self._ner.find(text))
        if len(found) < 2:
            return found
        found = list(dict.fromkeys(found))  # a window may overlap the previous run's
        found.sort(key=lambda x: (x.start - x.end, PRIORITY[x.type], x.start))
        kept: list[Entity] = []
        for ent in found:  # an overlap: the longer finding wins (an IBAN over the card-like digits in it), then
            # the type of higher priority (a checksum over a shape)
            if all(ent.end <= k.start or ent.start >= k.end for k in kept):
                kept.append(ent)
        kept.sort(key=lambda x: x.start)
        return kept
