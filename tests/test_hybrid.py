"""Hybrid generative retrieval end to end on the tiny pipeline: stage outputs, metrics, serving."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from gensar.baselines.scorer import Request, build_scorer
from gensar.config import load_config
from gensar.data.prepared import PreparedData
from gensar.hybrid.config import HybridConfig
from gensar.hybrid.ranker import title_key
from gensar.metrics import FULL_METRIC_KEYS, METRIC_KEYS
from gensar.pipeline import PipelineConfig, builtin_config, run_pipeline
from gensar.serve.engine import HistoryEvent
from gensar.serve.hybrid import HybridEngine
from gensar.serve.service import ServeConfig, Service


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hybrid") / "run"
    run_pipeline(load_config(PipelineConfig, builtin_config("tiny")), out)
    return out


@pytest.fixture(scope="module")
def engine(run) -> HybridEngine:
    return HybridEngine.from_run_dir(run)


def test_stage_writes_a_fitted_ranker_and_metrics_for_both_protocols(run):
    for part in ("hybrid/fusion.json", "hybrid/fit_report.json", "hybrid/sasrec/model.pt", "hybrid/config.yaml"):
        assert (run / part).is_file(), part
    report = json.loads((run / "hybrid" / "fit_report.json").read_text())
    for protocol in ("full", "sampled"):
        for behavior in ("rec", "search"):
            r = report[protocol][behavior]
            assert r["selected"] == "fusion" or r["selected"] in r["parts"]
            assert r["fused_cv"]["ndcg@10"] >= max(p["ndcg@10"] for p in r["parts"].values()) or \
                r["selected"] == "fusion"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ranker"] == "hybrid"
    for split in ("valid", "test"):
        for behavior in ("rec", "search"):
            assert set(METRIC_KEYS) <= set(metrics[split][behavior])
            assert set(FULL_METRIC_KEYS) <= set(metrics["full_ranking"][split][behavior])
            assert set(METRIC_KEYS) <= set(metrics["generative"][split][behavior])
            assert set(FULL_METRIC_KEYS) <= set(metrics["generative"]["full_ranking"][split][behavior])
    assert {"sasrec", "bm25", "dense", "match-popularity", "popularity"} <= set(metrics["baselines"])
    assert set(metrics["baselines"]["bm25"]["test"]) == {"search"}


def test_the_served_ranker_runs_the_scorers_and_depth_the_fit_chose(run, engine):
    report = json.loads((run / "hybrid" / "fit_report.json").read_text())
    fusions = json.loads((run / "hybrid" / "fusion.json").read_text())
    for behavior in ("rec", "search"):
        r, fusion = report["full"][behavior], fusions["full"][behavior]
        assert r["plan"] in r["plans_cv_ndcg@10"]
        # the chosen plan is within one standard error of the full configuration, so never far below the best
        assert r["plans_cv_ndcg@10"][r["plan"]] >= max(r["plans_cv_ndcg@10"].values()) - 0.1
        assert r["plan"] == (f"beam{engine.ranker.beam_size(behavior)}+"
                             f"{'+'.join(engine.ranker.scorer_names(behavior))}@{engine.ranker.depth(behavior)}")
        assert (engine.ranker.depth(behavior), engine.ranker.beam_size(behavior)) == (fusion["depth"], fusion["beam"])
        assert tuple(fusion["features"]) == engine.ranker.feature_names(behavior)
        # no item was new while fitting: the new-item features' weights stay exactly 0
        new = [w for f, w in zip(fusion["features"], fusion["weights"], strict=True) if f.startswith("new")]
        assert new and all(w == 0.0 for w in new)


def test_the_hybrids_parts_alone_equal_the_baselines_where_they_propose(run):
    """Within the candidate union, BM25 alone ranks its own top items as BM25 over the catalog does."""
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("bm25", "match-popularity"):
        parts = metrics["full_ranking"]["test"]["search"]["parts"]
        if name not in parts:  # the fit left it out
            continue
        alone = metrics["baselines"][name]["full_ranking"]["test"]["search"]
        assert parts[name]["recall@10"] == pytest.approx(alone["recall@10"], abs=1e-9), name


def test_served_items_are_real_distinct_and_best_first(run, engine):
    data = PreparedData.load(run / "data")
    ev = data.events.iloc[0]
    history = [HistoryEvent(behavior=ev["behavior"], query=ev["query"], items=tuple(ev["items"]))]
    for ranked in (engine.recommend([history, []], k=15), engine.search(["tools saws", "lab"], [history, []], k=15)):
        for row in ranked:
            idx = [r.index for r in row]
            assert len(row) == 15 and len(set(idx)) == 15
            assert all(0 <= i < len(data.items) for i in idx)
            scores = [r.score for r in row]
            assert scores == sorted(scores, reverse=True)


def test_served_requests_skip_search_twins_as_the_fit_did(engine):
    items = list(engine.item_index)
    a, b = items[:2]
    history = [HistoryEvent("rec", "", (a,), 5), HistoryEvent("search", "q", (a,), 5),  # one click, logged twice
               HistoryEvent("search", "q", (a,), 9), HistoryEvent("rec", "", (b,), 9)]  # a later repeat; b
    _, requests = engine.batch("rec", [""], [history])
    assert requests[0].history == (engine.item_index[a], engine.item_index[a], engine.item_index[b])


def test_an_exact_title_query_keeps_bm25s_top_match_in_the_top_10(run, engine):
    data = PreparedData.load(run / "data")
    titles = data.items["title"].tolist()
    unique = [i for i, t in enumerate(titles) if sum(title_key(u) == title_key(t) for u in titles) == 1]
    bm25 = build_scorer("bm25", data)
    checked = 0
    for i in unique[:25]:
        full = bm25.scores([Request(titles[i], ())])[0]
        if int(np.argmax(full)) != i:
            continue  # only BM25's own top-1 exact-title matches are promised
        checked += 1
        got = [r.index for r in engine.search([titles[i]], [[]], k=10)[0]]
        assert i in got, titles[i]
        assert got[0] == i  # the title rule puts it first
    assert checked >= 5


def test_service_picks_the_hybrid_by_default_and_beam_on_request(run):
    auto = Service.open(run, ServeConfig(), writable=False)
    beam = Service.open(run, ServeConfig(engine="generative"), writable=False)
    assert auto.engine.name == "hybrid" and beam.engine.name == "generative"


def test_hybrid_off_serves_and_reports_the_beam(tmp_path, run):
    out = tmp_path / "off"
    cfg = load_config(PipelineConfig, builtin_config("tiny"), ["hybrid.enabled=false", "eval.baselines=false"])
    metrics = run_pipeline(cfg, out, reuse=run)  # data, IDs and model copied from the fixture's run
    assert metrics["ranker"] == "beam"
    assert metrics["test"] == metrics["generative"]["test"]
    assert not (out / "hybrid" / "fusion.json").exists()
    assert Service.open(out, ServeConfig(), writable=False).engine.name == "generative"


def test_evaluate_cli_measures_the_served_ranker_by_default(run, tmp_path, capsys):
    """`gensar evaluate RUN` reproduces metrics.json's served (hybrid) figures; --ranker generative
    its generative block; an explicit --ranker hybrid on a run without one is a one-line error."""
    from gensar.cli import main

    metrics = json.loads((run / "metrics.json").read_text())
    for flags, expected in (([], metrics["test"]),
                            (["--full-ranking"], metrics["full_ranking"]["test"]),
                            (["--ranker", "generative", "--beam", "10"], metrics["generative"]["test"])):
        assert main(["evaluate", str(run), "--json", *flags]) == 0
        got = json.loads(capsys.readouterr().out)
        for behavior in ("rec", "search"):
            for key in METRIC_KEYS if "--full-ranking" not in flags else FULL_METRIC_KEYS:
                assert got[behavior][key] == pytest.approx(expected[behavior][key], abs=1e-9), (flags, key)
    assert main(["evaluate", str(run), "--method", "likelihood"]) == 2
    assert "--ranker generative" in capsys.readouterr().err
    off = tmp_path / "off"
    run_pipeline(load_config(PipelineConfig, builtin_config("tiny"), ["hybrid.enabled=false", "eval.baselines=false"]),
                 off, reuse=run)
    assert main(["evaluate", str(off), "--ranker", "hybrid"]) == 2
    assert "fusion.json: missing" in capsys.readouterr().err


def _generative_weight(fusion, weight: float):
    """``fusion`` with its generative feature's weight set to ``weight`` (a fusion for the test)."""
    col = fusion.features.index("generative")
    w = list(fusion.weights)
    w[col] = weight
    return dataclasses.replace(fusion, weights=tuple(w))


