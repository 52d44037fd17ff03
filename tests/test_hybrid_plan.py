"""The fit's latency plan (``gensar.hybrid.plan``): restricting collected candidates, the one-SE choice."""

from __future__ import annotations

import numpy as np
import pytest

from gensar.errors import ConfigError
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.evaluate import Collected
from gensar.hybrid.features import feature_names, source_ranks
from gensar.hybrid.plan import Plan, candidate_plans, choose_plan, restrict
from gensar.hybrid.ranker import Candidates

CFG = HybridConfig(search_scorers=("bm25", "dense", "popularity"), depth=4, fit_depths=(2,), folds=2)
NAMES = feature_names(CFG.search_scorers)  # generative, bm25, dense, popularity, seen


def test_source_ranks_give_each_candidates_position_in_each_proposal():
    beam = np.array([[5, 3, -1]])
    bm25 = np.array([[3, 7, 9]])
    cands = np.array([[5, 3, 7, 9, -1]])
    r = source_ranks([beam, bm25], cands)
    assert r.shape == (1, 5, 2)
    assert r[0, :, 0].tolist() == [0, 1, -1, -1, -1]
    assert r[0, :, 1].tolist() == [-1, 0, 1, 2, -1]


def test_plans_run_from_cheapest_to_the_full_configuration():
    plans = candidate_plans(CFG, "search", "full")
    assert [p.label for p in plans] == ["bm25+popularity@2", "bm25+popularity@4",
                                        "bm25+dense+popularity@2", "bm25+dense+popularity@4"]
    assert [p.label for p in candidate_plans(CFG, "search", "sampled")] == ["bm25+popularity@4",
                                                                            "bm25+dense+popularity@4"]
    assert [p.label for p in candidate_plans(CFG, "rec", "full")] == ["sasrec+popularity@2", "sasrec+popularity@4"]


def test_fit_depths_beyond_the_collected_depth_are_refused():
    with pytest.raises(ConfigError, match="hybrid.fit_depths"):
        HybridConfig(depth=20, fit_depths=(50,)).validate()


def _collected(target_by: str, n: int = 40, seed: int = 0) -> Collected:
    """n requests, 6 candidates each: beam ranks 0-1 (cols 0-1), BM25 ranks 0-3 (cols 1-3, col 3 at
    depth rank 3), dense alone (cols 4-5). The target sits where ``target_by`` puts it; the
    generative and BM25 features point at it, dense and popularity are noise."""
    rng = np.random.default_rng(seed)
    sources = ("beam", "bm25", "dense", "title")
    ranks = np.full((n, 6, 4), -1, dtype=np.int32)
    ranks[:, 0, 0], ranks[:, 1, 0] = 0, 1
    ranks[:, 1, 1], ranks[:, 2, 1], ranks[:, 3, 1] = 0, 1, 3
    ranks[:, 4, 2], ranks[:, 5, 2] = 0, 1
    items = np.tile(np.arange(6), (n, 1)) + 10 * np.arange(n)[:, None]
    col = {"beam": 0, "bm25": 2, "dense": 5}[target_by]
    feats = rng.normal(size=(n, 6, len(NAMES)))
    feats[:, col, 0] += 3.0  # generative
    feats[:, col, 1] += 3.0 if target_by != "dense" else 0.0  # bm25
    feats[:, col, 2] += 3.0 if target_by == "dense" else 0.0  # dense knows its own target
    cands = Candidates(items=items, features=feats, pinned=np.zeros((n, 6), dtype=bool),
                       source_ranks=ranks, sources=sources)
    return Collected(cands=cands, target_col=np.full(n, col))


def test_restrict_drops_a_scorers_features_and_the_candidates_only_it_proposed():
    valid = _collected("bm25")
    names, got = restrict(valid, NAMES, Plan(("bm25", "popularity"), 2), CFG)
    assert names == ("generative", "bm25", "popularity", "seen")
    np.testing.assert_array_equal(got.cands.features, valid.cands.features[..., [0, 1, 3, 4]])
    # beam (cols 0-1) and BM25 within depth 2 (col 2) stay; BM25's rank 3 (col 3) and dense's go
    assert (got.cands.items[0] >= 0).tolist() == [True, True, True, False, False, False]
    assert (got.target_col == 2).all()


def test_restrict_loses_a_target_that_only_a_dropped_scorer_proposed():
    valid = _collected("dense")
    _, got = restrict(valid, NAMES, Plan(("bm25", "popularity"), 4), CFG)
    assert (got.target_col == -1).all()
    _, kept = restrict(valid, NAMES, Plan(("bm25", "dense", "popularity"), 4), CFG)
    assert (kept.target_col == 5).all()
    np.testing.assert_array_equal(kept.cands.items, valid.cands.items)


def test_restrict_keeps_given_candidates_whole():
    valid = _collected("bm25")
    c = valid.cands
    given = Collected(Candidates(c.items, c.features, c.pinned, np.zeros(c.items.shape + (0,), np.int32)),
                      valid.target_col)
    _, got = restrict(given, NAMES, Plan(("bm25", "popularity"), 2), CFG)
    np.testing.assert_array_equal(got.cands.items, c.items)


def test_the_cheapest_plan_wins_when_dropping_costs_nothing_on_valid():
    choice = choose_plan(_collected("bm25"), NAMES, CFG, "search", "full")
    assert choice.plan == Plan(("bm25", "popularity"), 2)
    assert set(choice.ndcg) == {p.label for p in candidate_plans(CFG, "search", "full")}


def test_a_scorer_that_finds_the_targets_is_kept():
    choice = choose_plan(_collected("dense"), NAMES, CFG, "search", "full")
    assert "dense" in choice.plan.scorers
    assert choice.ndcg[choice.plan.label] > choice.ndcg["bm25+popularity@4"]
