"""Hybrid retrieval's pure parts: candidate union, top rows, normalizers, the conditional-logit fusion."""

from __future__ import annotations

import numpy as np
import pytest

from gensar.errors import GensarError
from gensar.hybrid.features import (
    gather,
    impute_new,
    model_proposed,
    normalizer,
    seen_feature,
    top_rows,
    union_candidates,
)
from gensar.hybrid.fusion import LinearFusion, fit_fusion, target_columns


def test_top_rows_best_first_ties_by_row_and_inf_dropped():
    s = np.array([[0.1, 0.9, 0.5, 0.9, -np.inf], [-np.inf, -np.inf, 2.0, -np.inf, -np.inf]])
    np.testing.assert_array_equal(top_rows(s, 3), [[1, 3, 2], [2, -1, -1]])
    np.testing.assert_array_equal(top_rows(s, 10), [[1, 3, 2, 0, -1], [2, -1, -1, -1, -1]])


def test_union_keeps_first_seen_order_and_pads():
    a = np.array([[4, 2, -1], [1, -1, -1]])
    b = np.array([[2, 7], [1, 3]])
    np.testing.assert_array_equal(union_candidates([a, b]), [[4, 2, 7], [1, 3, -1]])


def test_gather_and_seen():
    m = np.array([[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    c = np.array([[2, -1], [0, 1]])
    np.testing.assert_array_equal(gather(m, c), [[12.0, 0.0], [20.0, 21.0]])
    np.testing.assert_array_equal(seen_feature([(2, 0), ()], c), [[1.0, 0.0], [0.0, 0.0]])


def test_new_items_take_the_mean_of_their_peers():
    column = np.array([[-2.0, -4.0, -30.0, 0.0], [-9.0, -1.0, -3.0, -5.0]])
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    new = np.array([[False, False, True, False], [True, True, False, False]])
    nobody = np.zeros_like(valid)
    got = impute_new(column, new, valid, nobody)  # no candidate from the model: every trained one is a peer
    np.testing.assert_allclose(got, [[-2.0, -4.0, -3.0, 0.0], [-4.0, -4.0, -3.0, -5.0]])
    # row 0: the beam proposed item 0, so the new item's peer is item 1 alone; row 1: both trained
    # candidates came from the model, no peer left: the mean over them as before
    by_model = np.array([[True, False, False, False], [False, False, True, True]])
    got = impute_new(column, new, valid, by_model)
    np.testing.assert_allclose(got, [[-2.0, -4.0, -4.0, 0.0], [-4.0, -4.0, -3.0, -5.0]])
    only_new = impute_new(column[:1], np.array([[True, True, True, False]]), valid[:1], nobody[:1])
    np.testing.assert_allclose(only_new, [[0.0, 0.0, 0.0, 0.0]])  # no trained candidate: 0, pads untouched


def test_model_proposed_reads_the_beam_and_sasrec_sources():
    ranks = np.array([[[0, -1, -1, -1], [-1, 0, -1, -1], [-1, -1, 0, -1], [-1, -1, -1, 0], [-1, -1, -1, -1]]])
    got = model_proposed(ranks, ("beam", "beam@10", "sasrec", "content"))
    np.testing.assert_array_equal(got, [[True, True, True, False, False]])
    np.testing.assert_array_equal(model_proposed(np.zeros((1, 2, 0), dtype=np.int32), ()), [[False, False]])


def test_normalizers_by_hand():
    s = np.array([[0.0, 2.0, 4.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(normalizer("bm25")(s), [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    # match-popularity keeps the baseline's score (match + prior), so that part alone ranks as the baseline
    np.testing.assert_allclose(normalizer("match-popularity")(np.array([[1.3, 0.9, 1.0]])), [[1.3, 0.9, 1.0]])
    pop = normalizer("popularity")(np.array([[0.0, 1.0, 3.0]]))
    np.testing.assert_allclose(pop, [[0.0, np.log(2) / np.log(4), 1.0]])
    ls = normalizer("sasrec")(np.array([[0.0, np.log(3.0)]]))  # softmax = [1/4, 3/4]
    np.testing.assert_allclose(np.exp(ls), [[0.25, 0.75]])
    with pytest.raises(KeyError):
        normalizer("nope")


def _world(n: int, c: int, w_true: np.ndarray, seed: int):
    """Targets drawn from softmax(w_true . x) over each example's candidates."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, len(w_true)))
    logits = x @ w_true
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    target = np.array([rng.choice(c, p=row) for row in p])
    return x, np.ones((n, c), dtype=bool), target


def test_fusion_recovers_the_generating_weights():
    w_true = np.array([2.0, -1.0, 0.0])
    x, valid, target = _world(3000, 8, w_true, seed=0)
    fusion = fit_fusion(("a", "b", "c"), x, valid, target, l2=0.0)
    w = np.asarray(fusion.weights) / np.asarray(fusion.std)  # back to raw-feature units
    np.testing.assert_allclose(w, w_true, atol=0.15)
    assert fusion.fitted_on == 3000


def test_fusion_ignores_absent_targets_and_pads():
    w_true = np.array([1.5, 0.5])
    x, valid, target = _world(800, 6, w_true, seed=1)
    valid[:, 5] = False  # a padding column: must never be scored or fitted
    x[:, 5] = 1e6
    target = np.where(target == 5, -1, target)
    fusion = fit_fusion(("a", "b"), x, valid, target, l2=1e-3)
    assert fusion.fitted_on == int((target >= 0).sum())
    scores = fusion.score(x, valid)
    assert np.isneginf(scores[:, 5]).all()
    assert np.isfinite(scores[:, :5]).all()


def test_fusion_of_one_feature_keeps_its_order():
    x, valid, target = _world(500, 5, np.array([1.0]), seed=2)
    fusion = fit_fusion(("g",), x, valid, target)
    assert fusion.weights[0] > 0
    np.testing.assert_array_equal(np.argsort(-fusion.score(x, valid), axis=1), np.argsort(-x[..., 0], axis=1))


def test_fusion_json_round_trip_and_errors():
    x, valid, target = _world(200, 4, np.array([1.0, 1.0]), seed=3)
    fusion = fit_fusion(("a", "b"), x, valid, target)
    again = LinearFusion.from_json(fusion.to_json())
    assert again == fusion
    with pytest.raises(GensarError, match="not a fusion model"):
        LinearFusion.from_json({"features": ["a"]})
    with pytest.raises(GensarError, match="differ in length"):
        LinearFusion.from_json(fusion.to_json() | {"weights": [1.0]})
    with pytest.raises(GensarError, match="expects 2 features"):
        fusion.score(x[..., :1], valid)
    with pytest.raises(GensarError, match="no valid example"):
        fit_fusion(("a", "b"), x, valid, np.full(len(x), -1))


def test_target_columns():
    c = np.array([[5, 3, 9], [1, 2, -1]])
    np.testing.assert_array_equal(target_columns(c, np.array([9, 7])), [2, -1])


def _new_world(n: int, c: int, seed: int):
    """Trained candidates chosen by feature a, new ones (``new`` = 1, 30%) by feature b and a bias:
    no single weight vector orders both kinds as the targets were drawn."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, 3))
    new = rng.random((n, c)) < 0.3
    x[..., 2] = new
    logits = np.where(new, 2.0 * x[..., 1] - 1.0, 2.0 * x[..., 0])
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    target = np.array([rng.choice(c, p=row) for row in p])
    return x, np.ones((n, c), dtype=bool), target


def _mean_log_p(fusion: LinearFusion, x: np.ndarray, valid: np.ndarray, target: np.ndarray) -> float:
    s = fusion.score(x, valid)
    s = s - s.max(axis=1, keepdims=True)
    return float((s[np.arange(len(s)), target] - np.log(np.exp(s).sum(axis=1))).mean())


def test_new_candidates_get_weights_of_their_own():
    names = ("a", "b", "new")
    x, valid, target = _new_world(4000, 8, seed=4)
    split = fit_fusion(names, x, valid, target, l2=0.0)
    shared = fit_fusion(names, x, valid, target, l2=0.0, split_new=False)
    assert shared.new_weights == () and len(split.new_weights) == 3
    # in raw-feature units: trained candidates by a alone, new ones by b alone
    w, wn = np.asarray(split.weights) / split.std, np.asarray(split.new_weights) / split.std
    np.testing.assert_allclose(w[:2], [2.0, 0.0], atol=0.2)
    np.testing.assert_allclose(wn[:2], [0.0, 2.0], atol=0.2)
    held = _new_world(2000, 8, seed=5)
    assert _mean_log_p(split, *held) > _mean_log_p(shared, *held) + 0.1
    # a new candidate is scored by new_weights, a trained one by weights
    z = (x[0] - np.asarray(split.mean)) / np.asarray(split.std)
    expect = np.where(x[0, :, 2] > 0.5, z @ np.asarray(split.new_weights), z @ np.asarray(split.weights))
    np.testing.assert_allclose(split.score(x[:1], valid[:1])[0], expect)
    again = LinearFusion.from_json(split.to_json())
    assert again == split
    with pytest.raises(GensarError, match="new_weights needs one weight per feature"):
        LinearFusion.from_json(split.to_json() | {"new_weights": [1.0]})


def test_no_new_candidate_no_second_weight_vector():
    x, valid, target = _new_world(300, 5, seed=6)
    x[..., 2] = 0.0  # nothing new
    assert fit_fusion(("a", "b", "new"), x, valid, target).new_weights == ()
    # without a new feature at all, likewise
    assert fit_fusion(("a", "b"), x[..., :2], valid, target).new_weights == ()


def _choice(x: np.ndarray, target: np.ndarray):
    from gensar.hybrid.evaluate import Collected
    from gensar.hybrid.plan import Plan, PlanChoice
    from gensar.hybrid.ranker import Candidates

    n, c, _ = x.shape
    feats = np.zeros((n, c, 4))  # generative, bm25, seen, new
    feats[..., 0], feats[..., 1], feats[..., 3] = x[..., 0], x[..., 1], x[..., 2]
    items = np.tile(np.arange(c), (n, 1))
    cands = Candidates(items=items, features=feats, pinned=np.zeros((n, c), dtype=bool),
                       source_ranks=np.zeros((n, c, 0), dtype=np.int32))
    return PlanChoice(Plan(("bm25",), 4, 2), Collected(cands, target), {}, {})


def test_the_fit_takes_new_weights_only_where_valid_ranks_better_with_them():
    from gensar.hybrid.config import HybridConfig
    from gensar.hybrid.stage import _fit_and_select

    x, _, target = _new_world(1500, 8, seed=7)
    fusion, report = _fit_and_select(_choice(x, target), HybridConfig(), "sampled")
    variants = report["fusion_variants_cv"]
    assert variants["new_weights"]["ndcg@10"] > variants["shared"]["ndcg@10"]
    assert len(fusion.new_weights) == 4 and report["fusion_cv"] == variants["new_weights"]
    # offered off, or nothing new: one weight vector
    fusion, report = _fit_and_select(_choice(x, target), HybridConfig(new_weights=False), "sampled")
    assert fusion.new_weights == () and set(report["fusion_variants_cv"]) == {"shared"}
    x[..., 2] = 0.0
    fusion, report = _fit_and_select(_choice(x, target), HybridConfig(), "sampled")
    assert fusion.new_weights == () and set(report["fusion_variants_cv"]) == {"shared"}
