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

# a run of digits with the separators numbers are written with (six characters at least: a NINO's digits; an IPv4
# address has seven). Every numeric type is made of these characters only (a phone number's leading + and a NINO's
# letters stand just before the run), so a value is never partly outside its run: what the run looks like says
# which types may be in it.
_RUN = re.compile(r"\d[\d .()/-]{5,}")
_SEPS = " .()/-"
_DASHED = "-0123456789"
_DIGITS = re.compile(r"\d*")
_NOT_DIGIT = re.compile(r"\D+")
_SHAPE = str.maketrans("0123456789", "9999999999")
_SPACED = str.maketrans(" .()/-", "______")
# North American digit groups (3-3-4 or 3-7, the area code perhaps in parentheses) in a run's shape with every
# separator as _
_NANP_SHAPE = re.compile(r"(?<!9)999_{1,3}(?:999_{1,3}9999|9999999)(?!9)")
# a shape that passes every check, for a run with digits of another script (\d is any decimal digit)
_ANY_SHAPE = "|".join(("99 99 99", "9999 9999 9999 9", "9999 99999 9", "999 999 99", "999-99-9999", "999 999 9999"))


class Scanner:
    """Finds the PII of ``types`` in texts. Build it once (it compiles and, for NER types, loads a model); ``scan``
    is thread-safe. ``phone_regions``: where a number without a country code may be from.

    A scan makes two passes over the text whatever the types: one regular expression for runs of digits (the
    numeric types are then looked for in a small window around each run whose shape may hold one) and one
    ``str.split`` for long words (secrets); emails and IPv6 addresses are looked for around their ``@`` and
    ``:x:`` only.
    """

    def __init__(self, types: Iterable[str], *, phone_regions: Iterable[str] = DEFAULT_PHONE_REGIONS) -> None:
        self.types = tuple(sorted(check_types(tuple(types)), key=PRIORITY.__getitem__))
        regions = tuple(r.upper() for r in phone_regions)
        on = set(self.types)
        self._card = find_card if "CREDIT_CARD" in on else None
        self._medicare = find_medicare if "AU_MEDICARE" in on else None
        self._tfn = find_tfn if "AU_TFN" in on else None
        self._ssn = find_ssn if "US_SSN" in on else None
        self._nino = find_nino if "UK_NINO" in on else None
        self._ipv4 = find_ipv4 if "IP_ADDRESS" in on else None
        self._phone: Finder | None = None
        self._nanp = False
        if "PHONE" in on:
            import phonenumbers

            self._phone = phone_finder(regions)
            self._nanp = any(phonenumbers.country_code_for_region(r) == 1 for r in regions)  # North American
        self._numeric = bool(on & {"CREDIT_CARD", "AU_MEDICARE", "AU_TFN", "US_SSN", "UK_NINO", "IP_ADDRESS",
                                   "PHONE"})
        self._iban = "IBAN" in on
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
        if self._numeric or self._iban:
            self._scan_runs(text, found)
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
        return _resolve(found)

    def _scan_runs(self, text: str, found: list[Entity]) -> None:
        """The numeric types and IBANs, around each run of digits: each detector is called only where the shape of
        the run allows its values (a run of bare digits holds a card number only if it has 13 to 19 of them, never
        an SSN or an IP address; an SSN needs a separator, an IPv4 address three dots, a NINO its letters)."""
        n = len(text)
        iban, numeric, nino, add = self._iban, self._numeric, self._nino, found.append
        card, medicare, tfn, ssn, ipv4, phone = (self._card, self._medicare, self._tfn, self._ssn, self._ipv4,
                                                 self._phone)
        for m in _RUN.finditer(text):
            s, e = m.span()
            if iban:  # an IBAN has a run of digits: its country code is at most 12 characters before the run
                before = text[s - 12 if s > 12 else 0:s]
                if before.lower() != before:
                    for a, b in find_iban(text, s - 12 if s > 12 else 0, e + 2 if e + 2 < n else n):
                        add(Entity("IBAN", a, b))
                if not numeric:
                    continue
            w0, w1 = (s - 4 if s > 4 else 0), (e + 3 if e + 3 < n else n)
            prev = text[s - 1] if s else " "
            if prev.isalnum() or prev == "_":  # the run starts inside a word (a hash, an id)
                k = _DIGITS.match(text, s).end()  # type: ignore[union-attr]
                if nino is not None and prev.isupper() and k - s == 6 and k < n and text[k] in "ABCD":  # AB123456C
                    for a, b in nino(text, w0, w1):
                        add(Entity("UK_NINO", a, b))
                if e - k < 6:
                    continue  # nothing after the word is long enough for a value
                core = text[k:e]
                if not core.strip(_DASHED):
                    continue  # dashes between digits after a word (a UUID): a value would start after a dash
                w0, bare, spaced_nino = k, False, False
            else:
                core = m.group().rstrip(_SEPS)
                bare = core.isdigit()
                spaced_nino = prev == " " and s >= 2 and "A" <= text[s - 2] <= "Z"  # AB 12 34 56 C
            if bare:  # one number, nothing but digits: its length says what it may be
                size, first = len(core), core[0]
                if card is not None and 13 <= size <= 19:
                    for a, b in card(text, w0, w1):
                        add(Entity("CREDIT_CARD", a, b))
                if medicare is not None and (size == 10 or size == 11) and first in "23456":
                    for a, b in medicare(text, w0, w1):
                        add(Entity("AU_MEDICARE", a, b))
                if tfn is not None and size == 9:  # eight bare digits are never taken for a TFN
                    for a, b in tfn(text, w0, w1):
                        add(Entity("AU_TFN", a, b))
                if phone is not None and (first == "0" or prev == "+") and 8 <= size <= 15:  # else an order number
                    for a, b in phone(text, w0, w1):
                        add(Entity("PHONE", a, b))
                continue
            if core.isascii():
                shape = core.translate(_SHAPE)  # 9 for each digit: "4021 5736 8193 1" is "9999 9999 9999 9"
                digits = shape.count("9")
            else:  # digits of another script (\d is any decimal digit): no shape to go by
                shape, digits = _ANY_SHAPE, len(_NOT_DIGIT.sub("", core))
            # each check below is one that every value of the type passes: a card number grouped in fours has three
            # groups of four (the fourth one digit at least), one grouped 4-6-x starts so, one written whole has 13
            # digits in a row; a Medicare number is 4-5-1 or ten digits in a row, a TFN 3-3-2 or eight...
            if card is not None and digits >= 13 and (
                    "9999 9999 9999 9" in shape or "9999-9999-9999-9" in shape or "9999999999999" in shape
                    or "9999 999999 999" in shape or "9999-999999-999" in shape):
                for a, b in card(text, w0, w1):
                    add(Entity("CREDIT_CARD", a, b))
            if medicare is not None and digits >= 10 and ("9999 99999 9" in shape or "9999999999" in shape):
                for a, b in medicare(text, w0, w1):
                    add(Entity("AU_MEDICARE", a, b))
            if tfn is not None and digits >= 8 and (
                    "999 999 99" in shape or "999-999-99" in shape or "99999999" in shape):
                for a, b in tfn(text, w0, w1):
                    add(Entity("AU_TFN", a, b))
            if ssn is not None and digits >= 9 and ("999-99-9999" in shape or "999 99 9999" in shape):
                for a, b in ssn(text, w0, w1):
                    add(Entity("US_SSN", a, b))
            if nino is not None and spaced_nino and shape.startswith("99 99 99"):
                for a, b in nino(text, w0, w1):
                    add(Entity("UK_NINO", a, b))
            if ipv4 is not None and digits >= 4 and core.count(".") >= 3:
                for a, b in ipv4(text, w0, w1):
                    add(Entity("IP_ADDRESS", a, b))
            # a phone number starts with a + or a 0 (a trunk or an international prefix), where the run starts or
            # after a space, a parenthesis or a slash; or it is North American: digits grouped 3-3-4 or 3-7
            if phone is not None and digits >= 8 and (
                    prev == "+" or core[0] == "0" or " 0" in core or "(0" in core or ")0" in core or "/0" in core
                    or (self._nanp and _NANP_SHAPE.search(shape.translate(_SPACED)) is not None)):
                for a, b in phone(text, w0, w1):
                    add(Entity("PHONE", a, b))


