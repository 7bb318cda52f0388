"""SimCore selection: the toy cases and the epoch rule of reference section 10, the streamed
selection against the full-matrix one on random data, k-means centroids, budget and baseline."""

from __future__ import annotations

import numpy as np
import pytest

from vision_ssl.simcore import (
    coreset_budget,
    cosine_scores,
    greedy_select,
    greedy_select_streamed,
    kmeans_centroids,
    random_coreset,
    recompute_epochs,
    select_coreset,
)

TOY = np.array([[.9, .1], [.8, .2], [.1, .95], [.2, .7], [0, 0]])


def test_toy_stop_patience_1():
    result = greedy_select(TOY, budget=100, stop=True, patience=1, threshold=0.95)
    assert set(result.indices.tolist()) == {0, 2}
    assert result.utilities == pytest.approx([0.925, 0.75])
    assert result.threshold == pytest.approx(0.87875)
    assert (result.rounds, result.stop_round, result.reason) == (1, 2, "stop")


def test_toy_stop_patience_2():
    result = greedy_select(TOY, budget=100, stop=True, patience=2, threshold=0.95)
    assert set(result.indices.tolist()) == {0, 1, 2, 3}
    assert result.utilities == pytest.approx([0.925, 0.75, 0.0])  # round 3 takes row 4 twice
    assert result.threshold == pytest.approx(0.7125)
    assert (result.rounds, result.stop_round) == (2, 3)


def test_toy_no_stop_budget():
    result = greedy_select(TOY, budget=4, stop=False)
    assert set(result.indices.tolist()) == {0, 1, 2, 3} and result.reason == "budget"
    seen = set()
    for seed in range(20):
        picked = greedy_select(TOY, budget=3, stop=False, rng=np.random.default_rng(seed)).indices.tolist()
        assert len(picked) == 3 and {0, 2} <= set(picked) and set(picked) <= {0, 1, 2, 3}
        seen.add(tuple(sorted(picked)))
    assert seen == {(0, 1, 2), (0, 2, 3)}  # the overflowing round is cut at random


def test_no_stop_before_patience_and_exhaustion():
    # utilities fall at once, but nothing stops before round `patience`: the open set runs out
    result = greedy_select(TOY, budget=100, stop=True, patience=5, threshold=0.95)
    assert sorted(result.indices.tolist()) == [0, 1, 2, 3, 4] and result.reason == "exhausted"
    assert result.threshold is None and result.rounds == 3


@pytest.mark.parametrize("n_target,epochs", [(5990, 427), (6667, 384), (3680, 696), (2040, 1256)])
def test_epoch_rule_reference_targets(n_target, epochs):
    size = coreset_budget(n_target, 1_281_167, stop=True)
    assert size == 50 * n_target
    assert recompute_epochs(size, max_epochs=5000) == epochs


@pytest.mark.parametrize("size,epochs", [
    (5_124, 1000),  # 128,116,700 / 5,124 = 25,003.3 -> 25,003 -> cap 5000 -> x0.2 = 1000 (scale first: 5000)
    (10_000, 1000),  # 12,811.67 -> 12,811 -> cap 5000 -> 1000 (scale first: floor(2562.3) = 2562)
    (25_624, 999),  # 4,999.87 -> 4999 (under the cap) -> floor(999.8) = 999
    (50_000, 512),  # 2,562.33 -> 2562 -> floor(512.4) = 512
    (299_500, 85),  # 427.76 -> 427 -> floor(85.4) = 85
])
def test_epoch_rule_caps_before_scaling(size, epochs):
    # reference 3.2 step 6: E = floor(0.2 * min(5000, floor(100 * 1,281,167 / |S|))) from an SSL checkpoint
    assert recompute_epochs(size, max_epochs=5000, scale=0.2) == epochs


def test_epoch_rule_cap_scale_and_budgets():
    assert recompute_epochs(1000, max_epochs=5000) == 5000  # 128,116 epochs capped
    assert recompute_epochs(0, 300) == 300
    assert coreset_budget(100, 3000, stop=True) == 3000  # never more than the open set
    assert coreset_budget(100, 1001, stop=False, sampling_ratio=0.1) == 100
    with pytest.raises(ValueError, match="sampling ratio"):
        coreset_budget(100, 1000, stop=False)


