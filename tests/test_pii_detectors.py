"""The PII detectors one by one (switchyard.pii): each type's real shapes, and its near misses (bad checksums, order
numbers, dates, UUIDs, version strings, git SHAs), through the public ``scan``."""

from __future__ import annotations

import itertools

import pytest

from switchyard.pii import BUILTIN_TYPES, PiiConfigError, Scanner, scan
from switchyard.pii.checksums import iban_ok, luhn_ok, medicare_ok, tfn_ok


def found(text: str, types: list[str] | None = None) -> list[tuple[str, str]]:
    return [(e.type, text[e.start:e.end]) for e in scan(text, types)]


HITS = [
    ("EMAIL", "jane.doe+news@example.co.uk"),
    ("EMAIL", "o'neil@mail.example.org".replace("'", "")),
    ("PHONE", "+1 415-555-2671"),
    ("PHONE", "+61 2 9374 4000"),
    ("PHONE", "(02) 9374 4000"),
    ("PHONE", "020 7946 0958"),
    ("PHONE", "+49 30 901820"),
    ("PHONE", "01 45 67 89 10"),
    ("PHONE", "(415) 555-2671"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "5555-5555-5555-4444"),
    ("CREDIT_CARD", "378282246310005"),
    ("CREDIT_CARD", "6011111111111117"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "GB82WEST12345698765432"),
    ("IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
    ("US_SSN", "123-45-6789"),
    ("US_SSN", "536 22 8726"),
    ("AU_TFN", "123 456 782"),
    ("AU_TFN", "876-543-210"),
    ("AU_MEDICARE", "2123 45670 1"),
    ("AU_MEDICARE", "2428 77813 2"),
    ("UK_NINO", "AB 12 34 56 C"),
    ("UK_NINO", "JG103759A"),
    ("IP_ADDRESS", "192.168.0.1"),
    ("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
    ("IP_ADDRESS", "fe80::1"),
    ("IP_ADDRESS", "::ffff:10.0.0.1"),
    ("SECRET", "sk-" + "proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz123456"),  # made up: built so that no file holds a key
    ("SECRET", "sk-" + "ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"),
    ("SECRET", "AKIA" + "IOSFODNN7EXAMPLE"),  # AWS's documented example id
    ("SECRET", "ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a"),
    ("SECRET", "xoxb" + "-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"),
    ("SECRET", "xoxp" + "-2134-5678-abcdefghijk"),
    ("SECRET", "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
               "-----END RSA " + "PRIVATE KEY-----"),
    ("SECRET", "q8Zr2Lw7Xv4Nt9Kp3Hs6Jd1Fm5Bc0Gy"),
]


@pytest.mark.parametrize(("kind", "value"), HITS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(HITS)])
def test_each_type_is_found_with_its_offsets(kind: str, value: str) -> None:
    text = f"Here it is: {value} thanks."
    ents = scan(text)
    assert [(e.type, text[e.start:e.end]) for e in ents] == [(kind, value)]
    assert ents[0].start == len("Here it is: ")


MISSES = [
    ("a card number with a bad check digit", "4111 1111 1111 1112"),
    ("a 16-digit order number", "order 1234567812345678"),
    ("an IBAN with a bad checksum", "DE88 3704 0044 0532 0130 00"),
    ("an IBAN of the wrong length", "DE89 3704 0044 0532 0130"),
    ("an SSN with area 000", "000-12-3456"),
    ("an SSN with area 666", "666-12-3456"),
    ("an SSN with area 9xx", "912-34-5678"),
    ("an SSN with group 00", "123-00-4567"),
    ("an SSN with serial 0000", "123-45-0000"),
    ("an advertised SSN", "078-05-1120"),
    ("a TFN with a bad checksum", "123 456 789"),
    ("a bare nine-digit order number", "order 123456782"),
    ("a Medicare number with a bad check digit", "2123 45671 1"),
    ("a Medicare number starting with 1", "1123 45670 1"),
    ("a NINO with a forbidden prefix", "GB 12 34 56 C"),
    ("a NINO with a bad suffix", "AB 12 34 56 E"),
    ("a date", "2024-03-15"),
    ("a US date", "03/15/2024"),
    ("a time", "12:30:45"),
    ("a version string", "v1.2.3"),
    ("a four-part version", "version 4.2.0.1 of the app"),
    ("an OID", "1.3.6.1.4.1.311"),
    ("an invalid dotted quad", "999.1.1.1"),
    ("a MAC address", "00:1A:2B:3C:4D:5E"),
    ("a UUID", "123e4567-e89b-12d3-a456-426614174000"),
    ("a git SHA", "3f786850e387550fdab836ed7e6dc881de23001b"),
    ("a sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("an identifier", "AbstractSingletonProxyFactoryBean2024"),
    ("a snake-case constant", "MAX_RETRY_COUNT_FOR_UPSTREAM_429_ERRORS"),
    ("a path", "/usr/local/lib/python3.11/site-packages/switchyard"),
    ("an email-like without a domain", "user@localhost"),
    ("a short number", "call extension 4412"),
    ("a price", "it costs $1,299.99 today"),
    ("a bare ten-digit number", "invoice 4155552671"),
]


@pytest.mark.parametrize(("why", "text"), MISSES, ids=[w for w, _ in MISSES])
def test_near_misses_are_not_pii(why: str, text: str) -> None:
    assert found(text) == [], why


def test_digits_alone_count_with_a_keyword() -> None:
    assert found("my TFN is 123456782") == [("AU_TFN", "123456782")]
    assert found("Medicare: 2123456701") == [("AU_MEDICARE", "2123456701")]
    assert found("ref 2123456701") == []


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB83WEST12345698765432")
    assert tfn_ok("123456782") and not tfn_ok("123456789")
    assert tfn_ok("81854402")  # an eight-digit TFN
    assert medicare_ok("2123456701") and medicare_ok("21234567011") and not medicare_ok("2123456700")


def test_findings_never_overlap_and_a_checksum_beats_a_phone() -> None:
    text = "card 4111 1111 1111 1111 and mail a@b.io, tfn 123 456 782"
    ents = scan(text)
    assert [e.type for e in ents] == ["CREDIT_CARD", "EMAIL", "AU_TFN"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(ents))


def test_a_scanner_looks_only_for_its_types() -> None:
    text = "mail a@b.io or call +1 415-555-2671"
    assert [e.type for e in Scanner(["EMAIL"]).scan(text)] == ["EMAIL"]
    assert [e.type for e in Scanner(["phone"]).scan(text)] == ["PHONE"]
    assert Scanner(BUILTIN_TYPES).scan("") == []


def test_phone_regions_decide_numbers_without_a_country_code() -> None:
    assert Scanner(["PHONE"], phone_regions=["AU"]).scan("call (02) 9374 4000")
    assert not Scanner(["PHONE"], phone_regions=["US"]).scan("call (02) 9374 4000")


def test_an_ip_after_other_words_is_still_found() -> None:
    assert found("the build server at 10.0.0.1 is down") == [("IP_ADDRESS", "10.0.0.1")]


def test_unknown_types_and_missing_extras_are_clear_errors() -> None:
    # the presidio extra is not installed in the test environment (and must not be)
    with pytest.raises(PiiConfigError, match="unknown PII type 'PASSPORT'"):
        Scanner(["PASSPORT"])
    with pytest.raises(PiiConfigError, match=r"switchyard\[presidio\]"):
        Scanner(["PERSON"])


def test_offsets_are_characters_not_bytes() -> None:
    text = "Grüße — mail jose@example.com"
    (e,) = scan(text)
    assert text[e.start:e.end] == "jose@example.com"


ARABIC = str.maketrans("0123456789", "".join(chr(0x660 + i) for i in range(10)))
# the scanner calls a numeric detector only where the run of digits has a shape that the type's values have
# (switchyard.pii.scanner): each shape below must still get through to its detector
SHAPES = [
    ("call 0207 946 0958 today", "PHONE", "0207 946 0958"),
    ("call +44 20 7946 0958 today", "PHONE", "+44 20 7946 0958"),
    ("ring (415) 555-2671 now", "PHONE", "(415) 555-2671"),
    ("ring 415.555.2671 now", "PHONE", "415.555.2671"),
    ("ring 1 415 555 2671 now", "PHONE", "1 415 555 2671"),
    ("ring 415 5552671 now", "PHONE", "415 5552671"),
    ("ring 415 (555) 2671 now", "PHONE", "415 (555) 2671"),
    # Arabic-Indic digits (\d is any decimal digit): no shape to go by
    ("ring (415) 555-2671 now".translate(ARABIC), "PHONE", "(415) 555-2671".translate(ARABIC)),
    ("ring +44 20 7946 0958 now".translate(ARABIC), "PHONE", "+44 20 7946 0958".translate(ARABIC)),
    ("NI AB 12 34 56 C ok", "UK_NINO", "AB 12 34 56 C"),
    ("NI AB123456C ok", "UK_NINO", "AB123456C"),
    ("medicare 2123456701 ok", "AU_MEDICARE", "2123456701"),
    ("TFN 123456782 ok", "AU_TFN", "123456782"),
    ("amex 3782 822463 10005 ok", "CREDIT_CARD", "3782 822463 10005"),
    ("card 4111111111111111 ok", "CREDIT_CARD", "4111111111111111"),
    ("host-10.1.2.3 up", "IP_ADDRESS", "10.1.2.3"),
    ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up", "IP_ADDRESS", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("v6 ::ffff:192.0.2.1 up", "IP_ADDRESS", "::ffff:192.0.2.1"),
    ("iban GB82 WEST 1234 5698 7654 32 ok", "IBAN", "GB82 WEST 1234 5698 7654 32"),
]


@pytest.mark.parametrize(("text", "kind", "value"), SHAPES)
def test_every_shape_of_a_value_reaches_its_detector(text: str, kind: str, value: str) -> None:
    assert found(text) == [(kind, value)]


def test_runs_of_digits_that_hold_no_value_are_passed_over() -> None:
    text = "order 4155552671, at 12:05:03 on 2024-01-02, id d76d4330-f144-4bea-b0c1-1fdecb91ce37, #720405608656907"
    assert found(text) == []
    # a long run of digits followed by a letter: a phone match that fails at its end must not try every way of
    # cutting the digits into groups (about 0.1 s for each such run before the pattern's groups were possessive)
    assert found("1" * 40 + "-" + "2" * 40 + "x", ["PHONE"]) == []
