from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tiny_prepared

from gensar.baselines.bm25 import bm25_scores
from gensar.baselines.match_popularity import match_popularity_scores, query_matches
from gensar.baselines.popularity import item_popularity, popularity_scores
from gensar.cli import main
from gensar.eval.candidates import candidate_matrix, eval_examples, evaluate_scores


def test_evaluate_scores_hand_computed():
    cands = np.array([[0, 1, 2, 3], [4, 5, 6, -1], [7, 8, 9, 10]])
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],  # target first -> rank 0
        [0.5, 0.7, 0.1, 99.0],  # one better; the padding column never counts -> rank 1
        [0.4, 0.4, 0.4, 0.4],  # all tied -> rank uniform on 0..3 (tie-aware expectation)
    ])
    m = evaluate_scores(scores, cands)
    assert m["n"] == 3
    assert m["hr@1"] == pytest.approx((1 + 0 + 1 / 4) / 3)
    assert m["hr@5"] == pytest.approx(1.0)
    tied = (1 + 1 / np.log2(3) + 1 / np.log2(4) + 1 / np.log2(5)) / 4
    assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(3) + tied) / 3)


def test_popularity_counts_only_training_events():
    data = make_tiny_prepared()
    pop = item_popularity(data)
    held = set(data.examples.loc[data.examples["split"] != "train", "event_id"])
    assert data.held_out_event_ids == held and held  # the one definition every fitter uses
    expected = np.zeros(len(data.items))
    for ev in data.events.itertuples(index=False):
        if ev.event_id not in held:
            for it in ev.items:
                expected[data.item_index[it]] += 1
    np.testing.assert_array_equal(pop, expected)
    assert pop.sum() == sum(len(i) for i in data.events["items"]) - len(held)
    cands = np.array([[0, 1, -1]])
    np.testing.assert_array_equal(popularity_scores(data, cands), [[pop[0], pop[1], -np.inf]])


def test_bm25_scores_prefer_matching_text():
    data = make_tiny_prepared()
    ex = eval_examples(data, "test", "search")
    cands = candidate_matrix(data, ex)
    scores = bm25_scores(data, ex, cands)
    assert scores.shape == cands.shape
    # the fixture's queries are the category words, so an item of the query's category scores > 0
    for row, query in enumerate(ex["query"]):
        texts = [data.item_texts[i] for i in cands[row]]
        matching = [j for j, t in enumerate(texts) if query.split()[-1] in t.lower()]
        other = [j for j in range(len(texts)) if j not in matching]
        if matching and other:
            assert scores[row, matching].min() > scores[row, other].max()


def test_query_matches_needs_every_query_word():
    item = frozenset(["lab", "digital", "scales", "balances"])
    assert query_matches("Lab Scales", item)  # case and order do not matter
    assert query_matches("the lab scales", item)  # stop words are dropped first
    assert not query_matches("lab scales tape", item)  # one missing word: no match
    assert not query_matches("the", item) and not query_matches("", item)  # nothing left to match


def test_match_popularity_ranks_matches_first_then_by_clicks():
    data = make_tiny_prepared()
    ex = eval_examples(data, "test", "search")
    cands = candidate_matrix(data, ex)
    scores = match_popularity_scores(data, ex, cands)
    pop = item_popularity(data)
    prior = pop / (1 + pop.max())
    texts = data.item_texts
    for row, query in enumerate(ex["query"]):
        for col, item in enumerate(cands[row]):
            if item < 0:
                assert scores[row, col] == -np.inf
                continue
            matched = query_matches(query, frozenset(texts[item].lower().replace(".", " ").split()))
            assert scores[row, col] == pytest.approx(float(matched) + prior[item])
    assert (scores[np.isfinite(scores)] < 2).all()  # a non-match never outranks a match


def test_baseline_cli_writes_metrics(tmp_path):
    make_tiny_prepared().save(tmp_path / "data")
    assert main(["baseline", "popularity", str(tmp_path / "data"), "--out", str(tmp_path / "pop")]) == 0
    metrics = json.loads((tmp_path / "pop" / "metrics.json").read_text())
    assert set(metrics["test"]) == {"rec", "search"}
    assert set(metrics["test"]["rec"]) == {"hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "n"}
    assert main(["baseline", "popularity", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert main(["baseline", "match-popularity", str(tmp_path / "data"), "--out", str(tmp_path / "mp")]) == 0
    assert set(json.loads((tmp_path / "mp" / "metrics.json").read_text())["test"]) == {"search"}
    assert main(["baseline", "content", str(tmp_path / "data"), "--out", str(tmp_path / "content"),
                 "--full-ranking"]) == 0
    content = json.loads((tmp_path / "content" / "metrics.json").read_text())
    assert set(content["test"]) == {"rec"} and set(content["full_ranking"]["test"]) == {"rec"}