@pytest.mark.parametrize("k", [1, 5, 10])
def test_pruned_serving_answers_as_scoring_every_candidate_exactly(run, engine, k):
    """``top_candidates`` drops only candidates that cannot reach the top k: its ranking's top k is
    the full candidate set's, item for item and score for score. With a fusion that weighs the
    generative score lightly (its bound then barely matters) it must prune where there are more
    than twice the first pass's candidates to score (``FIRST_PASS``); with one whose score falls as the generative score
    rises it must not (the bound would then be a lower bound)."""
    data = PreparedData.load(run / "data")
    titles = data.items["title"].tolist()
    histories, queries = [], []
    for u, ev in list(data.events.groupby("user_id", sort=True))[:12]:
        histories.append([HistoryEvent(b, q, tuple(i)) for b, q, i in
                          zip(ev["behavior"], ev["query"], ev["items"], strict=True)][-10:])
        queries.append(titles[len(queries) * 7] if len(queries) % 3 == 0 else f"tools {titles[len(queries)].split()[0]}")
    histories[1] = []  # a request without history
    ranker = engine.ranker
    pruned = {}
    for name, scale in (("fitted", None), ("generative-light", 0.05), ("falling", -1.0)):
        fusions = {b: f if scale is None else _generative_weight(f, scale) for b, f in ranker.fusions.items()}
        r = ranker.with_fusions(fusions)
        for behavior in ("rec", "search"):
            inputs, requests = engine.batch(behavior, queries, histories)
            full_items, full_scores = r.rank(behavior, r.candidates(behavior, requests, inputs), k)
            cands = r.top_candidates(behavior, requests, inputs, k)
            items, scores = r.rank(behavior, cands, k)
            np.testing.assert_array_equal(items, full_items, err_msg=f"{name} {behavior}")
            np.testing.assert_allclose(scores, full_scores, rtol=1e-12, err_msg=f"{name} {behavior}")
            assert (items >= 0).all()
            pruned[name, behavior] = cands.pruned
    if k == 1:  # the tiny world's ~60 candidates leave room for two passes only at small k
        assert pruned["generative-light", "rec"] > 0 and pruned["generative-light", "search"] > 0, pruned
    assert pruned["falling", "rec"] == pruned["falling", "search"] == 0
    off = ranker.with_fusions({b: _generative_weight(f, 0.05) for b, f in ranker.fusions.items()}).with_config(
        dataclasses.replace(ranker.cfg, prune=False))
    inputs, requests = engine.batch("rec", queries, histories)
    assert off.top_candidates("rec", requests, inputs, k).pruned == 0


