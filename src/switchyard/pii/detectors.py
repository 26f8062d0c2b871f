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
Finder = Callable[[str], Spans]

# --- EMAIL -------------------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])")


def find_email(text: str) -> Spans:
    if "@" not in text:
        return []
    return [m.span() for m in _EMAIL.finditer(text)]


# --- CREDIT_CARD -------------------------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\d.-])(?:\d[ -]?){12,18}\d(?![\d-]|\.\d)")
# issuer prefixes: Visa, Mastercard (51-55, 2221-2720), Amex, Discover, JCB, Diners, UnionPay, Maestro
_IIN = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9]|2)|35(?:2[89]|[3-8])|3(?:0[0-5]|[68])"
                  r"|5[06-9]|6[37]")


def find_card(text: str) -> Spans:
    out: Spans = []
    for m in _CARD.finditer(text):
        raw = m.group()
        seps = {c for c in raw if not c.isdigit()}
        if len(seps) > 1:  # "1234-5678 9012" mixes separators: not one number
            continue
        digits = raw.replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and _IIN.match(digits) and luhn_ok(digits):
            out.append(m.span())
    return out


# --- IBAN --------------------------------------------------------------------------------------------------------

_IBAN_HEAD = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2}) ?(?=[A-Z0-9])")


def find_iban(text: str) -> Spans:
    out: Spans = []
    for m in _IBAN_HEAD.finditer(text):
        country = m.group(1)
        want = IBAN_LENGTHS.get(country)
        if want is None:
            continue
        chars = [country, m.group(2)]
        n, i, end = 4, m.end(), len(text)
        while n < want and i < end:  # the rest, letters and digits, single spaces between groups allowed
            c = text[i]
            if c.isascii() and (c.isdigit() or c.isupper()):
                chars.append(c)
                n += 1
                i += 1
            elif c == " " and i + 1 < end and text[i + 1] != " ":
                i += 1
            else:
                break
        if n != want or (i < end and text[i].isalnum()):
            continue
        if iban_ok("".join(chars)):
            out.append((m.start(), i))
    return out


# --- US_SSN ------------------------------------------------------------------------------------------------------

_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")


def find_ssn(text: str) -> Spans:
    return [m.span() for m in _SSN.finditer(text) if ssn_ok(m.group(1), m.group(3), m.group(4))]


# --- AU_TFN, AU_MEDICARE: digits alone need a keyword -------------------------------------------------------------

_TFN = re.compile(r"(?<![\d-])\d{3}([ -]?)\d{3}\1\d{2,3}(?![\d-])")
_TFN_WORDS = ("tfn", "tax file")
_MEDICARE = re.compile(r"(?<![\d-])[2-6]\d{3}( ?)\d{5}\1\d(?:[ /-]?\d)?(?![\d-])")
_MEDICARE_WORDS = ("medicare",)


def _keyword_before(text: str, start: int, words: tuple[str, ...], width: int = 40) -> bool:
    window = text[max(0, start - width):start].lower()
    return any(w in window for w in words)


def find_tfn(text: str) -> Spans:
    out: Spans = []
    for m in _TFN.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if len(digits) == 8 and not m.group(1):
            continue  # eight bare digits: too common to mean anything
        if tfn_ok(digits) and (m.group(1) or _keyword_before(text, m.start(), _TFN_WORDS)):
            out.append(m.span())
    return out


def find_medicare(text: str) -> Spans:
    out: Spans = []
    for m in _MEDICARE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if medicare_ok(digits) and (m.group(1) or _keyword_before(text, m.start(), _MEDICARE_WORDS)):
            out.append(m.span())
    return out


# --- UK_NINO -----------------------------------------------------------------------------------------------------

_NINO = re.compile(r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]( ?)\d{2}\1\d{2}\1\d{2}"
                   r"\1[A-D](?![A-Za-z0-9])")


def find_nino(text: str) -> Spans:
    return [m.span() for m in _NINO.finditer(text)]


# --- IP_ADDRESS --------------------------------------------------------------------------------------------------

_VERSION_WORDS = ("version", "release", "build", "ver.", "v.")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)")


def find_ip(text: str) -> Spans:
    out: Spans = []
    if "." in text:
        for m in _IPV4.finditer(text):
            if _keyword_before(text, m.start(), _VERSION_WORDS, 10):
                continue  # "version 4.2.0.1" is a version
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            out.append(m.span())
    if ":" in text:
        for m in _IPV6.finditer(text):
            s = m.group()
            if sum(c.isalnum() for c in s) < 2:
                continue  # "::" alone
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                continue
            out.append(m.span())
    return out


# --- PHONE -------------------------------------------------------------------------------------------------------

_PHONE = re.compile(r"(?<![\w.+-])(?:\+|00)?\(?\d[\d ().-]{5,20}\d(?![\w-]|\.\d)")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


_NANP_GROUPS = {(3, 3, 4), (1, 3, 3, 4), (3, 7), (10,), (11,)}  # how North American numbers are written
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

    def find_phone(text: str) -> Spans:
        out: Spans = []
        for m in _PHONE.finditer(text):
            s = m.group()
            digits = "".join(c for c in s if c.isdigit())
            international = s[0] == "+" or s.startswith("00")
            if len(digits) < 8 or len(digits) > 15 or _DATE.fullmatch(s) or _SSN_SHAPE.fullmatch(s):
                continue
            if s.count("(") != s.count(")") or (s.isdigit() and s[0] != "0"):
                continue  # a bare run of digits is an order number as often as a phone number: needs a 0 or a +
            if international:
                tries: list[str | None] = [None] if s[0] == "+" else ["GB"]  # 00: an international call prefix
            elif digits[0] == "0":
                tries = list(trunk)
            else:
                groups = tuple(len(g) for g in re.findall(r"\d+", s))
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
