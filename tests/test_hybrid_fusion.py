"""Hybrid retrieval's pure parts: candidate union, top rows, normalizers, the conditional-logit fusion."""

from __future__ import annotations

import numpy as np
import pytest

from gensar.errors import GensarError
from gensar.hybrid.features import gather, impute_new, normalizer, seen_feature, top_rows, union_candidates
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


def test_new_items_take_the_mean_of_the_requests_trained_candidates():
    column = np.array([[-2.0, -4.0, -30.0, 0.0], [-9.0, -1.0, -3.0, -5.0]])
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    new = np.array([[False, False, True, False], [True, True, False, False]])
    got = impute_new(column, new, valid)
    np.testing.assert_allclose(got, [[-2.0, -4.0, -3.0, 0.0], [-4.0, -4.0, -3.0, -5.0]])
    only_new = impute_new(column[:1], np.array([[True, True, True, False]]), valid[:1])
    np.testing.assert_allclose(only_new, [[0.0, 0.0, 0.0, 0.0]])  # no trained candidate: 0, pads untouched


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