def test_a_history_only_scorer_in_search_scores_every_candidate_and_proposes_none(tmp_path, run):
    """SASRec in ``hybrid.search_scorers`` knows the user, not the query: a fusion feature of search,
    never a source of its candidates; the ranker's search candidates are those without it."""
    out = tmp_path / "sasrec-search"
    cfg = load_config(PipelineConfig, builtin_config("tiny"),
                      ["hybrid.search_scorers=[bm25, popularity, sasrec]", "eval.baselines=false"])
    run_pipeline(cfg, out, reuse=run)
    fusion = json.loads((out / "hybrid" / "fusion.json").read_text())["full"]["search"]
    assert "sasrec" in fusion["features"]
    engine = HybridEngine.from_run_dir(out)
    data = PreparedData.load(run / "data")
    histories = [[HistoryEvent(b, q, tuple(i)) for b, q, i in zip(ev["behavior"], ev["query"], ev["items"], strict=True)]
                 for _, ev in list(data.events.groupby("user_id", sort=True))[:6]]
    inputs, requests = engine.batch("search", ["tools"] * 6, histories)
    cands = engine.ranker.candidates("search", requests, inputs)
    assert "sasrec" not in cands.sources and "bm25" in cands.sources
    fitted = engine.ranker.fusions["search"]
    keep = [i for i, f in enumerate(fitted.features) if f != "sasrec"]
    drop = dataclasses.replace(fitted, **{k: tuple(getattr(fitted, k)[i] for i in keep)
                                          for k in ("features", "mean", "std", "weights")})
    plain = engine.ranker.with_fusions({"search": drop}).candidates("search", requests, inputs)
    np.testing.assert_array_equal(cands.items, plain.items)  # the same candidates, one feature fewer
    col = engine.ranker.feature_names("search").index("sasrec")
    sasrec = engine.ranker.scorers["sasrec"].scores(requests)
    expect = sasrec - np.log(np.exp(sasrec - sasrec.max(1, keepdims=True)).sum(1, keepdims=True)) - sasrec.max(1, keepdims=True)
    valid = cands.items >= 0
    np.testing.assert_allclose(cands.features[..., col][valid],
                               np.take_along_axis(expect, np.maximum(cands.items, 0), axis=1)[valid], rtol=1e-5)
    # a search without history: the history features are constant (0), so they cannot reorder it
    inputs, requests = engine.batch("search", ["tools"], [[]])
    anon = engine.ranker.candidates("search", requests, inputs)
    assert (anon.features[..., col][anon.valid] == 0).all()
    assert not HybridConfig().proposes("search", "sasrec") and HybridConfig().proposes("rec", "sasrec")
    assert not HybridConfig().proposes("rec", "popularity") and HybridConfig().proposes("search", "bm25")


