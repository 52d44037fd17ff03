"""Whole-catalog scorers: every item scored, sampled = gathered full scores, hand-computed metrics, CLIs."""

from __future__ import annotations

import json

import bm25s
import numpy as np
import pytest
import torch
from conftest import make_tiny_prepared

from gensar.baselines.match_popularity import query_matches
from gensar.baselines.popularity import item_popularity
from gensar.baselines.scorer import (
    Request,
    SASRecScorer,
    build_scorer,
    candidate_scores,
    evaluate_scorer,
    full_ranking_metrics,
    load_sasrec_scorer,
    requests_for,
)
from gensar.cli import main
from gensar.data.queries import words
from gensar.embed.sasrec import SASRec, SASRecConfig
from gensar.embed.sasrec_eval import sasrec_scores
from gensar.embed.sasrec_protocols import gensar_protocol
from gensar.eval.candidates import candidate_matrix, eval_examples, evaluate_scores

FULL_KEYS = {"recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20", "n"}


@pytest.fixture(scope="module")
def data():
    return make_tiny_prepared()


@pytest.mark.parametrize("name", ["popularity", "bm25", "match-popularity", "dense", "content"])
def test_every_baseline_scores_every_item(data, name):
    scorer = build_scorer(name, data)
    for behavior in scorer.behaviors:
        reqs = requests_for(data, eval_examples(data, "test", behavior))
        scores = scorer.scores(reqs)
        assert scores.shape == (len(reqs), len(data.items)) and scores.dtype == np.float32
        assert np.isfinite(scores).all()
        if name != "popularity":  # the query (content: the history) matters: not one row repeated
            assert len({row.tobytes() for row in scores}) > 1


def test_content_scores_the_recency_weighted_history_profile_by_hand(data):
    from gensar.baselines.content import ContentScorer

    scorer = build_scorer("content", data)
    assert isinstance(scorer, ContentScorer) and scorer.behaviors == ("rec",)
    scorer.embeddings.matrix = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)  # 3 unit items
    scorer.decay, scorer.max_len = 0.5, 2
    got = scorer.scores([Request("", (2, 1, 0)), Request("", ())])  # newest two: 1 (weight 0.5), 0 (1)
    profile = np.array([1.0, 0.5]) / np.hypot(1.0, 0.5)
    np.testing.assert_allclose(got[0], [profile[0], profile[1], 0.6 * profile[0] + 0.8 * profile[1]], rtol=1e-6)
    np.testing.assert_array_equal(got[1], [0.0, 0.0, 0.0])  # no history: no preference


def _old_bm25(data, queries):
    """The sampled path before whole-catalog scoring: bm25s per query, as the baseline did."""
    retriever = bm25s.BM25(k1=1.5, b=0.75)
    retriever.index(bm25s.tokenize(data.item_texts, stopwords="en", show_progress=False), show_progress=False)
    toks = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
    return np.stack([retriever.get_scores(t) for t in toks])


def test_sampled_scores_are_the_gathered_full_scores(data):
    ex = eval_examples(data, "valid", "search")
    cands = candidate_matrix(data, ex)
    cands[0, -1] = -1  # a padded slot stays -inf
    reqs = requests_for(data, ex)
    # BM25: exactly the per-query scores of the old sampled path, at the candidate rows
    old = _old_bm25(data, ex["query"].tolist())
    got = candidate_scores(build_scorer("bm25", data), reqs, cands, batch_size=7)
    np.testing.assert_array_equal(got[:, :-1], np.take_along_axis(old, cands, axis=1)[:, :-1])
    assert got[0, -1] == -np.inf
    # match-popularity: the inverted index agrees with the word-by-word check on every item
    pop = item_popularity(data)
    prior = pop / (1 + pop.max())
    item_words = [frozenset(words(t)) for t in data.item_texts]
    full = build_scorer("match-popularity", data).scores(reqs)
    for row, q in enumerate(ex["query"]):
        expected = np.array([float(query_matches(q, w)) for w in item_words]) + prior
        np.testing.assert_array_equal(full[row], expected.astype(np.float32))
    # and the sampled metrics of evaluate_scorer are those of the gathered matrix
    scorer = build_scorer("match-popularity", data)
    sampled, whole = evaluate_scorer(scorer, data, ex, cands, full_ranking=True, batch_size=5)
    assert sampled == evaluate_scores(candidate_scores(scorer, reqs, cands), cands)
    assert set(whole) == FULL_KEYS


