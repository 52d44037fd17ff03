"""Pseudo-new items: a run without new items on valid still fits new-item weights, by hand-checked
features, and those weights leave the trained candidates' scores as they were."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gensar.hybrid.evaluate import Collected
from gensar.hybrid.fusion import fit_fusion
from gensar.hybrid.pseudo_new import pseudo_new, pseudo_rows, with_pseudo_new_weights
from gensar.hybrid.ranker import Candidates

NAMES = ("generative", "content", "popularity", "match-popularity", "seen", "new")


def _collected(features: np.ndarray, items: np.ndarray, ranks: np.ndarray,
               target_col: np.ndarray) -> Collected:
    cands = Candidates(items=items, features=features, pinned=np.zeros(items.shape, dtype=bool),
                       source_ranks=ranks, sources=("beam", "content"))
    return Collected(cands=cands, target_col=target_col)


def test_pseudo_new_items_look_like_added_ones():
    # one request, items 0-3; the beam proposed 0 and 2, content 1, 2 and 3
    items = np.array([[0, 1, 2, 3]])
    ranks = np.array([[[0, -1], [-1, 0], [1, 1], [-1, 2]]], dtype=np.int32)
    x = np.array([[[-1.0, 0.2, 0.9, 1.7, 1.0, 0.0],
                   [-4.0, 0.8, 0.5, 1.3, 0.0, 0.0],
                   [-2.0, 0.6, 0.7, 0.4, 0.0, 0.0],
                   [-6.0, 0.9, 0.3, 1.2, 1.0, 0.0]]])
    valid = _collected(x, items, ranks, np.array([3]))
    # items 0 and 3 play new: 0 only the beam proposed (gone: a new item never comes from it);
    # 3 came through content: model feature from its peers (item 1, the one trained candidate only
    # text proposed), no clicks (popularity 0, match-popularity's prior gone, not seen), flagged
    got = pseudo_new(valid, NAMES, np.array([True, False, False, True]))
    assert got.cands.items.tolist() == [[-1, 1, 2, 3]]
    np.testing.assert_allclose(got.cands.features[0, 3], [-4.0, 0.9, 0.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(got.cands.features[0, 1:3], x[0, 1:3])  # the trained ones unchanged
    np.testing.assert_allclose(got.cands.features[0, 0], 0.0)  # a pad now
    assert got.target_col.tolist() == [3]
    # the target itself gone: not found
    assert pseudo_new(_collected(x, items, ranks, np.array([0])), NAMES, np.array([True, False, False, True])
                      ).target_col.tolist() == [-1]
    # given candidates (no sources) or no chosen item: nothing to fit
    given = _collected(x, items, np.zeros((1, 4, 0), dtype=np.int32), np.array([3]))
    assert pseudo_new(given, NAMES, np.ones(4, dtype=bool)) is None
    assert pseudo_new(valid, NAMES, np.zeros(4, dtype=bool)) is None
    assert pseudo_rows(valid, 0.5).shape == (4,)


def test_pseudo_new_weights_score_new_candidates_as_their_fit_and_keep_the_trained_ones():
    rng = np.random.default_rng(0)
    n, c = 200, 12
    x = rng.normal(size=(n, c, len(NAMES)))
    x[..., -1] = 0.0
    target = rng.integers(0, c, size=n)
    x[np.arange(n), target, 1] += 2.0  # content finds the target
    valid = np.ones((n, c), dtype=bool)
    fusion = fit_fusion(NAMES, x, valid, target)
    items = np.tile(np.arange(c), (n, 1))
    beam, content = np.where(items % 3 == 0, 0, -1), np.where(items % 3 != 1, 0, -1)
    ranks = np.stack([beam, content], axis=-1).astype(np.int32)
    pseudo = pseudo_new(_collected(x, items, ranks, target), NAMES, np.arange(c) % 2 == 1)
    got = with_pseudo_new_weights(fusion, NAMES, pseudo, 1e-2)
    assert got.weights == fusion.weights and got.mean == fusion.mean and got.new_weights
    own = fit_fusion(NAMES, pseudo.cands.features, pseudo.cands.valid, pseudo.target_col, 1e-2, split_new=True)
    new = pseudo.cands.features[..., -1] > 0.5
    mine, theirs = got.score(pseudo.cands.features, pseudo.cands.valid), own.score(pseudo.cands.features,
                                                                                    pseudo.cands.valid)
    np.testing.assert_allclose(mine[new], theirs[new], rtol=1e-9, atol=1e-9)
    trained = pseudo.cands.valid & ~new
    np.testing.assert_allclose(mine[trained], fusion.score(pseudo.cands.features, pseudo.cands.valid)[trained])
    with pytest.raises(AssertionError):  # the rewrite matters: the raw weights would not score alike
        raw = dataclasses.replace(fusion, new_weights=own.new_weights)
        np.testing.assert_allclose(raw.score(pseudo.cands.features, pseudo.cands.valid)[new], theirs[new])
