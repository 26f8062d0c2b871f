"""A labelled PII corpus, generated with Faker in several locales from a fixed seed, and its scoring.

Each document is a few Faker sentences of its locale with PII values put between them (each labelled with its
type and character offsets) and near misses that must not be found: card numbers and IBANs with a bad check
digit, order numbers, dates, times, UUIDs, version strings, git SHAs and content hashes, ISBNs, postcodes, and
numbered identifiers whose checksum fails.

Values come from Faker where Faker has them (emails, phone numbers, card numbers, IBANs, SSNs, IP addresses);
Faker has no Australian TFN or Medicare number, UK NINO or credentials, so those are built here by their published
rules. A Faker phone number is labelled only when it is valid in its locale's numbering plan (Faker draws many
numbers that no plan assigns), and its extension (``x123``) is dropped.

Used by ``benchmarks/pii_accuracy.py`` (the figures) and ``tests/test_pii_accuracy.py`` (the thresholds).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from faker import Faker

LOCALES = ("en_US", "en_AU", "en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT")
REGION = {"en_US": "US", "en_AU": "AU", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "nl_NL": "NL", "es_ES": "ES",
          "it_IT": "IT"}
CHECKSUM_TYPES = ("CREDIT_CARD", "IBAN", "AU_TFN", "AU_MEDICARE", "US_SSN")


@dataclass
class Doc:
    text: str
    labels: list[tuple[str, int, int]] = field(default_factory=list)
    locale: str = ""


class _Builder:
    def __init__(self, locale: str) -> None:
        self.locale = locale
        self.parts: list[str] = []
        self.labels: list[tuple[str, int, int]] = []
        self.pos = 0

    def add(self, text: str, kind: str | None = None) -> None:
        if kind is not None:
            self.labels.append((kind, self.pos, self.pos + len(text)))
        self.parts.append(text)
        self.pos += len(text)

    def doc(self) -> Doc:
        return Doc("".join(self.parts), self.labels, self.locale)


def _group(s: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(s[i:i + n])
        i += n
    if i < len(s):
        out.append(s[i:])
    return sep.join(p for p in out if p)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _tfn(rng: random.Random) -> str:
    weights = (1, 4, 3, 7, 5, 8, 6, 9, 10)
    while True:
        d = "".join(rng.choice(string.digits) for _ in range(9))
        if d[0] != "0" and sum(w * int(c) for w, c in zip(weights, d, strict=True)) % 11 == 0:
            return d


def _medicare(rng: random.Random) -> str:
    first = rng.choice("23456") + "".join(rng.choice(string.digits) for _ in range(7))
    check = sum(w * int(c) for w, c in zip((1, 3, 7, 9, 1, 3, 7, 9), first, strict=True)) % 10
    return f"{first}{check}{rng.choice('123456789')}"


_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def _nino(rng: random.Random) -> str:
    while True:
        p = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
        if p not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
            break
    return p + "".join(rng.choice(string.digits) for _ in range(6)) + rng.choice("ABCD")


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    kind = rng.randrange(7)
    if kind == 0:
        return "sk-proj-" + _rand(rng, alnum + "_-", 48)
    if kind == 1:
        return "sk-ant-api03-" + _rand(rng, alnum + "_-", 40)
    if kind == 2:
        return "AKIA" + _rand(rng, string.ascii_uppercase + string.digits, 16)
    if kind == 3:
        return "ghp_" + _rand(rng, alnum, 36)
    if kind == 4:
        return f"xoxb-{_rand(rng, string.digits, 12)}-{_rand(rng, string.digits, 12)}-{_rand(rng, alnum, 24)}"
    if kind == 5:
        body = "\n".join(_rand(rng, alnum + "+/", 64) for _ in range(3))
        return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    while True:  # a random credential of no known shape: the entropy rule
        tok = _rand(rng, alnum, 40)
        if sum(c.isupper() for c in tok) > 2 and sum(c.islower() for c in tok) > 2 and sum(c.isdigit()
                                                                                          for c in tok) > 2:
            return tok


def _phone(f: Faker, locale: str) -> str | None:
    import phonenumbers

    s = f.phone_number().split("x")[0].strip()
    try:
        ok = phonenumbers.is_valid_number(phonenumbers.parse(s, REGION[locale]))
    except phonenumbers.NumberParseException:
        return None
    return s if ok else None


def positives(f: Faker, rng: random.Random, locale: str) -> dict[str, Callable[[], str | None]]:
    cards = ("visa16", "visa13", "mastercard", "amex", "discover", "jcb16")

    def card() -> str:
        n = f.credit_card_number(card_type=rng.choice(cards))
        style = rng.randrange(3)
        sizes = (4, 6, 5) if len(n) == 15 else (4, 4, 4, 4, 3)
        return n if style == 0 else _group(n, sizes, " " if style == 1 else "-")

    def iban() -> str:
        n = f.iban()
        return n if rng.random() < 0.5 else _group(n, (4,) * 9, " ")

    def ssn() -> str:
        s = Faker("en_US").ssn() if locale != "en_US" else f.ssn()
        return s if rng.random() < 0.8 else s.replace("-", " ")

    def tfn() -> str:
        d = _tfn(rng)
        return _group(d, (3, 3, 3), rng.choice((" ", "-")))

    def medicare() -> str:
        d = _medicare(rng)
        return f"{d[:4]} {d[4:9]} {d[9]}"

    def nino() -> str:
        n = _nino(rng)
        return n if rng.random() < 0.5 else _group(n, (2, 2, 2, 2, 1), " ")

    return {
        "EMAIL": f.email, "PHONE": lambda: _phone(f, locale), "CREDIT_CARD": card, "IBAN": iban, "US_SSN": ssn,
        "AU_TFN": tfn, "AU_MEDICARE": medicare, "UK_NINO": nino,
        "IP_ADDRESS": lambda: f.ipv4() if rng.random() < 0.6 else f.ipv6(), "SECRET": lambda: _secret(rng),
    }


def near_misses(f: Faker, rng: random.Random) -> list[Callable[[], str]]:
    def bad_card() -> str:
        n = f.credit_card_number(card_type="visa16")
        return n[:-1] + str((int(n[-1]) + rng.randrange(1, 10)) % 10)

    def bad_iban() -> str:
        n = Faker("de_DE").iban()
        return n[:-1] + str((int(n[-1]) + rng.randrange(1, 10)) % 10)

    def bad_tfn() -> str:
        d = _tfn(rng)
        return _group(d[:-1] + str((int(d[-1]) + rng.randrange(1, 10)) % 10), (3, 3, 3), " ")

    def bad_medicare() -> str:
        d = _medicare(rng)
        d = d[:8] + str((int(d[8]) + rng.randrange(1, 10)) % 10) + d[9]
        return f"{d[:4]} {d[4:9]} {d[9]}"

    def bad_ssn() -> str:
        return f"{rng.choice(('000', '666', '900', '987'))}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"

    return [
        bad_card, bad_iban, bad_tfn, bad_medicare, bad_ssn,
        lambda: f"order #{_rand(rng, string.digits, rng.randint(8, 16))}",
        lambda: f"invoice {rng.randint(10**8, 10**10)}",
        # dates and times from the seeded generator (Faker's are relative to today: not reproducible)
        lambda: f"{rng.randint(1950, 2035)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1950, 2035)}",
        lambda: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        lambda: f.uuid4(), lambda: f.sha1(), lambda: f.sha256(), lambda: f.md5(),
        lambda: f"v{rng.randint(0, 20)}.{rng.randint(0, 40)}.{rng.randint(0, 99)}",
        lambda: f"version {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 999)}",
        lambda: f"build {rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}-rc.{rng.randint(1, 9)}",
        lambda: f.isbn13(), lambda: f.postcode(), lambda: f"${rng.randint(1, 99999):,}.{rng.randint(0, 99):02d}",
        lambda: f"{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(256, 999)}.{rng.randint(0, 255)}",
        lambda: f"tracking {rng.choice(string.ascii_uppercase)}{_rand(rng, string.digits, 12)}",
        lambda: f.user_name() + "_" + f.word() + "_" + str(rng.randint(1, 2024)),
        lambda: "getUserAccountSettingsFor" + f.word().capitalize() + str(rng.randint(1, 99)),
        lambda: f.file_path(depth=3),
    ]


def generate(n: int = 1500, seed: int = 13) -> list[Doc]:
    """``n`` documents over :data:`LOCALES`, the same for the same seed."""
    rng = random.Random(seed)
    fakers: dict[str, Faker] = {}
    for loc in LOCALES:
        fk = Faker(loc)
        fk.seed_instance(seed)
        fakers[loc] = fk
    Faker.seed(seed)
    docs: list[Doc] = []
    for i in range(n):
        loc = LOCALES[i % len(LOCALES)]
        f = fakers[loc]
        pos, neg = positives(f, rng, loc), near_misses(f, rng)
        b = _Builder(loc)
        b.add(f.sentence() + " ")
        kinds = rng.sample(sorted(pos), rng.randint(1, 3))
        for kind in kinds:
            value = pos[kind]()
            if value is None:
                continue
            b.add(rng.choice(("Details: ", "see ", "ref. ", "- ", "(", "is ")))
            b.add(value, kind)
            b.add(" " if not b.parts[-2].endswith("(") else ") ")
            b.add(f.sentence() + " ")
            if rng.random() < 0.7:
                b.add(rng.choice(neg)() + " ")
        b.add(rng.choice(neg)() + ", " + f.sentence())
        docs.append(b.doc())
    return docs


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score(docs: list[Doc], scan: Callable[[str], list[tuple[str, int, int]]]) -> dict[str, Score]:
    """Per type: a finding is right when its type and offsets are exactly a label's."""
    out: dict[str, Score] = {}
    for d in docs:
        gold = set(d.labels)
        got = set(scan(d.text))
        for t, s, e in got:
            sc = out.setdefault(t, Score())
            if (t, s, e) in gold:
                sc.tp += 1
            else:
                sc.fp += 1
        for t, _s, _e in gold - got:
            out.setdefault(t, Score()).fn += 1
    return out
