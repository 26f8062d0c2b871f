"""The check-digit rules of the numbered identifiers (pure functions over digit strings)."""

from __future__ import annotations


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to numbers (A=10), mod 97 must be 1."""
    if not (iban.isascii() and iban.isalnum()):
        return False
    return int((iban[4:] + iban[:4]).upper().translate(_IBAN_NUMBERS)) % 97 == 1


_IBAN_NUMBERS = {ord(c): str(i) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)}  # A=10 ... Z=35


_TFN8 = (10, 7, 8, 4, 6, 3, 5, 1)
_TFN9 = (1, 4, 3, 7, 5, 8, 6, 9, 10)


def tfn_ok(digits: str) -> bool:
    """An Australian tax file number (8 or 9 digits): the weighted sum is a multiple of 11."""
    weights = _TFN9 if len(digits) == 9 else _TFN8 if len(digits) == 8 else None
    if weights is None:
        return False
    return sum(w * (ord(c) - 48) for w, c in zip(weights, digits, strict=True)) % 11 == 0


_MEDICARE = (1, 3, 7, 9, 1, 3, 7, 9)


def medicare_ok(digits: str) -> bool:
    """An Australian Medicare card number: 10 digits (11 with the individual reference number), the first 2 to 6,
    the ninth the weighted sum of the first eight mod 10; the tenth (issue number) is not 0."""
    if len(digits) not in (10, 11) or digits[0] not in "23456" or digits[9] == "0":
        return False
    return sum(w * (ord(c) - 48) for w, c in zip(_MEDICARE, digits[:8], strict=True)) % 10 == ord(digits[8]) - 48


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """A US social security number the SSA could issue: area not 000, 666 or 9xx; group not 00; serial not 0000.
    The numbers famous for being misused in advertising are not accepted either."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return f"{area}{group}{serial}" not in ("078051120", "219099999")


#: IBAN lengths by country (ISO 13616 registry, the countries that issue them).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
