"""The PII scan's cost per KB of text (the issue's target: at most 0.2 ms per KB), on three kinds of text: prose
with no PII, the labelled corpus (dense with PII and near misses), and code-like text (identifiers, hashes, paths).

    python -m benchmarks.pii_speed [--kb 200] [--rounds 5]

Prints the best of the rounds (on a shared machine the best is the least disturbed) of the ms per KB of one
scanner with every built-in type.
"""

from __future__ import annotations

import argparse
import time

from switchyard.pii import BUILTIN_TYPES, Scanner

from .pii_corpus import generate


def _texts(kind: str, kb: int) -> list[str]:
    from faker import Faker

    f = Faker("en_US")
    f.seed_instance(5)
    out: list[str] = []
    size = 0
    docs = generate(400, 5) if kind == "corpus" else []
    i = 0
    while size < kb * 1024:
        if kind == "prose":
            t = f.paragraph(nb_sentences=12)
        elif kind == "corpus":
            t = docs[i % len(docs)].text
        else:
            t = (f"def {f.word()}_{f.word()}(x: int) -> str:  # {f.sha1()} {f.uuid4()}\n"
                 f"    return os.path.join('{f.file_path(depth=3)}', 'v{i % 9}.{i % 13}.{i % 7}')\n")
        out.append(t)
        size += len(t.encode())
        i += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    scanner = Scanner(BUILTIN_TYPES)
    for kind in ("prose", "corpus", "code"):
        texts = _texts(kind, args.kb)
        kbytes = sum(len(t.encode()) for t in texts) / 1024
        # the way the stage scans: one text part at a time, and one 4 KB part (a typical prompt)
        big = "".join(texts)[:4096]
        per_kb, per_4k = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            n = 0
            for t in texts:
                n += len(scanner.scan(t))
            per_kb.append((time.perf_counter() - t0) * 1000 / kbytes)
            t0 = time.perf_counter()
            for _ in range(50):
                scanner.scan(big)
            per_4k.append((time.perf_counter() - t0) * 1000 / 50 / (len(big.encode()) / 1024))
        print(f"{kind:<7} {kbytes:7.0f} KB in {len(texts):5d} parts, {n:5d} findings: "
              f"{min(per_kb):.3f} ms/KB (parts), {min(per_4k):.3f} ms/KB (4 KB texts)")


if __name__ == "__main__":
    main()