def _by_start(e: Entity) -> int:
    return e.start


def _by_strength(e: Entity) -> tuple[int, int, int]:
    return e.start - e.end, PRIORITY[e.type], e.start


def _resolve(found: list[Entity]) -> list[Entity]:
    """The findings without overlaps, by offset: where some overlap, the longer wins (an IBAN over the card-like
    digits in it), then the type of higher priority (a checksum over a shape). The findings are grouped into runs
    of overlapping ones first: most stand alone, and a choice within one group never touches another."""
    found = sorted(set(found), key=_by_start)
    out: list[Entity] = []
    group = [found[0]]
    reach = found[0].end
    for ent in found[1:]:
        if ent.start < reach:
            group.append(ent)
            if ent.end > reach:
                reach = ent.end
            continue
        if len(group) == 1:
            out.append(group[0])
        else:
            out.extend(_choose(group))
        group = [ent]
        reach = ent.end
    if len(group) == 1:
        out.append(group[0])
    else:
        out.extend(_choose(group))
    return out


def _choose(group: list[Entity]) -> list[Entity]:
    kept: list[Entity] = []
    for ent in sorted(group, key=_by_strength):
        if all(ent.end <= k.start or ent.start >= k.end for k in kept):
            kept.append(ent)
    kept.sort(key=_by_start)
    return kept
