"""The fit's latency plan (``gensar.hybrid.plan``): restricting collected candidates, the one-SE choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gensar.errors import ConfigError, GensarError
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.evaluate import Collected
from gensar.hybrid.features import feature_names, source_ranks
from gensar.hybrid.plan import Plan, candidate_plans, choose_plan, restrict
from gensar.hybrid.ranker import Candidates

CFG = HybridConfig(search_scorers=("bm25", "dense", "popularity"), beam_size=2, fit_beam_sizes=(1,), depth=4,
                   fit_depths=(2,), folds=2, max_latency_ratio=0.0)  # unbounded; the bound's tests set one
NAMES = feature_names(CFG.search_scorers)  # generative, bm25, dense, popularity, seen, new


def test_source_ranks_give_each_candidates_position_in_each_proposal():
    beam = np.array([[5, 3, -1]])
    bm25 = np.array([[3, 7, 9]])
    cands = np.array([[5, 3, 7, 9, -1]])
    r = source_ranks([beam, bm25], cands)
    assert r.shape == (1, 5, 2)
    assert r[0, :, 0].tolist() == [0, 1, -1, -1, -1]
    assert r[0, :, 1].tolist() == [-1, 0, 1, 2, -1]


def test_plans_run_from_cheapest_to_the_full_configuration():
    plans = [p.label for p in candidate_plans(CFG, "search", "full")]
    assert plans == ["beam1+bm25+popularity@2", "beam1+bm25+popularity@4",
                     "beam2+bm25+popularity@2", "beam2+bm25+popularity@4",
                     "beam1+bm25+dense+popularity@2", "beam1+bm25+dense+popularity@4",
                     "beam2+bm25+dense+popularity@2", "beam2+bm25+dense+popularity@4"]
    assert [p.label for p in candidate_plans(CFG, "search", "sampled")] == ["beam2+bm25+popularity@4",
                                                                            "beam2+bm25+dense+popularity@4"]
    assert [p.label for p in candidate_plans(CFG, "rec", "full")] == [  # content is prunable too
        "beam1+sasrec+popularity@2", "beam1+sasrec+popularity@4", "beam2+sasrec+popularity@2",
        "beam2+sasrec+popularity@4", "beam1+sasrec+content+popularity@2", "beam1+sasrec+content+popularity@4",
        "beam2+sasrec+content+popularity@2", "beam2+sasrec+content+popularity@4"]


def test_fit_depths_and_beams_at_or_beyond_the_full_ones_add_no_plan():
    cfg = HybridConfig(rec_scorers=("sasrec",), beam_size=5, fit_beam_sizes=(10, 3), depth=20, fit_depths=(50,))
    cfg.validate()
    assert [p.label for p in candidate_plans(cfg, "rec", "full")] == ["beam3+sasrec@20", "beam5+sasrec@20"]
    with pytest.raises(ConfigError, match="hybrid.fit_beam_sizes"):
        HybridConfig(fit_beam_sizes=(0,)).validate()


def _collected(target_by: str, n: int = 40, seed: int = 0) -> Collected:
    """n requests, 6 candidates each: the 2-wide beam has cols 0-1, the 1-wide beam col 1, BM25
    ranks 0-3 (cols 1-3, col 3 at rank 3), dense alone cols 4-5. The target sits where
    ``target_by`` puts it; the generative and BM25 features point at it, dense and popularity are noise."""
    rng = np.random.default_rng(seed)
    sources = ("beam", "beam@1", "bm25", "dense", "title")
    ranks = np.full((n, 6, 5), -1, dtype=np.int32)
    ranks[:, 0, 0], ranks[:, 1, 0] = 0, 1
    ranks[:, 1, 1] = 0
    ranks[:, 1, 2], ranks[:, 2, 2], ranks[:, 3, 2] = 0, 1, 3
    ranks[:, 4, 3], ranks[:, 5, 3] = 0, 1
    items = np.tile(np.arange(6), (n, 1)) + 10 * np.arange(n)[:, None]
    col = {"beam": 0, "bm25": 2, "dense": 5}[target_by]  # the 2-wide beam's second hypothesis: col 0
    feats = rng.normal(size=(n, 6, len(NAMES)))
    feats[..., NAMES.index("new")] = 0.0  # a 0/1 flag: no candidate is new here
    feats[:, col, 0] += 5.0  # generative
    feats[:, col, 1] += 5.0 if target_by != "dense" else 0.0  # bm25
    feats[:, col, 2] += 5.0 if target_by == "dense" else 0.0  # dense knows its own target
    cands = Candidates(items=items, features=feats, pinned=np.zeros((n, 6), dtype=bool),
                       source_ranks=ranks, sources=sources)
    return Collected(cands=cands, target_col=np.full(n, col))


def test_restrict_drops_a_scorers_features_and_the_candidates_only_it_proposed():
    valid = _collected("bm25")
    names, got = restrict(valid, NAMES, Plan(("bm25", "popularity"), 2, 2), CFG)
    assert names == ("generative", "bm25", "popularity", "seen", "new")
    np.testing.assert_array_equal(got.cands.features, valid.cands.features[..., [0, 1, 3, 4, 5]])
    # beam (cols 0-1) and BM25 within depth 2 (col 2) stay; BM25's rank 3 (col 3) and dense's go
    assert (got.cands.items[0] >= 0).tolist() == [True, True, True, False, False, False]
    assert (got.target_col == 2).all()


def test_restrict_to_a_narrower_beam_keeps_only_its_hypotheses():
    valid = _collected("beam")
    _, got = restrict(valid, NAMES, Plan(("bm25", "dense", "popularity"), 4, 1), CFG)
    assert (got.cands.items[0] >= 0).tolist() == [False, True, True, True, True, True]
    assert (got.target_col == -1).all()  # only the 2-wide beam found the target
    with pytest.raises(GensarError, match="without a 3-wide beam"):
        restrict(valid, NAMES, Plan(("bm25", "popularity"), 4, 3), CFG)


def test_restrict_loses_a_target_that_only_a_dropped_scorer_proposed():
    valid = _collected("dense")
    _, got = restrict(valid, NAMES, Plan(("bm25", "popularity"), 4, 2), CFG)
    assert (got.target_col == -1).all()
    _, kept = restrict(valid, NAMES, Plan(("bm25", "dense", "popularity"), 4, 2), CFG)
    assert (kept.target_col == 5).all()
    np.testing.assert_array_equal(kept.cands.items, valid.cands.items)


def test_restrict_keeps_given_candidates_whole():
    valid = _collected("bm25")
    c = valid.cands
    given = Collected(Candidates(c.items, c.features, c.pinned, np.zeros(c.items.shape + (0,), np.int32)),
                      valid.target_col)
    _, got = restrict(given, NAMES, Plan(("bm25", "popularity"), 2, 1), CFG)
    np.testing.assert_array_equal(got.cands.items, c.items)


def test_the_cheapest_plan_wins_when_dropping_costs_nothing_on_valid():
    choice = choose_plan(_collected("bm25"), NAMES, CFG, "search", "full")
    assert choice.plan == Plan(("bm25", "popularity"), 2, 1)
    assert set(choice.ndcg) == {p.label for p in candidate_plans(CFG, "search", "full")}


def test_a_scorer_that_finds_the_targets_is_kept():
    choice = choose_plan(_collected("dense"), NAMES, CFG, "search", "full")
    assert "dense" in choice.plan.scorers
    assert choice.ndcg[choice.plan.label] > choice.ndcg["beam2+bm25+popularity@4"]


def test_a_beam_width_that_holds_the_targets_is_kept():
    choice = choose_plan(_collected("beam"), NAMES, CFG, "search", "full")
    assert choice.plan.beam == 2


def _times(slow: set[str], fast: float = 1.2, slow_ratio: float = 3.0) -> dict[str, float]:
    """A measured time ratio for every plan of CFG: ``slow_ratio`` for plans with a scorer in ``slow``."""
    return {p.label: slow_ratio if set(p.scorers) & slow else fast for p in candidate_plans(CFG, "search", "full")}


def test_a_latency_bound_leaves_out_the_plans_above_it():
    bounded = dataclasses.replace(CFG, max_latency_ratio=1.5)
    # dense finds every target, but its plans take 3x the beam: the best plan without it serves
    choice = choose_plan(_collected("dense"), NAMES, bounded, "search", "full", _times({"dense"}))
    assert "dense" not in choice.plan.scorers
    assert choice.latency[choice.plan.label] <= 1.5 and choice.latency["beam2+bm25+dense+popularity@4"] == 3.0
    # without a bound (or unmeasured) the same valid split keeps dense
    assert "dense" in choose_plan(_collected("dense"), NAMES, CFG, "search", "full", _times({"dense"})).plan.scorers
    assert "dense" in choose_plan(_collected("dense"), NAMES, bounded, "search", "full").plan.scorers


def test_under_a_bound_the_one_se_rule_runs_against_the_best_allowed_plan():
    bounded = dataclasses.replace(CFG, max_latency_ratio=1.5)
    # the 2-wide beam holds the targets; the full plan is out, beam 2 without dense is in and wins
    choice = choose_plan(_collected("beam"), NAMES, bounded, "search", "full", _times({"dense"}))
    assert choice.plan == Plan(("bm25", "popularity"), 2, 2)


def test_when_no_plan_is_fast_enough_the_cheapest_serves():
    bounded = dataclasses.replace(CFG, max_latency_ratio=1.0)
    choice = choose_plan(_collected("dense"), NAMES, bounded, "search", "full", _times({"dense"}))
    assert choice.plan == candidate_plans(CFG, "search", "full")[0]


def test_latency_settings_are_checked():
    with pytest.raises(ConfigError, match="hybrid.max_latency_ratio"):
        dataclasses.replace(CFG, max_latency_ratio=-1.0).validate()
    with pytest.raises(ConfigError, match="hybrid.latency_requests"):
        dataclasses.replace(CFG, latency_requests=0).validate()


@pytest.mark.parametrize("key", ["prunable", "beside_beam", "feature_only"])
def test_scorer_lists_name_known_scorers_only(key):
    with pytest.raises(ConfigError, match=f"hybrid.{key}.*unknown scorer 'bm52'"):
        dataclasses.replace(CFG, **{key: ("bm52",)}).validate()