class _Fixed:
    """A scorer with given rows of scores (one per request, in order)."""

    name = "fixed"
    behaviors = ("rec",)

    def __init__(self, rows: np.ndarray) -> None:
        self.rows, self.pos = rows, 0

    def scores(self, requests):
        out = self.rows[self.pos : self.pos + len(requests)]
        self.pos += len(requests)
        return out


def test_full_ranking_metrics_hand_computed(data):
    ex = eval_examples(data, "test", "rec").head(4)
    n_items = len(data.items)
    targets = [data.item_index[t] for t in ex["target"]]
    rows = np.zeros((4, n_items), dtype=np.float32)
    rows[0, targets[0]] = 1.0  # strictly best: rank 0
    rows[1, :3] = 2.0  # 3 items above the target (at 0.5): rank 3, unless the target is among them
    rows[1, targets[1]] = 0.5
    rows[2] = 1.0  # every item ties: rank uniform on 0..n_items-1 (tie-aware expectation)
    rows[3, targets[3]] = -np.inf  # cannot be scored: never retrieved
    plain = [0, 3 - sum(t < 3 for t in [targets[1]]), np.inf]  # rows 0, 1, 3
    m = full_ranking_metrics(_Fixed(rows), data, ex, batch_size=3)
    assert m["n"] == 4
    for k in (5, 20):
        assert m[f"recall@{k}"] == pytest.approx((sum(r < k for r in plain) + k / n_items) / 4)
    tied_ndcg = sum(1 / np.log2(r + 2) for r in range(10)) / n_items
    gains = [1 / np.log2(r + 2) if r < 10 else 0.0 for r in plain]
    assert m["ndcg@10"] == pytest.approx((sum(gains) + tied_ndcg) / 4)


def test_requests_carry_every_earlier_click_and_no_query_for_rec(data):
    ex = eval_examples(data, "valid", "rec")
    proto = gensar_protocol(data)  # SASRec's own histories of the same examples
    by_event = dict(zip(data.split("valid", "rec")["event_id"], proto.valid.histories, strict=True))
    for r, event_id in zip(requests_for(data, ex), ex["event_id"], strict=True):
        assert r.query == "" and list(r.history) == by_event[event_id]
    search = requests_for(data, eval_examples(data, "valid", "search"))
    assert all(r.query for r in search)


def test_sasrec_scorer_matches_the_sampled_scores_and_loads_from_cli(data, tmp_path):
    torch.manual_seed(0)
    model = SASRec(len(data.items), SASRecConfig(hidden=16, heads=2, max_len=10)).eval()
    ex = eval_examples(data, "test", "rec")
    reqs = requests_for(data, ex)
    cands = candidate_matrix(data, ex)
    got = candidate_scores(SASRecScorer(model), reqs, cands)
    want = sasrec_scores(model, [list(r.history) for r in reqs], cands)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert SASRecScorer(model).scores([Request("", ())]).shape == (1, len(data.items))  # no history yet

    prepared = data.save(tmp_path / "prepared")
    out = tmp_path / "sasrec"
    tiny = ["--set", "hidden=16", "--set", "layers=1", "--set", "max_len=10", "--set", "epochs=2", "--quiet"]
    assert main(["sasrec", str(prepared), "--out", str(out), *tiny, "--full-ranking"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["full_ranking"]) == {"valid", "test"}
    assert set(metrics["full_ranking"]["test"]["rec"]) == FULL_KEYS
    scorer = load_sasrec_scorer(out, data)
    again = full_ranking_metrics(scorer, data, ex)
    assert again == pytest.approx(metrics["full_ranking"]["test"]["rec"])
    assert main(["sasrec", str(prepared), "--out", str(tmp_path / "x"), *tiny, "--full-ranking",
                 "--protocol", "sasrec"]) == 2
    assert not (tmp_path / "x").exists()


def test_baseline_cli_full_ranking_keeps_the_sampled_blocks(data, tmp_path):
    prepared = data.save(tmp_path / "prepared")
    for flag in ([], ["--full-ranking"]):
        out = tmp_path / f"bm25{len(flag)}"
        assert main(["baseline", "bm25", str(prepared), "--out", str(out), *flag]) == 0
    plain = json.loads((tmp_path / "bm250" / "metrics.json").read_text())
    full = json.loads((tmp_path / "bm251" / "metrics.json").read_text())
    assert "full_ranking" not in plain
    assert {s: full[s] for s in ("valid", "test")} == {s: plain[s] for s in ("valid", "test")}
    block = full["full_ranking"]["test"]["search"]
    assert set(block) == FULL_KEYS and block["n"] == plain["test"]["search"]["n"]
    assert block["recall@5"] <= block["recall@10"] <= block["recall@20"]
