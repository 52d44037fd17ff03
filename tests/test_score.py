"""Exact identifier scoring of given candidates vs teacher-forced brute force and vs beam scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gensar.decode.beam import constrained_beam_search
from gensar.decode.reference import brute_force_scores
from gensar.decode.score import identifier_log_probs
from gensar.errors import GensarError
from gensar.ids.trie import IdTrie
from tests.test_beam import BEHAVIOR, encoder_inputs, tiny_t5

# float32: each log-prob is a difference of two logsumexps of ~1e2, summed over <= 3 steps, and
# the two paths sum in a different order (and with another thread count): a few ulps of 1e2 each.
REL = 4 * 3 * float(np.finfo(np.float32).eps)

# Prefix-free identifiers of different lengths (a shorter one ends where others go on).
SEQS = [(3, 4, 5), (3, 4, 6), (3, 7), (8, 9, 10), (8, 11, 3), (12,), (13, 3, 4)]


def _codes(seqs) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), -1, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out


@pytest.mark.parametrize("prefix", [[BEHAVIOR], []])
def test_identifier_log_probs_equal_brute_force(prefix):
    model = tiny_t5(3)
    ids, mask = encoder_inputs(5, batch=3)
    ref = brute_force_scores(model, ids, mask, prefix, SEQS)  # [B, M]
    cands = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [6, 5, -1, 2, -1, 0, 3], [4, -1, -1, -1, -1, -1, -1]])
    got = identifier_log_probs(model, ids, mask, _codes(SEQS), cands, prefix)  # [B, C]
    assert got.shape == cands.shape
    for b in range(3):
        for c in range(cands.shape[1]):
            item = int(cands[b, c])
            if item < 0:
                assert got[b, c] == float("-inf")
            else:
                assert float(got[b, c]) == pytest.approx(float(ref[b, item]), rel=REL, abs=1e-5)


def test_identifier_log_probs_equal_beam_scores():
    """A finished beam hypothesis and the exact score of the same item agree."""
    model = tiny_t5(4)
    ids, mask = encoder_inputs(6, batch=2)
    trie = IdTrie.build([list(s) for s in SEQS])
    ranked = constrained_beam_search(model, ids, mask, trie, [BEHAVIOR], beam_size=len(SEQS))
    got = identifier_log_probs(model, ids, mask, _codes(SEQS), ranked.items, [BEHAVIOR])
    np.testing.assert_allclose(got.numpy(), ranked.scores.numpy(), rtol=REL, atol=1e-5)


def test_shared_prefixes_share_their_normalizer_with_the_same_scores():
    """With the trie's prefix nodes, rows of one prefix take one normalizer: the scores are the
    ones computed row by row, with pads before an item whose rows they would clamp onto, an item
    listed twice, and identifiers that end where others go on."""
    model = tiny_t5(6)
    ids, mask = encoder_inputs(8, batch=3)
    codes = _codes(SEQS)
    nodes = IdTrie.build([list(s) for s in SEQS]).item_paths()
    cands = torch.tensor([[-1, 0, 1, 2, 6], [-1, -1, 0, 0, 4], [3, 4, 5, -1, 1]])
    plain = identifier_log_probs(model, ids, mask, codes, cands, [BEHAVIOR])
    shared = identifier_log_probs(model, ids, mask, codes, cands, [BEHAVIOR], prefix_nodes=nodes)
    np.testing.assert_allclose(shared.numpy(), plain.numpy(), rtol=REL, atol=1e-6)
    assert np.isneginf(shared[cands < 0]).all() and np.isfinite(shared[cands >= 0]).all()
    with pytest.raises(GensarError, match="prefix_nodes must be"):
        identifier_log_probs(model, ids, mask, codes, cands, [BEHAVIOR], prefix_nodes=nodes[:, :2])


def test_identifier_log_probs_errors():
    model = tiny_t5(3)
    ids, mask = encoder_inputs(5, batch=2)
    with pytest.raises(GensarError, match="rows of codes"):
        identifier_log_probs(model, ids, mask, _codes(SEQS), torch.tensor([[0, 99], [1, 2]]), [BEHAVIOR])
    with pytest.raises(GensarError, match="inputs for"):
        identifier_log_probs(model, ids, mask, _codes(SEQS), torch.tensor([[0, 1]]), [BEHAVIOR])


def test_generative_scorer_reuses_beam_scores_exactly():
    """Candidates the beam already finished take its scores; the rest are decoded; both agree."""
    from gensar.hybrid.generative import GenerativeScorer

    model = tiny_t5(5)
    ids, mask = encoder_inputs(7, batch=2)
    scorer = GenerativeScorer.from_codes(model, pad_id=0, codes={"rec": _codes(SEQS).numpy()},
                                         prefixes={"rec": [BEHAVIOR]})
    beam = scorer.propose("rec", ids, beam_size=3)
    items, scores = beam.items, beam.scores
    cands = np.array([[items[0, 0], 6, items[0, 2], -1, 0], [1, items[1, 1], 2, 3, 4]])
    plain = scorer.score("rec", ids, cands)
    reused = scorer.score("rec", ids, cands, known=beam)
    np.testing.assert_allclose(reused, plain, rtol=REL, atol=1e-5)
    assert reused[0, 0] == scores[0, 0] and np.isneginf(reused[0, 3])


@pytest.mark.parametrize("beam", [1, 2, 4])
def test_the_beams_trace_bounds_every_exact_score(beam):
    """``GenerativeScorer.bound``: from the beam's kept nodes and scores alone, never below an
    item's exact score, equal to it where the beam finished the item, and at most the lowest score
    kept at the first step for an item whose first token the beam dropped."""
    from gensar.hybrid.generative import GenerativeScorer

    model = tiny_t5(8)
    ids, mask = encoder_inputs(9, batch=3)
    scorer = GenerativeScorer.from_codes(model, pad_id=0, codes={"rec": _codes(SEQS).numpy()},
                                         prefixes={"rec": [BEHAVIOR]})
    known = scorer.propose("rec", ids, beam_size=beam)
    every = np.tile(np.arange(len(SEQS)), (3, 1))  # [B, C]: all items
    every[1, 2] = -1
    exact = scorer.score("rec", ids, every)
    bound = scorer.bound("rec", known, every)
    valid = every >= 0
    assert np.isneginf(bound[~valid]).all()
    # float32 sums of the same terms in another order: relative rounding, as for the hits below
    assert (bound[valid] >= exact[valid] - (1e-5 + REL * np.abs(exact[valid]))).all()
    hit = (every[:, :, None] == known.items[:, None, :]).any(axis=2) & valid
    np.testing.assert_allclose(bound[hit], exact[hit], rtol=REL, atol=1e-5)
    for b in range(3):
        for c in np.flatnonzero(valid[b]):
            if scorer.paths["rec"][every[b, c], 0] not in known.kept[b, 0]:  # first token dropped
                assert bound[b, c] <= known.kept_scores[b, 0, -1] + 1e-6
    if beam == 1:  # a one-wide beam finds one item; every other bound is still a log-probability (< 0)
        assert (bound[valid & ~hit] < 0).all() and hit.sum() == 3


def test_item_paths_follow_each_identifier_through_the_trie():
    trie = IdTrie.build([list(s) for s in SEQS])
    paths = trie.item_paths()
    assert paths.shape == (len(SEQS), 3)
    for item, seq in enumerate(SEQS):
        node = torch.zeros(1, dtype=torch.long)
        for level in range(3):
            if level < len(seq):
                node = trie.step(node, torch.tensor([seq[level]]))
            assert int(paths[item, level]) == int(node[0]), (item, level)
        assert int(trie.item_at(node)[0]) == item
