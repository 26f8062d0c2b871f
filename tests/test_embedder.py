"""The offline embedder (:mod:`switchyard.routing.auto.embedder`): one text (a request) takes a lean path of its
own, which must give WordLlama's own vector bit for bit, since routers are trained on the library's batches."""

from __future__ import annotations

import concurrent.futures
import csv
import random
from pathlib import Path

import numpy as np
import pytest

from switchyard.routing.auto import wordcache
from switchyard.routing.auto.embedder import DIM, clip_prompt, clip_text, default_embedder
from switchyard.routing.auto.wordcache import WordCache

ROOT = Path(__file__).resolve().parents[1]
MMLU = ROOT.parent / "shared" / "data" / "routellm-mmlu"

TEXTS = [
    "What is 2 + 2?",
    "Summarize the meeting notes above in five bullet points.\n\n- budget\n- hiring",
    "Übersetze bitte: « le chat est sur la table » — 日本語も ☃",
    "def f(x):\n    return x ** 2  # square\n" * 40,  # longer than the head and tail the embedder reads
    " ",
]


def test_one_text_is_embedded_as_the_library_embeds_it() -> None:
    emb = default_embedder()
    library = emb._model  # type: ignore[attr-defined]
    for text in TEXTS:
        want = np.asarray(library.embed([clip_text(text)], norm=True), dtype=np.float32)
        got = emb.embed([text])
        assert got.shape == (1, DIM) and got.dtype == np.float32
        assert np.array_equal(got, want), text[:30]
    # and as a batch of several texts (padded to the longest) embeds it
    batch = emb.embed(TEXTS)
    assert np.array_equal(batch, np.vstack([emb.embed([t]) for t in TEXTS]))
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_a_text_without_tokens_is_the_zero_vector_alone_and_in_a_batch() -> None:
    emb = default_embedder()
    assert np.array_equal(emb.embed([""]), np.zeros((1, DIM), dtype=np.float32))
    both = emb.embed(["", "hello"])
    assert np.array_equal(both[0], np.zeros(DIM, dtype=np.float32)) and np.all(np.isfinite(both))
    assert np.array_equal(both[1], emb.embed(["hello"])[0])


def corpus() -> list[str]:
    """MMLU's prompts, the project's sources and docs (whole, and cut as the embedder and routing cut them), random
    strings over spaces, ▁, special tokens, accents, CJK, emoji and control characters, and a few edge cases."""
    files = sorted(MMLU.glob("mmlu_*.csv"))
    if not files:
        pytest.skip(f"routellm-mmlu outcomes not found at {MMLU} (expected <repo>/../shared/data/routellm-mmlu)")
    texts: list[str] = []
    for f in files:
        with f.open(newline="") as fh:
            texts += [row["prompt"] for row in csv.DictReader(fh)]
    for path in sorted([*ROOT.glob("src/**/*.py"), *ROOT.glob("docs/*.md")]):
        text = path.read_text()
        texts += [text[:4000], clip_text(text), clip_prompt(text)]
    rng = random.Random(0)
    alphabet = "ab c\n\t  ▁▁_<s></s><unk>éü日本語☃🙂\u200b\x00\x1f\r" + "xyz  " * 3
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(3000)]
    return [*texts, "", " ", "  ", "\n", "▁", "▁▁ ▁", "a ▁", "<s>hello</s>", "   leading", "trailing   ", "x" * 3000]


def test_the_word_cache_gives_the_library_s_token_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    library = default_embedder()._model.tokenizer  # type: ignore[attr-defined]
    cache = WordCache.of(library)
    assert cache is not None  # WordLlama's tokenizer has the properties the cache relies on
    texts = corpus()
    for text in texts:
        assert cache.ids(text) == library.encode(text, add_special_tokens=False).ids, repr(text[:60])
    # again from a warm cache, and after the cache is full and starts again
    for text in texts[:300]:
        assert cache.ids(text) == library.encode(text, add_special_tokens=False).ids
    monkeypatch.setattr(wordcache, "MAX_WORDS", 50)
    rng = random.Random(1)
    for _ in range(300):  # words it has not seen, each text's fewer than 50
        text = " ".join(f"w{rng.randrange(10**6)}" for _ in range(rng.randint(1, 20)))
        assert cache.ids(text) == library.encode(text, add_special_tokens=False).ids
        assert len(cache._cache) <= 50
    # threads sharing one small cache, each starting it again when it fills, still get the library's ids (a word
    # is looked up or tokenized on the spot: no other thread can take it away in between)
    def work(seed: int) -> bool:
        r = random.Random(seed)
        for _ in range(200):
            text = " ".join(f"t{r.randrange(10**6)}" for _ in range(r.randint(1, 30)))
            if cache.ids(text) != library.encode(text, add_special_tokens=False).ids:
                return False
        return True

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))
    assert len(cache._cache) <= 50 + 4  # each thread may add its word between another's check and its clearing


def test_a_tokenizer_the_cache_cannot_mirror_is_left_to_the_library() -> None:
    from tokenizers import Tokenizer, pre_tokenizers

    library = default_embedder()._model.tokenizer  # type: ignore[attr-defined]
    other = Tokenizer.from_str(library.to_str())
    other.pre_tokenizer = pre_tokenizers.Whitespace()  # words split otherwise: not what the cache assumes
    assert WordCache.of(other) is None
    other = Tokenizer.from_str(library.to_str())
    other.normalizer = None
    assert WordCache.of(other) is None