def test_a_latency_bound_times_every_whole_catalog_plan_and_serves_one_within_it(tmp_path, run):
    """``hybrid.max_latency_ratio``: the fit times each whole-catalog plan against the beam alone and
    records it; a bound no plan meets leaves the cheapest plan serving."""
    from gensar.hybrid.plan import candidate_plans

    out = tmp_path / "bounded"
    cfg = load_config(PipelineConfig, builtin_config("tiny"),
                      ["hybrid.max_latency_ratio=0.001", "hybrid.latency_requests=3", "eval.baselines=false"])
    run_pipeline(cfg, out, reuse=run)
    report = json.loads((out / "hybrid" / "fit_report.json").read_text())
    fusions = json.loads((out / "hybrid" / "fusion.json").read_text())["full"]
    for behavior in ("rec", "search"):
        full = report["full"][behavior]
        plans = candidate_plans(cfg.hybrid, behavior, "full")
        assert set(full["plans_latency_ratio"]) == {p.label for p in plans}
        assert all(r > 0 for r in full["plans_latency_ratio"].values())
        assert full["plan"] == plans[0].label  # nothing is 1,000x faster than the beam
        assert (fusions[behavior]["beam"], fusions[behavior]["depth"]) == (plans[0].beam, plans[0].depth)
        assert "plans_latency_ratio" not in report["sampled"][behavior]  # given candidates: not timed
