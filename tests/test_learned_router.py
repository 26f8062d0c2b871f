"""The learned router: RouteLLM's metrics against a hand-computed example, training and scoring on a few
routellm-mmlu files, the saved format, and the ``switchyard router`` commands (train, score, eval)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from switchyard.cli.main import main
from switchyard.routing.auto.embedder import default_embedder
from switchyard.routing.auto.learned import BLEND, LAMBDAS, LearnedRouter, RouterFormatError, train
from switchyard.routing.auto.lexical import TermMatrix, lbfgs
from switchyard.routing.auto.metrics import apgr, cpt, curve, summary
from switchyard.routing.auto.outcomes import OutcomesError, read_excluded, read_outcomes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm-mmlu"
STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
FILES = ["mmlu_anatomy.csv", "mmlu_marketing.csv", "mmlu_college_mathematics.csv"]


@pytest.fixture(scope="module")
def files() -> list[str]:
    if not DATA.is_dir():
        pytest.skip(f"routellm-mmlu outcomes not found at {DATA} (expected <repo>/../shared/data/routellm-mmlu)")
    return [str(DATA / f) for f in FILES]


def test_apgr_and_cpt_against_a_hand_computed_example() -> None:
    # 4 prompts: weak right on 0 and 1, strong right on 0, 2 and 3 -> weak 0.5, strong 0.75, gap 0.25
    weak = np.array([1.0, 1.0, 0.0, 0.0])
    strong = np.array([1.0, 0.0, 1.0, 1.0])
    scores = np.array([0.1, 0.2, 0.9, 0.8])  # ranks 2, 3 first (gains +1, +1), then 1 (-1), then 0 (0)
    c = curve(scores, weak, strong)
    # quality at 0..4 strong calls: .5, .75, 1.0, .75, .75 -> PGR 0, 1, 2, 1, 1
    assert np.allclose(c.quality, [0.5, 0.75, 1.0, 0.75, 0.75])
    assert np.allclose(c.pgr, [0, 1, 2, 1, 1])
    # trapezoid with step 1/4: (0+1)/2 + (1+2)/2 + (2+1)/2 + (1+1)/2 = 0.5+1.5+1.5+1 = 4.5 -> /4
    assert apgr(c) == pytest.approx(4.5 / 4)
    assert cpt(c, 0.5) == pytest.approx(0.125) and cpt(c, 0.8) == pytest.approx(0.2)
    # a constant score is a random router: the diagonal, APGR 0.5, CPT(x) = x
    r = summary(np.zeros(4), weak, strong)
    assert r["apgr"] == pytest.approx(0.5) and r["cpt50"] == pytest.approx(0.5) and r["cpt80"] == pytest.approx(0.8)


def test_ties_count_at_their_mean() -> None:
    weak, strong = np.array([0.0, 1.0]), np.array([1.0, 0.0])
    c = curve(np.array([1.0, 1.0]), weak, strong)  # one tie: gains +1 and -1 spread evenly
    assert np.allclose(c.quality, [0.5, 0.5, 0.5])


def test_outcomes_errors_name_the_file_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("prompt,a,b\nhello,True,maybe\n")
    with pytest.raises(OutcomesError, match=r"t.csv:2: column 'b'"):
        read_outcomes([f], "a", "b")
    with pytest.raises(OutcomesError, match="no column 'c'"):
        read_outcomes([f], "a", "c")
    f.write_text("prompt,a,b\nhello,0.25,1\n")
    o = read_outcomes([f], "a", "b")
    assert o.strong.tolist() == [0.25] and o.weak.tolist() == [1.0] and o.label.tolist() == [0.0]


def test_train_score_calibrate_save_load(files: list[str], tmp_path: Path) -> None:
    o = read_outcomes(files, STRONG, WEAK)
    r = train(o)
    s = r.score(o.prompts)
    assert s.shape == (len(o),) and np.all((s >= 0) & (s <= 1))
    # it learned something: on its own training prompts it beats random by a clear margin
    assert summary(s, o.weak, o.strong)["apgr"] > 0.6
    r.calibrate(s, strong_share=0.3)
    assert np.mean(s >= r.threshold) == pytest.approx(0.3, abs=0.02)
    r.calibrate(s, cost_target=2.0, weak_cost=1.0, strong_cost=5.0)  # share (2-1)/(5-1) = 0.25
    assert np.mean(s >= r.threshold) == pytest.approx(0.25, abs=0.02)
    path = tmp_path / "r.npz"
    r.save(path)
    again = LearnedRouter.load(path)
    assert again.threshold == r.threshold and again.meta["families"] == [Path(f).stem for f in files]
    assert np.allclose(again.score(o.prompts[:20]), s[:20], atol=1e-3)
    # one prompt at a time (a request's path, without the batch's scatter) scores as in a batch: on a training
    # prompt a feature may fall on a tree's split, where rounding decides (hence the tolerance); on others, to
    # the last digits, the text missing (an embedding kept alone) or the embedding not a number included
    assert np.allclose([again.score([p])[0] for p in o.prompts[:8]], s[:8], atol=1e-3)
    unseen = [f"{w} question {i}: which of these {w} is right?" for i, w in enumerate(("enzyme", "Lebesgue",
                                                                                         "tariff", "syllogism"))]
    unseen += ["", "zzzz qqqq", o.prompts[0][::-1], "x" * 3000, "İstanbul K … ünïcode 😀 " * 40]
    # answer options (their similarities are features): lettered lines, an empty option among them
    unseen += ["Which enzyme cuts DNA?\nA. ligase\nB. helicase\nC. nuclease\nD. polymerase\nAnswer:",
               "Pick one:\n(A) the same answer\n(B) the same answer\n", "Q?\nA) \nB) 4\nC) 5"]
    vecs = np.vstack([default_embedder().embed([p]) for p in unseen] + [np.full((1, 256), np.nan)])
    texts: list[str | None] = [*unseen, "nan"]
    for tx in (texts, [None] * len(texts)):
        batch = again.blend(vecs, tx)
        one = [again.blend(vecs[i], [tx[i]])[0] for i in range(len(tx))]
        assert np.allclose(one, batch, rtol=0, atol=1e-12) and np.isfinite(one).all()
        heads = again.probabilities(vecs, tx)
        assert np.allclose([again.probabilities(vecs[i], [tx[i]])[0][0] for i in range(len(tx))], heads[0],
                           rtol=0, atol=1e-12)
    assert again.score(["zzzz qqqq"]).shape == (1,)  # no known word
    assert np.isfinite(again.score([""])).all()  # no token at all: the zero vector, a score all the same
    # the regressions' penalty was chosen by inner folds; the word models come back with their vocabulary
    assert again.meta["lambda"] in LAMBDAS and again.mix == r.mix
    assert again.words.vocab == r.words.vocab and again.words.nb_logp.shape[1] == len(files)
    # the score is the calibrated expected gain: the trees' estimate blended with P(strong) - P(weak succeeds)
    emb = default_embedder().embed(o.prompts[:20])
    ps, pw = again.probabilities(emb, o.prompts[:20])
    assert np.all((ps >= 0) & (ps <= 1)) and np.all((pw >= 0) & (pw <= 1))
    trees = (again.blend(emb, o.prompts[:20]) - (1 - BLEND) * (ps - pw)) / BLEND
    assert not np.allclose(trees, ps - pw, atol=1e-3) and np.all(np.abs(trees) <= 1.5)
    assert np.array_equal(again.forest.leaf, r.forest.leaf) and again.forest.base == r.forest.base
    # the quantiles of the out-of-fold scores of the training prompts map a share of strong calls to a threshold
    q = again.meta["score_quantiles"]
    assert len(q) == 101 and q == sorted(q) and all(0 <= v <= 1 for v in q)
    assert again.threshold_for(0.3) == pytest.approx(float(np.quantile(q, 0.7)), rel=1e-9)
    assert again.threshold_for(0.0) > q[-1] and again.threshold_for(1.0) == q[0]
    assert again.threshold_for(0.2) >= again.threshold_for(0.5) >= again.threshold_for(0.8)
    again.meta.pop("score_quantiles")
    assert again.threshold_for(0.3) == again.threshold  # an older file without them: the threshold
    # a file of another format version is refused by name, never half-read
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = orjson.loads(bytes(arrays["header"]))
    arrays["header"] = np.frombuffer(orjson.dumps({**header, "version": 1}), dtype=np.uint8)
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    with pytest.raises(RouterFormatError, match="version 1"):
        LearnedRouter.load(old)
    arrays["header"] = np.frombuffer(orjson.dumps({**header, "version": 4}), dtype=np.uint8)
    np.savez(old, **arrays)  # the format before the answer options: refused by name too
    with pytest.raises(RouterFormatError, match="version 4; this gateway reads version 5"):
        LearnedRouter.load(old)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a router")
    with pytest.raises(RouterFormatError):
        LearnedRouter.load(bad)


def test_cli_train_score_and_eval(files: list[str], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "router.npz"
    r = runner.invoke(main, ["router", "train", "--outcomes", *files, "--strong", STRONG, "--weak", WEAK,
                             "--out", str(out), "--strong-share", "0.3"])
    assert r.exit_code == 0, r.output
    assert "threshold" in r.output and out.exists()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "What is 2+2?"}\n{"prompt": "Prove the Riemann hypothesis."}\n')
    r = runner.invoke(main, ["router", "score", "--router", str(out), "--prompts", str(prompts)])
    assert r.exit_code == 0, r.output
    lines = [orjson.loads(x) for x in r.output.splitlines()]
    assert len(lines) == 2 and all(0 <= x["score"] <= 1 for x in lines)
    prompts.write_text('{"prompt": "ok"}\n{"text": 1}\n')
    r = runner.invoke(main, ["router", "score", "--router", str(out), "--prompts", str(prompts)])
    assert r.exit_code == 1 and "p.jsonl:2" in r.output and "Traceback" not in r.output
    png = tmp_path / "curve.png"
    r = runner.invoke(main, ["router", "eval", "--outcomes", *files, "--strong", STRONG, "--weak", WEAK,
                             "--folds", "2", "--bootstrap", "20", "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    report = orjson.loads(r.output)
    assert [e["split"] for e in report["evaluations"]] == ["prompts", "families"]
    for ev in report["evaluations"]:
        assert set(ev["routers"]) == {"learned", "random", "prompt_length", "oracle"}
        for m in ev["routers"].values():
            assert set(m) == {"apgr", "cpt50", "cpt80"}
            assert m["apgr"]["low"] <= m["apgr"]["value"] <= m["apgr"]["high"]
        assert ev["routers"]["random"]["apgr"]["value"] == pytest.approx(0.5)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["router", "train", "--outcomes", str(tmp_path / "none.csv"), "--strong", "a",
                             "--weak", "b", "--out", str(tmp_path / "r.npz")])
    assert r.exit_code == 1 and "cannot be read" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["router", "score", "--router", str(tmp_path / "none.npz"), "--prompts", "-"])
    assert r.exit_code == 1 and "not a router file" in r.output


def test_excluded_prompts_are_left_out(tmp_path: Path) -> None:
    f = tmp_path / "fam.csv"
    rows = "".join(f"q{i},{i % 2 == 0},True\n" for i in range(30))
    f.write_text("prompt,weak,strong\n" + rows)
    ex = tmp_path / "contaminated.jsonl"
    ex.write_text('{"train_prompt": "x", "eval_prompt": "q3", "train_idx": 1, "eval_idx": 3}\n\n{"prompt": "q4"}\n'
                  '{"eval_prompt": "not in the data"}\n')
    out = read_outcomes([f], "strong", "weak").without(read_excluded(ex))
    assert len(out) == 28 and "q3" not in out.prompts and "q4" not in out.prompts and "q5" in out.prompts
    r = CliRunner().invoke(main, ["router", "eval", "--outcomes", str(f), "--strong", "strong", "--weak", "weak",
                                  "--exclude", str(ex), "--no-families", "--bootstrap", "10", "--json"])
    assert r.exit_code == 0, r.output
    assert "left out 2 of 30 prompts" in r.output
    ex.write_text('{"eval_prompt": 3}\n')
    with pytest.raises(OutcomesError, match=r"contaminated.jsonl:1: expected an object"):
        read_excluded(ex)


def test_term_matrix_rows_and_columns() -> None:
    vocab: dict[str, int] = {}
    m = TermMatrix.build(["a b a", None, "c", "b c d"], vocab, grow=True)
    dense = np.zeros((m.rows, len(vocab)))
    np.add.at(dense, (m.row_of, m.cols), m.counts)
    assert dense[0, vocab["a"]] == 2 and dense[0, vocab["a_b"]] == 1 and not dense[1].any()
    sub = m.subset(np.array([3, 1, 0]))
    d2 = np.zeros((sub.rows, len(vocab)))
    np.add.at(d2, (sub.row_of, sub.cols), sub.counts)
    assert np.array_equal(d2, dense[[3, 1, 0]])
    known = np.zeros(len(vocab), dtype=np.bool_)
    known[[vocab["b"], vocab["c"]]] = True
    kept = m.keep(known)
    d3 = np.zeros((kept.rows, len(vocab)))
    np.add.at(d3, (kept.row_of, kept.cols), kept.counts)
    assert np.array_equal(d3, dense * known)
    # a text scored by a model knows only its vocabulary
    assert TermMatrix.build(["a zzz"], vocab).cols.tolist() == [vocab["a"]]


def test_a_saved_word_model_scores_as_the_fitted_one() -> None:
    # the fitted model filters a matrix to its known terms; the compacted one (a saved file's) holds only those and
    # skips the filter: both must give the same features
    from switchyard.routing.auto.lexical import fit_words

    texts = ["alpha beta gamma", "alpha beta", "beta gamma delta", "gamma delta", "alpha delta", "beta x"] * 3
    texts += ["alpha once only", "delta rare"]  # terms of one prompt: not kept
    vocab: dict[str, int] = {}
    m = TermMatrix.build(texts, vocab, grow=True)
    rng = np.random.default_rng(3)
    strong, weak = rng.integers(0, 2, len(texts)).astype(float), rng.integers(0, 2, len(texts)).astype(float)
    fitted = fit_words(m, len(vocab), weak, strong, np.arange(len(texts)) % 2, 2, np.ones(len(texts), dtype=bool))
    saved = fitted.compact(list(vocab))
    assert saved.compacted and not fitted.compacted and len(saved.idf) < len(vocab)
    for rows in (np.arange(len(texts)), np.array([4]), np.array([18])):  # a batch, and one prompt (the request's path)
        mine, theirs = m.subset(rows), saved.matrix([texts[i] for i in rows])
        assert np.allclose(fitted.features(mine), saved.features(theirs))
        assert np.allclose(fitted.family_loglik(mine), saved.family_loglik(theirs))


def test_lbfgs_minimises_a_quadratic() -> None:
    a = np.array([[3.0, 1.0], [1.0, 2.0]])
    b = np.array([1.0, -1.0])
    x = lbfgs(lambda v: (float(0.5 * v @ a @ v - b @ v), a @ v - b), np.zeros(2), iters=50)
    assert np.allclose(x, np.linalg.solve(a, b), atol=1e-5)


def test_one_querys_neighbours_are_those_a_batch_finds() -> None:
    # a route scores one prompt: its neighbours come from an unnormalised matrix-vector product, partitioned only
    # above a sample's bound; a batch's from a matrix product and a partition per row: the same rows
    from switchyard.routing.auto.neighbours import KNN_KS, knn, knn_one, truncate

    rng = np.random.default_rng(7)
    ref = truncate(rng.normal(size=(5000, 64)), 64)
    ref_y = rng.random((5000, 3))
    ref_t = np.ascontiguousarray(ref.T)
    queries = rng.normal(size=(40, 64))
    batch = knn(queries, ref_t, ref_y)
    for i in range(len(queries)):
        assert np.allclose(knn_one(queries[i], ref_t, ref_y), batch[i], rtol=0, atol=1e-12)
    # the sample's bound may hold fewer than 100 rows (here the sampled rows, every 16th, are the ones near the
    # query): then all rows are partitioned
    skewed = ref.copy()
    skewed[::16] = ref[0] + 0.3 * rng.normal(size=(len(skewed[::16]), 64))
    s_t = np.ascontiguousarray(truncate(skewed, 64).T)
    sims = ref[0] @ s_t
    assert np.sum(sims >= np.sort(sims[::16])[-(100 // 16 + 8)]) < 100  # the bound admits too few
    assert np.allclose(knn_one(ref[0], s_t, ref_y), knn(ref[:1], s_t, ref_y)[0], rtol=0, atol=1e-12)
    # each feature is the mean outcome of the k nearest rows, k = 100, 20, 3 (all rows when there are fewer), for
    # one query and for a batch
    for q, small in ((queries[0], ref), (queries[1], ref[:50]), (queries[2], ref[:3])):
        order = np.argsort(-(truncate(q[None, :], 64) @ small.T)[0])
        want = np.concatenate([ref_y[order[:kk]].mean(axis=0) for kk in KNN_KS])
        small_t = np.ascontiguousarray(small.T)
        assert np.allclose(knn_one(q, small_t, ref_y[:len(small)]), want)
        assert np.allclose(knn(np.stack([q, q]), small_t, ref_y[:len(small)])[1], want)
    # a query without a direction (the zero vector of a text without tokens, or NaN from another embedder's 0/0)
    # has every row as near as any other: the means of all rows, on both paths, never an error
    everything = np.tile(ref_y.mean(axis=0), len(KNN_KS))
    for odd in (np.zeros((1, 64)), np.full((1, 64), np.nan)):
        assert np.allclose(knn(np.vstack([odd, queries[:1]]), ref_t, ref_y), [everything, batch[0]])
        assert np.allclose(knn_one(odd[0], ref_t, ref_y), everything)
