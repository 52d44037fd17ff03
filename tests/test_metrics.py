"""Ranking metrics against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gensar.errors import GensarError
from gensar.metrics import (
    FULL_KS,
    METRIC_KEYS,
    hit_rate_at_k,
    ndcg_at_k,
    rank_from_retrieved,
    rank_of_target,
    recall_at_k,
    summarize,
)

INF = np.inf
# Six examples, one relevant item each, 0-based ranks (inf = not retrieved).
RANKS = np.array([0, 2, 5, INF, 9, 10])


def test_hit_rate_single_item():
    assert hit_rate_at_k(RANKS, 1) == pytest.approx(1 / 6)  # rank 0 only
    assert hit_rate_at_k(RANKS, 5) == pytest.approx(2 / 6)  # ranks 0, 2
    assert hit_rate_at_k(RANKS, 10) == pytest.approx(4 / 6)  # ranks 0, 2, 5, 9 (10 is outside)
    assert recall_at_k(RANKS, 10) == pytest.approx(4 / 6)  # one relevant item: recall == HR


def test_ndcg_single_item():
    # rank 0 -> 1/log2(2) = 1, rank 2 -> 1/log2(4) = 0.5
    assert ndcg_at_k(RANKS, 5) == pytest.approx((1 + 0.5) / 6) == pytest.approx(0.25)
    # + rank 5 -> 1/log2(7) = 0.3562071871, rank 9 -> 1/log2(11) = 0.2890648263
    assert ndcg_at_k(RANKS, 10) == pytest.approx((1 + 0.5 + 0.3562071871 + 0.2890648263) / 6, abs=1e-9)
    assert ndcg_at_k(RANKS, 10) == pytest.approx(0.3575453356, abs=1e-9)
    assert ndcg_at_k(np.array([0.0]), 1) == 1.0
    assert ndcg_at_k(np.array([1.0]), 1) == 0.0


def test_multiple_relevant_items():
    # row 0: 2 relevant (ranks 0, 3); row 1: 3 relevant (inf, 1, 2). k = 2.
    ranks = np.array([[0, 3, np.nan], [INF, 1, 2]])
    assert recall_at_k(ranks, 2) == pytest.approx((1 / 2 + 1 / 3) / 2)  # 0.41666...
    assert hit_rate_at_k(ranks, 2) == 1.0
    # row 0: DCG = 1, IDCG = 1 + 1/log2(3) = 1.6309297536 -> 0.6131471928
    # row 1: DCG = 1/log2(3) = 0.6309297536, IDCG = 1.6309297536 -> 0.3868528072; mean = 0.5
    assert ndcg_at_k(ranks, 2) == pytest.approx(0.5)
    # k = 1: row 0 DCG 1 / IDCG 1; row 1 nothing -> 0.5
    assert ndcg_at_k(ranks, 1) == pytest.approx(0.5)


def test_rank_of_target_counts_ties_pessimistically():
    scores = np.array(
        [
            [0.5, 0.9, 0.5, 0.1],  # target 0 ties with item 2, item 1 beats it -> rank 2
            [1.0, 1.0, 1.0, 1.0],  # all equal -> worst rank 3
            [0.2, -INF, 0.3, np.nan],  # target 1 scores -inf -> not retrieved
            [0.2, -INF, 0.3, np.nan],  # target 2 is the best (NaN does not outrank) -> 0
        ]
    )
    ranks = rank_of_target(scores, np.array([0, 3, 1, 2]))
    np.testing.assert_array_equal(ranks, [2.0, 3.0, INF, 0.0])
    with pytest.raises(GensarError, match="out of range"):
        rank_of_target(scores, np.array([0, 4, 1, 2]))


def test_rank_from_retrieved():
    retrieved = np.array([[5, 3, -1], [7, 8, 9], [1, 1, 2]])
    np.testing.assert_array_equal(rank_from_retrieved(retrieved, np.array([3, 4, 1])), [1.0, INF, 0.0])
    with pytest.raises(GensarError, match=r"\[B, K\]"):
        rank_from_retrieved(retrieved, np.array([3, 4]))


def test_summarize_keys_and_values():
    out = summarize(RANKS)
    assert list(out) == ["hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10"]
    assert out["hr@5"] == pytest.approx(1 / 3)
    assert out["ndcg@5"] == pytest.approx(0.25)
    assert list(summarize(RANKS, ks=(20,), ndcg_ks=())) == ["hr@20"]
    assert summarize(RANKS, ks=(20,), ndcg_ks=())["hr@20"] == pytest.approx(5 / 6)


def test_metrics_agree_with_rank_pipeline():
    # scores -> ranks -> metrics: target 0 has 1 better item in row 0 and none in row 1
    scores = np.array([[0.3, 0.4, 0.1], [0.9, 0.4, 0.1]])
    ranks = rank_of_target(scores, np.array([0, 0]))
    assert ndcg_at_k(ranks, 2) == pytest.approx((1 / math.log2(3) + 1) / 2)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.array([]), "non-empty"),
        (np.array([-1.0, 2.0]), ">= 0"),
        (np.array([[np.nan, np.nan], [0, 1]]), "at least one relevant"),
    ],
)
def test_bad_ranks_raise(bad, match):
    with pytest.raises(GensarError, match=match):
        hit_rate_at_k(bad, 5)


def test_bad_k_raises():
    with pytest.raises(GensarError, match="positive integer"):
        ndcg_at_k(RANKS, 0)


def test_metric_keys_are_what_summarize_returns():
    # One definition of the metric names: the sampled protocol's table columns are summarize's keys.
    assert tuple(summarize(RANKS)) == METRIC_KEYS == ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10")
    assert FULL_KS == (5, 10, 20)


def test_tie_aware_metrics_by_hand():
    from gensar.metrics import expected_hit_rate, expected_ndcg, full_ranking_tied, summarize_tied, tied_ranks

    # row 0: target (col 0) = 2.0, one item above (3.0), two others tied at 2.0 -> rank uniform on 1..3
    # row 1: nothing ties, target first; row 2: target -inf (not retrieved)
    s = np.array([[2.0, 3.0, 2.0, 2.0, 1.0], [5.0, 1.0, 0.0, 0.0, 0.0], [-np.inf, 0.0, 0.0, 0.0, 0.0]])
    better, ties = tied_ranks(s, np.array([0, 0, 0]))
    np.testing.assert_array_equal(better, [1.0, 0.0, np.inf])
    np.testing.assert_array_equal(ties, [2.0, 0.0, 0.0])
    # HR@2: row 0 hits at rank 1 only (1 of 3 orders) -> 1/3; row 1 -> 1; row 2 -> 0
    assert expected_hit_rate(better, ties, 2) == pytest.approx((1 / 3 + 1 + 0) / 3)
    # NDCG@3: row 0 = (1/log2(3) + 1/log2(4)) / 3; row 1 = 1
    assert expected_ndcg(better, ties, 3) == pytest.approx(((1 / np.log2(3) + 0.5) / 3 + 1) / 3)
    # without ties the expectations equal the plain metrics of rank_of_target
    r = np.array([[0.3, 0.9, 0.1], [0.8, 0.2, 0.5]])
    b0, e0 = tied_ranks(r, np.array([0, 0]))
    assert summarize_tied(b0, e0) == summarize(rank_of_target(r, np.array([0, 0])))
    assert full_ranking_tied(b0, e0)["recall@5"] == 1.0


def test_constant_scorer_gets_chance_level_when_tie_aware():
    from gensar.metrics import expected_hit_rate, tied_ranks

    better, ties = tied_ranks(np.zeros((4, 100)), np.zeros(4, dtype=np.int64))
    assert expected_hit_rate(better, ties, 10) == pytest.approx(0.10)


def test_per_example_expectations_average_to_the_summaries():
    from gensar.metrics import expected_hit_rate, expected_hit_rate_each, expected_ndcg, expected_ndcg_each

    better, ties = np.array([0.0, 9.0, 3.0, np.inf]), np.array([0.0, 1.0, 0.0, 0.0])
    hits = expected_hit_rate_each(better, ties, 10)
    # rank 1; ranks 10-11 tied (half a hit); rank 4; not retrieved
    assert hits.tolist() == [1.0, 0.5, 1.0, 0.0]
    assert expected_hit_rate(better, ties, 10) == hits.mean()
    ndcg = expected_ndcg_each(better, ties, 10)
    assert ndcg[0] == 1.0 and ndcg[2] == pytest.approx(1 / np.log2(5)) and ndcg[3] == 0.0
    assert ndcg[1] == pytest.approx(0.5 / np.log2(11))
    assert expected_ndcg(better, ties, 10) == pytest.approx(ndcg.mean())
