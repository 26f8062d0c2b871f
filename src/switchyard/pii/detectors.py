"""The built-in detectors, one function per type: ``find(text) -> [(start, end), ...]``.

Each is a cheap regular expression that proposes candidates, then a validator (a checksum, a registry rule, the
``ipaddress`` or ``phonenumbers`` parser) that keeps only real ones. Formats that are nothing but a run of digits
(a TFN or a Medicare number written without spaces) are accepted only with a keyword just before them: a bare
nine-digit run is as likely an order number.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from .checksums import IBAN_LENGTHS, iban_ok, luhn_ok, medicare_ok, ssn_ok, tfn_ok

Spans = list[tuple[int, int]]
Finder = Callable[[str, int, int], Spans]  # (text, start, end): the findings in text[start:end]
_NOT_DIGIT = re.compile(r"\D+")

# --- EMAIL -------------------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])")


def find_email(text: str, pos: int = 0, end: int | None = None) -> Spans:
    """Around each ``@`` only: no pass over the whole text."""
    end = len(text) if end is None else end
    out: Spans = []
    at = text.find("@", pos, end)
    while at >= 0:
        if not out or at >= out[-1][1]:
            for m in _EMAIL.finditer(text, max(pos, at - 64), min(end, at + 260)):
                if m.start() < at < m.end():
                    out.append(m.span())
                    break
        at = text.find("@", at + 1, end)
    return out


# --- CREDIT_CARD -------------------------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.#-])(?:\d[ -]?){12,18}\d(?![\d-]|\.\d)")
# issuer prefixes: Visa, Mastercard (51-55, 2221-2720), Amex, Discover, JCB, Diners, UnionPay, Maestro
_IIN = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9]|2)|3(?:0[0-5]|[68])"
                  r"|5[06-9]|6[37]|35")


def _card_length_ok(digits: str) -> bool:
    n = len(digits)
    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if digits[:2] in ("34", "37"):
        return n == 15  # American Express
    if digits[0] in "25" and digits[:2] not in ("50", "56", "57", "58", "59"):
        return n == 16  # Mastercard
    return n >= 14


def find_card(text: str, pos: int = 0, end: int | None = None) -> Spans:
    out: Spans = []
    for m in _CARD.finditer(text, pos, len(text) if end is None else end):
        raw = m.group()
        space, dash = " " in raw, "-" in raw
        if space and dash:  # "1234-5678 9012" mixes separators: not one number
            continue
        if space or dash:  # grouped as cards are printed: fours (the last group shorter), or Amex's and Diners'
            groups = [len(g) for g in raw.split(" " if space else "-")]  # 4-6-5/4-6-4
            if not (all(n == 4 for n in groups[:-1]) and groups[-1] <= 4) and groups[:2] != [4, 6]:
                continue
            digits = raw.replace(" " if space else "-", "")
        else:
            digits = raw
        if 13 <= len(digits) <= 19 and _IIN.match(digits) and _card_length_ok(digits) and luhn_ok(digits):
            out.append(m.span())
    return out


# --- IBAN --------------------------------------------------------------------------------------------------------

# the country code's two letters first (the letter before them checked after), so that a search skips to the
# next capital letter at C speed: one pass over a whole text costs little
_IBAN_HEAD = re.compile(r"([A-Z][A-Z])(?<![A-Za-z0-9][A-Z][A-Z])(\d{2}) ?(?=[A-Z0-9])")


def find_iban(text: str, pos: int = 0, end: int | None = None) -> Spans:
    out: Spans = []
    for m in _IBAN_HEAD.finditer(text, pos, len(text) if end is None else end):
        country = m.group(1)
        want = IBAN_LENGTHS.get(country)
        if want is None:
            continue
        chars = [country, m.group(2)]
        n, i, stop = 4, m.end(), len(text)
        while n < want and i < stop:  # the rest, letters and digits, single spaces between groups allowed
            c = text[i]
            if c.isascii() and (c.isdigit() or c.isupper()):
                chars.append(c)
                n += 1
                i += 1
            elif c == " " and i + 1 < stop and text[i + 1] != " ":
                i += 1
            else:
                break
        if n != want or (i < stop and text[i].isalnum()):
            continue
        if iban_ok("".join(chars)):
            out.append((m.start(), i))
    return out


# --- US_SSN ------------------------------------------------------------------------------------------------------

_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")


def find_ssn(text: str, pos: int = 0, end: int | None = None) -> Spans:
    return [m.span() for m in _SSN.finditer(text, pos, len(text) if end is None else end)
            if ssn_ok(m.group(1), m.group(3), m.group(4))]


# --- AU_TFN, AU_MEDICARE: digits alone need a keyword -------------------------------------------------------------

_TFN = re.compile(r"(?<![\w-])\d{3}([ -]?)\d{3}\1\d{2,3}(?![\d-])")
_TFN_WORDS = ("tfn", "tax file")
_MEDICARE = re.compile(r"(?<![\w-])[2-6]\d{3}( ?)\d{5}\1\d(?:[ /-]?\d)?(?![\d-])")
_MEDICARE_WORDS = ("medicare",)


def _keyword_before(text: str, start: int, words: tuple[str, ...], width: int = 40) -> bool:
    window = text[max(0, start - width):start].lower()
    return any(w in window for w in words)


def find_tfn(text: str, pos: int = 0, end: int | None = None) -> Spans:
    out: Spans = []
    for m in _TFN.finditer(text, pos, len(text) if end is None else end):
        digits = _NOT_DIGIT.sub("", m.group())
        if len(digits) == 8 and not m.group(1):
            continue  # eight bare digits: too common to mean anything
        if tfn_ok(digits) and (m.group(1) or _keyword_before(text, m.start(), _TFN_WORDS)):
            out.append(m.span())
    return out


def find_medicare(text: str, pos: int = 0, end: int | None = None) -> Spans:
    out: Spans = []
    for m in _MEDICARE.finditer(text, pos, len(text) if end is None else end):
        digits = _NOT_DIGIT.sub("", m.group())
        if medicare_ok(digits) and (m.group(1) or _keyword_before(text, m.start(), _MEDICARE_WORDS)):
            out.append(m.span())
    return out


# --- UK_NINO -----------------------------------------------------------------------------------------------------

_NINO = re.compile(r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]( ?)\d{2}\1\d{2}\1\d{2}"
                   r"\1[A-D](?![A-Za-z0-9])")


def find_nino(text: str, pos: int = 0, end: int | None = None) -> Spans:
    return [m.span() for m in _NINO.finditer(text, pos, len(text) if end is None else end)]


# --- IP_ADDRESS --------------------------------------------------------------------------------------------------

_VERSION_WORDS = ("version", "release", "build", "ver.", "v.")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")


def find_ipv4(text: str, pos: int = 0, end: int | None = None) -> Spans:
    out: Spans = []
    for m in _IPV4.finditer(text, pos, len(text) if end is None else end):
        if _keyword_before(text, m.start(), _VERSION_WORDS, 10):
            continue  # "version 4.2.0.1" is a version
        quad = m.group()  # what ipaddress.IPv4Address accepts: ASCII digits, 0 to 255, no leading zero
        if quad.isascii() and all(int(o) <= 255 and (o[0] != "0" or len(o) == 1) for o in quad.split(".")):
            out.append(m.span())
    return out


_V6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_V6_CHARS = frozenset("0123456789abcdefABCDEF:.")


def find_ipv6(text: str, pos: int = 0, end: int | None = None) -> Spans:
    """Around each ``x:y:`` only: the hexadecimal-and-colon span is widened and validated whole."""
    end = len(text) if end is None else end
    out: Spans = []
    last = pos
    for m in _V6_HINT.finditer(text, pos, end):
        if m.start() < last:
            continue
        s, e = m.start(), m.end()
        while s > pos and text[s - 1] in _V6_CHARS:
            s -= 1
        while e < end and text[e] in _V6_CHARS:
            e += 1
        last = e
        while e > s and text[e - 1] == ".":
            e -= 1  # a sentence's full stop
        if (s > 0 and (text[s - 1].isalnum() or text[s - 1] == "_")) or (e < len(text) and (text[e].isalnum()
                                                                                           or text[e] == "_")):
            continue
        cand = text[s:e]
        if "::" not in cand and cand.count(":") < 6:
            continue  # eight groups, or six and an IPv4 address, unless "::" stands for some: a time (12:05:03)
        if sum(c.isalnum() for c in cand) < 2:
            continue  # "::" alone
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            continue
        out.append((s, e))
    return out


def find_ip(text: str, pos: int = 0, end: int | None = None) -> Spans:
    return find_ipv4(text, pos, end) + find_ipv6(text, pos, end)


# --- PHONE -------------------------------------------------------------------------------------------------------

# the digit groups are possessive (``{1,8}+``): a run of digits is never split into groups on the way back, whose
# ways are exponential in its length (where a run is followed by a letter, say, and the match fails)
_PHONE = re.compile(r"(?<![\w.+#-])(?:\+|00)?(?:\(\d{1,5}+\)|\d{1,5}+)(?:[ .-]?(?:\(\d{1,5}+\)|\d{1,8}+)){1,6}"
                    r"(?![\w-]|\.\d)")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


_NANP_GROUPS = {(3, 3, 4), (1, 3, 3, 4), (3, 7), (10,), (11,)}  # how North American numbers are written
_DIGIT_RUNS = re.compile(r"\d+")
_SSN_SHAPE = re.compile(r"\d{3}([- ])\d{2}\1\d{4}")


def phone_finder(regions: tuple[str, ...]) -> Finder:
    """Phone numbers that ``phonenumbers`` holds valid: with a country code (``+``), or written as a national number
    of one of ``regions``: with the trunk prefix where the region has one (``0``: GB, AU, DE, FR...), ten digits
    where it has none (US, CA). A bare run of digits needs a ``+`` or a leading ``0``, and the SSN grouping
    (3-2-4) is never a phone number."""
    import phonenumbers

    parse, valid = phonenumbers.parse, phonenumbers.is_valid_number
    err = phonenumbers.NumberParseException
    trunk = [r for r in regions if phonenumbers.ndd_prefix_for_region(r, True) == "0"]
    nanp = [r for r in regions if phonenumbers.country_code_for_region(r) == 1]
    plain = [r for r in regions if phonenumbers.ndd_prefix_for_region(r, True) is None]  # ES, IT: no trunk prefix

    def find_phone(text: str, pos: int = 0, end: int | None = None) -> Spans:
        out: Spans = []
        for m in _PHONE.finditer(text, pos, len(text) if end is None else end):
            s = m.group()
            digits = _NOT_DIGIT.sub("", s)
            if len(digits) < 8 or len(digits) > 15 or _DATE.fullmatch(s) or _SSN_SHAPE.fullmatch(s):
                continue
            bare = s.isdigit()
            if s.count("(") != s.count(")") or (bare and s[0] != "0"):
                continue  # a bare run of digits is an order number as often as a phone number: needs a 0 or a +
            tries: list[str | None]
            if s[0] == "+":
                tries = [None]
            elif s.startswith("00"):
                s, tries = "+" + s[2:], [None]  # the international call prefix
            elif digits[0] == "0":
                tries = [*trunk, *plain]
            else:
                groups = tuple(len(g) for g in _DIGIT_RUNS.findall(s))
                tries = list(nanp) if groups in _NANP_GROUPS else []
            for region in tries:
                try:
                    if valid(parse(s, region)):
                        out.append(m.span())
                        break
                except err:
                    continue
        return out

    return find_phone