def test_random_coreset():
    picked = random_coreset(50, 20, np.random.default_rng(0))
    assert len(np.unique(picked)) == 20 and picked.min() >= 0 and picked.max() < 50
    assert np.array_equal(picked, np.sort(picked))
    assert np.array_equal(picked, random_coreset(50, 20, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="cannot draw 51"):
        random_coreset(50, 51, np.random.default_rng(0))


def test_kmeans_centroids():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((6, 4)).astype(np.float32)
    own = kmeans_centroids(target, k=6)  # k >= |X|: every target is its own centroid
    assert np.allclose(own, target / np.linalg.norm(target, axis=1, keepdims=True))
    blobs = np.concatenate([rng.normal(c, 0.01, (20, 3)) for c in np.eye(3)]).astype(np.float32)
    centroids = kmeans_centroids(blobs, k=3, seed=0)
    assert np.allclose(np.linalg.norm(centroids, axis=1), 1, atol=1e-6)
    assert np.allclose(np.sort(np.abs(centroids).argmax(1)), [0, 1, 2])
    assert np.array_equal(centroids, kmeans_centroids(blobs, k=3, seed=0))


def _random_case(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    open_set = rng.standard_normal((n, d)).astype(np.float32)
    centroids = kmeans_centroids(rng.standard_normal((4 * k, d)).astype(np.float32), k, seed)
    return open_set, centroids


@pytest.mark.parametrize("n,d,k,chunk,top_m,budget,stop", [
    (4000, 16, 10, 700, 8, 400, False),      # budget cut, refills
    (1500, 8, 10, 333, 4, 1500, False),      # whole open set, many refills
    (20000, 32, 50, 4096, None, 3000, True),  # stopping rule, default list length
    (3000, 8, 7, 100, 3, 2000, True),        # tiny lists, stopping rule
])
def test_streamed_equals_full_matrix(n, d, k, chunk, top_m, budget, stop):
    open_set, centroids = _random_case(n, d, k)
    full = greedy_select(cosine_scores(open_set, centroids), budget, stop, rng=np.random.default_rng(1))
    chunks = [open_set[i:i + chunk] for i in range(0, n, chunk)]
    streamed = greedy_select_streamed(chunks, centroids, budget, stop, rng=np.random.default_rng(1), top_m=top_m)
    assert np.array_equal(streamed.indices, full.indices)
    # the same selection; the utilities to float32 rounding: BLAS may round a chunk's product and the whole
    # matrix's differently (an AVX-512 kernel does, by ~1e-8 relative), so bit equality is not the promise
    assert np.allclose(streamed.utilities, full.utilities, rtol=1e-6, atol=0)
    assert (streamed.rounds, streamed.stop_round, streamed.reason) == (full.rounds, full.stop_round, full.reason)
    assert len(np.unique(full.indices)) == len(full.indices) <= budget
    if top_m is not None and top_m * k < budget:
        assert streamed.refills > 0


def test_streamed_ties_follow_index_order():
    # duplicated rows tie exactly: both versions take the lower index first
    base = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    open_set = np.concatenate([base, base, base])
    centroids = kmeans_centroids(base[:20], 5)
    full = greedy_select(cosine_scores(open_set, centroids), 60, stop=False)
    streamed = greedy_select_streamed([open_set[i:i + 7] for i in range(0, 150, 7)], centroids, 60, stop=False,
                                      top_m=2)
    assert np.array_equal(streamed.indices, full.indices)


def test_select_coreset_and_bad_input():
    open_set, _ = _random_case(500, 8, 5)
    target = np.random.default_rng(9).standard_normal((40, 8)).astype(np.float32)
    result = select_coreset(target, [open_set[:200], open_set[200:]], k=5, budget=100, patience=3)
    assert 0 < len(result.indices) <= 100 and result.rounds >= 3
    summary = result.summary()
    assert summary["size"] == len(result.indices) and len(summary["utilities"]) >= result.rounds
    bad = open_set.copy()
    bad[250, 0] = np.nan
    with pytest.raises(ValueError, match="rows 200..499 contain NaN"):
        select_coreset(target, [bad[:200], bad[200:]], k=5, budget=100)
    with pytest.raises(ValueError, match="patience >= 1"):
        greedy_select(TOY, 3, patience=0)
