"""Precision and recall of each PII type on the labelled corpus (:mod:`benchmarks.pii_corpus`).

    python -m benchmarks.pii_accuracy [--docs 3000] [--seed 13] [--errors TYPE]

``--errors TYPE`` prints the documents where that type was missed or wrongly found (for tuning; values included,
since the corpus is synthetic).
"""

from __future__ import annotations

import argparse

from switchyard.pii import BUILTIN_TYPES, Scanner

from .pii_corpus import CHECKSUM_TYPES, REGION, generate, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--errors", default=None)
    args = ap.parse_args()
    docs = generate(args.docs, args.seed)
    scanner = Scanner(BUILTIN_TYPES, phone_regions=sorted(set(REGION.values())))  # the corpus's locales

    def run(text: str) -> list[tuple[str, int, int]]:
        return [tuple(e) for e in scanner.scan(text)]  # type: ignore[misc]

    scores = score(docs, run)
    print(f"{len(docs)} documents, {sum(len(d.labels) for d in docs)} labelled values, seed {args.seed}")
    print(f"{'type':<12} {'labelled':>8} {'found':>6} {'precision':>9} {'recall':>7}")
    for t in sorted(scores):
        s = scores[t]
        mark = " (checksum)" if t in CHECKSUM_TYPES else ""
        print(f"{t:<12} {s.tp + s.fn:>8} {s.tp + s.fp:>6} {s.precision:>9.3f} {s.recall:>7.3f}{mark}")
    if args.errors:
        for d in docs:
            gold = {x for x in d.labels if x[0] == args.errors}
            got = {x for x in run(d.text) if x[0] == args.errors}
            if gold != got:
                print("---", d.locale, repr(d.text))
                for _t, s, e in sorted(gold - got, key=lambda x: x[1]):
                    print("  missed", repr(d.text[s:e]))
                for _t, s, e in sorted(got - gold, key=lambda x: x[1]):
                    print("  wrong ", repr(d.text[s:e]))


if __name__ == "__main__":
    main()
