"""The learned router's gradient-boosted trees (:mod:`switchyard.routing.auto.gbdt`): numpy only."""

from __future__ import annotations

import numpy as np

from switchyard.routing.auto import gbdt


def test_trees_fit_an_interaction_that_a_line_cannot() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    y = np.where((x[:, 0] > 0) == (x[:, 1] > 0.5), 1.0, -1.0) + 0.3 * rng.normal(size=4000)
    test = rng.normal(size=(2000, 3))
    truth = np.where((test[:, 0] > 0) == (test[:, 1] > 0.5), 1.0, -1.0)
    forest = gbdt.fit(x, y, trees=200, depth=3, rate=0.1, min_leaf=20)
    pred = forest.predict(test)
    xb = np.hstack([x, np.ones((len(x), 1))])
    linear = np.hstack([test, np.ones((len(test), 1))]) @ np.linalg.lstsq(xb, y, rcond=None)[0]
    assert np.mean((pred - truth) ** 2) < 0.15 < np.mean((linear - truth) ** 2)
    assert set(forest.feature[:10, 0].tolist()) <= {0, 1}  # the first trees split first on the signal
    # one row at a time predicts as in a batch, and a 1-d row is one row
    assert np.allclose([forest.predict(t)[0] for t in test[:5]], pred[:5])


def test_min_leaf_and_a_constant_feature_leave_the_trees_unsplit() -> None:
    x = np.ones((100, 2))
    forest = gbdt.fit(x, np.arange(100.0), trees=5, depth=2, subsample=1.0)
    assert np.all(np.isinf(forest.threshold))
    assert np.allclose(forest.predict(x), 49.5)  # the mean: every row in the first leaf, whose residual is 0
    small = gbdt.fit(np.arange(60.0)[:, None], np.arange(60.0), trees=3, depth=2, min_leaf=40, subsample=1.0)
    assert np.all(np.isinf(small.threshold))  # no split leaves 40 rows on both sides
    assert np.allclose(small.predict(np.arange(60.0)[:, None]), 29.5)


def test_each_tree_fits_a_random_half_of_the_rows_drawn_from_the_seed() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 4))
    y = x[:, 0] + rng.normal(size=2000)
    a, b = gbdt.fit(x, y, trees=20, seed=3), gbdt.fit(x, y, trees=20, seed=3)
    c = gbdt.fit(x, y, trees=20, seed=4)
    assert np.array_equal(a.leaf, b.leaf) and np.array_equal(a.threshold, b.threshold)  # reproducible
    assert not np.array_equal(a.leaf, c.leaf)  # another seed, other halves
    full = [gbdt.fit(x, y, trees=20, subsample=1.0, seed=s) for s in (3, 4)]
    assert np.array_equal(full[0].leaf, full[1].leaf)  # every row: nothing random
    # a leaf's value comes from the tree's own rows: with half of them the first tree's leaves differ from the
    # full fit's, yet the forest still learns the signal
    assert not np.array_equal(a.leaf[0], full[0].leaf[0])
    assert np.corrcoef(a.predict(x), x[:, 0])[0, 1] > 0.9


def test_one_row_reaches_the_leaves_the_batch_walk_reaches() -> None:
    # a request's row looks each tree's leaf up by its nodes' tests (depth 4: a table of 2 ** 15 patterns), a
    # deeper forest walks its levels; both must give the batch's sums, rows on a split's threshold included
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 6))
    y = np.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.2 * rng.normal(size=3000)
    for depth in (1, 2, 4, 5):
        forest = gbdt.fit(x, y, trees=40, depth=depth, rate=0.1, min_leaf=20)
        test = rng.normal(size=(300, 6)).astype(np.float32)
        test[:50, 0] = forest.threshold[0, 0]  # exactly on the first split: goes left, as in the walk
        test[50:60] = np.nan  # a NaN feature fails every test: left
        batch = forest.predict(test)
        one = np.array([forest.predict_one(t) for t in test])
        assert np.array_equal(one, batch), depth
        assert np.array_equal(forest.predict(test[:1]), batch[:1])  # a batch of one takes the one-row path
    assert gbdt.Forest(np.zeros((0, 15), np.int16), np.zeros((0, 15), np.float32), np.zeros((0, 16), np.float32),
                       0.25).predict_one(np.zeros(3, np.float32)) == 0.25
